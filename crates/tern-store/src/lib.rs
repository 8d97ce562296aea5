//! tern's storage, with no Aeron in it: the frames a recording holds (Aeron's data frame header,
//! each frame with a CRC32C), segment files and their writer and reader, the checksummed catalog
//! of recording descriptors, the time and key indexes beside a recording, named cursors, the
//! directory lock, and rebuilding a catalog from segment files.
//!
//! The archive records and replays through it; the cluster's log, snapshots and egress
//! recordings and the sinks are built on the same files.
//!
//! Where to look: [`frame`] (the frame format and checksums), [`segment`] and [`SegmentWriter`] /
//! [`RecordingReader`] (segment files), [`Catalog`] and [`RecordingDescriptor`] (the catalog),
//! [`time_index`], [`key`] and [`key_index`] (finding a time or one client's messages),
//! [`Cursor`] (named positions), [`directory`] (the lock, leftovers), [`rebuild_catalog`];
//! [`RecordingId`] and [`ReplayId`], the ids the archive and its clients share;
//! [`egress_header`], tern's egress header (the cluster writes it, keys and times read it).

pub mod catalog;
pub mod clock;
pub mod crc;
pub mod cursors;
pub mod descriptor;
pub mod directory;
pub mod egress_header;
pub mod error;
pub mod frame;
pub mod ids;
pub mod indexer;
pub mod key;
pub mod key_index;
pub mod message_time;
pub mod progress;
pub mod rebuild;
pub mod recording_reader;
pub mod segment;
pub mod segment_writer;
pub mod storage;
pub mod time_index;
pub mod time_seek;

pub use catalog::{Catalog, CatalogEntry, CATALOG_FILE};
pub use clock::{epoch_nanos, system_clock, Clock, SimClock, SystemClock};
pub use cursors::{check_cursor_name, Cursor, CURSOR_FILE, MAX_CURSORS, MAX_CURSOR_NAME};
pub use descriptor::{RecordState, RecordingDescriptor, NULL_POSITION, RECORD_LENGTH};
pub use directory::{lock_directory, lock_file, remove_leftovers, LOCK_FILE};
pub use egress_header::EgressHeader;
pub use error::{io_error, Result, StoreError};
pub use ids::{RecordingId, ReplayId};
pub use indexer::KeyIndexCheck;
pub use key::{FieldWidth, KeyFilter, KeyKind};
pub use message_time::{TimeSource, TimeUnit};
pub use progress::RecordingProgress;
pub use rebuild::{rebuild_catalog, RebuildReport, RebuiltFrom, RebuiltRecording, UNKNOWN_CHANNEL};
pub use recording_reader::{
    check_replay_position, find_end, find_end_on, list_segments, list_segments_on, FrameRef,
    RecordingReader, ScanStop,
};
pub use segment_writer::{SegmentGeometry, SegmentWriter, WriteMode};
pub use storage::{
    disk, Disk, Executor, FaultDisk, Io, OpenOptions, SimDisk, Storage, StorageFile, WriteFault,
};
pub use time_index::{TimeEntry, TimeIndexReader, TimeSeek};
