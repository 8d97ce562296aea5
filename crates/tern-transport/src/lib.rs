//! tern's only door to Aeron: the C media driver and client (through rusteron), wrapped in safe
//! types. Nothing borrowed from the C library escapes a callback: handlers get `&[u8]` and a
//! copied [`Header`].
//!
//! Threading: rusteron's handles are not `Send`. Each thread that uses Aeron connects its own
//! [`Client`]; the [`MediaDriver`] may run on any thread.

mod assembler;
mod client;
mod driver;
mod error;
mod header;
mod idle;
mod logbuffer;
mod publication;
mod sim;
mod subscription;
mod uri;

pub use assembler::{FragmentAssembler, StreamAssembler};
pub use client::{Client, Counter, CountersReader, PendingPublication, DEFAULT_CLIENT_IDLE_SLEEP};
pub use driver::{default_aeron_dir, DriverConfig, MediaDriver, ThreadingMode};
pub use error::TransportError;
pub use header::{Header, BEGIN_FLAG, END_FLAG, UNFRAGMENTED};
pub use idle::{BackoffIdle, Idle, SleepingIdle};
pub use logbuffer::{spied_publication, SpiedPublication};
pub use publication::{ExclusivePublication, OfferError, Publication};
pub use sim::{
    BlockSink, BlockSource, CounterValues, ImageSubscription, PositionCounter, RecordingImage,
    ReplayTransport, SimCounter, SimImage, SimLog, SimPublication, SimStream, SimSubscription,
    SimTransport, Transport,
};
pub use subscription::{Image, ImageEvent, ImageInfo, Subscription};
pub use uri::{check_channel, ChannelUse};
