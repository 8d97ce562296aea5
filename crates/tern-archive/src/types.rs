//! The archive's values that cross its rooms: the answers agents owe ([`Pending`], [`Begun`]),
//! what a replay or a recording subscription asks for, what a recording is and how it failed,
//! and what every thread reads ([`Shared`]). No behaviour of its own beyond them.

use crate::config::ArchiveConfig;
use crate::error::{ArchiveError, Result};
use std::sync::mpsc;
use std::time::Duration;
use tern_store::descriptor::RecordingDescriptor;
use tern_store::key::KeyFilter;
use tern_store::{RecordingId, ReplayId};

/// How long an agent has to answer a request (and a launch to start an agent) before the asker
/// hears that it did not.
pub(crate) const REPLY_TIMEOUT: Duration = Duration::from_secs(30);

/// The answer an agent (the recorder, the replayer) owes to a request handed to it: polled, so
/// that a duty cycle never waits for it, or waited for.
#[derive(Debug)]
pub struct Pending<T> {
    wait: mpsc::Receiver<Result<T>>,
    /// `None`: the one answering always answers (or goes away), so there is no deadline.
    deadline: Option<std::time::Instant>,
    agent: &'static str,
}

impl<T> Pending<T> {
    /// An answer due within 30 s.
    pub(crate) fn new(wait: mpsc::Receiver<Result<T>>, agent: &'static str) -> Self {
        Self {
            wait,
            deadline: Some(std::time::Instant::now() + REPLY_TIMEOUT),
            agent,
        }
    }

    /// An answer with no deadline: the archive's own change (a truncate or purge), which the
    /// conductor answers once done (a truncate waits 30 s at most for its replays), however
    /// long its files take; a deadline could say it failed when it was made.
    pub(crate) fn unbounded(wait: mpsc::Receiver<Result<T>>, agent: &'static str) -> Self {
        Self {
            wait,
            deadline: None,
            agent,
        }
    }

    fn did_not_answer(&self) -> ArchiveError {
        ArchiveError::NotRunning(format!("{} did not answer", self.agent))
    }

    fn stopped(&self) -> ArchiveError {
        ArchiveError::NotRunning(format!("{} stopped", self.agent))
    }

    /// `None` while the agent has not answered; then its answer (an error if it stopped, or did
    /// not answer within 30 s).
    pub fn poll(&self) -> Option<Result<T>> {
        match self.wait.try_recv() {
            Ok(outcome) => Some(outcome),
            Err(mpsc::TryRecvError::Empty)
                if self
                    .deadline
                    .is_none_or(|deadline| std::time::Instant::now() < deadline) =>
            {
                None
            }
            Err(mpsc::TryRecvError::Empty) => Some(Err(self.did_not_answer())),
            Err(mpsc::TryRecvError::Disconnected) => Some(Err(self.stopped())),
        }
    }

    /// Wait for the answer (30 s at most, unless it has no deadline).
    ///
    /// # Errors
    /// The agent's error, or it stopped or did not answer.
    pub fn wait(self) -> Result<T> {
        let Some(deadline) = self.deadline else {
            return self.wait.recv().unwrap_or_else(|_| Err(self.stopped()));
        };
        let timeout = deadline.saturating_duration_since(std::time::Instant::now());
        match self.wait.recv_timeout(timeout) {
            Ok(outcome) => outcome,
            Err(mpsc::RecvTimeoutError::Timeout) => Err(self.did_not_answer()),
            Err(mpsc::RecvTimeoutError::Disconnected) => Err(self.stopped()),
        }
    }
}

/// Whether a stop by identity stopped the recording: an unknown subscription means it stopped
/// on its own meanwhile (an auto-stop).
///
/// # Errors
/// The recorder's error.
pub fn stopped_by_identity(outcome: Result<Vec<RecordingId>>) -> Result<bool> {
    match outcome {
        Ok(_) => Ok(true),
        Err(ArchiveError::UnknownSubscription(_)) => Ok(false),
        Err(error) => Err(error),
    }
}

/// A request whose id is known when it is handed to its agent (a replay, a seek's new image
/// session id, a recording subscription), and whose outcome the agent answers later.
#[derive(Debug)]
pub struct Begun<I> {
    id: I,
    answer: Pending<()>,
}

impl<I: Copy> Begun<I> {
    pub(crate) fn new(id: I, answer: Pending<()>) -> Self {
        Self { id, answer }
    }

    /// The id the request has once the agent has done it.
    pub fn id(&self) -> I {
        self.id
    }

    /// `None` while the agent has not answered; then the id, or why it could not be done.
    pub fn poll(&self) -> Option<Result<I>> {
        self.answer.poll().map(|outcome| outcome.map(|()| self.id))
    }

    /// Wait for the agent's answer.
    ///
    /// # Errors
    /// Why it could not be done.
    pub fn wait(self) -> Result<I> {
        let id = self.id;
        self.answer.wait().map(|()| id)
    }
}

/// A replay handed to the replayer and not yet started ([`Archive::begin_replay`](crate::Archive::begin_replay); its outcome
/// through [`Archive::poll_replay_start`](crate::Archive::poll_replay_start), which also forgets a refused one).
pub type PendingReplay = Begun<ReplayId>;
/// A seek handed to the replayer ([`Archive::begin_seek`](crate::Archive::begin_seek)): the replay's new image session id.
pub type PendingSeek = Begun<i32>;
/// A recording subscription handed to the recorder ([`Archive::begin_recording`](crate::Archive::begin_recording),
/// [`Archive::begin_extend`](crate::Archive::begin_extend)): its subscription id.
pub type PendingRecording = Begun<i64>;

/// What to replay and where to.
#[derive(Debug, Clone, Default)]
pub struct ReplayRequest {
    /// The recording.
    pub recording_id: RecordingId,
    /// Where to start (a frame start); `None`: the recording's start.
    pub position: Option<i64>,
    /// How many bytes; `None`: to the end.
    pub length: Option<i64>,
    /// Keep replaying as an active recording grows, until it stops (or `length` is reached).
    pub follow: bool,
    /// The channel to replay on.
    pub channel: String,
    /// The stream id to replay on.
    pub stream_id: i32,
    /// Pace the replay at the original timing times this factor (0.01 to 1000; 2.0 is twice as
    /// fast): a message captured `d` after the first goes out `d / speed` after the replay
    /// started. `None`: as fast as the subscriber takes it.
    pub speed: Option<f64>,
    /// Where the pacing takes each message's time from: the capture time (default) or a
    /// timestamp inside the message.
    pub time_source: tern_store::message_time::TimeSource,
    /// A bounded replay (Aeron's `startBoundedReplay`): the replay never goes past the value of
    /// this counter of the media driver (any client's, e.g. one made with
    /// `tern_transport::Client::add_counter`), and waits for it to grow, as a follow replay waits
    /// for an active recording. It ends when everything up to the recording's stop (and `length`)
    /// is sent, or, should the counter be freed, at its last value.
    pub limit_counter_id: Option<i32>,
    /// Replay only the messages with this key (`None`: all). A session key selects the whole
    /// recording of that session (or is refused, naming the recordings of that session).
    pub key: Option<KeyFilter>,
    /// For a replay filtered by key: keep the recording's positions, the messages left out
    /// replaced by padding frames. Otherwise (the default) the key's messages go out back to back
    /// from the replay's start position, unchanged but for their place in the stream: far
    /// cheaper when they are sparse, since padding makes the media driver pass over (clean) every
    /// term of the recording's length, as replaying all of it would (see `docs/replay.md`).
    pub keep_positions: bool,
}

/// A recording subscription: a channel and stream the archive records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordingSubscriptionInfo {
    /// Its id.
    pub subscription_id: i64,
    /// The channel.
    pub channel: String,
    /// The stream id.
    pub stream_id: i32,
    /// Whether local UDP publications are spied on.
    pub source: SourceLocation,
}

/// A recording's descriptor with its live positions.
#[derive(Debug, Clone)]
pub struct RecordingInfo {
    /// The catalog's descriptor (stop position [`NULL_POSITION`](crate::NULL_POSITION) while active).
    pub descriptor: RecordingDescriptor,
    /// Position written to the segment files (the stop position once stopped).
    pub recorded_position: i64,
    /// Position durable under the fsync policy (the stop position once stopped).
    pub durable_position: i64,
    /// Whether it is being recorded now.
    pub active: bool,
    /// How long the disk has had a write or sync of it in hand without finishing anything, if
    /// it has one now (a hung or very slow disk).
    pub io_waiting: Option<std::time::Duration>,
}

/// A recording that could not be written: its messages from `position` on are not stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordingFailure {
    /// The recording; `None` if it failed before it was given an id.
    pub recording_id: Option<RecordingId>,
    /// The recording subscription it came through.
    pub subscription_id: i64,
    /// The publisher's session id.
    pub session_id: i32,
    /// The stream id.
    pub stream_id: i32,
    /// The channel recorded.
    pub channel: String,
    /// Where the recording stopped (what is before it is stored).
    pub position: i64,
    /// Aeron's archive error code for the cause (`StorageSpace` for a full disk).
    pub code: tern_protocol::ArchiveErrorCode,
    /// What went wrong.
    pub error: String,
}

impl std::fmt::Display for RecordingFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.recording_id {
            Some(recording_id) => write!(f, "recording {recording_id} ")?,
            None => write!(f, "a recording ")?,
        }
        write!(
            f,
            "of session {} stream {} {} failed at position {}; what follows is not stored: {}",
            self.session_id, self.stream_id, self.channel, self.position, self.error
        )
    }
}

/// Where the publishers of a recorded stream are, relative to this archive's driver.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SourceLocation {
    /// Elsewhere (or IPC): subscribe to the channel itself.
    #[default]
    Remote,
    /// On this driver: spy on the local publications of a UDP channel (`aeron-spy:` prefix), so
    /// recording does not take a network subscriber's place.
    Local,
}

/// What every thread of the archive reads: its settings and its metrics. (The archive's state is
/// reached only through the conductor's mailbox, `conductor.rs`.)
pub(crate) struct Shared {
    pub config: ArchiveConfig,
    /// What the threads count for Prometheus (`metrics.rs`).
    pub metrics: crate::metrics::Metrics,
}
