//! One module per subcommand.

pub mod archive;
pub mod demo;
pub mod describe;
pub mod driver;
pub mod dump;
pub mod index;
pub mod list;
pub mod record;
pub mod replay;
pub mod settings;
pub mod verify;
