//! The archive conductor: the one owner of the archive's state.
//!
//! One thread (`tern-archive`) owns the catalog, the cursor file and the tables of recordings,
//! recording subscriptions, replays and pending truncates ([`ArchiveState`]). Nothing else
//! touches them: the [`Archive`](crate::Archive) handle, the recorder, the replayer, the deleter
//! and the metrics exporter send it commands through one queue ([`Mailbox`]), closures run in
//! the order they were sent; the control server runs in the same thread, as a [`Room`] polled
//! each duty cycle, so its requests reach the state without a hop. The duty cycle never waits for
//! an agent: what an agent answers later comes back as a [`Pending`] (polled by the control
//! server, waited for by the handle's blocking calls, on the caller's thread).
//!
//! Ordering rules the rest relies on:
//! - An agent changes the state only through the mailbox, and sends its change before it answers
//!   the request that caused it (the channel is FIFO), so whoever reads the answer and then asks
//!   the conductor sees the change.
//! - Recording events (signals) are sent from this thread only, after the change they report.

use crate::error::{ArchiveError, Result};
use crate::events::{EventBus, RecordingEvent, RecordingSignalKind};
use crate::operations::Activity;
use crate::record::{RecorderCommand, RecordingStop, Report};
use crate::replay::{ReplayEnd, ReplayPlan, ReplayStatus, ReplayerCommand};
use crate::types::{
    Begun, Pending, PendingRecording, PendingReplay, PendingSeek, RecordingFailure, RecordingInfo,
    RecordingSubscriptionInfo, ReplayRequest, Shared, SourceLocation,
};
use std::collections::{BTreeMap, HashMap};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};
use tern_store::catalog::Catalog;
use tern_store::cursors::{Cursor, CursorStore};
use tern_store::descriptor::RecordingDescriptor;
use tern_store::key::KeyKind;
use tern_store::progress::RecordingProgress;
use tern_store::recording_reader::check_replay_position_on;
use tern_store::{RecordingId, ReplayId};
use tern_transport::{BackoffIdle, Idle};

/// Finished replays whose statuses are kept (the most recent).
const FINISHED_REPLAYS_KEPT: usize = 1024;

/// Most commands taken from the mailbox in one duty cycle.
const COMMANDS_PER_CYCLE: usize = 1024;

/// How long a truncate waits for the replays of its recording to stop.
const CHANGE_TIMEOUT: Duration = Duration::from_secs(30);

/// Work done on the conductor's thread with its state.
pub(crate) type Call = Box<dyn FnOnce(&mut ArchiveState) + Send>;

/// Makes a room on the conductor's thread (where its Aeron resources live).
pub(crate) type MakeRoom = Box<dyn FnOnce(&mut ArchiveState) -> Option<Box<dyn Room>> + Send>;

pub(crate) enum Command {
    Call(Call),
    Room(MakeRoom),
    Shutdown,
}

/// A duty cycle that runs on the conductor's thread with the state at hand (the control server).
pub(crate) trait Room {
    /// One duty cycle; returns the work done (0: idle).
    fn do_work(&mut self, state: &mut ArchiveState, now: Instant) -> usize;
    /// Whether the room has ended (it is dropped then).
    fn is_done(&self) -> bool;
    /// For the log.
    fn name(&self) -> &'static str;
}

/// The conductor's queue: how every other thread reaches the state.
pub(crate) struct Mailbox {
    sender: Sender<Command>,
    thread: OnceLock<std::thread::Thread>,
}

impl Mailbox {
    pub(crate) fn new() -> (Self, Receiver<Command>) {
        let (sender, receiver) = mpsc::channel();
        (
            Self {
                sender,
                thread: OnceLock::new(),
            },
            receiver,
        )
    }

    pub(crate) fn set_thread(&self, thread: std::thread::Thread) {
        let _ = self.thread.set(thread);
    }

    pub(crate) fn send(&self, command: Command) -> Result<()> {
        self.sender
            .send(command)
            .map_err(|_| ArchiveError::NotRunning("the archive conductor stopped".into()))?;
        if let Some(thread) = self.thread.get() {
            thread.unpark();
        }
        Ok(())
    }

    /// Run `call` on the conductor's thread, later; nothing is answered (a change an agent
    /// reports). Dropped if the conductor has stopped.
    pub(crate) fn tell(&self, call: impl FnOnce(&mut ArchiveState) + Send + 'static) {
        let _ = self.send(Command::Call(Box::new(call)));
    }

    /// Run `call` on the conductor's thread and wait for what it returns.
    ///
    /// # Errors
    /// The conductor has stopped, or this is its own thread (it would wait for itself).
    pub(crate) fn ask<R: Send + 'static>(
        &self,
        call: impl FnOnce(&mut ArchiveState) -> R + Send + 'static,
    ) -> Result<R> {
        if self
            .thread
            .get()
            .is_some_and(|thread| thread.id() == std::thread::current().id())
        {
            return Err(ArchiveError::NotRunning(
                "the archive conductor cannot wait for itself".into(),
            ));
        }
        let (reply, answer) = mpsc::sync_channel(1);
        self.send(Command::Call(Box::new(move |state| {
            let _ = reply.send(call(state));
        })))?;
        answer
            .recv()
            .map_err(|_| ArchiveError::NotRunning("the archive conductor stopped".into()))
    }
}

/// Files a truncate or purge deletes in the background (Aeron's way: the request is answered
/// with the count, the `Delete` signal follows when they are gone).
pub(crate) struct DeleteJob {
    pub recording_id: RecordingId,
    pub operation: &'static str,
    pub files: Vec<String>,
    /// Answered with the count when the files are gone, for a caller that waits.
    pub done: Option<(Sender<Result<usize>>, usize)>,
}

/// Delete the files of each job in order, then have the conductor release the recording and
/// signal `Delete`. A file that cannot be deleted is logged; the next launch deletes what is left.
pub(crate) fn run_deleter(shared: Arc<Shared>, mailbox: Arc<Mailbox>, jobs: Receiver<DeleteJob>) {
    for job in jobs {
        let started = Instant::now();
        match crate::operations::delete_named(
            &shared.config.io.storage,
            &shared.config.dir,
            &job.files,
        ) {
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
        let recording_id = job.recording_id;
        let done = job.done;
        mailbox.tell(move |state| {
            state.deleted(recording_id);
            if let Some((reply, count)) = done {
                let _ = reply.send(Ok(count));
            }
        });
    }
}

/// A truncate waiting for the replays of its recording to stop.
struct Change {
    descriptor: RecordingDescriptor,
    truncated: RecordingDescriptor,
    position: i64,
    replays: Vec<(ReplayId, Arc<ReplayStatus>)>,
    deadline: Instant,
    /// Answer when the files are gone too, not only the record changed.
    wait: bool,
    reply: Sender<Result<usize>>,
}

/// Everything the archive keeps while it runs, owned by the conductor thread.
pub(crate) struct ArchiveState {
    shared: Arc<Shared>,
    catalog: Catalog,
    /// Live positions of every recording recorded since launch.
    progress: HashMap<RecordingId, Arc<RecordingProgress>>,
    /// Why an agent thread stopped, if one did.
    agent_failure: Option<String>,
    /// Recordings that could not be written, in the order they failed.
    failures: Vec<RecordingFailure>,
    events: EventBus,
    /// Active and busy recordings.
    activity: Activity,
    /// The recording subscriptions in force (as the recorder reports them).
    subscriptions: BTreeMap<i64, RecordingSubscriptionInfo>,
    replays: HashMap<ReplayId, Arc<ReplayStatus>>,
    cursors: CursorStore,
    /// Truncates waiting for replays to stop.
    changes: Vec<Change>,
    next_id: i64,
    recorder: Sender<RecorderCommand>,
    replayer: Sender<ReplayerCommand>,
    /// `None` once closed at shutdown (files are deleted here then).
    deleter: Option<Sender<DeleteJob>>,
}

/// The parts the conductor is launched with.
pub(crate) struct Parts {
    pub shared: Arc<Shared>,
    pub catalog: Catalog,
    pub cursors: CursorStore,
    pub recorder: Sender<RecorderCommand>,
    pub replayer: Sender<ReplayerCommand>,
    pub deleter: Sender<DeleteJob>,
}

/// The conductor's duty cycle: commands in order, pending truncates, then each room.
pub(crate) fn run(parts: Parts, commands: Receiver<Command>) {
    let mut state = ArchiveState::new(parts);
    loop_on(&mut state, commands);
}

/// The duty cycle on `state` until a `Shutdown`.
fn loop_on(state: &mut ArchiveState, commands: Receiver<Command>) {
    let mut rooms: Vec<Box<dyn Room>> = Vec::new();
    let mut idle = BackoffIdle::new();
    loop {
        let mut work = 0;
        // At most so many commands a cycle: the rooms and the truncates' deadlines are served
        // between them however many come.
        for _ in 0..COMMANDS_PER_CYCLE {
            match commands.try_recv() {
                Ok(Command::Call(call)) => {
                    // A bug in one command must not take the archive's state owner down with
                    // it: the command's caller gets no answer (its channel closes: "stopped"),
                    // the archive reports the bug in `health`, and the next command is served.
                    let called =
                        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| call(state)));
                    if let Err(panic) = called {
                        state.command_failed(panic_message(panic.as_ref()));
                    }
                    work += 1;
                }
                Ok(Command::Room(make)) => {
                    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| make(state))) {
                        Ok(Some(room)) => rooms.push(room),
                        Ok(None) => {}
                        Err(panic) => state.command_failed(panic_message(panic.as_ref())),
                    }
                    work += 1;
                }
                Ok(Command::Shutdown) | Err(mpsc::TryRecvError::Disconnected) => return,
                Err(mpsc::TryRecvError::Empty) => break,
            }
        }
        let now = Instant::now();
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| state.finish_changes(now))) {
            Ok(done) => work += done,
            Err(panic) => state.command_failed(panic_message(panic.as_ref())),
        }
        let mut failed = Vec::new();
        for (index, room) in rooms.iter_mut().enumerate() {
            let cycle =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| room.do_work(state, now)));
            match cycle {
                Ok(done) => work += done,
                Err(panic) => {
                    // A bug in a room ends that room (as a thread of its own would end), not
                    // the archive.
                    tracing::error!("{} stopped: {}", room.name(), panic_message(panic.as_ref()));
                    failed.push(index);
                }
            }
        }
        for index in failed.into_iter().rev() {
            rooms.remove(index);
        }
        rooms.retain(|room| !room.is_done());
        idle.idle(work);
    }
}

/// What a panic said, for the log.
pub(crate) fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|text| text.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "panic".into())
}

impl ArchiveState {
    pub(crate) fn new(parts: Parts) -> Self {
        let next_id = (parts.catalog.entries().len() as i64).max(1) << 20;
        Self {
            shared: parts.shared,
            catalog: parts.catalog,
            progress: HashMap::new(),
            agent_failure: None,
            failures: Vec::new(),
            events: EventBus::default(),
            activity: Activity::default(),
            subscriptions: BTreeMap::new(),
            replays: HashMap::new(),
            cursors: parts.cursors,
            changes: Vec::new(),
            next_id,
            recorder: parts.recorder,
            replayer: parts.replayer,
            deleter: Some(parts.deleter),
        }
    }

    pub(crate) fn config(&self) -> &crate::config::ArchiveConfig {
        &self.shared.config
    }

    pub(crate) fn metrics(&self) -> &crate::metrics::Metrics {
        &self.shared.metrics
    }

    fn to_recorder(&self, command: RecorderCommand) -> Result<()> {
        self.recorder
            .send(command)
            .map_err(|_| ArchiveError::NotRunning("recorder stopped".into()))
    }

    fn to_replayer(&self, command: ReplayerCommand) -> Result<()> {
        self.replayer
            .send(command)
            .map_err(|_| ArchiveError::NotRunning("replayer stopped".into()))
    }

    /// That `position` is a frame start of the recording between its start and `end`.
    fn check_position(
        &self,
        descriptor: &RecordingDescriptor,
        position: i64,
        end: i64,
    ) -> Result<()> {
        Ok(check_replay_position_on(
            &self.shared.config.io.storage,
            &self.shared.config.dir,
            descriptor,
            position,
            end,
        )?)
    }

    fn next_id(&mut self) -> i64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    // ---- what agents report -------------------------------------------------------------

    /// Take in what the recorder reports (in the order it happened).
    pub(crate) fn on_report(&mut self, report: Report) {
        match report {
            Report::SubscriptionAdded(info) => {
                self.subscriptions.insert(info.subscription_id, info);
            }
            Report::SubscriptionRemoved(subscription_id) => {
                self.subscriptions.remove(&subscription_id);
            }
            Report::NewRecording {
                descriptor,
                subscription_id,
                reply,
            } => {
                let _ = reply.send(self.add_recording(descriptor, subscription_id));
            }
            Report::ReserveExtension {
                recording_id,
                subscription_id,
                reply,
            } => {
                let _ = reply.send(self.reserve_extension(recording_id, subscription_id));
            }
            Report::ExtensionOpened {
                descriptor,
                position,
                reply,
            } => {
                let _ = reply.send(self.extension_opened(&descriptor, position));
            }
            Report::ReleaseExtension(recording_id) => {
                self.activity.active.remove(&recording_id);
            }
            Report::Stopped(stopped) => self.recording_stopped(stopped),
            Report::Failed(failure) => self.recording_failed(failure),
            Report::Answer(answer) => answer(),
            Report::Signal {
                signal,
                recording_id,
                subscription_id,
                position,
            } => self
                .events
                .signal(signal, recording_id, subscription_id, position),
        }
    }

    /// Note that a recording could not be written, and signal it.
    fn recording_failed(&mut self, failure: RecordingFailure) {
        tracing::error!("{failure}");
        self.events.send(RecordingEvent {
            signal: RecordingSignalKind::Failed,
            recording_id: failure.recording_id,
            subscription_id: failure.subscription_id,
            position: failure.position,
        });
        self.failures.push(failure);
    }

    /// An agent thread stopped: its recordings stop where they got to.
    /// A command panicked (a bug): reported by `health`; the agents go on.
    fn command_failed(&mut self, what: String) {
        let message = format!("the archive conductor: a command panicked: {what}");
        tracing::error!("{message}");
        self.agent_failure.get_or_insert(message);
    }

    pub(crate) fn agent_failed(&mut self, message: String) {
        tracing::error!("{message}");
        for progress in self.progress.values() {
            if progress.stop_position() < 0 {
                progress.stopped(progress.recorded());
            }
        }
        self.agent_failure.get_or_insert(message);
    }

    /// A new recording: in the catalog, active through `subscription_id`, its live positions
    /// visible, from now.
    fn add_recording(
        &mut self,
        descriptor: RecordingDescriptor,
        subscription_id: i64,
    ) -> Result<(RecordingDescriptor, Arc<RecordingProgress>)> {
        let descriptor = self.catalog.add(descriptor)?;
        let recording_id = descriptor.recording_id;
        self.activity.active.insert(recording_id, subscription_id);
        let progress = Arc::new(RecordingProgress::new(descriptor.start_position));
        self.progress.insert(recording_id, progress.clone());
        Ok((descriptor, progress))
    }

    /// A recording stopped (or could not start): its stop in the catalog (`None`: its end
    /// could not be saved, the next start recovers it), then its live positions, then it is no
    /// longer active; its failure, then the `Stop` signal (`signal`: it had started).
    fn recording_stopped(&mut self, stopped: RecordingStop) {
        let RecordingStop {
            recording_id,
            subscription_id,
            record,
            stop,
            failure,
            signal,
        } = stopped;
        if let Some(stopped) = record {
            if let Err(error) = self.catalog.update(&stopped) {
                tracing::error!(
                    "recording {recording_id}: could not record its stop at {stop}; the next start recovers it: {error}"
                );
            }
        }
        // After the catalog: a reader never sees it stopped without its stop position.
        if let Some(progress) = self.progress.get(&recording_id) {
            progress.stopped(stop);
        }
        self.activity.active.remove(&recording_id);
        if let Some(failure) = failure {
            self.recording_failed(failure);
        }
        if signal {
            self.events.signal(
                RecordingSignalKind::Stop,
                recording_id,
                subscription_id,
                stop,
            );
        }
    }

    /// Reserve a stopped recording for an extension through `subscription_id`: refused if it is
    /// active, busy or not valid. Returns its descriptor.
    fn reserve_extension(
        &mut self,
        recording_id: RecordingId,
        subscription_id: i64,
    ) -> Result<RecordingDescriptor> {
        if self.activity.active.contains_key(&recording_id) {
            return Err(ArchiveError::Active {
                recording_id,
                operation: "extend",
            });
        }
        if self.activity.busy.contains(&recording_id) {
            return Err(ArchiveError::Invalid(format!(
                "cannot extend recording {recording_id}: a truncate or purge is working on it"
            )));
        }
        let descriptor = self.catalog.get(recording_id)?.clone();
        crate::record::extend::check_extensible(&descriptor)?;
        self.activity.active.insert(recording_id, subscription_id);
        Ok(descriptor)
    }

    /// The files of a reserved extension are ready: the recording is active again in the
    /// catalog. On an error it is released.
    fn extension_opened(
        &mut self,
        descriptor: &RecordingDescriptor,
        position: i64,
    ) -> Result<Arc<RecordingProgress>> {
        let recording_id = descriptor.recording_id;
        if let Err(error) = self.catalog.update(descriptor) {
            self.activity.active.remove(&recording_id);
            return Err(error.into());
        }
        let progress = Arc::new(RecordingProgress::new(position));
        self.progress.insert(recording_id, progress.clone());
        Ok(progress)
    }

    /// Let the deleter finish what it has and end (at shutdown, while this still takes in its
    /// reports: each deletion's recording released and its `Delete` signalled).
    pub(crate) fn close_deleter(&mut self) {
        self.deleter = None;
    }

    /// The deleter is done with a truncate's or purge's files.
    fn deleted(&mut self, recording_id: RecordingId) {
        self.activity.busy.remove(&recording_id);
        self.events
            .signal(RecordingSignalKind::Delete, recording_id, -1, -1);
    }

    // ---- what the handle and the control server ask ---------------------------------------

    pub(crate) fn health(&self) -> Result<()> {
        match &self.agent_failure {
            Some(message) => Err(ArchiveError::NotRunning(message.clone())),
            None => Ok(()),
        }
    }

    pub(crate) fn recording_failures(&self) -> &[RecordingFailure] {
        &self.failures
    }

    pub(crate) fn subscribe_events(&mut self) -> Receiver<RecordingEvent> {
        self.events.subscribe()
    }

    pub(crate) fn begin_recording(
        &mut self,
        channel: &str,
        stream_id: i32,
        source: SourceLocation,
        auto_stop: bool,
    ) -> Result<PendingRecording> {
        self.add_recording_subscription(channel, stream_id, source, auto_stop, None)
    }

    fn add_recording_subscription(
        &mut self,
        channel: &str,
        stream_id: i32,
        source: SourceLocation,
        auto_stop: bool,
        extend: Option<RecordingId>,
    ) -> Result<PendingRecording> {
        let subscription_id = self.next_id();
        let (reply, wait) = mpsc::channel();
        self.to_recorder(RecorderCommand::Start {
            subscription_id,
            channel: channel.to_string(),
            stream_id,
            source,
            auto_stop,
            extend,
            reply,
        })?;
        Ok(Begun::new(subscription_id, Pending::new(wait, "recorder")))
    }

    pub(crate) fn begin_extend(
        &mut self,
        recording_id: RecordingId,
        channel: &str,
        stream_id: i32,
        source: SourceLocation,
        auto_stop: bool,
    ) -> Result<PendingRecording> {
        let descriptor = self.catalog.get(recording_id)?;
        if descriptor.stream_id != stream_id {
            return Err(ArchiveError::Invalid(format!(
                "cannot extend recording {recording_id} with stream id {stream_id}: its stream id is {}",
                descriptor.stream_id
            )));
        }
        if descriptor.is_active() || self.recording_subscription_of(recording_id).is_some() {
            return Err(ArchiveError::Active {
                recording_id,
                operation: "extend",
            });
        }
        self.add_recording_subscription(channel, stream_id, source, auto_stop, Some(recording_id))
    }

    pub(crate) fn recording_subscription_of(&self, recording_id: RecordingId) -> Option<i64> {
        self.activity.active.get(&recording_id).copied()
    }

    pub(crate) fn begin_stop_by_identity(
        &mut self,
        recording_id: RecordingId,
    ) -> Result<Option<(i64, Pending<Vec<RecordingId>>)>> {
        self.catalog.get(recording_id)?;
        match self.recording_subscription_of(recording_id) {
            Some(subscription_id) => self
                .begin_stop_recording(subscription_id)
                .map(|pending| Some((subscription_id, pending))),
            None => Ok(None),
        }
    }

    pub(crate) fn begin_stop_recording(
        &mut self,
        subscription_id: i64,
    ) -> Result<Pending<Vec<RecordingId>>> {
        let (reply, wait) = mpsc::channel();
        self.to_recorder(RecorderCommand::Stop {
            subscription_id,
            reply,
        })?;
        Ok(Pending::new(wait, "recorder"))
    }

    pub(crate) fn recording_subscriptions(&self) -> Vec<RecordingSubscriptionInfo> {
        self.subscriptions.values().cloned().collect()
    }

    fn info(&self, descriptor: &RecordingDescriptor) -> RecordingInfo {
        match self.progress.get(&descriptor.recording_id) {
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

    pub(crate) fn recordings(&self) -> Vec<RecordingInfo> {
        self.catalog
            .recordings()
            .map(|descriptor| self.info(descriptor))
            .collect()
    }

    pub(crate) fn recording(&self, recording_id: RecordingId) -> Result<RecordingInfo> {
        let descriptor = self.catalog.get(recording_id)?;
        Ok(self.info(descriptor))
    }

    /// The recordings recorded since launch with their stream ids and live positions (for the
    /// metrics), in id order.
    pub(crate) fn progress_samples(&self) -> Vec<(RecordingId, i32, Arc<RecordingProgress>)> {
        let mut samples: Vec<(RecordingId, i32, Arc<RecordingProgress>)> = self
            .progress
            .iter()
            .filter_map(|(id, progress)| {
                let stream_id = self.catalog.get(*id).ok()?.stream_id;
                Some((*id, stream_id, progress.clone()))
            })
            .collect();
        samples.sort_by_key(|(id, _, _)| *id);
        samples
    }

    pub(crate) fn position_at_time_from(
        &self,
        recording_id: RecordingId,
        timestamp_ns: i64,
        source: tern_store::message_time::TimeSource,
    ) -> Result<i64> {
        let info = self.recording(recording_id)?;
        Ok(tern_store::time_seek::position_at_message_time_on(
            &self.shared.config.io.storage,
            &self.shared.config.dir,
            &info.descriptor,
            info.recorded_position,
            timestamp_ns,
            source,
        )?)
    }

    pub(crate) fn find_recording(&self, stream_id: i32, session_id: i32) -> Option<RecordingInfo> {
        self.catalog
            .recordings()
            .filter(|d| d.stream_id == stream_id && d.session_id == session_id)
            .last()
            .map(|descriptor| self.info(descriptor))
    }

    /// Forget the oldest finished replays past [`FINISHED_REPLAYS_KEPT`]: their statuses stay
    /// readable for a while (a client reads how its replay ended), the table does not grow
    /// without bound in an archive that runs for months.
    fn forget_finished_replays(&mut self) {
        let mut finished: Vec<ReplayId> = self
            .replays
            .iter()
            .filter(|(_, status)| status.is_finished())
            .map(|(id, _)| *id)
            .collect();
        if finished.len() <= FINISHED_REPLAYS_KEPT {
            return;
        }
        // Replay ids grow with their sequence (the high 32 bits): the lowest are the oldest.
        finished.sort_unstable();
        for id in &finished[..finished.len() - FINISHED_REPLAYS_KEPT] {
            self.replays.remove(id);
        }
    }

    pub(crate) fn begin_replay(&mut self, request: &ReplayRequest) -> Result<PendingReplay> {
        self.forget_finished_replays();
        let max = self.shared.config.max_concurrent_replays;
        if self.running_replays(None).len() >= max {
            return Err(ArchiveError::MaxReplays(max));
        }
        let info = self.recording(request.recording_id)?;
        if self
            .changes
            .iter()
            .any(|change| change.descriptor.recording_id == request.recording_id)
        {
            return Err(ArchiveError::Invalid(format!(
                "cannot replay recording {}: a truncate is working on it",
                request.recording_id
            )));
        }
        let descriptor = info.descriptor.clone();
        let key = match request.key {
            Some(filter) if filter.kind == KeyKind::Session => {
                crate::replay::key_search::check_session(
                    &descriptor,
                    filter.value,
                    self.catalog.recordings(),
                )?;
                None
            }
            Some(filter) => {
                crate::replay::key_search::check_filter(&descriptor, &filter)?;
                Some(filter)
            }
            None => None,
        };
        tern_store::time_seek::check_time_source(&descriptor, request.time_source)?;
        let end = info.recorded_position;
        let position = request.position.unwrap_or(descriptor.start_position);
        self.check_position(&descriptor, position, end)?;
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
        let session_id = new_session_id(sequence);
        let replay_id = ReplayId::new((sequence << 32) | i64::from(session_id as u32));
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
            progress: self.progress.get(&request.recording_id).cloned(),
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
        self.replays.insert(replay_id, status);
        let started = self.to_replayer(ReplayerCommand::Start {
            plan: Box::new(plan),
            reply,
        });
        if let Err(error) = started {
            self.replays.remove(&replay_id);
            return Err(error);
        }
        Ok(Begun::new(replay_id, Pending::new(wait, "replayer")))
    }

    /// Whether a begun replay has started (`None`: not answered yet); a refused one is
    /// forgotten.
    pub(crate) fn poll_replay_start(
        &mut self,
        pending: &PendingReplay,
    ) -> Option<Result<ReplayId>> {
        let outcome = pending.poll()?;
        Some(self.end_replay_start(pending.id(), outcome))
    }

    /// Take in the outcome of a begun replay's start: a refused one is forgotten.
    pub(crate) fn end_replay_start(
        &mut self,
        replay_id: ReplayId,
        outcome: Result<ReplayId>,
    ) -> Result<ReplayId> {
        if outcome.is_err() {
            self.replays.remove(&replay_id);
        }
        outcome
    }

    /// Replays not yet ended, of one recording or of all.
    fn running_replays(
        &self,
        recording_id: Option<RecordingId>,
    ) -> Vec<(ReplayId, Arc<ReplayStatus>)> {
        self.replays
            .iter()
            .filter(|(_, status)| !status.is_finished())
            .filter(|(_, status)| recording_id.is_none_or(|id| status.recording_id() == id))
            .map(|(id, status)| (*id, status.clone()))
            .collect()
    }

    /// Mark a recording busy for a truncate or purge: refused if it is active or busy.
    fn begin_change(&mut self, recording_id: RecordingId, operation: &'static str) -> Result<()> {
        if self.activity.active.contains_key(&recording_id) {
            return Err(ArchiveError::Active {
                recording_id,
                operation,
            });
        }
        if !self.activity.busy.insert(recording_id) {
            return Err(ArchiveError::Invalid(format!(
                "cannot {operation} recording {recording_id}: another truncate or purge is working on it"
            )));
        }
        Ok(())
    }

    /// Begin a truncate: the replays of the recording are told to stop, and the cut is made
    /// once they have (at once if none runs). The answer is the number of segment files to
    /// delete, once the record is changed (`wait`: once they are deleted too).
    pub(crate) fn begin_truncate(
        &mut self,
        recording_id: RecordingId,
        position: i64,
        wait: bool,
    ) -> Result<Pending<usize>> {
        self.begin_change(recording_id, "truncate")?;
        let planned = self
            .catalog
            .get(recording_id)
            .cloned()
            .map_err(Into::into)
            .and_then(|descriptor| {
                crate::operations::plan_truncate(
                    &self.shared.config.io.storage,
                    &self.shared.config.dir,
                    &descriptor,
                    position,
                )
                .map(|truncated| (descriptor, truncated))
            });
        let (descriptor, truncated) = match planned {
            Ok(planned) => planned,
            Err(error) => {
                self.activity.busy.remove(&recording_id);
                return Err(error);
            }
        };
        let replays = self.running_replays(Some(recording_id));
        for (replay_id, _) in &replays {
            let _ = self.to_replayer(ReplayerCommand::Stop {
                replay_id: *replay_id,
            });
        }
        let (reply, answer) = mpsc::channel();
        self.changes.push(Change {
            descriptor,
            truncated,
            position,
            replays,
            deadline: Instant::now() + CHANGE_TIMEOUT,
            wait,
            reply,
        });
        self.finish_changes(Instant::now());
        Ok(Pending::unbounded(answer, "archive conductor"))
    }

    /// Make the truncates whose replays have stopped.
    fn finish_changes(&mut self, now: Instant) -> usize {
        let mut work = 0;
        let mut index = 0;
        while index < self.changes.len() {
            let change = &self.changes[index];
            let stuck = change
                .replays
                .iter()
                .find(|(_, status)| !status.is_finished())
                .map(|(replay_id, _)| *replay_id);
            match stuck {
                Some(replay_id) if now > change.deadline => {
                    let change = self.changes.remove(index);
                    self.activity.busy.remove(&change.descriptor.recording_id);
                    let _ = change.reply.send(Err(ArchiveError::NotRunning(format!(
                        "replay {replay_id} did not stop"
                    ))));
                    work += 1;
                }
                Some(_) => index += 1,
                None => {
                    let change = self.changes.remove(index);
                    self.truncate(change);
                    work += 1;
                }
            }
        }
        work
    }

    fn truncate(&mut self, change: Change) {
        let recording_id = change.descriptor.recording_id;
        let position = change.position;
        let dir = self.shared.config.dir.clone();
        let storage = self.shared.config.io.storage.clone();
        let cut = crate::operations::plan_cut(&storage, &dir, &change.descriptor, position)
            .and_then(|plan| {
                self.catalog.update(&change.truncated)?;
                self.progress.remove(&recording_id);
                crate::operations::cut_in_place(
                    &storage,
                    &dir,
                    &change.descriptor,
                    position,
                    &plan,
                )?;
                Ok(plan)
            });
        match cut {
            Ok(plan) => {
                tracing::info!(
                    "recording {recording_id} truncated at {position} (was {}): {} segment files to delete",
                    change.descriptor.stop_position,
                    plan.segments
                );
                self.delete_later(
                    recording_id,
                    "truncate",
                    plan.doomed,
                    plan.segments,
                    change.wait,
                    change.reply,
                );
            }
            Err(error) => {
                self.activity.busy.remove(&recording_id);
                let _ = change.reply.send(Err(error));
            }
        }
    }

    /// Hand `files` of the busy recording to the deleter (or, if it is gone, delete them here);
    /// the recording is released and `Delete` signalled when they are gone. The answer
    /// (`segments`) goes now, or then if the caller waits.
    fn delete_later(
        &mut self,
        recording_id: RecordingId,
        operation: &'static str,
        files: Vec<String>,
        segments: usize,
        wait: bool,
        reply: Sender<Result<usize>>,
    ) {
        let (done, reply) = if wait {
            (Some((reply, segments)), None)
        } else {
            (None, Some(reply))
        };
        let job = DeleteJob {
            recording_id,
            operation,
            files,
            done,
        };
        let unsent = match &self.deleter {
            Some(deleter) => deleter.send(job).err().map(|mpsc::SendError(job)| job),
            None => Some(job),
        };
        if let Some(job) = unsent {
            if let Err(error) = crate::operations::delete_named(
                &self.shared.config.io.storage,
                &self.shared.config.dir,
                &job.files,
            ) {
                tracing::error!(
                    "recording {recording_id} {operation}: files left, deleted at the next launch: {error}"
                );
            }
            self.deleted(recording_id);
            if let Some((reply, count)) = job.done {
                let _ = reply.send(Ok(count));
            }
        }
        if let Some(reply) = reply {
            let _ = reply.send(Ok(segments));
        }
    }

    /// Purge a stopped recording no replay reads; the answer as for a truncate.
    pub(crate) fn begin_purge(
        &mut self,
        recording_id: RecordingId,
        wait: bool,
    ) -> Result<Pending<usize>> {
        self.begin_change(recording_id, "purge")?;
        let purged = self.purge(recording_id);
        let (reply, answer) = mpsc::channel();
        match purged {
            Ok((files, segments)) => {
                self.delete_later(recording_id, "purge", files, segments, wait, reply);
                Ok(Pending::unbounded(answer, "archive conductor"))
            }
            Err(error) => {
                self.activity.busy.remove(&recording_id);
                Err(error)
            }
        }
    }

    fn purge(&mut self, recording_id: RecordingId) -> Result<(Vec<String>, usize)> {
        let descriptor = self.catalog.get(recording_id)?.clone();
        let deleted_record = crate::operations::plan_purge(&descriptor)?;
        if !self.running_replays(Some(recording_id)).is_empty() {
            return Err(ArchiveError::ReplayRunning { recording_id });
        }
        let (files, segments) = crate::operations::plan_delete(
            &self.shared.config.io.storage,
            &self.shared.config.dir,
            recording_id,
        )?;
        self.catalog.update(&deleted_record)?;
        self.progress.remove(&recording_id);
        tracing::info!("recording {recording_id} purged: {segments} segment files to delete");
        Ok((files, segments))
    }

    pub(crate) fn begin_seek(&mut self, replay_id: ReplayId, position: i64) -> Result<PendingSeek> {
        self.running_replay(replay_id)?;
        let status = self.replay_status(replay_id)?;
        let info = self.recording(status.recording_id())?;
        self.check_position(&info.descriptor, position, info.recorded_position)?;
        let sequence = self.next_id();
        let session_id = new_session_id(sequence);
        let (reply, wait) = mpsc::channel();
        self.to_replayer(ReplayerCommand::Seek {
            replay_id,
            position,
            session_id,
            reply,
        })?;
        Ok(Begun::new(session_id, Pending::new(wait, "replayer")))
    }

    pub(crate) fn begin_seek_to_time(
        &mut self,
        replay_id: ReplayId,
        timestamp_ns: i64,
        source: tern_store::message_time::TimeSource,
    ) -> Result<PendingSeek> {
        let recording_id = self.replay_status(replay_id)?.recording_id();
        let position = self.position_at_time_from(recording_id, timestamp_ns, source)?;
        self.begin_seek(replay_id, position)
    }

    pub(crate) fn replay_status(&self, replay_id: ReplayId) -> Result<Arc<ReplayStatus>> {
        self.replays
            .get(&replay_id)
            .cloned()
            .ok_or(ArchiveError::UnknownReplay(replay_id))
    }

    pub(crate) fn pause_replay(&self, replay_id: ReplayId) -> Result<()> {
        self.running_replay(replay_id)?;
        self.to_replayer(ReplayerCommand::Pause { replay_id })
    }

    pub(crate) fn resume_replay(&self, replay_id: ReplayId) -> Result<()> {
        self.running_replay(replay_id)?;
        self.to_replayer(ReplayerCommand::Resume { replay_id })
    }

    fn running_replay(&self, replay_id: ReplayId) -> Result<()> {
        let status = self.replay_status(replay_id)?;
        if status.is_finished() {
            return Err(ArchiveError::Invalid(format!(
                "replay {replay_id} has ended ({:?})",
                status.state()
            )));
        }
        Ok(())
    }

    pub(crate) fn stop_replay(&self, replay_id: ReplayId) -> Result<()> {
        self.replay_status(replay_id)?;
        self.to_replayer(ReplayerCommand::Stop { replay_id })
    }

    pub(crate) fn stop_all_replays(&self, recording_id: Option<RecordingId>) -> usize {
        self.running_replays(recording_id)
            .into_iter()
            .filter(|(replay_id, _)| self.stop_replay(*replay_id).is_ok())
            .count()
    }

    pub(crate) fn set_cursor(
        &mut self,
        name: &str,
        recording_id: RecordingId,
        position: i64,
    ) -> Result<Cursor> {
        tern_store::cursors::check_cursor_name(name)?;
        let info = self.recording(recording_id)?;
        // Up to what is durable: a cursor must not outlive the data it points at in a crash.
        self.check_position(&info.descriptor, position, info.durable_position)?;
        let cursor = Cursor {
            name: name.to_string(),
            recording_id,
            position,
            updated_ns: tern_store::epoch_nanos(),
        };
        self.cursors.set(cursor.clone())?;
        Ok(cursor)
    }

    pub(crate) fn cursor(&self, name: &str) -> Result<Cursor> {
        self.cursors
            .get(name)
            .cloned()
            .ok_or_else(|| tern_store::StoreError::UnknownCursor(name.to_string()).into())
    }

    pub(crate) fn delete_cursor(&mut self, name: &str) -> Result<bool> {
        Ok(self.cursors.delete(name)?)
    }

    pub(crate) fn cursors(&self, prefix: &str) -> Vec<Cursor> {
        self.cursors.list(prefix)
    }

    pub(crate) fn recording_id_limit(&self) -> i64 {
        self.catalog.entries().len() as i64
    }
}

/// A replay image's session id: odd, and unlike those of earlier runs.
fn new_session_id(sequence: i64) -> i32 {
    (tern_store::epoch_nanos() as i32 ^ (sequence as i32).wrapping_mul(0x9E37_79B9u32 as i32)) | 1
}

#[cfg(test)]
mod tests {
    //! The conductor's state without threads or a media driver: the agents' queues are held by
    //! the test, which plays the replayer and the deleter.
    use super::*;
    use crate::config::ArchiveConfig;
    use crate::replay::ReplayState;
    use tern_store::descriptor::NULL_POSITION;

    struct Fixture {
        state: ArchiveState,
        replayer: Receiver<ReplayerCommand>,
        deleter: Receiver<DeleteJob>,
        _recorder: Receiver<RecorderCommand>,
        recording_id: RecordingId,
        /// Frame starts of the recording.
        frames: Vec<i64>,
        _dir: Option<tempfile::TempDir>,
    }

    /// An archive state over the archive directory `dir` on `io` with its `catalog`; the
    /// agents' queues are the fixture's.
    fn state_on(io: tern_store::Io, dir: &std::path::Path, catalog: Catalog) -> Fixture {
        let mut config = ArchiveConfig::new(dir, "/no-aeron-dir");
        let cursors = CursorStore::open_on(&io.storage, dir).expect("cursors");
        config.io = io;
        let shared = Arc::new(Shared {
            config,
            metrics: crate::metrics::Metrics::default(),
        });
        let (recorder, recorder_receiver) = mpsc::channel();
        let (replayer, replayer_receiver) = mpsc::channel();
        let (deleter, deleter_receiver) = mpsc::channel();
        let state = ArchiveState::new(Parts {
            cursors,
            shared,
            catalog,
            recorder,
            replayer,
            deleter,
        });
        Fixture {
            state,
            replayer: replayer_receiver,
            deleter: deleter_receiver,
            _recorder: recorder_receiver,
            recording_id: RecordingId::new(0),
            frames: Vec::new(),
            _dir: None,
        }
    }

    /// An archive state over a directory holding one stopped recording of 300 messages across
    /// three segment files.
    fn fixture() -> Fixture {
        let dir = tempfile::tempdir().expect("temp dir");
        let io = tern_store::Io::default();
        let written = crate::testing::stopped_recording(&io, dir.path(), 300);
        let mut fixture = state_on(io, dir.path(), written.catalog);
        fixture.recording_id = written.descriptor.recording_id;
        fixture.frames = written.frames;
        fixture._dir = Some(dir);
        fixture
    }

    #[test]
    fn finished_replays_are_forgotten_past_the_most_recent_ones_and_running_ones_never() {
        let mut fixture = fixture();
        let running = Arc::new(ReplayStatus::new_at(RecordingId::new(0), 0, 1));
        fixture
            .state
            .replays
            // Older than every finished one: kept because it runs, not because it is recent.
            .insert(ReplayId::new(1), running);
        for sequence in 0..(FINISHED_REPLAYS_KEPT as i64 + 10) {
            let status = Arc::new(ReplayStatus::new_at(RecordingId::new(0), 0, 3));
            status.set_state(ReplayState::Done);
            fixture
                .state
                .replays
                .insert(ReplayId::new(sequence << 32), status);
        }
        fixture.state.forget_finished_replays();
        assert_eq!(fixture.state.replays.len(), FINISHED_REPLAYS_KEPT + 1);
        assert!(
            fixture.state.replays.contains_key(&ReplayId::new(1)),
            "the running one stays"
        );
        assert!(
            !fixture.state.replays.contains_key(&ReplayId::new(0)),
            "the oldest finished goes"
        );
        assert!(
            fixture.state.replays.contains_key(&ReplayId::new(10 << 32)),
            "the 1024 most recent stay"
        );
        assert!(!fixture.state.replays.contains_key(&ReplayId::new(9 << 32)));
    }

    /// The conductor's loop on its own thread: a command that panics (a bug) gets no answer and
    /// is reported by `health`, and the next command is served.
    #[test]
    fn a_command_that_panics_is_reported_and_the_conductor_serves_on() {
        let fixture = fixture();
        let (mailbox, commands) = Mailbox::new();
        let state = fixture.state;
        let thread = std::thread::spawn(move || {
            let mut state = state;
            // The loop as `run` has it, on a state the test built.
            loop_on(&mut state, commands);
        });
        mailbox.set_thread(thread.thread().clone());
        let error = mailbox
            .ask(|_| -> i64 { panic!("a bug") })
            .expect_err("no answer");
        assert!(error.to_string().contains("stopped"), "{error}");
        let health = mailbox.ask(|state| state.health()).expect("served");
        let health = health.expect_err("the bug is reported");
        assert!(
            health.to_string().contains("a command panicked: a bug"),
            "{health}"
        );
        assert_eq!(
            mailbox
                .ask(|state| state.recording_id_limit())
                .expect("served"),
            1
        );
        mailbox.send(Command::Shutdown).expect("sent");
        thread.join().expect("the conductor ends");
    }

    /// The running archive's truncate and purge (the conductor's part, then the deleter's) on a
    /// disk crashed after each of their syncs: what a launch finds is the old recording or the
    /// new one, whole (the checks: `operations::tests::crashes`).
    #[test]
    fn a_crash_after_any_sync_of_a_running_truncate_or_purge_is_recovered_at_launch() {
        use crate::operations::tests::crashes::{
            purges_survive_a_crash_after_any_sync, truncates_survive_a_crash_after_any_sync, DIR,
        };
        let running = |storage: &Arc<dyn tern_store::Storage>| {
            let catalog =
                Catalog::open_on(storage, std::path::Path::new(DIR), true).expect("catalog");
            state_on(
                tern_store::Io::inline(storage.clone()),
                std::path::Path::new(DIR),
                catalog,
            )
        };
        let deleter_part = |fixture: &Fixture, storage: &Arc<dyn tern_store::Storage>| {
            let job = fixture
                .deleter
                .try_recv()
                .expect("files handed to the deleter");
            crate::operations::delete_named(storage, std::path::Path::new(DIR), &job.files)
                .expect("deleted");
        };
        truncates_survive_a_crash_after_any_sync(|storage, cut| {
            let mut fixture = running(storage);
            let pending = fixture
                .state
                .begin_truncate(RecordingId::new(0), cut, false)
                .expect("begun");
            pending
                .poll()
                .expect("no replay: at once")
                .expect("truncated");
            deleter_part(&fixture, storage);
        });
        purges_survive_a_crash_after_any_sync(|storage| {
            let mut fixture = running(storage);
            let pending = fixture
                .state
                .begin_purge(RecordingId::new(0), false)
                .expect("begun");
            pending.poll().expect("at once").expect("purged");
            deleter_part(&fixture, storage);
        });
    }

    /// A replay of the recording the replayer has taken (connecting, not finished).
    fn running_replay(fixture: &mut Fixture) -> (ReplayId, Arc<ReplayStatus>) {
        let status = Arc::new(ReplayStatus::new_at(fixture.recording_id, 0, 7));
        let replay_id = ReplayId::new(0x1234);
        fixture.state.replays.insert(replay_id, status.clone());
        (replay_id, status)
    }

    fn replay_request(recording_id: RecordingId) -> ReplayRequest {
        ReplayRequest {
            recording_id,
            channel: "aeron:ipc".into(),
            stream_id: 2,
            ..ReplayRequest::default()
        }
    }

    #[test]
    fn a_truncate_waits_for_the_replays_of_its_recording_while_the_state_serves_the_rest() {
        let mut fixture = fixture();
        let recording_id = fixture.recording_id;
        let events = fixture.state.subscribe_events();
        let (replay_id, status) = running_replay(&mut fixture);
        let position = fixture.frames[100];
        let old_stop = fixture
            .state
            .recording(recording_id)
            .expect("known")
            .recorded_position;

        let pending = fixture
            .state
            .begin_truncate(recording_id, position, false)
            .expect("begun");
        // The replay was told to stop; the truncate waits for it, answering nothing yet.
        assert!(matches!(
            fixture.replayer.try_recv(),
            Ok(ReplayerCommand::Stop { replay_id: told }) if told == replay_id
        ));
        assert!(pending.poll().is_none());
        assert_eq!(fixture.state.finish_changes(Instant::now()), 0);
        assert!(pending.poll().is_none());
        // Meanwhile the state answers, refuses a new replay of the recording and a second
        // change of it, and replays other recordings' requests as usual.
        let info = fixture.state.recording(recording_id).expect("listed");
        assert_eq!(info.recorded_position, old_stop);
        let refused = fixture
            .state
            .begin_replay(&replay_request(recording_id))
            .expect_err("refused while truncating");
        assert!(
            refused.to_string().contains("a truncate is working on it"),
            "{refused}"
        );
        let busy = fixture
            .state
            .begin_purge(recording_id, false)
            .expect_err("busy");
        assert!(
            busy.to_string().contains("another truncate or purge"),
            "{busy}"
        );

        // The replayer lets go: the truncate is made at the next duty cycle.
        status.set_state(ReplayState::Stopped);
        assert_eq!(fixture.state.finish_changes(Instant::now()), 1);
        let segments = pending.poll().expect("answered").expect("truncated");
        assert_eq!(segments, 2, "the second and third segment files go");
        let info = fixture.state.recording(recording_id).expect("listed");
        assert_eq!(info.descriptor.stop_position, position);
        // The deleter gets the files; the recording stays busy until it is done with them.
        let job = fixture
            .deleter
            .try_recv()
            .expect("files handed to the deleter");
        assert_eq!(job.recording_id, recording_id);
        assert!(
            job.files.iter().any(|name| name.ends_with(".rec")),
            "{:?}",
            job.files
        );
        assert!(fixture
            .state
            .begin_truncate(recording_id, 0, false)
            .is_err());
        crate::operations::delete_named(
            &fixture.state.config().io.storage,
            &fixture.state.config().dir,
            &job.files,
        )
        .expect("deleted");
        fixture.state.deleted(recording_id);
        let signal = events.try_recv().expect("Delete signalled");
        assert_eq!(signal.signal, RecordingSignalKind::Delete);
        assert_eq!(signal.recording_id, Some(recording_id));
        let again = fixture
            .state
            .begin_truncate(recording_id, fixture.frames[10], false)
            .expect("released");
        assert_eq!(again.poll().expect("no replay: at once").expect("cut"), 0);
    }

    #[test]
    fn a_truncate_whose_replay_never_stops_fails_after_its_timeout_and_changes_nothing() {
        let mut fixture = fixture();
        let recording_id = fixture.recording_id;
        let (replay_id, _status) = running_replay(&mut fixture);
        let stop = fixture
            .state
            .recording(recording_id)
            .expect("known")
            .descriptor
            .stop_position;
        let pending = fixture
            .state
            .begin_truncate(recording_id, fixture.frames[5], false)
            .expect("begun");
        let later = Instant::now() + CHANGE_TIMEOUT + Duration::from_secs(1);
        assert_eq!(fixture.state.finish_changes(later), 1);
        let error = pending.poll().expect("answered").expect_err("failed");
        assert_eq!(
            error.to_string(),
            format!("the archive is not running: replay {replay_id} did not stop")
        );
        let descriptor = fixture
            .state
            .recording(recording_id)
            .expect("known")
            .descriptor;
        assert_eq!(descriptor.stop_position, stop);
        assert_ne!(descriptor.stop_position, NULL_POSITION);
        assert!(fixture.deleter.try_recv().is_err(), "nothing to delete");
        // Released: the next change of the recording is taken (and waits for the replay again).
        assert!(fixture
            .state
            .begin_truncate(recording_id, fixture.frames[5], false)
            .is_ok());
    }

    #[test]
    fn the_mailbox_refuses_to_wait_on_its_own_thread_and_says_when_the_conductor_is_gone() {
        let (mailbox, commands) = Mailbox::new();
        mailbox.set_thread(std::thread::current());
        let error = mailbox.ask(|_| ()).expect_err("would wait for itself");
        assert!(
            error.to_string().contains("cannot wait for itself"),
            "{error}"
        );
        drop(commands);
        let (other, commands) = Mailbox::new();
        drop(commands);
        let error = other.ask(|_| ()).expect_err("gone");
        assert!(error.to_string().contains("conductor stopped"), "{error}");
    }
}
