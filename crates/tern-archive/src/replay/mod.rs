//! The replay room: a replay's plan and shared status (here), the replayer agent (`agent.rs`:
//! one thread that starts, steps, seeks, pauses and stops replays), a replay session
//! (`session.rs`: frames read, checked and offered on the replay publication, positions kept,
//! key filters, limits), pacing (`pacing.rs`: the schedule of a paced replay and the precise
//! waits), finding one key's messages (`key_search.rs`) and the limit counter of a bounded
//! replay (`limit.rs`). It reads the archive's state only through what a plan carries.

mod agent;
pub(crate) mod key_search;
pub(crate) mod limit;
mod pacing;
mod session;

pub(crate) use agent::Replayer;

use crate::error::Result;
use crate::replay::key_search::SearchStats;
use std::sync::atomic::{AtomicI32, AtomicI64, AtomicU8, Ordering};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};
use tern_store::descriptor::RecordingDescriptor;
use tern_store::key::KeyFilter;
use tern_store::message_time::TimeSource;
use tern_store::progress::RecordingProgress;
use tern_store::{RecordingId, ReplayId};

/// Where a replay is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplayState {
    /// Waiting for a subscriber on the replay channel.
    Connecting,
    /// Sending.
    Replaying,
    /// Paused by request; resumes where it stopped.
    Paused,
    /// Reached its end.
    Done,
    /// Stopped by request.
    Stopped,
    /// Failed; see [`ReplayStatus::error`].
    Failed,
}

/// The shared view of a replay's progress.
#[derive(Debug)]
pub struct ReplayStatus {
    state: AtomicU8,
    position: AtomicI64,
    recording_position: AtomicI64,
    session_id: AtomicI32,
    recording_id: RecordingId,
    error: Mutex<Option<String>>,
    search: Mutex<SearchStats>,
}

impl ReplayStatus {
    pub(crate) fn new_at(recording_id: RecordingId, position: i64, session_id: i32) -> Self {
        Self {
            state: AtomicU8::new(0),
            position: AtomicI64::new(position),
            recording_position: AtomicI64::new(position),
            session_id: AtomicI32::new(session_id),
            recording_id,
            error: Mutex::new(None),
            search: Mutex::new(SearchStats::default()),
        }
    }

    /// For a replay filtered by key: how it found the key's messages (index files read, frames
    /// scanned).
    pub fn search_stats(&self) -> SearchStats {
        self.search.lock().map(|stats| *stats).unwrap_or_default()
    }

    fn set_search_stats(&self, stats: SearchStats) {
        if let Ok(mut search) = self.search.lock() {
            *search = stats;
        }
    }

    /// The session id of the replay's current image: the replay id's low 32 bits until a seek,
    /// which starts a new image.
    pub fn session_id(&self) -> i32 {
        self.session_id.load(Ordering::Acquire)
    }

    /// The recording being replayed.
    pub fn recording_id(&self) -> RecordingId {
        self.recording_id
    }

    /// The state.
    pub fn state(&self) -> ReplayState {
        match self.state.load(Ordering::Acquire) {
            0 => ReplayState::Connecting,
            1 => ReplayState::Replaying,
            2 => ReplayState::Done,
            3 => ReplayState::Stopped,
            5 => ReplayState::Paused,
            _ => ReplayState::Failed,
        }
    }

    /// Whether the replay has ended, one way or another.
    pub fn is_finished(&self) -> bool {
        !matches!(
            self.state(),
            ReplayState::Connecting | ReplayState::Replaying | ReplayState::Paused
        )
    }

    /// The position sent so far on the replay stream: the position a subscriber's image reaches
    /// when it has everything.
    pub fn position(&self) -> i64 {
        self.position.load(Ordering::Acquire)
    }

    /// How far the replay got in the recording. The same as [`Self::position`] but in a replay
    /// filtered by key that sends the key's messages back to back (their positions on the replay
    /// stream are not the recorded ones).
    pub fn recording_position(&self) -> i64 {
        self.recording_position.load(Ordering::Acquire)
    }

    fn set_positions(&self, stream: i64, recording: i64) {
        self.recording_position.store(recording, Ordering::Release);
        self.position.store(stream, Ordering::Release);
    }

    /// Why the replay failed.
    pub fn error(&self) -> Option<String> {
        self.error.lock().map(|error| error.clone()).unwrap_or(None)
    }

    pub(crate) fn set_state(&self, state: ReplayState) {
        let value = match state {
            ReplayState::Connecting => 0,
            ReplayState::Replaying => 1,
            ReplayState::Done => 2,
            ReplayState::Stopped => 3,
            ReplayState::Failed => 4,
            ReplayState::Paused => 5,
        };
        self.state.store(value, Ordering::Release);
    }

    fn fail(&self, message: String) {
        if let Ok(mut error) = self.error.lock() {
            *error = Some(message);
        }
        self.set_state(ReplayState::Failed);
    }
}

/// Where a replay ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReplayEnd {
    /// At this position (not past the recording's stop).
    At(i64),
    /// Follow the recording as it grows, until it stops (or this limit, if any).
    Follow(Option<i64>),
}

pub(crate) struct ReplayPlan {
    pub replay_id: ReplayId,
    pub descriptor: RecordingDescriptor,
    pub position: i64,
    pub end: ReplayEnd,
    pub channel: String,
    pub stream_id: i32,
    pub session_id: i32,
    pub progress: Option<Arc<RecordingProgress>>,
    pub status: Arc<ReplayStatus>,
    pub speed: Option<f64>,
    pub time_source: TimeSource,
    /// A bounded replay's limit counter.
    pub limit_counter_id: Option<i32>,
    /// Only the messages with this key (never a session key: those are resolved before).
    pub key: Option<KeyFilter>,
    /// For a filtered replay: pad the gaps so messages keep their recorded positions (else they
    /// go back to back).
    pub keep_positions: bool,
}

pub(crate) enum ReplayerCommand {
    Start {
        plan: Box<ReplayPlan>,
        reply: Sender<Result<()>>,
    },
    Stop {
        replay_id: ReplayId,
    },
    Pause {
        replay_id: ReplayId,
    },
    Seek {
        replay_id: ReplayId,
        position: i64,
        session_id: i32,
        reply: Sender<Result<()>>,
    },
    Resume {
        replay_id: ReplayId,
    },
    Shutdown,
}

/// The channel of a replay: the requested one with the recording's term geometry and the replay's
/// session id, so the replay publication starts at the recorded position.
pub(crate) fn replay_channel(
    channel: &str,
    descriptor: &RecordingDescriptor,
    position: i64,
    session_id: i32,
) -> String {
    let (term_id, term_offset) =
        tern_store::frame::term_of(position, descriptor.initial_term_id, descriptor.term_length);
    let separator = if channel.contains('?') { '|' } else { '?' };
    format!(
        "{channel}{separator}init-term-id={}|term-id={term_id}|term-offset={term_offset}|term-length={}|mtu={}|session-id={session_id}",
        descriptor.initial_term_id, descriptor.term_length, descriptor.mtu_length
    )
}
