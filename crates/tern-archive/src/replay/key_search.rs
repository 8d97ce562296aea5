//! Finding the messages of one key in a recording: through the key index of each finished
//! segment where it is usable, by scanning the segment's frames where it is not (the segment
//! being written, a missing or damaged index file). Used by filtered replays and by
//! [`ArchiveView::messages_with_key`](crate::ArchiveView::messages_with_key).

use crate::error::{ArchiveError, Result};
use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Arc;
use tern_store::descriptor::RecordingDescriptor;
use tern_store::key::KeyFilter;
use tern_store::key_index::{Expected, KeyIndexReader};
use tern_store::recording_reader::RecordingReader;
use tern_store::segment::segment_base;
use tern_store::storage::Storage;

/// What a search found next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Found {
    /// A message with the key starts here (take it with [`KeySearch::take`]).
    At(i64),
    /// No message with the key starts before the end asked for; the search reached this frame
    /// boundary (the end, or the start of a frame that crosses it).
    Exhausted(i64),
    /// The scan budget is spent: search again.
    Budget,
}

/// How a search went: how much it read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SearchStats {
    /// Segments whose key index was used.
    pub index_segments: u64,
    /// Bytes read from key index files.
    pub index_bytes: u64,
    /// Segments (or parts of segments) scanned frame by frame.
    pub scanned_segments: u64,
    /// Bytes of frames scanned.
    pub scanned_bytes: u64,
}

pub(crate) struct KeySearch {
    storage: Arc<dyn Storage>,
    dir: PathBuf,
    /// Its own reader: a scan reads the segment in order, and reads of the messages found (with
    /// another reader) must not break the kernel's read-ahead of it.
    reader: RecordingReader,
    descriptor: RecordingDescriptor,
    filter: KeyFilter,
    /// Messages found and not yet taken, in order.
    queue: VecDeque<i64>,
    /// Every message with the key that starts before this position is queued or was taken.
    searched: i64,
    /// The finished segment looked at last: its base and, if its index is usable, the positions of
    /// the key's messages in it (`None`: scan it).
    segment: Option<(i64, Option<Vec<i64>>)>,
    /// The base of the segment being scanned, for the statistics.
    scanning: Option<i64>,
    /// Messages found through an index and announced to the kernel (read ahead): the highest.
    advised: i64,
    stats: SearchStats,
}

/// Messages found through an index whose first page is read ahead (`POSIX_FADV_WILLNEED`) before
/// they are read, so the reads of scattered messages overlap on the device.
const READ_AHEAD: usize = 256;
/// Bytes read ahead per message (a page).
const READ_AHEAD_BYTES: usize = 4096;

impl KeySearch {
    pub(crate) fn new(
        storage: &Arc<dyn Storage>,
        dir: PathBuf,
        descriptor: &RecordingDescriptor,
        filter: KeyFilter,
        from: i64,
    ) -> Self {
        Self {
            reader: RecordingReader::new_on(storage, &dir, descriptor),
            storage: storage.clone(),
            dir,
            descriptor: descriptor.clone(),
            filter,
            queue: VecDeque::new(),
            searched: from,
            segment: None,
            scanning: None,
            advised: i64::MIN,
            stats: SearchStats::default(),
        }
    }

    pub(crate) fn filter(&self) -> &KeyFilter {
        &self.filter
    }

    pub(crate) fn stats(&self) -> SearchStats {
        self.stats
    }

    /// Search again from `from` (a seek).
    pub(crate) fn reset(&mut self, from: i64) {
        self.queue.clear();
        self.searched = from;
        self.scanning = None;
        self.advised = i64::MIN;
    }

    /// Take the message found at the front.
    pub(crate) fn take(&mut self) {
        self.queue.pop_front();
    }

    /// Ask the kernel to read ahead the next messages found through an index (scanned ones are
    /// read in order anyway): up to [`READ_AHEAD`] of them, each announced once.
    pub(crate) fn read_ahead(&mut self) {
        if self.scanning.is_some() {
            return;
        }
        let advised = self.advised;
        let upcoming: Vec<i64> = self
            .queue
            .iter()
            .take(READ_AHEAD)
            .copied()
            .filter(|position| *position > advised)
            .collect();
        for position in upcoming {
            if self.reader.will_need(position, READ_AHEAD_BYTES).is_err() {
                return;
            }
            self.advised = position;
        }
    }

    /// The message at `position`, which the index gave, does not have the key: the index of its
    /// segment is wrong. Scan that segment from there instead.
    pub(crate) fn distrust(&mut self, position: i64, why: &str) {
        let base = self.base_of(position);
        tracing::warn!(
            "recording {}: the {} key index of the segment at {base} is wrong at position {position} ({why}); scanning the segment instead (`tern verify` rebuilds the index)",
            self.descriptor.recording_id,
            self.filter.kind
        );
        self.segment = Some((base, None));
        self.reset(position);
    }

    fn base_of(&self, position: i64) -> i64 {
        segment_base(
            self.descriptor.start_position,
            position,
            i64::from(self.descriptor.term_length),
            i64::from(self.descriptor.segment_length),
        )
    }

    /// The next message with the key at or after where the search is, before `end`. The
    /// recording's data reaches `available` (its stop position when `stopped`); segments ending
    /// by then are finished and searched through their index. At most about `budget` bytes of
    /// frames are scanned per call.
    ///
    /// # Errors
    /// A segment is unreadable or holds a damaged frame before `end`.
    pub(crate) fn next(
        &mut self,
        end: i64,
        available: i64,
        stopped: bool,
        budget: usize,
    ) -> Result<Found> {
        loop {
            if let Some(position) = self.queue.front() {
                return Ok(Found::At(*position));
            }
            if self.searched >= end {
                return Ok(Found::Exhausted(self.searched));
            }
            let base = self.base_of(self.searched);
            let segment_end = base + i64::from(self.descriptor.segment_length);
            let finished = stopped || segment_end <= available;
            if finished {
                let data_end = if stopped {
                    segment_end.min(available)
                } else {
                    segment_end
                };
                if self.segment.as_ref().map(|(cached, _)| *cached) != Some(base) {
                    let positions = self.look_up(base, data_end);
                    self.segment = Some((base, positions));
                }
                if let Some((_, Some(positions))) = &self.segment {
                    self.scanning = None;
                    let until = end.min(data_end);
                    let from = self.searched;
                    self.queue.extend(
                        positions
                            .iter()
                            .copied()
                            .filter(|position| *position >= from && *position < until),
                    );
                    self.searched = until;
                    continue;
                }
            }
            if self.scanning != Some(base) {
                self.scanning = Some(base);
                self.stats.scanned_segments += 1;
            }
            let to = end.min(segment_end);
            let from = self.searched;
            let filter = self.filter;
            let mut scanned = 0usize;
            let mut spent = false;
            let queue = &mut self.queue;
            let (reached, problem) = self.reader.scan(from, to, |frame| {
                scanned += frame.aligned_length;
                if !frame.header.is_padding()
                    && frame.header.flags & tern_transport::BEGIN_FLAG != 0
                    && filter.matches(frame.header.reserved_value, frame.payload())
                {
                    queue.push_back(frame.position);
                }
                spent = scanned >= budget;
                !spent
            })?;
            self.stats.scanned_bytes += (reached - from) as u64;
            self.searched = reached;
            if let Some(problem) = problem {
                return Err(problem.to_error().into());
            }
            if reached < to && !spent {
                // The frame at `reached` ends past `end` (a length that cuts a frame).
                if let Some(position) = self.queue.front() {
                    return Ok(Found::At(*position));
                }
                return Ok(Found::Exhausted(reached));
            }
            if spent && self.queue.is_empty() && self.searched < end {
                return Ok(Found::Budget);
            }
        }
    }

    /// The positions of the key's messages in the finished segment at `base` from its index, or
    /// `None` when the index is missing or damaged (logged).
    fn look_up(&mut self, base: i64, data_end: i64) -> Option<Vec<i64>> {
        let expected = Expected {
            kind: self.filter.kind,
            recording_id: self.descriptor.recording_id,
            segment_base: base,
            end_position: data_end,
        };
        let looked_up =
            KeyIndexReader::open_on(&self.storage, &self.dir, &expected).and_then(|mut reader| {
                let positions = reader.positions_of(self.filter.value)?;
                Ok((positions, reader.bytes_read()))
            });
        match looked_up {
            Ok((positions, bytes)) => {
                self.stats.index_segments += 1;
                self.stats.index_bytes += bytes;
                Some(positions)
            }
            Err(tern_store::StoreError::Io { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                tracing::debug!(
                    "recording {}: no {} key index for the segment at {base}; scanning it",
                    self.descriptor.recording_id,
                    self.filter.kind
                );
                None
            }
            Err(error) => {
                tracing::warn!(
                    "recording {}: key index not used, scanning the segment at {base} instead (`tern verify` rebuilds it): {error}",
                    self.descriptor.recording_id
                );
                None
            }
        }
    }
}

/// Refuse a filter that can match no message of the recording: a field that ends past the
/// longest first fragment its messages can have (the MTU less the frame header).
///
/// # Errors
/// [`ArchiveError::Invalid`] saying why.
pub(crate) fn check_filter(descriptor: &RecordingDescriptor, filter: &KeyFilter) -> Result<()> {
    if let tern_store::key::KeyKind::Field { offset, width } = filter.kind {
        let longest = tern_store::time_seek::longest_first_fragment(descriptor);
        let end = offset as usize + width.bytes();
        if end > longest {
            return Err(ArchiveError::Invalid(format!(
                "key {filter}: the field ends at byte {end}, past the first fragment of any message of recording {} (MTU {}: at most {longest} bytes); a key is read from a message's first fragment",
                descriptor.recording_id, descriptor.mtu_length
            )));
        }
    }
    Ok(())
}

/// A session key on `descriptor`: every recording is one publisher session, so the key selects
/// the whole recording when it is its session, and is refused otherwise, naming the recordings
/// of that session on the same stream (from `recordings`, the catalog's).
///
/// # Errors
/// [`ArchiveError::Invalid`] naming where that session's messages are.
pub(crate) fn check_session<'a>(
    descriptor: &RecordingDescriptor,
    session_id: i64,
    recordings: impl Iterator<Item = &'a RecordingDescriptor>,
) -> Result<()> {
    if i64::from(descriptor.session_id) == session_id {
        return Ok(());
    }
    let others: Vec<String> = recordings
        .filter(|other| {
            other.stream_id == descriptor.stream_id && i64::from(other.session_id) == session_id
        })
        .map(|other| {
            format!(
                "recording {} ({})",
                other.recording_id, other.stripped_channel
            )
        })
        .collect();
    let where_it_is = if others.is_empty() {
        format!(
            "no recording of stream {} is of session {session_id}",
            descriptor.stream_id
        )
    } else {
        format!(
            "session {session_id} of stream {} is {}: replay that instead",
            descriptor.stream_id,
            others.join(", ")
        )
    };
    Err(ArchiveError::Invalid(format!(
        "recording {} holds only session {} (one recording per publisher session): {where_it_is}",
        descriptor.recording_id, descriptor.session_id
    )))
}
