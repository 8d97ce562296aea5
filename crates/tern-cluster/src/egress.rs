//! Every node's record of the egress its own copy of the service produced: an archive recording
//! in `<dir>/egress/` (a catalog with one recording, id 0, and its segment files and time
//! index), so `tern list / describe / verify / dump / replay` read it as they read any
//! recording. Drawn in `docs/cluster.md` §9.
//!
//! Each message is one unfragmented data frame (stream id 102, Aeron Cluster's egress stream;
//! the reserved value holds the cluster session id) whose payload is the client protocol's egress
//! message: tern's 48-byte egress header ([`crate::protocol::egress_header`]), then the
//! service's bytes. The time index takes the cluster timestamp, so a time replay finds a
//! message by the cluster time it was made at.
//!
//! The service is deterministic and the log the same on every node, so the recordings of all
//! nodes hold the same frames: message `n` (the cluster's egress number) is the `n`th frame of
//! every recording. A node that restarts applies the log again from its snapshot and produces
//! the egress it recorded before once more: what the recording holds already (egress number up
//! to [`EgressRecording::last_number`]) is not written twice. The log is durable before an entry
//! is applied, so the recording is synced only by time and before a snapshot lets the log go
//! ([`EgressRecording::sync`]): a crash loses at most an unsynced tail, which the log holds and
//! the restart writes again.

use crate::error::{ClusterError, Result};
use crate::log::codec::FrameAt;
use crate::log::LogConfig;
use crate::protocol::{egress_header, EGRESS_HEADER_LENGTH, EGRESS_STREAM_ID};
use crate::service::Egress;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tern_store::descriptor::{RecordState, RecordingDescriptor, NULL_POSITION};
use tern_store::frame::{HEADER_LENGTH, TYPE_DATA};
use tern_store::rebuild::open_for_recording_on;
use tern_store::segment::segment_file_name;
use tern_store::segment_writer::erase_segment_from;
use tern_store::time_index::TimeIndexWriter;
use tern_store::{
    find_end_on, list_segments_on, Catalog, Io, RecordingId, RecordingReader, SegmentGeometry,
    SegmentWriter, Storage,
};

/// The egress recording's directory in a node's directory.
pub const EGRESS_DIR: &str = "egress";
/// The egress recording's id in its catalog.
pub const EGRESS_RECORDING_ID: RecordingId = RecordingId::new(0);
/// The channel the catalog names for it.
pub const EGRESS_CHANNEL: &str = "tern:cluster-egress";
/// Time index entries at most this often (cluster time).
const TIME_INDEX_INTERVAL_NS: i64 = 1_000_000;

/// What [`EgressRecording::open`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EgressRecovered {
    /// What was found where the valid frames end, when it was not clean zeroes: a torn tail,
    /// cut away (the log holds it; the node writes it again).
    pub damage: Option<String>,
}

/// A node's egress recording, being written.
pub struct EgressRecording {
    storage: Arc<dyn Storage>,
    dir: PathBuf,
    catalog: Catalog,
    descriptor: RecordingDescriptor,
    config: LogConfig,
    writer: Option<SegmentWriter>,
    time_index: TimeIndexWriter,
    /// The position after the last message.
    end: i64,
    /// The egress number of the last message in the recording.
    last_number: u64,
    /// The egress number of the last message known synced.
    synced_number: u64,
    /// The cluster time of the last message appended since the start (or of the start).
    last_timestamp_ns: i64,
    /// Numbers from here on were not recorded: the node installed a leader's snapshot past its
    /// recording's end (the messages in between exist only in other nodes' recordings).
    behind_from: Option<u64>,
    scratch: Vec<u8>,
    /// Reads frames for peers that lack them.
    serve_reader: Option<RecordingReader>,
    /// A sync asked for: the position and egress number it makes durable.
    sync_pending: Option<(i64, u64)>,
}

impl std::fmt::Debug for EgressRecording {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EgressRecording")
            .field("dir", &self.dir)
            .field("end", &self.end)
            .field("last_number", &self.last_number)
            .field("synced_number", &self.synced_number)
            .field("behind_from", &self.behind_from)
            .finish()
    }
}

/// The recording's descriptor: its start and stop times are cluster times (of its first and last
/// message), as its time index's are.
fn descriptor(config: &LogConfig, member_id: u64) -> RecordingDescriptor {
    RecordingDescriptor {
        recording_id: EGRESS_RECORDING_ID,
        state: RecordState::Valid,
        start_timestamp_ns: 0,
        stop_timestamp_ns: NULL_POSITION,
        start_position: 0,
        stop_position: NULL_POSITION,
        initial_term_id: 0,
        segment_length: config.segment_length,
        term_length: config.term_length,
        mtu_length: config.term_length.min(1 << 24),
        session_id: 0,
        stream_id: EGRESS_STREAM_ID,
        stripped_channel: EGRESS_CHANNEL.into(),
        original_channel: format!("{EGRESS_CHANNEL}?member={member_id}"),
        source_identity: format!("member {member_id}"),
    }
}

/// The egress number in the payload of an egress recording's frame.
fn number_of(payload: &[u8]) -> Option<u64> {
    tern_store::egress_header::decode(payload)
        .ok()
        .map(|header| header.egress_number)
}

impl EgressRecording {
    /// Open (or create) the egress recording in `node_dir/egress`, its segments shaped as the
    /// log's (`config`). A torn tail is cut; the recording is active while the node runs.
    ///
    /// # Errors
    /// A file cannot be read or changed, the directory holds segment files its catalog does not
    /// describe, or its recording is not an egress recording.
    pub fn open(
        io: Io,
        node_dir: &Path,
        config: LogConfig,
        member_id: u64,
    ) -> Result<(Self, EgressRecovered)> {
        let dir = node_dir.join(EGRESS_DIR);
        let storage = io.storage.clone();
        storage
            .create_dir_all(&dir)
            .map_err(tern_store::io_error(&dir, "create egress directory"))?;
        let mut catalog = open_for_recording_on(&storage, &dir)?;
        let mut recovered = EgressRecovered::default();
        let fresh = catalog.entries().is_empty();
        let mut descriptor = if fresh {
            catalog.add(descriptor(&config, member_id))?
        } else {
            catalog.get(EGRESS_RECORDING_ID)?.clone()
        };
        if descriptor.stream_id != EGRESS_STREAM_ID
            || descriptor.stripped_channel != EGRESS_CHANNEL
            || descriptor.start_position != 0
            || descriptor.initial_term_id != 0
        {
            return Err(ClusterError::CorruptState {
                path: dir.clone(),
                reason: format!(
                    "recording 0 is not a cluster egress recording (stream {}, channel {})",
                    descriptor.stream_id, descriptor.stripped_channel
                ),
            });
        }
        // The files' shape is the recording's, whatever the config says now.
        let config = LogConfig {
            term_length: descriptor.term_length,
            segment_length: descriptor.segment_length,
            ..config
        };
        let bases = list_segments_on(&storage, &dir)?
            .remove(&EGRESS_RECORDING_ID)
            .unwrap_or_default();
        let end = if descriptor.is_active() {
            let (end, damage) = find_end_on(&storage, &dir, &descriptor, &bases)?;
            recovered.damage = damage.map(|stop| stop.to_string());
            end
        } else {
            descriptor.stop_position
        };
        let segment_length = i64::from(descriptor.segment_length);
        let base_of = |position: i64| position - position % segment_length;
        // Nothing may follow the end: the writer resumes there.
        for base in bases.iter().rev().filter(|base| **base > base_of(end)) {
            let path = dir.join(segment_file_name(EGRESS_RECORDING_ID, *base));
            storage
                .remove_file(&path)
                .map_err(tern_store::io_error(&path, "delete egress segment"))?;
        }
        if bases.contains(&base_of(end)) {
            erase_segment_from(
                &storage,
                &dir.join(segment_file_name(EGRESS_RECORDING_ID, base_of(end))),
                (end - base_of(end)) as u64,
                segment_length as u64,
            )?;
        }
        let last_number = last_number(&io, &dir, &descriptor, end)?;
        let time_index = if fresh {
            TimeIndexWriter::create_on(&storage, &dir, EGRESS_RECORDING_ID, TIME_INDEX_INTERVAL_NS)?
        } else {
            TimeIndexWriter::resume_on(
                &storage,
                &dir,
                EGRESS_RECORDING_ID,
                TIME_INDEX_INTERVAL_NS,
                end,
            )?
        };
        if !descriptor.is_active() {
            descriptor.stop_position = NULL_POSITION;
            descriptor.stop_timestamp_ns = NULL_POSITION;
            catalog.update(&descriptor)?;
        }
        let geometry = SegmentGeometry {
            dir: dir.clone(),
            recording_id: EGRESS_RECORDING_ID,
            start_position: 0,
            term_length: i64::from(config.term_length),
            segment_length,
        };
        let mut writer = if end == 0 && !storage.exists(&geometry.path_of(0)) {
            SegmentWriter::new_on(&io, geometry, config.mode, false, config.buffer_length)?
        } else {
            SegmentWriter::resume_on(&io, geometry, end, config.mode, false, config.buffer_length)?
        };
        // The time index is synced on the writer's I/O after each segment sync.
        let (index_path, index_file) = time_index.file_handle();
        writer.sync_with(index_path, index_file);
        Ok((
            Self {
                storage,
                dir,
                catalog,
                descriptor,
                config,
                writer: Some(writer),
                time_index,
                end,
                last_number,
                synced_number: last_number,
                last_timestamp_ns: 0,
                behind_from: None,
                scratch: Vec::new(),
                serve_reader: None,
                sync_pending: None,
            },
            recovered,
        ))
    }

    /// The recording's directory (an archive directory).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The egress number of the last message recorded (0: none).
    pub fn last_number(&self) -> u64 {
        self.last_number
    }

    /// The egress number of the last message known to be on disk (synced).
    pub fn synced_number(&self) -> u64 {
        self.synced_number
    }

    /// The position after the last message.
    pub fn position(&self) -> i64 {
        self.end
    }

    /// The position up to which the messages are in the files (readers see them).
    pub fn flushed_position(&self) -> i64 {
        self.writer
            .as_ref()
            .map_or(0, SegmentWriter::flushed_position)
    }

    /// Take in what the writer's I/O finished (advances [`Self::flushed_position`]).
    ///
    /// # Errors
    /// A write failed.
    pub fn poll(&mut self) -> Result<()> {
        let writer = self.writer.as_mut().ok_or(ClusterError::EgressBroken)?;
        writer.poll()?;
        if let Some((position, number)) = self.sync_pending {
            if writer.synced_position() >= position {
                self.synced_number = self.synced_number.max(number);
                self.sync_pending = None;
            }
        }
        Ok(())
    }

    /// Have what was appended written and synced by the writer's I/O, without waiting:
    /// [`Self::synced_number`] moves once it is done (see [`Self::poll`]).
    ///
    /// # Errors
    /// A write failed earlier.
    pub fn request_sync(&mut self) -> Result<()> {
        let writer = self.writer.as_mut().ok_or(ClusterError::EgressBroken)?;
        writer.flush()?;
        writer.request_sync()?;
        self.sync_pending = Some((self.end, self.last_number));
        if let Err(error) = self.time_index.flush() {
            tracing::warn!("{}: egress time index: {error}", self.dir.display());
        }
        Ok(())
    }

    /// Whether a sync asked for is not done yet.
    pub fn sync_pending(&self) -> bool {
        self.sync_pending.is_some()
    }

    /// A reader of the recording's files (up to [`Self::flushed_position`] they hold whole
    /// messages).
    pub fn reader(&self) -> RecordingReader {
        RecordingReader::new_on(&self.storage, &self.dir, &self.descriptor)
    }

    /// Where to read from to find every message of cluster time `timestamp_ns` or later: the time
    /// index's last entry more than its interval before it (entries are at most one per interval,
    /// so a message of that time may come before the first entry at or after it).
    ///
    /// # Errors
    /// The time index cannot be read.
    pub fn position_before_time(&self, timestamp_ns: i64) -> Result<i64> {
        let end = self.flushed_position();
        Ok(tern_store::time_seek::position_at_time_on(
            &self.storage,
            &self.dir,
            &self.descriptor,
            end,
            timestamp_ns.saturating_sub(TIME_INDEX_INTERVAL_NS + 1),
        )?)
    }

    /// Whole frames from `position` (a frame start) on, as far as the files hold them, at most
    /// about `max_bytes` (a padding frame goes as its header alone: its body is zeroes): what a
    /// member whose recording ends at `position` lacks. Returns the egress number of the first
    /// message in them and the frames; nothing when the files end there.
    ///
    /// # Errors
    /// The recording is damaged at or after `position`, or `position` is not a frame start.
    pub fn read_frames(
        &mut self,
        position: i64,
        max_bytes: usize,
    ) -> Result<Option<(u64, Vec<u8>)>> {
        let flushed = self.flushed_position();
        if position < 0 || position >= flushed {
            return Ok(None);
        }
        let reader = match self.serve_reader.as_mut() {
            Some(reader) => reader,
            None => self.serve_reader.insert(RecordingReader::new_on(
                &self.storage,
                &self.dir,
                &self.descriptor,
            )),
        };
        let mut frames = Vec::new();
        let mut first = None;
        let (_, stop) = reader.scan(position, flushed, |frame| {
            let compact = if frame.header.is_padding() {
                HEADER_LENGTH
            } else {
                frame.aligned_length
            };
            if !frames.is_empty() && frames.len() + compact > max_bytes {
                return false;
            }
            if first.is_none() && frame.header.frame_type == TYPE_DATA {
                first = number_of(frame.payload());
            }
            let start = frames.len();
            frames.extend_from_slice(frame.bytes);
            frames.resize(start + compact, 0);
            true
        })?;
        if let Some(stop) = stop {
            return Err(ClusterError::CorruptLog {
                position: stop.position,
                reason: format!("egress recording: {stop}"),
            });
        }
        Ok(first.map(|number| (number, frames)))
    }

    /// Append frames a peer read from its recording ([`Self::read_frames`]) at `position`, the
    /// first message's egress number `number`: this recording's end and one more than its last
    /// number. Every frame is checked (checksum, place, consecutive egress numbers) before any
    /// is written. Returns the messages appended.
    ///
    /// # Errors
    /// The frames do not follow this recording or do not check ([`ClusterError::Peer`]), or a
    /// file cannot be written.
    pub fn append_frames(&mut self, position: i64, number: u64, frames: &[u8]) -> Result<u64> {
        let refuse = |reason: String| Err(ClusterError::Peer(format!("egress frames: {reason}")));
        if position != self.end || number != self.last_number + 1 {
            return refuse(format!(
                "frames from {position} (message {number}) where this recording ends at {} (message {})",
                self.end, self.last_number
            ));
        }
        let expectation = tern_store::frame::FrameExpectation {
            initial_term_id: 0,
            term_length: self.config.term_length,
            stream_id: EGRESS_STREAM_ID,
        };
        // Checked whole first: (offset in `frames`, position, aligned length, padding, time).
        let mut checked = Vec::new();
        let (mut offset, mut at, mut next) = (0usize, position, number);
        while offset < frames.len() {
            let (header, aligned) = match expectation.check(&frames[offset..], at) {
                Ok(found) => found,
                Err(problem) => return refuse(format!("at {at}: {problem}")),
            };
            let compact = if header.is_padding() {
                HEADER_LENGTH
            } else {
                let payload =
                    &frames[offset + HEADER_LENGTH..offset + header.frame_length as usize];
                match tern_store::egress_header::decode(payload) {
                    Ok(egress) if egress.egress_number == next => {
                        next += 1;
                        checked.push((offset, at, aligned, false, egress.timestamp_ns));
                    }
                    Ok(egress) => {
                        return refuse(format!(
                            "message {} at {at} where {next} was expected",
                            egress.egress_number
                        ))
                    }
                    Err(error) => return refuse(format!("at {at}: {error}")),
                }
                aligned
            };
            if header.is_padding() {
                checked.push((offset, at, aligned, true, 0));
            }
            if offset + compact > frames.len() {
                return refuse(format!("a frame at {at} is cut"));
            }
            offset += compact;
            at += aligned as i64;
        }
        let writer = self.writer.as_mut().ok_or(ClusterError::EgressBroken)?;
        let mut padding = Vec::new();
        for (offset, at, aligned, is_padding, timestamp_ns) in checked {
            let result = if is_padding {
                padding.clear();
                padding.extend_from_slice(&frames[offset..offset + HEADER_LENGTH]);
                padding.resize(aligned, 0);
                writer.append(&padding, at)
            } else {
                writer.append(&frames[offset..offset + aligned], at)
            };
            if let Err(error) = result {
                self.writer = None;
                return Err(error.into());
            }
            if !is_padding {
                if self.end == 0 {
                    self.descriptor.start_timestamp_ns = timestamp_ns;
                    self.catalog.update(&self.descriptor)?;
                }
                self.time_index.record(timestamp_ns, at);
                self.last_timestamp_ns = timestamp_ns;
            }
            self.end = at + aligned as i64;
        }
        let appended = next - number;
        self.last_number = next - 1;
        Ok(appended)
    }

    /// The service has made `egress_count` messages so far: a recording that ends before that
    /// (the node installed a leader's snapshot) is behind until it has them from a peer, and
    /// one that holds them all records again from the next one.
    pub fn catch_up_to(&mut self, egress_count: u64) {
        if self.last_number >= egress_count {
            self.behind_from = None;
        } else if self.behind_from.is_none() {
            self.behind_from = Some(self.last_number + 1);
        }
    }

    /// The recording's segment length.
    pub fn segment_length(&self) -> i32 {
        self.config.segment_length
    }

    /// The first egress number this recording lacks, when the node installed a snapshot past
    /// its end: from there on it records nothing (the messages are in other nodes' recordings).
    pub fn behind_from(&self) -> Option<u64> {
        self.behind_from
    }

    /// Record `egress`, unless the recording holds it already (a restart applying the log
    /// again). Returns whether it was written.
    ///
    /// # Errors
    /// The message does not fit a frame of the recording, or a file cannot be written (the
    /// recording then takes no more messages).
    pub fn append(&mut self, egress: &Egress) -> Result<bool> {
        if egress.number <= self.last_number || self.behind_from.is_some() {
            return Ok(false);
        }
        if egress.number != self.last_number + 1 {
            tracing::error!(
                "{}: egress {} follows {}: messages {}..{} are not in this node's egress recording \
                 (a snapshot from the leader was installed past it); it records nothing more",
                self.dir.display(),
                egress.number,
                self.last_number,
                self.last_number + 1,
                egress.number - 1
            );
            self.behind_from = Some(self.last_number + 1);
            return Ok(false);
        }
        let payload_length = EGRESS_HEADER_LENGTH + egress.payload.len();
        let max = (self.config.term_length as usize).min(self.config.buffer_length)
            - HEADER_LENGTH
            - EGRESS_HEADER_LENGTH;
        if egress.payload.len() > max {
            return Err(ClusterError::EntryTooLong {
                length: egress.payload.len(),
                max,
            });
        }
        let mut scratch = std::mem::take(&mut self.scratch);
        scratch.clear();
        let (encoded, payload) = FrameAt {
            position: self.end,
            term_length: self.config.term_length,
            stream_id: EGRESS_STREAM_ID,
            reserved_value: egress.session_id,
            payload_length,
        }
        .place(&mut scratch);
        payload[..EGRESS_HEADER_LENGTH].copy_from_slice(&egress_header(egress));
        payload[EGRESS_HEADER_LENGTH..].copy_from_slice(&egress.payload);
        let end = self.end;
        let result = (|| {
            let writer = self.writer.as_mut().ok_or(ClusterError::EgressBroken)?;
            if encoded.padding > 0 {
                writer.append(&scratch[..encoded.padding], end)?;
            }
            writer.append(&scratch[encoded.padding..], encoded.position)?;
            Ok::<_, ClusterError>(())
        })();
        self.scratch = scratch;
        if let Err(error) = result {
            self.writer = None;
            return Err(error);
        }
        if self.end == 0 {
            self.descriptor.start_timestamp_ns = egress.timestamp_ns;
            self.catalog.update(&self.descriptor)?;
        }
        self.time_index
            .record(egress.timestamp_ns, encoded.position);
        self.last_timestamp_ns = egress.timestamp_ns;
        self.end = encoded.end;
        self.last_number = egress.number;
        Ok(true)
    }

    /// Hand what was appended to the files (not synced): readers of the files see it.
    ///
    /// # Errors
    /// A write failed earlier.
    pub fn flush(&mut self) -> Result<()> {
        let writer = self.writer.as_mut().ok_or(ClusterError::EgressBroken)?;
        writer.flush()?;
        writer.poll()?;
        if let Err(error) = self.time_index.flush() {
            tracing::warn!("{}: egress time index: {error}", self.dir.display());
        }
        Ok(())
    }

    /// Write and sync everything appended: durable when this returns.
    ///
    /// # Errors
    /// A write or sync failed; the recording takes no more messages.
    pub fn sync(&mut self) -> Result<()> {
        let writer = self.writer.as_mut().ok_or(ClusterError::EgressBroken)?;
        if let Err(error) = writer.sync() {
            self.writer = None;
            return Err(error.into());
        }
        if let Err(error) = self
            .time_index
            .flush()
            .and_then(|()| self.time_index.sync())
        {
            tracing::warn!("{}: egress time index: {error}", self.dir.display());
        }
        self.synced_number = self.last_number;
        Ok(())
    }

    /// Sync and mark the recording stopped in its catalog (a clean stop).
    ///
    /// # Errors
    /// A write, sync or the catalog update failed (the next start finds the end by scanning).
    pub fn close(mut self) -> Result<()> {
        self.sync()?;
        self.descriptor.stop_position = self.end;
        self.descriptor.stop_timestamp_ns = self
            .last_timestamp_ns
            .max(self.descriptor.start_timestamp_ns);
        self.catalog.update(&self.descriptor)?;
        Ok(())
    }
}

/// The egress number of the last message before `end` (0 for an empty recording).
fn last_number(io: &Io, dir: &Path, descriptor: &RecordingDescriptor, end: i64) -> Result<u64> {
    if end == 0 {
        return Ok(0);
    }
    let segment_length = i64::from(descriptor.segment_length);
    let mut reader = RecordingReader::new_on(&io.storage, dir, descriptor);
    // The last frame is in the segment holding the byte before the end.
    let base = (end - 1) - (end - 1) % segment_length;
    let mut last = None;
    let (reached, stop) = reader.scan(base, end, |frame| {
        if frame.header.frame_type == TYPE_DATA {
            last = number_of(frame.payload());
        }
        true
    })?;
    match (last, stop) {
        (Some(number), None) if reached == end => Ok(number),
        (_, stop) => Err(ClusterError::CorruptState {
            path: dir.to_path_buf(),
            reason: format!(
                "no egress message ends the recording at {end}{}",
                stop.map(|stop| format!(": {stop}")).unwrap_or_default()
            ),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use tern_store::{SimDisk, Storage, WriteMode};

    fn config() -> LogConfig {
        LogConfig {
            term_length: 64 << 10,
            segment_length: 128 << 10,
            mode: WriteMode::Buffered,
            buffer_length: (64 << 10) + 4096,
        }
    }

    fn egress(number: u64) -> Egress {
        Egress {
            session_id: 1 + (number % 3) as i64,
            sequence: number.div_ceil(3),
            log_index: number / 2 + 1,
            timestamp_ns: 1_000_000 * number as i64,
            number,
            // Sizes vary so messages cross terms (padding) and segments.
            payload: vec![(number % 251) as u8; 10 + (number as usize * 41) % 2000],
        }
    }

    fn open(disk: &Arc<SimDisk>) -> Result<(EgressRecording, EgressRecovered)> {
        let storage: Arc<dyn Storage> = disk.clone();
        EgressRecording::open(Io::inline(storage), Path::new("/node"), config(), 1)
    }

    /// Every message in the recording, as its egress number and payload bytes.
    fn messages(disk: &Arc<SimDisk>, end: i64) -> Vec<(u64, Vec<u8>)> {
        let storage: Arc<dyn Storage> = disk.clone();
        let dir = Path::new("/node/egress");
        let catalog = Catalog::open_on(&storage, dir, false).expect("catalog");
        let descriptor = catalog.get(EGRESS_RECORDING_ID).expect("recording").clone();
        let mut reader = RecordingReader::new_on(&storage, dir, &descriptor);
        let mut found = Vec::new();
        let (reached, stop) = reader
            .scan(0, end, |frame| {
                if frame.header.frame_type == TYPE_DATA {
                    let payload = frame.payload();
                    found.push((
                        number_of(payload).expect("number"),
                        payload[EGRESS_HEADER_LENGTH..].to_vec(),
                    ));
                }
                true
            })
            .expect("scan");
        assert_eq!((reached, stop.map(|stop| stop.to_string())), (end, None));
        found
    }

    #[test]
    fn a_restart_writes_again_only_what_the_recording_lacks() {
        let disk = Arc::new(SimDisk::new());
        let (mut recording, _) = open(&disk).expect("open");
        for number in 1..=150 {
            assert!(recording.append(&egress(number)).expect("append"));
        }
        recording.sync().expect("sync");
        assert!(recording.position() > 128 << 10, "crosses a segment");
        for number in 151..=200 {
            recording.append(&egress(number)).expect("append");
        }
        recording.flush().expect("flush");
        for torn in [0, 1, 33, 5000] {
            let crashed = Arc::new(disk.crash_torn(torn));
            let (mut reopened, _) = open(&crashed).expect("reopen");
            let last = reopened.last_number();
            assert!((150..=200).contains(&last), "torn {torn}: {last}");
            // The log applied again from a snapshot: messages 120.. come once more.
            for number in 120..=220 {
                let written = reopened.append(&egress(number)).expect("append");
                assert_eq!(written, number > last, "{number}");
            }
            reopened.sync().expect("sync");
            let end = reopened.position();
            let found = messages(&crashed, end);
            let expected: Vec<(u64, Vec<u8>)> = (1..=220)
                .map(|number| (number, egress(number).payload))
                .collect();
            assert_eq!(found, expected, "torn {torn}");
        }
    }

    #[test]
    fn a_clean_stop_is_in_the_catalog_and_a_start_goes_on_from_it() {
        let disk = Arc::new(SimDisk::new());
        let (mut recording, _) = open(&disk).expect("open");
        for number in 1..=10 {
            recording.append(&egress(number)).expect("append");
        }
        let end = recording.position();
        recording.close().expect("close");
        let storage: Arc<dyn Storage> = disk.clone();
        let catalog =
            Catalog::open_on(&storage, Path::new("/node/egress"), false).expect("catalog");
        let stopped = catalog.get(EGRESS_RECORDING_ID).expect("recording");
        assert_eq!(stopped.stop_position, end);
        assert_eq!(stopped.stream_id, EGRESS_STREAM_ID);
        let (mut again, recovered) = open(&Arc::new(disk.crash())).expect("reopen");
        assert_eq!(recovered, EgressRecovered::default());
        assert_eq!((again.last_number(), again.position()), (10, end));
        assert!(again.append(&egress(11)).expect("append"));
    }

    fn open_at(disk: &Arc<SimDisk>, dir: &str) -> EgressRecording {
        let storage: Arc<dyn Storage> = disk.clone();
        EgressRecording::open(Io::inline(storage), Path::new(dir), config(), 2)
            .expect("open")
            .0
    }

    fn segment(disk: &Arc<SimDisk>, dir: &str, end: i64) -> Vec<u8> {
        let storage: Arc<dyn Storage> = disk.clone();
        let mut bytes = vec![0u8; end as usize];
        let file = storage
            .open(
                &Path::new(dir).join("egress/0-0.rec"),
                tern_store::OpenOptions::read(),
            )
            .expect("segment");
        file.read_full_at(&mut bytes, 0).expect("read");
        bytes
    }

    #[test]
    fn a_recording_behind_a_snapshot_copies_the_rest_from_a_peer_byte_for_byte() {
        let disk = Arc::new(SimDisk::new());
        let mut leader = open_at(&disk, "/leader");
        let mut behind = open_at(&disk, "/behind");
        for number in 1..=300 {
            leader.append(&egress(number)).expect("append");
            if number <= 40 {
                behind.append(&egress(number)).expect("append");
            }
        }
        leader.flush().expect("flush");
        // The follower installed a snapshot made after message 250: it lacks 41..=250.
        behind.catch_up_to(250);
        assert_eq!(behind.behind_from(), Some(41));
        assert!(!behind.append(&egress(251)).expect("not recorded"));
        while behind.behind_from().is_some() {
            let (number, frames) = leader
                .read_frames(behind.position(), 16 << 10)
                .expect("read")
                .expect("frames");
            assert!(frames.len() <= 16 << 10 || number == behind.last_number() + 1);
            behind
                .append_frames(behind.position(), number, &frames)
                .expect("append frames");
            behind.catch_up_to(250);
        }
        // It went past the snapshot (the leader had more): what it makes next is not doubled.
        assert!(behind.last_number() >= 250);
        for number in 251..=300 {
            behind.append(&egress(number)).expect("append");
        }
        behind.flush().expect("flush");
        assert_eq!(behind.last_number(), 300);
        assert_eq!(behind.position(), leader.position());
        assert!(
            segment(&disk, "/behind", behind.position())
                == segment(&disk, "/leader", leader.position()),
            "the recordings differ"
        );
    }

    #[test]
    fn frames_that_do_not_follow_or_do_not_check_are_refused_and_nothing_is_written() {
        let disk = Arc::new(SimDisk::new());
        let mut leader = open_at(&disk, "/leader");
        let mut behind = open_at(&disk, "/behind");
        for number in 1..=20 {
            leader.append(&egress(number)).expect("append");
        }
        leader.flush().expect("flush");
        behind.append(&egress(1)).expect("append");
        behind.catch_up_to(20);
        let (number, frames) = leader
            .read_frames(behind.position(), 1 << 20)
            .expect("read")
            .expect("frames");
        assert_eq!(number, 2);
        let end = behind.position();
        for (position, first, damage, expected) in [
            (end + 32, 2, None, "where this recording ends"),
            (end, 3, None, "where this recording ends"),
            (end, 2, Some(100), "at "),
        ] {
            let mut bad = frames.clone();
            if let Some(at) = damage {
                bad[at] ^= 0x40;
            }
            let error = behind
                .append_frames(position, first, &bad)
                .expect_err("refused");
            assert!(error.to_string().contains(expected), "{error}");
            assert_eq!((behind.position(), behind.last_number()), (end, 1));
        }
        behind
            .append_frames(end, 2, &frames)
            .expect("the real ones");
        assert_eq!(behind.last_number(), 20);
    }

    #[test]
    fn a_gap_stops_the_recording_and_says_from_where() {
        let disk = Arc::new(SimDisk::new());
        let (mut recording, _) = open(&disk).expect("open");
        recording.append(&egress(1)).expect("append");
        assert!(!recording.append(&egress(5)).expect("a gap"));
        assert_eq!(recording.behind_from(), Some(2));
        assert!(!recording.append(&egress(2)).expect("behind"));
        assert_eq!(recording.last_number(), 1);
    }

    #[test]
    fn a_directory_holding_another_recording_is_refused() {
        let disk = Arc::new(SimDisk::new());
        let storage: Arc<dyn Storage> = disk.clone();
        let dir = Path::new("/node/egress");
        storage.create_dir_all(dir).expect("dir");
        let mut catalog = Catalog::open_on(&storage, dir, true).expect("catalog");
        let mut other = descriptor(&config(), 1);
        other.stream_id = 7;
        catalog.add(other).expect("add");
        drop(catalog);
        let error = open(&disk).expect_err("refused");
        assert!(
            error.to_string().contains("not a cluster egress recording"),
            "{error}"
        );
    }
}
