//! tern's archive: records Aeron streams (one recording per image, as Aeron's archive does) into
//! segment files of raw frames, each frame with a CRC32C, under a checksummed catalog; recovers
//! interrupted recordings after a crash; replays any recording with its original stream positions.
//!
//! Where to look: [`Archive`] (a running archive), [`ArchiveView`] (read-only access to a
//! directory), [`Catalog`] and [`RecordingDescriptor`] (the catalog), [`SegmentWriter`] and
//! [`RecordingReader`] (segment files), [`frame`] (the frame format and checksums), [`key`] and
//! [`key_index`] (replaying one client's messages: key filters and the per-key index).

mod archive;
mod conductor;
mod config;
pub mod control;
mod error;
mod events;
mod exporter;
pub use tern_store::egress_header;
pub use tern_store::frame;
pub use tern_store::key;
pub use tern_store::key_index;
pub use tern_store::message_time;
mod metrics;
mod operations;
mod record;
mod replay;
pub use tern_store::segment;
pub use tern_store::time_index;
#[cfg(test)]
mod testing;
mod types;
mod view;

pub use archive::Archive;
pub use config::{ArchiveConfig, FsyncPolicy};
pub use error::{ArchiveError, Result};
pub use events::{RecordingEvent, RecordingSignalKind};
pub use exporter::{MetricsExporter, MetricsServer, METRICS_CONTENT_TYPE};
pub use metrics::METRICS_PREFIX;
pub use operations::{purge_recording_offline, truncate_recording_offline};
pub use record::RECORDING_POSITION_TYPE_ID;
pub use replay::key_search::SearchStats;
pub use replay::{ReplayState, ReplayStatus};
pub use tern_protocol::ArchiveErrorCode;
pub use types::SourceLocation;
pub use types::{
    stopped_by_identity, Begun, Pending, PendingRecording, PendingReplay, PendingSeek,
    RecordingFailure, RecordingInfo, RecordingSubscriptionInfo, ReplayRequest,
};
pub use view::{ArchiveView, FilteredRead, RecordingView, SegmentInfo, VerifyReport};
// The storage the archive keeps its recordings in (tern-store), under the names the archive's
// users know.
pub use tern_store::{
    check_cursor_name, check_replay_position, epoch_nanos, find_end, list_segments,
    rebuild_catalog, Catalog, CatalogEntry, Cursor, FieldWidth, FrameRef, KeyFilter, KeyIndexCheck,
    KeyKind, RebuildReport, RebuiltFrom, RebuiltRecording, RecordState, RecordingDescriptor,
    RecordingId, RecordingProgress, RecordingReader, ReplayId, ScanStop, SegmentGeometry,
    SegmentWriter, StoreError, TimeEntry, TimeIndexReader, TimeSeek, TimeSource, TimeUnit,
    WriteMode, CATALOG_FILE, CURSOR_FILE, LOCK_FILE, MAX_CURSORS, MAX_CURSOR_NAME, NULL_POSITION,
    RECORD_LENGTH, UNKNOWN_CHANNEL,
};
