//! One module per subcommand.

pub mod archive;
pub mod catalog;
pub mod cluster;
pub mod demo;
pub mod describe;
pub mod driver;
pub mod dump;
pub mod index;
pub mod list;
pub mod purge;
pub mod record;
pub mod remote;
pub mod replay;
pub mod settings;
pub mod sink;
pub mod truncate;
pub mod verify;
