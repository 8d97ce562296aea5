//! tern's archive: records Aeron streams (one recording per image, as Aeron's archive does) into
//! segment files of raw frames, each frame with a CRC32C, under a checksummed catalog; recovers
//! interrupted recordings after a crash; replays any recording with its original stream positions.
//!
//! Where to look: [`Archive`] (a running archive), [`ArchiveView`] (read-only access to a
//! directory), [`Catalog`] and [`RecordingDescriptor`] (the catalog), [`SegmentWriter`] and
//! [`RecordingReader`] (segment files), [`frame`] (the frame format and checksums), [`key`] and
//! [`key_index`] (replaying one client's messages: key filters and the per-key index).

mod archive;
mod catalog;
mod config;
pub mod control;
mod crc;
mod cursors;
mod descriptor;
mod error;
mod events;
mod extend;
pub mod frame;
mod indexer;
pub mod key;
pub mod key_index;
mod key_search;
pub mod message_time;
mod metrics;
mod operations;
mod progress;
mod rebuild;
mod recorder;
mod recording_reader;
mod replay_limit;
mod replayer;
pub mod segment;
mod segment_writer;
pub mod time_index;
mod view;

pub use archive::{
    check_replay_position, Archive, RecordingFailure, RecordingInfo, RecordingSubscriptionInfo,
    ReplayRequest, LOCK_FILE,
};
pub use catalog::{Catalog, CatalogEntry, CATALOG_FILE};
pub use config::{ArchiveConfig, FsyncPolicy};
pub use cursors::{check_cursor_name, Cursor, CURSOR_FILE, MAX_CURSORS, MAX_CURSOR_NAME};
pub use descriptor::{RecordState, RecordingDescriptor, NULL_POSITION, RECORD_LENGTH};
pub use error::{ArchiveError, Result};
pub use events::{RecordingEvent, RecordingSignalKind};
pub use indexer::KeyIndexCheck;
pub use key::{FieldWidth, KeyFilter, KeyKind};
pub use key_search::SearchStats;
pub use message_time::{TimeSource, TimeUnit};
pub use metrics::{MetricsExporter, MetricsServer, METRICS_CONTENT_TYPE, METRICS_PREFIX};
pub use operations::{purge_recording_offline, truncate_recording_offline};
pub use progress::RecordingProgress;
pub use rebuild::{rebuild_catalog, RebuildReport, RebuiltFrom, RebuiltRecording, UNKNOWN_CHANNEL};
pub use recorder::{epoch_nanos, SourceLocation, RECORDING_POSITION_TYPE_ID};
pub use recording_reader::{find_end, list_segments, FrameRef, RecordingReader, ScanStop};
pub use replayer::{ReplayState, ReplayStatus};
pub use segment_writer::{SegmentGeometry, SegmentWriter, WriteMode};
pub use tern_protocol::ArchiveErrorCode;
pub use time_index::{TimeEntry, TimeIndexReader, TimeSeek};
pub use view::{ArchiveView, FilteredRead, RecordingView, SegmentInfo, VerifyReport};
