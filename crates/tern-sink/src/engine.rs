//! The sink engine: a replay-merge of a recording (the archive, then the live stream) read into
//! batches and written to a [`Destination`], resumed after what the destination holds.
//!
//! One thread does everything, in this order, forever or until the stream ends or the stop flag
//! is set: open the destination (its resume point), connect to the archive, start a merge at the
//! resume point (or the configured start when the destination is empty), read whole messages
//! into the [`Batcher`], and write a batch once it is due. A full batch is written before
//! anything more is read, so memory stays bounded and a slow destination slows the reading (the
//! archive holds the rest). A failed write reopens the destination and drops from the batch what
//! it already holds; a failed source is reconnected and merged again from the last position
//! read. Both retry with [`Backoff`].

use crate::batcher::{BatchLimits, Batcher};
use crate::destination::{Destination, Resume, SinkError};
use crate::metrics::SinkMetrics;
use crate::record::{Batch, SinkRecord};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tern_client::{
    ArchiveClient, ArchiveClientConfig, ClientError, MergeStart, RecordingDescriptor, ReplayMerge,
    ReplayMergeConfig,
};
use tern_store::{KeyFilter, KeyKind, RecordingId, TimeSource};
use tern_transport::{BackoffIdle, Header, Idle};

/// Which recording a sink reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordingSource {
    /// This recording.
    Id(RecordingId),
    /// The newest recording of this channel and stream id (Aeron's `listRecordingsForUri`: the
    /// channel is matched as a fragment of the recording's stripped channel).
    Stream {
        /// Channel (or a fragment of it).
        channel: String,
        /// Stream id.
        stream_id: i32,
    },
}

impl std::fmt::Display for RecordingSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Id(id) => write!(f, "recording {id}"),
            Self::Stream { channel, stream_id } => {
                write!(f, "the newest recording of {channel} stream {stream_id}")
            }
        }
    }
}

/// Where a sink whose destination is empty starts (a destination that holds records always
/// resumes after them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartAt {
    /// The recording's start.
    Beginning,
    /// A stream position of the recording (a message's start).
    Position(i64),
    /// The first message at or after this time (ns since the epoch), read with the sink's
    /// time source.
    Time(i64),
    /// The position of this durable cursor of the archive.
    Cursor(String),
}

/// Settings of a [`SinkEngine`].
#[derive(Debug, Clone)]
pub struct SinkConfig {
    /// How to reach the archive.
    pub archive: ArchiveClientConfig,
    /// The recording read.
    pub source: RecordingSource,
    /// Where an empty destination starts.
    pub start: StartAt,
    /// The key stored with each record; `None`: no key.
    pub key_kind: Option<KeyKind>,
    /// Only messages with this key are written; the others only move the position on.
    pub filter: Option<KeyFilter>,
    /// Where a record's time comes from (and a [`StartAt::Time`] is read with).
    pub time_source: TimeSource,
    /// When batches are written.
    pub limits: BatchLimits,
    /// Channel the archive replays to (`aeron:ipc` on the archive's media driver; a UDP
    /// endpoint with port 0 otherwise).
    pub replay_channel: String,
    /// Stream id of the replay.
    pub replay_stream_id: i32,
    /// The live channel and stream joined after the replay; `None`: the recording's own.
    pub live: Option<(String, i32)>,
    /// The first and the longest wait between two attempts at a destination or a source that
    /// failed.
    pub retry: (Duration, Duration),
}

impl SinkConfig {
    /// A sink of `source` through the archive `archive`, from the start, every message, no key,
    /// capture times, default batches, replayed on `aeron:ipc` stream 1_700.
    pub fn new(archive: ArchiveClientConfig, source: RecordingSource) -> Self {
        Self {
            archive,
            source,
            start: StartAt::Beginning,
            key_kind: None,
            filter: None,
            time_source: TimeSource::Capture,
            limits: BatchLimits::default(),
            replay_channel: "aeron:ipc".into(),
            replay_stream_id: 1_700,
            live: None,
            retry: (Duration::from_millis(100), Duration::from_secs(5)),
        }
    }
}

/// Why a sink stopped for good.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The destination refused for good (its name once, whether or not its error names it).
    #[error("{}", named(destination, error))]
    Destination {
        /// What it is.
        destination: String,
        /// Its error.
        error: SinkError,
    },
    /// The source cannot be read and retrying will not help (an unknown recording, a
    /// destination that holds another recording, a start the archive refuses).
    #[error("{0}")]
    Source(String),
}

/// `destination: error`, unless the error already starts with the destination's name.
fn named(destination: &str, error: &SinkError) -> String {
    let text = error.to_string();
    if text.starts_with(destination) {
        text
    } else {
        format!("{destination}: {text}")
    }
}

/// How a sink ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SinkSummary {
    /// The recording read.
    pub recording_id: RecordingId,
    /// Where the destination's data ends.
    pub position: i64,
    /// Records written by this run.
    pub records: u64,
    /// Whether the stream ended (the recording stopped and was read whole); otherwise the stop
    /// flag was set.
    pub ended: bool,
}

/// Waits between attempts: doubling from the first to the longest, reset by a success (pure).
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    first: Duration,
    longest: Duration,
    next: Duration,
}

impl Backoff {
    /// Waits from `first` doubling to `longest`.
    pub fn new(first: Duration, longest: Duration) -> Self {
        Self {
            first,
            longest: longest.max(first),
            next: first,
        }
    }

    /// The wait before the next attempt (and doubles the one after).
    pub fn next_wait(&mut self) -> Duration {
        let wait = self.next;
        self.next = (self.next * 2).min(self.longest);
        wait
    }

    /// After a success: the next failure waits the first wait again.
    pub fn reset(&mut self) {
        self.next = self.first;
    }
}

/// A message turned into a record, or `None` when the filter leaves it out (pure).
pub fn to_record(
    payload: &[u8],
    header: &Header,
    key_kind: Option<&KeyKind>,
    filter: Option<&KeyFilter>,
    time_source: &TimeSource,
    now_ns: i64,
) -> Option<SinkRecord> {
    let key_of = |kind: &KeyKind| match kind {
        KeyKind::Session => Some(i64::from(header.session_id)),
        other => other.key_of(header.reserved_value, payload),
    };
    if let Some(filter) = filter {
        if key_of(&filter.kind) != Some(filter.value) {
            return None;
        }
    }
    Some(SinkRecord {
        position: header.position,
        timestamp_ns: time_source.message_time(payload).unwrap_or(now_ns),
        key: key_kind.and_then(key_of),
        payload: payload.to_vec(),
    })
}

/// How often the recorded position is asked for, for the lag.
const LAG_INTERVAL: Duration = Duration::from_secs(1);
/// How long a stopping sink keeps trying to write what it read.
const STOP_WRITE_GRACE: Duration = Duration::from_secs(10);
/// Fragments read per poll of the merge.
const FRAGMENT_LIMIT: usize = 256;

/// What ended one merge.
enum MergeEnd {
    /// The stream ended.
    Ended,
    /// Stop asked.
    Stopped,
    /// The source failed: reconnect and go on after the last record read.
    Failed(String),
}

/// A sink: a source recording copied into `D`, exactly once.
pub struct SinkEngine<D: Destination> {
    config: SinkConfig,
    destination: D,
    metrics: SinkMetrics,
    resume: Option<Resume>,
    records: u64,
}

impl<D: Destination> std::fmt::Debug for SinkEngine<D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SinkEngine")
            .field("destination", &self.destination.describe())
            .field("source", &self.config.source)
            .field("resume", &self.resume)
            .finish_non_exhaustive()
    }
}

impl<D: Destination> SinkEngine<D> {
    /// A sink of `config.source` into `destination`, counting into `metrics`.
    pub fn new(config: SinkConfig, destination: D, metrics: SinkMetrics) -> Self {
        Self {
            config,
            destination,
            metrics,
            resume: None,
            records: 0,
        }
    }

    /// The destination, given back.
    pub fn into_destination(self) -> D {
        self.destination
    }

    /// Runs until the stream ends (the recording stopped and every message of it is in the
    /// destination) or `stop` is set (what was read is written first, if the destination
    /// takes it within 10 s; what is not written is read again next time).
    ///
    /// # Errors
    /// [`EngineError`] when the destination or the source fails for good. Unavailable
    /// destinations and archives are retried with backoff, never an error.
    pub fn run(&mut self, stop: &AtomicBool) -> Result<SinkSummary, EngineError> {
        let mut backoff = Backoff::new(self.config.retry.0, self.config.retry.1);
        let mut resolved: Option<RecordingId> = None;
        loop {
            if self.open_destination(stop, &mut backoff)?.is_none() {
                return Ok(self.summary(resolved, false));
            }
            let mut client = match ArchiveClient::connect(self.config.archive.clone()) {
                Ok(client) => client,
                Err(error) => {
                    self.source_failed(
                        &format!("connect to the archive: {error}"),
                        stop,
                        &mut backoff,
                    );
                    if stop.load(Ordering::Acquire) {
                        return Ok(self.summary(resolved, false));
                    }
                    continue;
                }
            };
            let recording = match self.resolve(&mut client) {
                Ok(recording) => recording,
                Err(SourceFailure::Fatal(reason)) => return Err(EngineError::Source(reason)),
                Err(SourceFailure::Retry(reason)) => {
                    self.source_failed(&reason, stop, &mut backoff);
                    if stop.load(Ordering::Acquire) {
                        return Ok(self.summary(resolved, false));
                    }
                    continue;
                }
            };
            resolved = Some(recording.recording_id);
            let end = self.merge(&mut client, &recording, stop, &mut backoff)?;
            match end {
                MergeEnd::Ended => return Ok(self.summary(resolved, true)),
                MergeEnd::Stopped => return Ok(self.summary(resolved, false)),
                MergeEnd::Failed(reason) => {
                    drop(client);
                    self.source_failed(&reason, stop, &mut backoff);
                    if stop.load(Ordering::Acquire) {
                        return Ok(self.summary(resolved, false));
                    }
                }
            }
        }
    }

    fn summary(&self, resolved: Option<RecordingId>, ended: bool) -> SinkSummary {
        SinkSummary {
            recording_id: self
                .resume
                .map(|resume| resume.recording_id)
                .or(resolved)
                .unwrap_or(RecordingId::new(-1)),
            position: self.resume.map_or(-1, |resume| resume.position),
            records: self.records,
            ended,
        }
    }

    fn source_failed(&self, reason: &str, stop: &AtomicBool, backoff: &mut Backoff) {
        self.metrics.source_retries.inc();
        let wait = backoff.next_wait();
        tracing::warn!("source: {reason}; again in {wait:?}");
        sleep_unless_stopped(wait, stop);
    }

    /// Opens the destination (retrying while unavailable); `None` if stop was asked meanwhile.
    fn open_destination(
        &mut self,
        stop: &AtomicBool,
        backoff: &mut Backoff,
    ) -> Result<Option<Option<Resume>>, EngineError> {
        loop {
            match self.destination.open() {
                Ok(resume) => {
                    self.resume = resume;
                    if let Some(resume) = resume {
                        self.metrics.position.set(resume.position);
                    }
                    return Ok(Some(resume));
                }
                Err(error) if error.is_retryable() => {
                    self.metrics.destination_retries.inc();
                    let wait = backoff.next_wait();
                    tracing::warn!(
                        "{}: {error}; again in {wait:?}",
                        self.destination.describe()
                    );
                    if sleep_unless_stopped(wait, stop) {
                        return Ok(None);
                    }
                }
                Err(error) => return Err(self.fatal(error)),
            }
        }
    }

    /// The recording to read, checked against what the destination holds.
    fn resolve(&self, client: &mut ArchiveClient) -> Result<RecordingDescriptor, SourceFailure> {
        let descriptor = match &self.config.source {
            RecordingSource::Id(id) => client
                .list_recording(*id)
                .map_err(|error| SourceFailure::from_client(&error))?
                .ok_or_else(|| {
                    SourceFailure::Fatal(format!("the archive has no recording {id}"))
                })?,
            RecordingSource::Stream { channel, stream_id } => client
                .list_recordings_for_uri(RecordingId::new(0), i32::MAX, channel, *stream_id)
                .map_err(|error| SourceFailure::from_client(&error))?
                .into_iter()
                .max_by_key(|descriptor| descriptor.recording_id)
                .ok_or_else(|| {
                    SourceFailure::Fatal(format!(
                        "the archive has no recording of {channel} stream {stream_id}"
                    ))
                })?,
        };
        if let Some(resume) = self.resume {
            if resume.recording_id != descriptor.recording_id {
                return Err(SourceFailure::Fatal(format!(
                    "{} holds recording {} up to position {}, but {} is recording {}: give it \
                     --recording {} to go on, or a new destination for the other recording",
                    self.destination.describe(),
                    resume.recording_id,
                    resume.position,
                    self.config.source,
                    descriptor.recording_id,
                    resume.recording_id
                )));
            }
        }
        Ok(descriptor)
    }

    /// One merge, from the resume point, until the stream ends, stop, or the source fails.
    fn merge(
        &mut self,
        client: &mut ArchiveClient,
        recording: &RecordingDescriptor,
        stop: &AtomicBool,
        backoff: &mut Backoff,
    ) -> Result<MergeEnd, EngineError> {
        let recording_id = recording.recording_id;
        let start = match (self.resume, &self.config.start) {
            (Some(resume), _) => MergeStart::Position(resume.position),
            (None, StartAt::Beginning) => MergeStart::RecordingStart,
            (None, StartAt::Position(position)) => MergeStart::Position(*position),
            (None, StartAt::Time(time)) => MergeStart::Time(*time),
            (None, StartAt::Cursor(name)) => MergeStart::Cursor(name.clone()),
        };
        if let (Some(resume), false) = (self.resume, recording.is_active()) {
            if resume.position >= recording.stop_position {
                return Ok(MergeEnd::Ended);
            }
        }
        let mut merge_config = ReplayMergeConfig::new(
            recording_id,
            start,
            self.config.replay_channel.clone(),
            self.config.replay_stream_id,
        )
        .with_time_source(self.config.time_source.to_string());
        if let Some((channel, stream)) = &self.config.live {
            merge_config = merge_config.with_live(channel.clone(), *stream);
        }
        let mut merge = match ReplayMerge::new(client, merge_config) {
            Ok(merge) => merge,
            Err(error) => {
                // The archive's refusal (a position it does not hold, an unknown cursor) is
                // its answer; a lost connection or a timeout is tried again.
                return match SourceFailure::from_client(&error) {
                    SourceFailure::Fatal(reason) => Err(EngineError::Source(format!(
                        "start the replay of recording {recording_id}: {reason}"
                    ))),
                    SourceFailure::Retry(reason) => {
                        Ok(MergeEnd::Failed(format!("start the replay: {reason}")))
                    }
                };
            }
        };
        let read_from = self.resume.map_or(-1, |resume| resume.position);
        let mut batcher = Batcher::new(self.config.limits, recording_id, read_from);
        let mut idle = BackoffIdle::new();
        let mut next_lag = Instant::now();
        let key_kind = self.config.key_kind;
        let filter = self.config.filter;
        let time_source = self.config.time_source;
        loop {
            if stop.load(Ordering::Acquire) {
                self.write_pending(&mut batcher, stop, backoff, true)?;
                return Ok(MergeEnd::Stopped);
            }
            let now_ns = tern_store::epoch_nanos();
            let read_at = Instant::now();
            // No more fragments than the batch has room for records (a message is one or more).
            let room = self
                .config
                .limits
                .max_records
                .saturating_sub(batcher.batch().len());
            let polled = merge.poll(
                |payload, header| {
                    // A resumed merge starts at a message's start: nothing at or before the
                    // resume point comes again, but keep the check cheap and certain.
                    if header.position <= read_from {
                        return;
                    }
                    match to_record(
                        payload,
                        header,
                        key_kind.as_ref(),
                        filter.as_ref(),
                        &time_source,
                        now_ns,
                    ) {
                        Some(record) => batcher.push(record, read_at),
                        None => batcher.advance(header.position),
                    }
                },
                room.clamp(1, FRAGMENT_LIMIT),
            );
            let work = match polled {
                Ok(work) => work,
                Err(error) => {
                    drop(merge);
                    self.write_pending(&mut batcher, stop, backoff, false)?;
                    return Ok(MergeEnd::Failed(format!("the merge: {error}")));
                }
            };
            let now = Instant::now();
            if batcher.is_due(now) {
                match self.write_pending(&mut batcher, stop, backoff, false)? {
                    Written::Stored => {}
                    Written::GaveUp => return Ok(MergeEnd::Stopped),
                    Written::WentBack(reason) => return Ok(MergeEnd::Failed(reason)),
                }
            }
            if merge.is_ended() {
                drop(merge);
                // The stream ends only once its last records are stored (or stop is asked).
                return Ok(
                    match self.write_pending(&mut batcher, stop, backoff, false)? {
                        Written::Stored => MergeEnd::Ended,
                        Written::GaveUp => MergeEnd::Stopped,
                        Written::WentBack(reason) => MergeEnd::Failed(reason),
                    },
                );
            }
            if now >= next_lag {
                next_lag = now + LAG_INTERVAL;
                let live = merge.is_merged();
                self.metrics.merged.set(i64::from(live));
                if let Ok(Some(recorded)) = merge.client().recording_position(recording_id) {
                    self.metrics.recorded_position.set(recorded);
                }
            }
            idle.idle(work);
        }
    }

    /// Writes the batch being gathered (if it holds records), retrying while the destination
    /// is unavailable: after each failure it is reopened (until it answers) and what it already
    /// holds is dropped from the batch, so nothing is written twice; a destination that now
    /// ends before the batch's start (it lost data: retention, a restore) makes the merge start
    /// again from where it ends, so nothing is skipped. With `stopping`, gives up after
    /// [`STOP_WRITE_GRACE`] (nothing is lost: it is read again next time).
    fn write_pending(
        &mut self,
        batcher: &mut Batcher,
        stop: &AtomicBool,
        backoff: &mut Backoff,
        stopping: bool,
    ) -> Result<Written, EngineError> {
        let mut batch: Batch = batcher.take();
        if batch.is_empty() {
            return Ok(Written::Stored);
        }
        let mut retry = Retry {
            stopping,
            began: Instant::now(),
        };
        loop {
            let started = Instant::now();
            let error = match self.destination.write(&batch) {
                Ok(()) => {
                    backoff.reset();
                    self.note_written(&batch, started.elapsed());
                    return Ok(Written::Stored);
                }
                Err(error) if error.is_retryable() => error,
                Err(error) => return Err(self.fatal(error)),
            };
            tracing::warn!(
                "{}: write of {} records failed: {error}",
                self.destination.describe(),
                batch.len()
            );
            // The failed write may have stored all, some or none of the batch: only the
            // destination can say, so it is opened again before anything more is written.
            loop {
                self.metrics.destination_retries.inc();
                if !retry.wait(backoff.next_wait(), stop) {
                    return Ok(Written::GaveUp);
                }
                match self.destination.open() {
                    Ok(resume) => {
                        let ends = resume.map_or(-1, |resume| resume.position);
                        if ends < batch.start_position {
                            self.resume = resume;
                            return Ok(Written::WentBack(format!(
                                "{} now ends at position {ends}, before {} where this batch \
                                 was read from: read again from there",
                                self.destination.describe(),
                                batch.start_position
                            )));
                        }
                        if let Some(resume) = resume {
                            self.check_same_recording(resume, &batch)?;
                            let (before, bytes) = (batch.len(), batch.payload_bytes);
                            batch.skip_through(resume.position);
                            let stored = before - batch.len();
                            if stored > 0 {
                                // The failed write had stored these after all.
                                let bytes = bytes - batch.payload_bytes;
                                self.note_stored(&resume, stored as u64, bytes as u64);
                            }
                            self.resume = Some(resume);
                        }
                        if batch.is_empty() {
                            backoff.reset();
                            return Ok(Written::Stored);
                        }
                        break;
                    }
                    Err(error) if error.is_retryable() => {
                        tracing::warn!("{}: {error}", self.destination.describe());
                    }
                    Err(error) => return Err(self.fatal(error)),
                }
            }
        }
    }

    fn fatal(&self, error: SinkError) -> EngineError {
        EngineError::Destination {
            destination: self.destination.describe(),
            error,
        }
    }

    fn check_same_recording(&self, resume: Resume, batch: &Batch) -> Result<(), EngineError> {
        if resume.recording_id == batch.recording_id {
            return Ok(());
        }
        Err(self.fatal(SinkError::Fatal(format!(
            "it now holds recording {} (another sink writes to it?), this sink reads recording {}",
            resume.recording_id, batch.recording_id
        ))))
    }

    fn note_stored(&mut self, resume: &Resume, records: u64, bytes: u64) {
        self.records += records;
        self.metrics.records.inc_by(records);
        self.metrics.bytes.inc_by(bytes);
        self.metrics.position.set(resume.position);
    }

    fn note_written(&mut self, batch: &Batch, took: Duration) {
        let position = batch.end_position;
        self.resume = Some(Resume {
            recording_id: batch.recording_id,
            position,
        });
        self.records += batch.len() as u64;
        self.metrics.records.inc_by(batch.len() as u64);
        self.metrics.bytes.inc_by(batch.payload_bytes as u64);
        self.metrics.batches.inc();
        self.metrics.position.set(position);
        self.metrics
            .write_micros
            .inc_by(u64::try_from(took.as_micros()).unwrap_or(u64::MAX));
    }
}

/// What became of a batch.
enum Written {
    /// The destination holds it.
    Stored,
    /// Stop was asked and the destination did not take it in time (it is read again next
    /// time).
    GaveUp,
    /// The destination now ends before the batch's start: read again from where it ends.
    WentBack(String),
}

/// The waits of one batch's retries.
struct Retry {
    /// Stop was asked: give up after [`STOP_WRITE_GRACE`].
    stopping: bool,
    began: Instant,
}

impl Retry {
    /// Waits `wait` before the next attempt; false: give up (stopping, and the grace is over).
    fn wait(&mut self, wait: Duration, stop: &AtomicBool) -> bool {
        if self.stopping {
            let left = STOP_WRITE_GRACE.saturating_sub(self.began.elapsed());
            if left.is_zero() {
                return false;
            }
            std::thread::sleep(wait.min(left));
        } else if sleep_unless_stopped(wait, stop) {
            // Stop asked while waiting: a few more tries, then give up.
            self.stopping = true;
            self.began = Instant::now();
        }
        true
    }
}

/// A source error: give up, or reconnect and go on.
enum SourceFailure {
    Fatal(String),
    Retry(String),
}

impl SourceFailure {
    /// The archive's answers that retrying cannot change are fatal (an unknown recording, a
    /// position or cursor it refuses, credentials); the rest (too many replays, a listing or
    /// truncate in progress, a full disk, lost connections, timeouts) are tried again.
    fn from_client(error: &ClientError) -> Self {
        use tern_client::ArchiveErrorCode as Code;
        match error {
            ClientError::Archive {
                code:
                    Code::UnknownRecording
                    | Code::InvalidPosition
                    | Code::EmptyRecording
                    | Code::InvalidExtension
                    | Code::AuthenticationRejected
                    | Code::UnauthorisedAction,
                ..
            }
            | ClientError::InvalidArgument(_) => Self::Fatal(error.to_string()),
            // The merge's own refusals of its start (an unknown recording, a cursor into
            // another recording): they come before anything is replayed.
            ClientError::Merge(_) => Self::Fatal(error.to_string()),
            _ => Self::Retry(error.to_string()),
        }
    }
}

/// Sleeps `wait` in short steps; true if `stop` was set.
fn sleep_unless_stopped(wait: Duration, stop: &AtomicBool) -> bool {
    let until = Instant::now() + wait;
    loop {
        if stop.load(Ordering::Acquire) {
            return true;
        }
        let now = Instant::now();
        if now >= until {
            return false;
        }
        std::thread::sleep((until - now).min(Duration::from_millis(50)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(position: i64, session_id: i32, reserved_value: i64) -> Header {
        Header {
            session_id,
            stream_id: 1,
            term_id: 0,
            term_offset: 0,
            position,
            reserved_value,
            flags: 0xC0,
            frame_length: 40,
        }
    }

    #[test]
    fn a_destination_error_names_the_destination_once() {
        let named = |text: &str| {
            EngineError::Destination {
                destination: "postgres table t".into(),
                error: SinkError::Fatal(text.into()),
            }
            .to_string()
        };
        assert_eq!(named("bad shape"), "postgres table t: bad shape");
        assert_eq!(
            named("postgres table t: bad shape"),
            "postgres table t: bad shape"
        );
    }

    #[test]
    fn backoff_doubles_to_the_longest_and_resets() {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_millis(350));
        let waits: Vec<_> = (0..4).map(|_| backoff.next_wait().as_millis()).collect();
        assert_eq!(waits, [100, 200, 350, 350]);
        backoff.reset();
        assert_eq!(backoff.next_wait(), Duration::from_millis(100));
    }

    #[test]
    fn records_take_the_key_time_and_filter_of_the_sink() {
        let mut payload = vec![0u8; 16];
        payload[0..8].copy_from_slice(&42i64.to_le_bytes());
        payload[8..16].copy_from_slice(&1_000i64.to_le_bytes());
        let key: KeyKind = "field:0:i64".parse().expect("kind");
        let time: TimeSource = "field:8:us".parse().expect("time");
        let record =
            to_record(&payload, &header(96, 7, 0), Some(&key), None, &time, 5).expect("no filter");
        assert_eq!(
            (record.position, record.key, record.timestamp_ns),
            (96, Some(42), 1_000_000)
        );
        assert_eq!(record.payload, payload);
        let session = to_record(
            &payload,
            &header(96, 7, 0),
            Some(&KeyKind::Session),
            None,
            &TimeSource::Capture,
            5,
        )
        .expect("no filter");
        assert_eq!(
            (session.key, session.timestamp_ns),
            (Some(7), 5),
            "capture: the read time"
        );
        let other: KeyFilter = "field:0:i64:41".parse().expect("filter");
        assert!(to_record(&payload, &header(96, 7, 0), None, Some(&other), &time, 5).is_none());
        let same: KeyFilter = "field:0:i64:42".parse().expect("filter");
        let kept = to_record(&payload, &header(96, 7, 0), None, Some(&same), &time, 5);
        assert_eq!(
            kept.map(|record| record.key),
            Some(None),
            "filtered, yet no key kind"
        );
        let reserved: KeyFilter = "reserved:9".parse().expect("filter");
        assert!(to_record(&payload, &header(96, 7, 9), None, Some(&reserved), &time, 5).is_some());
    }
}
