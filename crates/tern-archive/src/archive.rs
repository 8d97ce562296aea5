//! The archive: a directory of recordings, a recorder and a replayer agent, and the handle the
//! rest of tern (CLI, control protocol) uses.

use crate::config::ArchiveConfig;
use crate::error::{io_error, ArchiveError, Result};
use crate::events::{EventBus, RecordingSignalKind};
use crate::operations::Activity;
use crate::recorder::{Recorder, RecorderCommand, SourceLocation};
use crate::replayer::{ReplayEnd, ReplayPlan, ReplayStatus, Replayer, ReplayerCommand};
use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::path::Path;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::mpsc::{self, Sender, SyncSender};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;
use tern_store::catalog::Catalog;
use tern_store::cursors::{Cursor, CursorStore};
use tern_store::descriptor::RecordingDescriptor;
use tern_store::indexer::{run_indexer, IndexJob};
use tern_store::key::{KeyFilter, KeyKind};
use tern_store::progress::RecordingProgress;
use tern_store::recording_reader::{check_replay_position, find_end, list_segments};

const REPLY_TIMEOUT: Duration = Duration::from_secs(30);

/// The answer an agent (the recorder, the replayer) owes to a request handed to it: polled, so
/// that a duty cycle never waits for it, or waited for.
#[derive(Debug)]
pub struct Pending<T> {
    wait: mpsc::Receiver<Result<T>>,
    deadline: std::time::Instant,
    agent: &'static str,
}

impl<T> Pending<T> {
    fn new(wait: mpsc::Receiver<Result<T>>, agent: &'static str) -> Self {
        Self {
            wait,
            deadline: std::time::Instant::now() + REPLY_TIMEOUT,
            agent,
        }
    }

    /// `None` while the agent has not answered; then its answer (an error if it stopped, or did
    /// not answer within 30 s).
    pub fn poll(&self) -> Option<Result<T>> {
        match self.wait.try_recv() {
            Ok(outcome) => Some(outcome),
            Err(mpsc::TryRecvError::Empty) if std::time::Instant::now() < self.deadline => None,
            Err(mpsc::TryRecvError::Empty) => Some(Err(ArchiveError::NotRunning(format!(
                "{} did not answer",
                self.agent
            )))),
            Err(mpsc::TryRecvError::Disconnected) => Some(Err(ArchiveError::NotRunning(format!(
                "{} stopped",
                self.agent
            )))),
        }
    }

    /// Wait for the answer (30 s at most).
    ///
    /// # Errors
    /// The agent's error, or it stopped or did not answer.
    pub fn wait(self) -> Result<T> {
        let timeout = self
            .deadline
            .saturating_duration_since(std::time::Instant::now());
        match self.wait.recv_timeout(timeout) {
            Ok(outcome) => outcome,
            Err(mpsc::RecvTimeoutError::Timeout) => Err(ArchiveError::NotRunning(format!(
                "{} did not answer",
                self.agent
            ))),
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                Err(ArchiveError::NotRunning(format!("{} stopped", self.agent)))
            }
        }
    }
}

/// Whether a stop by identity stopped the recording: an unknown subscription means it stopped
/// on its own meanwhile (an auto-stop).
///
/// # Errors
/// The recorder's error.
pub fn stopped_by_identity(outcome: Result<Vec<i64>>) -> Result<bool> {
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

/// A replay handed to the replayer and not yet started ([`Archive::begin_replay`]; its outcome
/// through [`Archive::poll_replay_start`], which also forgets a refused one).
pub type PendingReplay = Begun<i64>;
/// A seek handed to the replayer ([`Archive::begin_seek`]): the replay's new image session id.
pub type PendingSeek = Begun<i32>;
/// A recording subscription handed to the recorder ([`Archive::begin_recording`],
/// [`Archive::begin_extend`]): its subscription id.
pub type PendingRecording = Begun<i64>;

pub(crate) struct Shared {
    pub config: ArchiveConfig,
    catalog: Mutex<Catalog>,
    progress: Mutex<HashMap<i64, Arc<RecordingProgress>>>,
    /// Why an agent thread stopped, if one did.
    failure: Mutex<Option<String>>,
    /// Recordings that could not be written, in the order they failed.
    pub(crate) recording_failures: Mutex<Vec<RecordingFailure>>,
    /// Subscribers to recording events.
    pub events: EventBus,
    /// Active and busy recordings.
    activity: Mutex<Activity>,
    /// The recording subscriptions in force (kept by the recorder).
    subscriptions: Mutex<BTreeMap<i64, RecordingSubscriptionInfo>>,
    /// What the threads count for Prometheus (`metrics.rs`).
    pub metrics: crate::metrics::Metrics,
}

/// A recording a truncate or purge works on; released when dropped.
pub(crate) struct Busy<'a> {
    shared: &'a Shared,
    recording_id: i64,
}

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.shared.lock_activity().busy.remove(&self.recording_id);
    }
}

impl Busy<'_> {
    /// Keep the recording busy past this call: until the returned guard is dropped (by the
    /// deleter, once the files are gone).
    fn hold(self, shared: Arc<Shared>) -> HeldBusy {
        let recording_id = self.recording_id;
        std::mem::forget(self);
        HeldBusy {
            shared,
            recording_id,
        }
    }
}

/// A recording kept busy by a deletion in the background.
pub(crate) struct HeldBusy {
    shared: Arc<Shared>,
    recording_id: i64,
}

impl Drop for HeldBusy {
    fn drop(&mut self) {
        self.shared.lock_activity().busy.remove(&self.recording_id);
    }
}

/// Files a truncate or purge deletes in the background (Aeron's way: the request is answered
/// with the count, the `Delete` signal follows when they are gone).
struct DeleteJob {
    recording_id: i64,
    operation: &'static str,
    files: Vec<String>,
    busy: HeldBusy,
    /// Told when the files are gone, for a caller that waits.
    done: Option<mpsc::Sender<()>>,
}

/// Delete the files of each job in order, then release the recording and signal `Delete`. A
/// file that cannot be deleted is logged; the next launch deletes what is left.
fn run_deleter(shared: Arc<Shared>, jobs: mpsc::Receiver<DeleteJob>) {
    for job in jobs {
        let started = std::time::Instant::now();
        match crate::operations::delete_named(&shared.config.dir, &job.files) {
            Ok(()) => tracing::info!(
                "recording {} {}: {} files deleted in {:.1} ms",
                job.recording_id,
                job.operation,
                job.files.len(),
                started.elapsed().as_secs_f64() * 1e3
            ),
            Err(error) => tracing::error!(
                "recording {} {}: files left, deleted at the next launch: {error}",
                job.recording_id,
                job.operation
            ),
        }
        drop(job.busy);
        shared
            .events
            .signal(RecordingSignalKind::Delete, job.recording_id, -1, -1);
        if let Some(done) = job.done {
            let _ = done.send(());
        }
    }
}

impl Shared {
    pub(crate) fn lock_catalog(&self) -> MutexGuard<'_, Catalog> {
        self.catalog
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(crate) fn register_progress(&self, recording_id: i64, progress: Arc<RecordingProgress>) {
        self.progress
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert(recording_id, progress);
    }

    /// Note that a recording could not be written, and signal it.
    pub(crate) fn recording_failed(&self, failure: RecordingFailure) {
        tracing::error!("{failure}");
        self.events.signal(
            crate::events::RecordingSignalKind::Failed,
            failure.recording_id,
            failure.subscription_id,
            failure.position,
        );
        self.recording_failures
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push(failure);
    }

    fn agent_failed(&self, message: String) {
        tracing::error!("{message}");
        for progress in self
            .progress
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .values()
        {
            if progress.stop_position() < 0 {
                progress.stopped(progress.recorded());
            }
        }
        let mut failure = self
            .failure
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        failure.get_or_insert(message);
    }

    fn lock_activity(&self) -> MutexGuard<'_, Activity> {
        self.activity
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(crate) fn lock_subscriptions(
        &self,
    ) -> MutexGuard<'_, BTreeMap<i64, RecordingSubscriptionInfo>> {
        self.subscriptions
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Note that a recording is being recorded through a subscription.
    pub(crate) fn set_active(&self, recording_id: i64, subscription_id: i64) {
        self.lock_activity()
            .active
            .insert(recording_id, subscription_id);
    }

    /// Note that a recording is no longer being recorded.
    pub(crate) fn clear_active(&self, recording_id: i64) {
        self.lock_activity().active.remove(&recording_id);
    }

    /// How many recordings are being recorded.
    pub(crate) fn active_count(&self) -> usize {
        self.lock_activity().active.len()
    }

    fn subscription_of(&self, recording_id: i64) -> Option<i64> {
        self.lock_activity().active.get(&recording_id).copied()
    }

    /// Reserve a stopped recording for an extension: refused if it is active or busy.
    pub(crate) fn reserve_extension(&self, recording_id: i64, subscription_id: i64) -> Result<()> {
        let mut activity = self.lock_activity();
        if activity.active.contains_key(&recording_id) {
            return Err(ArchiveError::Active {
                recording_id,
                operation: "extend",
            });
        }
        if activity.busy.contains(&recording_id) {
            return Err(ArchiveError::Invalid(format!(
                "cannot extend recording {recording_id}: a truncate or purge is working on it"
            )));
        }
        activity.active.insert(recording_id, subscription_id);
        Ok(())
    }

    /// Mark a recording busy for a truncate or purge: refused if it is active or busy.
    fn begin_change(&self, recording_id: i64, operation: &'static str) -> Result<Busy<'_>> {
        let mut activity = self.lock_activity();
        if activity.active.contains_key(&recording_id) {
            return Err(ArchiveError::Active {
                recording_id,
                operation,
            });
        }
        if !activity.busy.insert(recording_id) {
            return Err(ArchiveError::Invalid(format!(
                "cannot {operation} recording {recording_id}: another truncate or purge is working on it"
            )));
        }
        Ok(Busy {
            shared: self,
            recording_id,
        })
    }

    /// Forget the live positions of a stopped recording whose files changed: readers take its
    /// positions from the catalog.
    fn forget_progress(&self, recording_id: i64) {
        self.progress
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .remove(&recording_id);
    }

    /// The live positions of every recording recorded since launch (for the metrics).
    pub(crate) fn progress_snapshot(&self) -> Vec<(i64, Arc<RecordingProgress>)> {
        self.progress
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .iter()
            .map(|(id, progress)| (*id, progress.clone()))
            .collect()
    }

    fn progress_of(&self, recording_id: i64) -> Option<Arc<RecordingProgress>> {
        self.progress
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(&recording_id)
            .cloned()
    }
}

/// What to replay and where to.
#[derive(Debug, Clone, Default)]
pub struct ReplayRequest {
    /// The recording.
    pub recording_id: i64,
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
    /// The recording, or -1 if it failed before it was given an id.
    pub recording_id: i64,
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
        if self.recording_id >= 0 {
            write!(f, "recording {} ", self.recording_id)?;
        } else {
            write!(f, "a recording ")?;
        }
        write!(
            f,
            "of session {} stream {} {} failed at position {}; what follows is not stored: {}",
            self.session_id, self.stream_id, self.channel, self.position, self.error
        )
    }
}

/// A running archive. Dropping it stops recording (what was received is written and synced) and
/// replaying.
pub struct Archive {
    shared: Arc<Shared>,
    recorder: Sender<RecorderCommand>,
    replayer: Sender<ReplayerCommand>,
    threads: Vec<JoinHandle<()>>,
    replays: Mutex<HashMap<i64, Arc<ReplayStatus>>>,
    cursors: Mutex<CursorStore>,
    /// Serialises replay starts with truncates and purges, which stop or refuse replays.
    operations: Mutex<()>,
    next_id: AtomicI64,
    /// The indexer's queue (dropped at shutdown, after the recorder, so the indexer ends).
    indexer: Option<SyncSender<IndexJob>>,
    indexer_thread: Option<JoinHandle<()>>,
    /// Tells the indexer to cut short its launch-time check.
    indexer_stopping: Arc<std::sync::atomic::AtomicBool>,
    /// The deleter's queue: the files truncates and purges delete in the background.
    deleter: Option<Sender<DeleteJob>>,
    deleter_thread: Option<JoinHandle<()>>,
    _lock: File,
}

/// Give every interrupted recording of the catalog its stop position: the end of its last valid
/// frame. Returns the ids recovered and what damage was found at their ends.
fn recover(dir: &Path, catalog: &mut Catalog) -> Result<Vec<(i64, i64, Option<String>)>> {
    let interrupted: Vec<RecordingDescriptor> = catalog
        .recordings()
        .filter(|d| d.is_active())
        .cloned()
        .collect();
    if interrupted.is_empty() {
        return Ok(Vec::new());
    }
    let segments = list_segments(dir)?;
    let mut recovered = Vec::new();
    for mut descriptor in interrupted {
        let bases = segments
            .get(&descriptor.recording_id)
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        let (stop, damage) = find_end(dir, &descriptor, bases)?;
        // What the scan saw may still be only in the page cache (a process crash leaves buffered
        // data there): make it durable before the catalog vouches for it.
        for base in bases {
            let path = dir.join(tern_store::segment::segment_file_name(
                descriptor.recording_id,
                *base,
            ));
            File::open(&path)
                .and_then(|file| file.sync_data())
                .map_err(io_error(&path, "sync recovered segment"))?;
        }
        descriptor.stop_position = stop;
        descriptor.stop_timestamp_ns =
            tern_store::time_index::read_time_index(dir, descriptor.recording_id, stop)
                .ok()
                .and_then(|entries| entries.last().map(|entry| entry.timestamp_ns))
                .unwrap_or(descriptor.start_timestamp_ns);
        catalog.update(&descriptor)?;
        let damage = damage.map(|stop| stop.to_string());
        match &damage {
            Some(damage) => tracing::warn!(
                "recording {} recovered: stops at {stop}; the data after it is damaged: {damage}",
                descriptor.recording_id
            ),
            None => tracing::info!(
                "recording {} recovered: stops at {stop}",
                descriptor.recording_id
            ),
        }
        recovered.push((descriptor.recording_id, stop, damage));
    }
    Ok(recovered)
}

fn spawn_agent<A, F>(name: &str, shared: Arc<Shared>, make: F) -> Result<JoinHandle<()>>
where
    F: FnOnce() -> Result<A> + Send + 'static,
    A: FnOnce() + 'static,
{
    let (started, wait) = mpsc::channel::<Result<()>>();
    let agent = name.to_string();
    let thread = std::thread::Builder::new()
        .name(name.to_string())
        .spawn(move || match make() {
            Ok(run) => {
                let _ = started.send(Ok(()));
                // A bug in an agent must not go unnoticed: the archive reports it, and its
                // recordings stop where they got to (the next start recovers them).
                if let Err(panic) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(run)) {
                    let what = panic
                        .downcast_ref::<&str>()
                        .map(|text| text.to_string())
                        .or_else(|| panic.downcast_ref::<String>().cloned())
                        .unwrap_or_else(|| "panic".into());
                    shared.agent_failed(format!("{agent} stopped: {what}"));
                }
            }
            Err(error) => {
                let _ = started.send(Err(error));
            }
        })
        .map_err(|error| ArchiveError::NotRunning(format!("spawn {name}: {error}")))?;
    match wait.recv_timeout(REPLY_TIMEOUT) {
        Ok(Ok(())) => Ok(thread),
        Ok(Err(error)) => Err(error),
        Err(_) => Err(ArchiveError::NotRunning(format!("{name} did not start"))),
    }
}

impl Archive {
    /// Open (or create) the archive directory, recover interrupted recordings, and start the
    /// recorder and replayer agents on the media driver of `config.aeron_dir`.
    ///
    /// # Errors
    /// A bad setting, a directory in use by another archive, a damaged catalog header, or no media
    /// driver.
    pub fn launch(config: ArchiveConfig) -> Result<Self> {
        config.validate().map_err(ArchiveError::Invalid)?;
        std::fs::create_dir_all(&config.dir)
            .map_err(io_error(&config.dir, "create archive directory"))?;
        let lock = tern_store::lock_directory(&config.dir)?;
        tern_store::remove_leftovers(&config.dir)?;
        let mut catalog = tern_store::rebuild::open_for_recording(&config.dir)?;
        recover(&config.dir, &mut catalog)?;
        crate::operations::finish_purges(&config.dir, &catalog)?;
        crate::operations::finish_truncates(&config.dir, &catalog)?;
        let cursors = CursorStore::open(&config.dir)?;
        let next_id = catalog.entries().len() as i64;
        let shared = Arc::new(Shared {
            config,
            catalog: Mutex::new(catalog),
            progress: Mutex::new(HashMap::new()),
            failure: Mutex::new(None),
            recording_failures: Mutex::new(Vec::new()),
            events: EventBus::default(),
            activity: Mutex::new(Activity::default()),
            subscriptions: Mutex::new(BTreeMap::new()),
            metrics: crate::metrics::Metrics::default(),
        });
        let (indexer, index_jobs) = mpsc::sync_channel(tern_store::indexer::QUEUE_LENGTH);
        let index_dir = shared.config.dir.clone();
        let stopping = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let indexer_stopping = stopping.clone();
        let indexer_thread = std::thread::Builder::new()
            .name("tern-indexer".into())
            .spawn(move || run_indexer(index_dir, index_jobs, indexer_stopping))
            .map_err(|error| ArchiveError::NotRunning(format!("spawn tern-indexer: {error}")))?;
        // Recordings interrupted by a crash (or stopped just before it) may lack index files.
        let stopped: Vec<RecordingDescriptor> =
            shared.lock_catalog().recordings().cloned().collect();
        let _ = indexer.send(IndexJob::Check {
            recordings: stopped,
        });
        let (deleter, delete_jobs) = mpsc::channel();
        let deleter_shared = shared.clone();
        let deleter_thread = std::thread::Builder::new()
            .name("tern-deleter".into())
            .spawn(move || run_deleter(deleter_shared, delete_jobs))
            .map_err(|error| ArchiveError::NotRunning(format!("spawn tern-deleter: {error}")))?;
        let (recorder, recorder_commands) = mpsc::channel();
        let (replayer, replayer_commands) = mpsc::channel();
        let recorder_shared = shared.clone();
        let recorder_indexer = indexer.clone();
        let recorder_thread = spawn_agent("tern-recorder", shared.clone(), move || {
            let agent = Recorder::new(recorder_shared, recorder_commands, recorder_indexer)?;
            Ok(move || agent.run())
        })?;
        let replayer_shared = shared.clone();
        let replayer_thread = match spawn_agent("tern-replayer", shared.clone(), move || {
            let agent = Replayer::new(replayer_shared, replayer_commands)?;
            Ok(move || agent.run())
        }) {
            Ok(thread) => thread,
            Err(error) => {
                let _ = recorder.send(RecorderCommand::Shutdown);
                let _ = recorder_thread.join();
                return Err(error);
            }
        };
        Ok(Self {
            shared,
            recorder,
            replayer,
            threads: vec![recorder_thread, replayer_thread],
            replays: Mutex::new(HashMap::new()),
            cursors: Mutex::new(cursors),
            operations: Mutex::new(()),
            next_id: AtomicI64::new(next_id.max(1) << 20),
            indexer: Some(indexer),
            indexer_thread: Some(indexer_thread),
            indexer_stopping: stopping,
            deleter: Some(deleter),
            deleter_thread: Some(deleter_thread),
            _lock: lock,
        })
    }

    /// Whether the recorder and replayer agents are running.
    ///
    /// # Errors
    /// [`ArchiveError::NotRunning`] with why an agent stopped.
    pub fn health(&self) -> Result<()> {
        let failure = self
            .shared
            .failure
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        match failure.as_ref() {
            Some(message) => Err(ArchiveError::NotRunning(message.clone())),
            None => Ok(()),
        }
    }

    /// The recordings that could not be written since launch (a full disk, a file error), in the
    /// order they failed. A recording listed here stopped where it failed; the archive goes on
    /// recording the others.
    pub fn recording_failures(&self) -> Vec<RecordingFailure> {
        self.shared
            .recording_failures
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// The settings the archive runs with.
    pub fn config(&self) -> &ArchiveConfig {
        &self.shared.config
    }

    fn next_id(&self) -> i64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// An encoder of this archive's Prometheus metrics (see `metrics.rs` and README.md), for a
    /// [`MetricsServer`](crate::MetricsServer) or any other exporter. It does not keep the
    /// archive alive.
    pub fn metrics_exporter(&self) -> crate::metrics::MetricsExporter {
        crate::metrics::MetricsExporter::new(&self.shared)
    }

    /// The metrics the control server updates.
    pub(crate) fn metrics(&self) -> &crate::metrics::Metrics {
        &self.shared.metrics
    }

    /// Record every image of `channel` and `stream_id`, each to its own recording, until stopped.
    /// Returns the recording subscription's id.
    ///
    /// # Errors
    /// The channel is invalid, or the archive is not running.
    pub fn start_recording(
        &self,
        channel: &str,
        stream_id: i32,
        source: SourceLocation,
    ) -> Result<i64> {
        self.start_recording_with(channel, stream_id, source, false)
    }

    /// As [`Self::start_recording`]; with `auto_stop`, the recording subscription is removed as
    /// soon as the recording of one of its images stops because the image ended (Aeron's
    /// `autoStop`), so it records one publication and goes.
    ///
    /// # Errors
    /// [`ArchiveError::DuplicateSubscription`] when the channel and stream are already recorded,
    /// [`ArchiveError::MaxRecordings`], an invalid channel, or the archive is not running.
    pub fn start_recording_with(
        &self,
        channel: &str,
        stream_id: i32,
        source: SourceLocation,
        auto_stop: bool,
    ) -> Result<i64> {
        self.begin_recording(channel, stream_id, source, auto_stop)?
            .wait()
    }

    /// [`Self::start_recording_with`] without waiting for the recorder: the subscription id is
    /// known at once, and [`Begun::poll`] tells when the subscription is added (or
    /// why it could not be).
    ///
    /// # Errors
    /// The archive is not running.
    pub fn begin_recording(
        &self,
        channel: &str,
        stream_id: i32,
        source: SourceLocation,
        auto_stop: bool,
    ) -> Result<PendingRecording> {
        self.add_recording_subscription(channel, stream_id, source, auto_stop, None)
    }

    fn add_recording_subscription(
        &self,
        channel: &str,
        stream_id: i32,
        source: SourceLocation,
        auto_stop: bool,
        extend: Option<i64>,
    ) -> Result<PendingRecording> {
        let subscription_id = self.next_id();
        let (reply, wait) = mpsc::channel();
        self.recorder
            .send(RecorderCommand::Start {
                subscription_id,
                channel: channel.to_string(),
                stream_id,
                source,
                auto_stop,
                extend,
                reply,
            })
            .map_err(|_| ArchiveError::NotRunning("recorder stopped".into()))?;
        Ok(Begun {
            id: subscription_id,
            answer: Pending::new(wait, "recorder"),
        })
    }

    /// Extend a stopped recording (Aeron's `extendRecording`): a recording subscription is added
    /// on `channel` and `stream_id` (the recording's stream id), and the first image that joins
    /// at the recording's stop position with its initial term id, term length and MTU continues
    /// it: same recording id, frames appended from the stop position, a
    /// [`RecordingSignalKind::Extend`](crate::RecordingSignalKind::Extend) event, and the
    /// recording active until that image ends or the subscription is stopped. An image that does
    /// not fit is refused (logged as an error) and not recorded. Returns the subscription id.
    ///
    /// # Errors
    /// Unknown recording; [`ArchiveError::Active`] if it is being recorded; another stream id;
    /// as [`Self::start_recording_with`].
    pub fn extend_recording(
        &self,
        recording_id: i64,
        channel: &str,
        stream_id: i32,
        source: SourceLocation,
        auto_stop: bool,
    ) -> Result<i64> {
        self.begin_extend(recording_id, channel, stream_id, source, auto_stop)?
            .wait()
    }

    /// [`Self::extend_recording`] without waiting for the recorder (see [`Self::begin_recording`]).
    ///
    /// # Errors
    /// What [`Self::extend_recording`] can tell before the recorder has the request.
    pub fn begin_extend(
        &self,
        recording_id: i64,
        channel: &str,
        stream_id: i32,
        source: SourceLocation,
        auto_stop: bool,
    ) -> Result<PendingRecording> {
        let descriptor = self.shared.lock_catalog().get(recording_id)?.clone();
        if descriptor.stream_id != stream_id {
            return Err(ArchiveError::Invalid(format!(
                "cannot extend recording {recording_id} with stream id {stream_id}: its stream id is {}",
                descriptor.stream_id
            )));
        }
        if descriptor.is_active() || self.shared.subscription_of(recording_id).is_some() {
            return Err(ArchiveError::Active {
                recording_id,
                operation: "extend",
            });
        }
        self.add_recording_subscription(channel, stream_id, source, auto_stop, Some(recording_id))
    }

    /// A new receiver of recording events (start, stop, extend, delete), each sent to every
    /// receiver in the order it happened; a dropped receiver is forgotten.
    pub fn subscribe_events(&self) -> mpsc::Receiver<crate::events::RecordingEvent> {
        self.shared.events.subscribe()
    }

    /// The recording subscription through which `recording_id` is being recorded now, if it is.
    pub fn recording_subscription_of(&self, recording_id: i64) -> Option<i64> {
        self.shared.subscription_of(recording_id)
    }

    /// Stop the recording subscription that records `recording_id` (Aeron's
    /// `stopRecordingByIdentity`), with every recording it has. Returns whether the recording was
    /// active.
    ///
    /// # Errors
    /// Unknown recording, or the archive is not running.
    pub fn stop_recording_by_identity(&self, recording_id: i64) -> Result<bool> {
        match self.begin_stop_by_identity(recording_id)? {
            Some((_, pending)) => stopped_by_identity(pending.wait()),
            None => Ok(false),
        }
    }

    /// [`Self::stop_recording_by_identity`] without waiting for the recorder: `None` when the
    /// recording is not active; else the recording subscription being stopped and the stop,
    /// whose answer [`stopped_by_identity`] reads.
    ///
    /// # Errors
    /// Unknown recording, or the archive is not running.
    pub fn begin_stop_by_identity(
        &self,
        recording_id: i64,
    ) -> Result<Option<(i64, Pending<Vec<i64>>)>> {
        self.shared.lock_catalog().get(recording_id)?;
        match self.shared.subscription_of(recording_id) {
            Some(subscription_id) => self
                .begin_stop_recording(subscription_id)
                .map(|pending| Some((subscription_id, pending))),
            None => Ok(None),
        }
    }

    /// Stop a recording subscription; its recordings are written, synced and marked stopped.
    /// Returns the ids of the recordings it stopped.
    ///
    /// # Errors
    /// The id is unknown, or the archive is not running.
    pub fn stop_recording(&self, subscription_id: i64) -> Result<Vec<i64>> {
        self.begin_stop_recording(subscription_id)?.wait()
    }

    /// [`Self::stop_recording`] without waiting for the recorder: the answer is the ids of the
    /// recordings it stopped, or [`ArchiveError::UnknownSubscription`].
    ///
    /// # Errors
    /// The archive is not running.
    pub fn begin_stop_recording(&self, subscription_id: i64) -> Result<Pending<Vec<i64>>> {
        let (reply, wait) = mpsc::channel();
        self.recorder
            .send(RecorderCommand::Stop {
                subscription_id,
                reply,
            })
            .map_err(|_| ArchiveError::NotRunning("recorder stopped".into()))?;
        Ok(Pending::new(wait, "recorder"))
    }

    /// The recording subscriptions in force.
    pub fn recording_subscriptions(&self) -> Vec<RecordingSubscriptionInfo> {
        self.shared.lock_subscriptions().values().cloned().collect()
    }

    fn info(&self, descriptor: &RecordingDescriptor) -> RecordingInfo {
        match self.shared.progress_of(descriptor.recording_id) {
            Some(progress) if descriptor.is_active() && progress.stop_position() < 0 => {
                RecordingInfo {
                    descriptor: descriptor.clone(),
                    recorded_position: progress.recorded(),
                    durable_position: progress.durable(),
                    active: true,
                    io_waiting: progress.io_waiting(),
                }
            }
            // Stopped here, but the stop could not be saved: the next start recovers it.
            Some(progress) if descriptor.is_active() => RecordingInfo {
                descriptor: descriptor.clone(),
                recorded_position: progress.recorded(),
                durable_position: progress.durable(),
                active: false,
                io_waiting: None,
            },
            _ => RecordingInfo {
                descriptor: descriptor.clone(),
                recorded_position: descriptor.stop_position,
                durable_position: descriptor.stop_position,
                active: false,
                io_waiting: None,
            },
        }
    }

    /// Every readable recording, with live positions.
    pub fn recordings(&self) -> Vec<RecordingInfo> {
        let catalog = self.shared.lock_catalog();
        catalog
            .recordings()
            .map(|descriptor| self.info(descriptor))
            .collect()
    }

    /// One recording, with live positions.
    ///
    /// # Errors
    /// Unknown id, or a damaged catalog entry.
    pub fn recording(&self, recording_id: i64) -> Result<RecordingInfo> {
        let catalog = self.shared.lock_catalog();
        let descriptor = catalog.get(recording_id)?;
        Ok(self.info(descriptor))
    }

    /// The position to replay from to start at the first message captured at or after
    /// `timestamp_ns` (epoch nanoseconds): the start for a time before the first message, the
    /// current end for a time after the last (a follow replay from there waits for new ones).
    ///
    /// # Errors
    /// Unknown id, or a missing or unreadable time index.
    pub fn position_at_time(&self, recording_id: i64, timestamp_ns: i64) -> Result<i64> {
        self.position_at_time_from(recording_id, timestamp_ns, Default::default())
    }

    /// As [`Self::position_at_time`], with the time of each message taken from `source`.
    ///
    /// # Errors
    /// Unknown id, an unreadable time index or segment.
    pub fn position_at_time_from(
        &self,
        recording_id: i64,
        timestamp_ns: i64,
        source: tern_store::message_time::TimeSource,
    ) -> Result<i64> {
        let info = self.recording(recording_id)?;
        Ok(tern_store::time_seek::position_at_message_time(
            &self.shared.config.dir,
            &info.descriptor,
            info.recorded_position,
            timestamp_ns,
            source,
        )?)
    }

    /// The recording of one publisher session on a stream, most recent first.
    pub fn find_recording(&self, stream_id: i32, session_id: i32) -> Option<RecordingInfo> {
        let catalog = self.shared.lock_catalog();
        let found = catalog
            .recordings()
            .filter(|d| d.stream_id == stream_id && d.session_id == session_id)
            .last()
            .cloned();
        found.map(|descriptor| self.info(&descriptor))
    }

    /// Replay a recording to a channel and stream; returns the replay id, whose low 32 bits are the
    /// session id of the replay's image.
    ///
    /// # Errors
    /// Unknown recording; a position before the start, past the end or not at a frame start; a
    /// replay channel the driver refuses.
    pub fn start_replay(&self, request: &ReplayRequest) -> Result<i64> {
        let pending = self.begin_replay(request)?;
        let replay_id = pending.id();
        let outcome = pending.wait();
        self.end_replay_start(replay_id, outcome)
    }

    /// [`Self::start_replay`] without waiting for the replayer: the request is checked and handed
    /// to the replayer, and [`Self::poll_replay_start`] tells when it has started (or failed).
    /// The replay counts against the replay limit, and a truncate or purge stops it, from now.
    ///
    /// # Errors
    /// As [`Self::start_replay`], for what can be told before the replayer has it.
    pub fn begin_replay(&self, request: &ReplayRequest) -> Result<PendingReplay> {
        let _operations = self.lock_operations();
        let max = self.shared.config.max_concurrent_replays;
        if self.running_replays(None).len() >= max {
            return Err(ArchiveError::MaxReplays(max));
        }
        let info = self.recording(request.recording_id)?;
        let descriptor = info.descriptor.clone();
        let key = match request.key {
            Some(filter) if filter.kind == KeyKind::Session => {
                let catalog = self.shared.lock_catalog();
                crate::key_search::check_session(&descriptor, filter.value, catalog.recordings())?;
                None
            }
            Some(filter) => {
                crate::key_search::check_filter(&descriptor, &filter)?;
                Some(filter)
            }
            None => None,
        };
        tern_store::time_seek::check_time_source(&descriptor, request.time_source)?;
        let end = info.recorded_position;
        let position = request.position.unwrap_or(descriptor.start_position);
        check_replay_position(&self.shared.config.dir, &descriptor, position, end)?;
        if let Some(length) = request.length {
            if length < 0 {
                return Err(ArchiveError::Invalid(format!(
                    "replay length {length} is negative"
                )));
            }
        }
        let limit = request.length.map(|length| position.saturating_add(length));
        let follow = request.follow || request.limit_counter_id.is_some();
        let replay_end = if follow && info.active {
            ReplayEnd::Follow(limit)
        } else {
            ReplayEnd::At(limit.unwrap_or(end).min(end))
        };
        if let Some(speed) = request.speed {
            if !(0.01..=1000.0).contains(&speed) {
                return Err(ArchiveError::Invalid(format!(
                    "replay speed {speed} is outside 0.01 .. 1000"
                )));
            }
        }
        let sequence = self.next_id();
        let session_id = self.new_session_id(sequence);
        let replay_id = (sequence << 32) | i64::from(session_id as u32);
        let status = Arc::new(ReplayStatus::new_at(
            request.recording_id,
            position,
            session_id,
        ));
        let plan = ReplayPlan {
            replay_id,
            descriptor,
            position,
            end: replay_end,
            channel: request.channel.clone(),
            stream_id: request.stream_id,
            session_id,
            progress: self.shared.progress_of(request.recording_id),
            status: status.clone(),
            speed: request.speed,
            time_source: request.time_source,
            limit_counter_id: request.limit_counter_id,
            key,
            keep_positions: request.keep_positions,
        };
        let (reply, wait) = mpsc::channel();
        // Known from now, so the limit counts it and a truncate or purge stops it; the replayer
        // takes its commands in order, so a stop sent now comes after the start.
        self.lock_replays().insert(replay_id, status);
        if self
            .replayer
            .send(ReplayerCommand::Start {
                plan: Box::new(plan),
                reply,
            })
            .is_err()
        {
            self.lock_replays().remove(&replay_id);
            return Err(ArchiveError::NotRunning("replayer stopped".into()));
        }
        Ok(Begun {
            id: replay_id,
            answer: Pending::new(wait, "replayer"),
        })
    }

    /// Whether a replay begun with [`Self::begin_replay`] has started: `None` while the replayer
    /// has not answered; then its replay id, or why it could not start.
    pub fn poll_replay_start(&self, pending: &PendingReplay) -> Option<Result<i64>> {
        let outcome = pending.poll()?;
        Some(self.end_replay_start(pending.id(), outcome))
    }

    fn end_replay_start(&self, replay_id: i64, outcome: Result<i64>) -> Result<i64> {
        match outcome {
            Ok(replay_id) => Ok(replay_id),
            Err(error) => {
                self.lock_replays().remove(&replay_id);
                Err(error)
            }
        }
    }

    fn lock_operations(&self) -> MutexGuard<'_, ()> {
        self.operations
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn lock_replays(&self) -> MutexGuard<'_, HashMap<i64, Arc<ReplayStatus>>> {
        self.replays
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Replays not yet ended, of one recording or of all.
    fn running_replays(&self, recording_id: Option<i64>) -> Vec<(i64, Arc<ReplayStatus>)> {
        self.lock_replays()
            .iter()
            .filter(|(_, status)| !status.is_finished())
            .filter(|(_, status)| recording_id.is_none_or(|id| status.recording_id() == id))
            .map(|(id, status)| (*id, status.clone()))
            .collect()
    }

    /// Stop every replay of a recording and wait until the replayer has let go of them.
    fn stop_replays_of(&self, recording_id: i64) -> Result<()> {
        let running = self.running_replays(Some(recording_id));
        for (replay_id, _) in &running {
            self.stop_replay(*replay_id)?;
        }
        let deadline = std::time::Instant::now() + REPLY_TIMEOUT;
        for (replay_id, status) in running {
            while !status.is_finished() {
                if std::time::Instant::now() > deadline {
                    return Err(ArchiveError::NotRunning(format!(
                        "replay {replay_id} did not stop"
                    )));
                }
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        Ok(())
    }

    /// Cut a stopped recording at `position` (Aeron's `truncateRecording`): `position` becomes
    /// its stop position, and everything recorded after it is removed. Replays of the recording
    /// are stopped first. The catalog is updated first; then the rest of the segment holding
    /// `position` is zeroed, later segment files (with every sidecar `<id>-<base>.…` of theirs)
    /// are deleted, and the time index loses its entries from `position` on; then a
    /// [`RecordingSignalKind::Delete`](crate::RecordingSignalKind::Delete) event is sent. A
    /// crash in between leaves bytes past the stop position, which readers ignore and an
    /// extension removes. Returns the number of segment files deleted.
    ///
    /// # Errors
    /// Unknown recording; [`ArchiveError::Active`] if it is being recorded;
    /// [`StoreError::BadPosition`](tern_store::StoreError::BadPosition) for a position outside `[start, stop]`, not a multiple of
    /// 32, or not the start of a frame; a file error.
    pub fn truncate_recording(&self, recording_id: i64, position: i64) -> Result<usize> {
        self.truncate(recording_id, position, true)
    }

    /// As [`Self::truncate_recording`], but the later segment files are deleted in the background
    /// (Aeron's way): this returns once the record is changed and the cut segment erased, with
    /// the number of segment files to delete; the `Delete` event follows when they are gone, and
    /// until then the recording is busy (another truncate, a purge or an extension is refused).
    ///
    /// # Errors
    /// As [`Self::truncate_recording`].
    pub fn truncate_recording_in_background(
        &self,
        recording_id: i64,
        position: i64,
    ) -> Result<usize> {
        self.truncate(recording_id, position, false)
    }

    fn truncate(&self, recording_id: i64, position: i64, wait: bool) -> Result<usize> {
        let _operations = self.lock_operations();
        let busy = self.shared.begin_change(recording_id, "truncate")?;
        let dir = &self.shared.config.dir;
        let descriptor = self.shared.lock_catalog().get(recording_id)?.clone();
        let truncated = crate::operations::plan_truncate(dir, &descriptor, position)?;
        self.stop_replays_of(recording_id)?;
        let plan = crate::operations::plan_cut(dir, &descriptor, position)?;
        self.shared.lock_catalog().update(&truncated)?;
        self.shared.forget_progress(recording_id);
        crate::operations::cut_in_place(dir, &descriptor, position, &plan)?;
        tracing::info!(
            "recording {recording_id} truncated at {position} (was {}): {} segment files to delete",
            descriptor.stop_position,
            plan.segments
        );
        self.delete_later(busy, "truncate", plan.doomed, wait);
        Ok(plan.segments)
    }

    /// Hand `files` of the busy recording to the deleter thread (or, if it is gone, delete them
    /// here); it signals `Delete` when they are gone and releases the recording.
    fn delete_later(
        &self,
        busy: Busy<'_>,
        operation: &'static str,
        files: Vec<String>,
        wait: bool,
    ) {
        let recording_id = busy.recording_id;
        let (done, finished) = mpsc::channel();
        let job = DeleteJob {
            recording_id,
            operation,
            files,
            busy: busy.hold(self.shared.clone()),
            done: wait.then_some(done),
        };
        let job = match &self.deleter {
            Some(deleter) => match deleter.send(job) {
                Ok(()) => {
                    if wait {
                        let _ = finished.recv();
                    }
                    return;
                }
                Err(mpsc::SendError(job)) => job,
            },
            None => job,
        };
        if let Err(error) = crate::operations::delete_named(&self.shared.config.dir, &job.files) {
            tracing::error!(
                "recording {recording_id} {operation}: files left, deleted at the next launch: {error}"
            );
        }
        drop(job.busy);
        self.shared
            .events
            .signal(RecordingSignalKind::Delete, recording_id, -1, -1);
    }

    /// Delete a stopped recording that no replay reads (Aeron's `purgeRecording`): its catalog
    /// record is marked deleted (it keeps its slot, so its id is never reused, but it is no
    /// longer listed or found), then all its files are deleted (segments, sidecars, time index),
    /// then a [`RecordingSignalKind::Delete`](crate::RecordingSignalKind::Delete) event is sent.
    /// Returns the number of segment files deleted.
    ///
    /// # Errors
    /// Unknown recording; [`ArchiveError::Active`] if it is being recorded;
    /// [`ArchiveError::ReplayRunning`] if a replay reads it; a file error.
    pub fn purge_recording(&self, recording_id: i64) -> Result<usize> {
        self.purge(recording_id, true)
    }

    /// As [`Self::purge_recording`], but the files are deleted in the background (Aeron's way):
    /// this returns once the record says deleted, with the number of segment files to delete;
    /// the `Delete` event follows when they are gone.
    ///
    /// # Errors
    /// As [`Self::purge_recording`].
    pub fn purge_recording_in_background(&self, recording_id: i64) -> Result<usize> {
        self.purge(recording_id, false)
    }

    fn purge(&self, recording_id: i64, wait: bool) -> Result<usize> {
        let _operations = self.lock_operations();
        let busy = self.shared.begin_change(recording_id, "purge")?;
        let descriptor = self.shared.lock_catalog().get(recording_id)?.clone();
        let deleted_record = crate::operations::plan_purge(&descriptor)?;
        if !self.running_replays(Some(recording_id)).is_empty() {
            return Err(ArchiveError::ReplayRunning { recording_id });
        }
        let (files, segments) =
            crate::operations::plan_delete(&self.shared.config.dir, recording_id)?;
        self.shared.lock_catalog().update(&deleted_record)?;
        self.shared.forget_progress(recording_id);
        tracing::info!("recording {recording_id} purged: {segments} segment files to delete");
        self.delete_later(busy, "purge", files, wait);
        Ok(segments)
    }

    fn new_session_id(&self, sequence: i64) -> i32 {
        (tern_store::epoch_nanos() as i32 ^ (sequence as i32).wrapping_mul(0x9E37_79B9u32 as i32))
            | 1
    }

    /// Move a running replay to `position` (a frame start of its recording). The replay's current
    /// image ends after what it sent; a new image, with a new session id (returned, and in
    /// [`ReplayStatus::session_id`]), starts at `position`, so replayed positions stay the
    /// recording's. Nothing is lost or sent twice on either image.
    ///
    /// # Errors
    /// Unknown or ended replay; a position that is not a frame start of the recording; a replay
    /// channel the driver refuses.
    pub fn seek_replay(&self, replay_id: i64, position: i64) -> Result<i32> {
        self.begin_seek(replay_id, position)?.wait()
    }

    /// [`Self::seek_replay`] without waiting for the replayer: the new session id is known at
    /// once; [`Begun::poll`] tells when the replay has moved.
    ///
    /// # Errors
    /// What [`Self::seek_replay`] can tell before the replayer has the request.
    pub fn begin_seek(&self, replay_id: i64, position: i64) -> Result<PendingSeek> {
        self.running_replay(replay_id)?;
        let status = self.replay_status(replay_id)?;
        let info = self.recording(status.recording_id())?;
        check_replay_position(
            &self.shared.config.dir,
            &info.descriptor,
            position,
            info.recorded_position,
        )?;
        let session_id = self.new_session_id(self.next_id());
        let (reply, wait) = mpsc::channel();
        self.replayer
            .send(ReplayerCommand::Seek {
                replay_id,
                position,
                session_id,
                reply,
            })
            .map_err(|_| ArchiveError::NotRunning("replayer stopped".into()))?;
        Ok(Begun {
            id: session_id,
            answer: Pending::new(wait, "replayer"),
        })
    }

    /// Move a running replay to the first message whose time (read by `source`) is at or after
    /// `timestamp_ns`; see [`Self::seek_replay`].
    ///
    /// # Errors
    /// As [`Self::seek_replay`], and a missing or unreadable time index.
    pub fn seek_replay_to_time(
        &self,
        replay_id: i64,
        timestamp_ns: i64,
        source: tern_store::message_time::TimeSource,
    ) -> Result<i32> {
        self.begin_seek_to_time(replay_id, timestamp_ns, source)?
            .wait()
    }

    /// [`Self::seek_replay_to_time`] without waiting for the replayer (see [`Self::begin_seek`]).
    ///
    /// # Errors
    /// As [`Self::begin_seek`], and a missing or unreadable time index.
    pub fn begin_seek_to_time(
        &self,
        replay_id: i64,
        timestamp_ns: i64,
        source: tern_store::message_time::TimeSource,
    ) -> Result<PendingSeek> {
        let recording_id = self.replay_status(replay_id)?.recording_id();
        let position = self.position_at_time_from(recording_id, timestamp_ns, source)?;
        self.begin_seek(replay_id, position)
    }

    /// The status of a replay.
    ///
    /// # Errors
    /// The replay id is unknown.
    pub fn replay_status(&self, replay_id: i64) -> Result<Arc<ReplayStatus>> {
        self.replays
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(&replay_id)
            .cloned()
            .ok_or(ArchiveError::UnknownReplay(replay_id))
    }

    /// Pause a replay: nothing more is sent until [`Self::resume_replay`]; a paced replay's
    /// schedule moves by the length of the pause.
    ///
    /// # Errors
    /// The replay id is unknown or the replay has ended, or the archive is not running.
    pub fn pause_replay(&self, replay_id: i64) -> Result<()> {
        self.running_replay(replay_id)?;
        self.replayer
            .send(ReplayerCommand::Pause { replay_id })
            .map_err(|_| ArchiveError::NotRunning("replayer stopped".into()))
    }

    /// Resume a paused replay from where it stopped.
    ///
    /// # Errors
    /// The replay id is unknown or the replay has ended, or the archive is not running.
    pub fn resume_replay(&self, replay_id: i64) -> Result<()> {
        self.running_replay(replay_id)?;
        self.replayer
            .send(ReplayerCommand::Resume { replay_id })
            .map_err(|_| ArchiveError::NotRunning("replayer stopped".into()))
    }

    fn running_replay(&self, replay_id: i64) -> Result<()> {
        let status = self.replay_status(replay_id)?;
        if status.is_finished() {
            return Err(ArchiveError::Invalid(format!(
                "replay {replay_id} has ended ({:?})",
                status.state()
            )));
        }
        Ok(())
    }

    /// Stop a replay.
    ///
    /// # Errors
    /// The replay id is unknown, or the archive is not running.
    pub fn stop_replay(&self, replay_id: i64) -> Result<()> {
        self.replay_status(replay_id)?;
        self.replayer
            .send(ReplayerCommand::Stop { replay_id })
            .map_err(|_| ArchiveError::NotRunning("replayer stopped".into()))
    }

    /// Stop every running replay of `recording_id` (of every recording for `None`); returns how
    /// many were asked to stop.
    pub fn stop_all_replays(&self, recording_id: Option<i64>) -> usize {
        self.running_replays(recording_id)
            .into_iter()
            .filter(|(replay_id, _)| self.stop_replay(*replay_id).is_ok())
            .count()
    }

    fn lock_cursors(&self) -> MutexGuard<'_, CursorStore> {
        self.cursors
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Store `position` of `recording_id` under `name`, durably (synced before this returns):
    /// a consumer resumes from it after a restart. The position must be a frame start of the
    /// recording, between its start and what is durable.
    ///
    /// # Errors
    /// A bad name, an unknown recording, a position that is not a frame start, too many
    /// cursors, or the cursor file cannot be written (the cursor keeps its old value).
    pub fn set_cursor(&self, name: &str, recording_id: i64, position: i64) -> Result<Cursor> {
        tern_store::cursors::check_cursor_name(name)?;
        let info = self.recording(recording_id)?;
        // Up to what is durable: a cursor must not outlive the data it points at in a crash.
        check_replay_position(
            &self.shared.config.dir,
            &info.descriptor,
            position,
            info.durable_position,
        )?;
        let cursor = Cursor {
            name: name.to_string(),
            recording_id,
            position,
            updated_ns: tern_store::epoch_nanos(),
        };
        self.lock_cursors().set(cursor.clone())?;
        Ok(cursor)
    }

    /// The cursor `name`.
    ///
    /// # Errors
    /// [`StoreError::UnknownCursor`](tern_store::StoreError::UnknownCursor).
    pub fn cursor(&self, name: &str) -> Result<Cursor> {
        self.lock_cursors()
            .get(name)
            .cloned()
            .ok_or_else(|| tern_store::StoreError::UnknownCursor(name.to_string()).into())
    }

    /// Delete the cursor `name`, durably; returns whether it existed.
    ///
    /// # Errors
    /// The cursor file cannot be written.
    pub fn delete_cursor(&self, name: &str) -> Result<bool> {
        Ok(self.lock_cursors().delete(name)?)
    }

    /// The cursors whose names start with `prefix`, in name order.
    pub fn cursors(&self, prefix: &str) -> Vec<Cursor> {
        self.lock_cursors().list(prefix)
    }

    /// One past the highest recording id the catalog has given out (ids are never reused).
    pub fn recording_id_limit(&self) -> i64 {
        self.shared.lock_catalog().entries().len() as i64
    }

    /// Stop recording and replaying; everything received is written and synced.
    pub fn shutdown(mut self) {
        self.stop_agents();
    }

    /// As [`Self::shutdown`], and return every recording that could not be written since launch,
    /// those that failed while stopping included (their final write or sync).
    pub fn shutdown_with_failures(mut self) -> Vec<RecordingFailure> {
        self.stop_agents();
        self.recording_failures()
    }

    fn stop_agents(&mut self) {
        let _ = self.recorder.send(RecorderCommand::Shutdown);
        let _ = self.replayer.send(ReplayerCommand::Shutdown);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
        // The recorder has handed over its last segments: the indexer writes them and ends (a
        // launch-time check still running is cut short: the next launch does it).
        self.indexer_stopping.store(true, Ordering::Relaxed);
        self.indexer = None;
        if let Some(thread) = self.indexer_thread.take() {
            let _ = thread.join();
        }
        // Deletions asked for are finished before the archive stops.
        self.deleter = None;
        if let Some(thread) = self.deleter_thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Archive {
    fn drop(&mut self) {
        self.stop_agents();
    }
}
