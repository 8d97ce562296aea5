//! The record room: the recorder agent (`agent.rs`: one thread that owns the recording
//! subscriptions and their images), one recording session per image (`session.rs`: frames to
//! segment files, the time index, fsync by policy), and extending a stopped recording
//! (`extend.rs`). It changes nothing of the archive's state itself: what happens goes to the
//! conductor as a [`Report`], in order, before the answer to the request that caused it.

mod agent;
pub(crate) mod extend;
mod session;

pub(crate) use agent::Recorder;
pub(crate) use session::RecordingSession;

use crate::error::Result;
use crate::events::RecordingSignalKind;
use crate::types::{RecordingFailure, RecordingSubscriptionInfo, SourceLocation};
use std::sync::mpsc::{Sender, SyncSender};
use std::sync::Arc;
use tern_store::descriptor::RecordingDescriptor;
use tern_store::progress::RecordingProgress;
use tern_store::RecordingId;

/// Aeron's counter type id of an archive recording position; tools that list counters know it.
pub const RECORDING_POSITION_TYPE_ID: i32 = 100;

pub(crate) enum RecorderCommand {
    Start {
        subscription_id: i64,
        channel: String,
        stream_id: i32,
        source: SourceLocation,
        /// Remove the subscription when the recording of one of its images stops.
        auto_stop: bool,
        /// Extend this stopped recording instead of starting new ones.
        extend: Option<RecordingId>,
        reply: Sender<Result<()>>,
    },
    Stop {
        subscription_id: i64,
        reply: Sender<Result<Vec<RecordingId>>>,
    },
    Shutdown,
}

/// What the recorder tells the owner of the archive's state (the conductor), in the order it
/// happened. Those with a `reply` are asked: the recorder waits for the answer.
pub(crate) enum Report {
    /// A recording subscription is in force.
    SubscriptionAdded(RecordingSubscriptionInfo),
    /// A recording subscription was removed.
    SubscriptionRemoved(i64),
    /// A new recording of an image: into the catalog (its id given there), active through
    /// `subscription_id`, its live positions visible.
    NewRecording {
        descriptor: RecordingDescriptor,
        subscription_id: i64,
        reply: SyncSender<Result<(RecordingDescriptor, Arc<RecordingProgress>)>>,
    },
    /// Reserve a stopped recording for an extension: its descriptor, or why not.
    ReserveExtension {
        recording_id: RecordingId,
        subscription_id: i64,
        reply: SyncSender<Result<RecordingDescriptor>>,
    },
    /// The files of a reserved extension are ready: the record active again (`descriptor`),
    /// live positions from `position`.
    ExtensionOpened {
        descriptor: RecordingDescriptor,
        position: i64,
        reply: SyncSender<Result<Arc<RecordingProgress>>>,
    },
    /// A reserved extension did not open.
    ReleaseExtension(RecordingId),
    /// A recording stopped (or could not start): its stop record (`None`: its end could not be
    /// saved), its failure, and whether a `Stop` signal goes out.
    Stopped(RecordingStop),
    /// An image could not be recorded.
    Failed(RecordingFailure),
    /// The answer to a command, sent once everything reported before it is taken in.
    Answer(Box<dyn FnOnce() + Send>),
    /// A recording started or was extended.
    Signal {
        signal: RecordingSignalKind,
        recording_id: RecordingId,
        subscription_id: i64,
        position: i64,
    },
}

/// A recording that stopped (or could not start).
pub(crate) struct RecordingStop {
    pub recording_id: RecordingId,
    pub subscription_id: i64,
    /// Its stop record; `None`: its end could not be saved (the next start recovers it).
    pub record: Option<RecordingDescriptor>,
    /// Where it stopped.
    pub stop: i64,
    /// Why, if it failed.
    pub failure: Option<RecordingFailure>,
    /// Whether a `Stop` signal goes out (it had started).
    pub signal: bool,
}

/// Where the recorder sends its reports (the conductor's mailbox).
pub(crate) type Reporter = Arc<dyn Fn(Report) + Send + Sync>;

/// Send a report that asks, and wait for its answer.
pub(crate) fn ask<R>(
    reporter: &Reporter,
    report: impl FnOnce(SyncSender<Result<R>>) -> Report,
) -> Result<R> {
    let (reply, answer) = std::sync::mpsc::sync_channel(1);
    reporter(report(reply));
    answer.recv().map_err(|_| {
        crate::error::ArchiveError::NotRunning("the archive conductor stopped".into())
    })?
}
