//! The recorder agent: one thread that owns the recording subscriptions and writes every image
//! of them to its own recording.

use super::session::sync_time_index_with;
use super::{
    RecorderCommand, RecordingSession, RecordingStop, Report, Reporter, RECORDING_POSITION_TYPE_ID,
};
use crate::error::{ArchiveError, Result};
use crate::types::{RecordingFailure, RecordingSubscriptionInfo, Shared, SourceLocation};
use std::collections::{HashMap, HashSet};
use std::sync::mpsc::{Receiver, SyncSender};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tern_store::descriptor::{RecordState, RecordingDescriptor, NULL_POSITION};
use tern_store::indexer::IndexJob;
use tern_store::segment_writer::{SegmentGeometry, SegmentWriter};
use tern_store::time_index::TimeIndexWriter;
use tern_store::RecordingId;
use tern_transport::{
    BackoffIdle, BlockSource, Client, Idle, ImageSubscription, PositionCounter, RecordingImage,
    Transport,
};

/// How long a spied publication may stay unconnected before the recorder says why: long enough
/// for a network subscriber to connect.
const SPY_CONNECT_GRACE: Duration = Duration::from_secs(3);

/// Bytes dropped per cycle from an image whose recording failed.
const DISCARD_LIMIT: usize = 4 << 20;
/// Bytes of a catalog record for its three strings (1024 less the fixed fields and the three
/// length prefixes), and what is kept for the source identity (an address, or `aeron:ipc`).
const MAX_CATALOG_STRINGS: usize = tern_store::descriptor::RECORD_LENGTH - 80 - 6;
const MAX_SOURCE_IDENTITY: usize = 128;

/// The images of a transport's subscriptions.
type Img<T> = <<T as Transport>::Subscription as ImageSubscription>::Image;

/// A recording session opened for an image, or why not with the recording id concerned (`None`:
/// it failed before the catalog gave it one).
type Opened<T> = std::result::Result<
    RecordingSession<Img<T>, <T as Transport>::Counter>,
    (Option<RecordingId>, ArchiveError),
>;

struct RecordingSubscription<T: Transport> {
    id: i64,
    original_channel: String,
    stripped_channel: String,
    subscription: T::Subscription,
    /// Recording sessions by image correlation id.
    sessions: HashMap<i64, RecordingSession<Img<T>, T::Counter>>,
    /// Images whose recording ended but which the subscription still lists (lingering): never
    /// recorded twice.
    finished: HashSet<i64>,
    /// Images whose recording failed (a full disk, say): read and dropped, so their publishers
    /// are not held back by a subscriber that no longer moves.
    discarding: HashMap<i64, Img<T>>,
    /// The channel actually subscribed to (with `aeron-spy:` for a local UDP recording).
    subscribed_channel: String,
    stream_id: i32,
    /// Removed when the recording of one of its images stops because the image ended.
    auto_stop: bool,
    /// The stopped recording its images may extend (none: each image is a new recording).
    extend: Option<RecordingId>,
}

impl<T: Transport> RecordingSubscription<T> {
    /// Whether its images are spy images (a local recording of a UDP channel).
    fn is_spy(&self) -> bool {
        self.subscribed_channel.starts_with("aeron-spy:")
    }
}

pub(crate) struct Recorder<T: Transport = Client> {
    shared: Arc<Shared>,
    /// Where what happens goes (the conductor).
    report: Reporter,
    client: T,
    commands: Receiver<RecorderCommand>,
    subscriptions: Vec<RecordingSubscription<T>>,
    /// Where finished segments' key notes go to be indexed.
    indexer: SyncSender<IndexJob>,
}

impl Recorder {
    pub(crate) fn new(
        shared: Arc<Shared>,
        report: Reporter,
        commands: Receiver<RecorderCommand>,
        indexer: SyncSender<IndexJob>,
    ) -> Result<Self> {
        let client =
            Client::connect_with_idle(&shared.config.aeron_dir, shared.config.client_idle_sleep)?;
        Ok(Self::on(client, shared, report, commands, indexer))
    }
}

impl<T: Transport> Recorder<T> {
    /// A recorder on `transport` (the real one: [`Recorder::new`]; a simulated one in tests).
    pub(crate) fn on(
        transport: T,
        shared: Arc<Shared>,
        report: Reporter,
        commands: Receiver<RecorderCommand>,
        indexer: SyncSender<IndexJob>,
    ) -> Self {
        Self {
            shared,
            report,
            client: transport,
            commands,
            subscriptions: Vec::new(),
            indexer,
        }
    }

    pub(crate) fn run(mut self) {
        let max_park = self.shared.config.recorder_idle_max;
        let mut idle = BackoffIdle::with(10, 20, Duration::from_micros(1).min(max_park), max_park);
        let mut next_image_scan = Instant::now();
        while let Some(work) = self.do_work(
            tern_store::epoch_nanos(),
            Instant::now(),
            &mut next_image_scan,
        ) {
            idle.idle(work);
        }
    }

    /// One duty cycle at `now` (capture times `timestamp_ns`): commands, then the images'
    /// frames, then new and ended images when an image event came or `next_image_scan` is due.
    /// `None` once told to shut down (every recording stopped).
    pub(crate) fn do_work(
        &mut self,
        timestamp_ns: i64,
        now: Instant,
        next_image_scan: &mut Instant,
    ) -> Option<usize> {
        let mut work = 0;
        loop {
            match self.commands.try_recv() {
                Ok(RecorderCommand::Shutdown)
                | Err(std::sync::mpsc::TryRecvError::Disconnected) => {
                    self.stop_all();
                    return None;
                }
                Ok(command) => {
                    self.on_command(command);
                    work += 1;
                }
                Err(std::sync::mpsc::TryRecvError::Empty) => break,
            }
        }
        work += self.record(timestamp_ns, now);
        // Drain every subscription's queue (no short-circuit): any event means look now.
        let mut events = false;
        for entry in &self.subscriptions {
            events |= !entry.subscription.take_image_events().is_empty();
        }
        // New images come as events; the scan every 5 ms catches ends (and any missed event).
        // Not on every idle turn: listing images costs the client conductor, in proportion.
        if events || now >= *next_image_scan {
            work += self.scan_images(now);
            *next_image_scan = now + Duration::from_millis(5);
        }
        Some(work)
    }

    fn on_command(&mut self, command: RecorderCommand) {
        match command {
            RecorderCommand::Start {
                subscription_id,
                channel,
                stream_id,
                source,
                auto_stop,
                extend,
                reply,
            } => {
                let result = self.start(subscription_id, channel, stream_id, source);
                if let Some(entry) = self.subscriptions.last_mut().filter(|_| result.is_ok()) {
                    entry.auto_stop = auto_stop;
                    entry.extend = extend;
                }
                // Through the conductor, after the reports before it: whoever reads the answer
                // finds its signals (a stopped recording's Stop) already sent.
                (self.report)(Report::Answer(Box::new(move || {
                    let _ = reply.send(result);
                })));
            }
            RecorderCommand::Stop {
                subscription_id,
                reply,
            } => {
                let result = match self
                    .subscriptions
                    .iter()
                    .position(|entry| entry.id == subscription_id)
                {
                    Some(index) => Ok(self.remove_subscription(index)),
                    None => Err(ArchiveError::UnknownSubscription(subscription_id)),
                };
                // Through the conductor, after the reports before it: whoever reads the answer
                // finds its signals (a stopped recording's Stop) already sent.
                (self.report)(Report::Answer(Box::new(move || {
                    let _ = reply.send(result);
                })));
            }
            RecorderCommand::Shutdown => {}
        }
    }

    fn start(
        &mut self,
        id: i64,
        channel: String,
        stream_id: i32,
        source: SourceLocation,
    ) -> Result<()> {
        let stripped = channel
            .strip_prefix("aeron-spy:")
            .unwrap_or(&channel)
            .to_string();
        let subscribe_to = if source == SourceLocation::Local && stripped.starts_with("aeron:udp") {
            format!("aeron-spy:{stripped}")
        } else {
            channel.clone()
        };
        if let Some(existing) = self
            .subscriptions
            .iter()
            .find(|entry| entry.subscribed_channel == subscribe_to && entry.stream_id == stream_id)
        {
            return Err(ArchiveError::DuplicateSubscription {
                channel: subscribe_to,
                stream_id,
                subscription_id: existing.id,
            });
        }
        let max = self.shared.config.max_concurrent_recordings;
        if self.subscriptions.len() >= max || self.active_count() >= max {
            return Err(ArchiveError::MaxRecordings(max));
        }
        // Both channel strings and the source identity must fit one catalog record.
        let needed = channel.len() + stripped.len() + MAX_SOURCE_IDENTITY;
        if needed > MAX_CATALOG_STRINGS {
            return Err(ArchiveError::Invalid(format!(
                "channel of {} bytes is too long to record: a catalog record holds {} bytes of channel",
                channel.len(),
                (MAX_CATALOG_STRINGS - MAX_SOURCE_IDENTITY) / 2
            )));
        }
        let subscription = self.client.add_subscription(&subscribe_to, stream_id)?;
        tracing::info!("recording subscription {id}: {subscribe_to} stream {stream_id}");
        let info = RecordingSubscriptionInfo {
            subscription_id: id,
            channel: channel.clone(),
            stream_id,
            source,
        };
        // Before the answer: whoever reads the answer and then lists the subscriptions sees it.
        (self.report)(Report::SubscriptionAdded(info));
        self.subscriptions.push(RecordingSubscription {
            id,
            original_channel: channel,
            stripped_channel: stripped,
            subscription,
            sessions: HashMap::new(),
            finished: HashSet::new(),
            discarding: HashMap::new(),
            subscribed_channel: subscribe_to,
            stream_id,
            auto_stop: false,
            extend: None,
        });
        Ok(())
    }

    fn record(&mut self, timestamp_ns: i64, now: Instant) -> usize {
        let mut work = 0;
        let shared = &self.shared;
        let mut auto_stopped = Vec::new();
        for (index, entry) in self.subscriptions.iter_mut().enumerate() {
            let mut failed = Vec::new();
            for (image_id, session) in entry.sessions.iter_mut() {
                match session.do_work(&shared.config, timestamp_ns, now) {
                    Ok(bytes) => work += bytes,
                    Err(error) => failed.push((*image_id, error)),
                }
            }
            for (image_id, error) in failed {
                if let Some(session) = entry.sessions.remove(&image_id) {
                    let image = session.finish(&self.report, Some(&error));
                    entry.finished.insert(image_id);
                    entry.discarding.insert(image_id, image);
                    if entry.auto_stop {
                        auto_stopped.push(index);
                    }
                }
            }
            for image in entry.discarding.values() {
                work += image.block_poll(|_, _| {}, DISCARD_LIMIT).unwrap_or(0);
            }
        }
        self.auto_stop(auto_stopped);
        work
    }

    /// Remove the auto-stop subscriptions at `indices` (ascending, maybe repeated): one of their
    /// recordings stopped.
    fn auto_stop(&mut self, mut indices: Vec<usize>) {
        indices.dedup();
        for index in indices.into_iter().rev() {
            tracing::info!(
                "recording subscription {} auto-stopped",
                self.subscriptions[index].id
            );
            self.remove_subscription(index);
        }
    }

    /// Start a recording for each new image; finish those whose image ended.
    fn scan_images(&mut self, now: Instant) -> usize {
        let mut work = 0;
        let shared = self.shared.clone();
        let report = self.report.clone();
        // Auto-stop subscriptions one of whose recordings ended (or was refused).
        let mut auto_stopped = Vec::new();
        for index in 0..self.subscriptions.len() {
            let images = self.subscriptions[index].subscription.images();
            let listed: HashSet<i64> = images
                .iter()
                .map(|image| image.info().correlation_id)
                .collect();
            for image in images {
                let image_id = image.info().correlation_id;
                let entry = &self.subscriptions[index];
                if entry.sessions.contains_key(&image_id)
                    || entry.finished.contains(&image_id)
                    || image.is_closed()
                    || image.is_end_of_stream()
                {
                    continue;
                }
                let session_id = image.info().session_id;
                let position = image.position();
                match self.open_image(index, image.clone(), now) {
                    Ok(session) => {
                        self.subscriptions[index].sessions.insert(image_id, session);
                        work += 1;
                    }
                    Err((recording_id, error)) => {
                        let entry = &mut self.subscriptions[index];
                        let failure = RecordingFailure {
                            recording_id,
                            subscription_id: entry.id,
                            session_id,
                            stream_id: entry.stream_id,
                            channel: entry.original_channel.clone(),
                            position,
                            code: error.code(),
                            error: format!("cannot record the image: {error}"),
                        };
                        report(Report::Failed(failure));
                        entry.finished.insert(image_id);
                        entry.discarding.insert(image_id, image);
                        if entry.auto_stop && entry.extend.is_some() {
                            auto_stopped.push(index);
                        }
                    }
                }
            }
            let entry = &mut self.subscriptions[index];
            entry.finished.retain(|image_id| listed.contains(image_id));
            entry
                .discarding
                .retain(|_, image| !image.is_closed() && !image.is_end_of_stream());
            let ended: Vec<i64> = entry
                .sessions
                .iter()
                .filter(|(_, session)| {
                    session.image.is_closed() || session.image.is_end_of_stream()
                })
                .map(|(image_id, _)| *image_id)
                .collect();
            for image_id in ended {
                if let Some(mut session) = entry.sessions.remove(&image_id) {
                    let outcome = session.do_work(&shared.config, tern_store::epoch_nanos(), now);
                    session.finish(&report, outcome.as_ref().err());
                    if listed.contains(&image_id) {
                        entry.finished.insert(image_id);
                    }
                    if entry.auto_stop {
                        auto_stopped.push(index);
                    }
                    work += 1;
                }
            }
        }
        self.auto_stop(auto_stopped);
        self.check_spied_publications(now);
        work
    }

    /// Say once why a local (spy) recording gets nothing when its publication is not connected
    /// and the driver does not count spies as subscribers: its publishers' offers are refused
    /// as not connected, so it would stay at its start position with nothing said.
    fn check_spied_publications(&mut self, now: Instant) {
        let aeron_dir = &self.shared.config.aeron_dir;
        for entry in &mut self.subscriptions {
            for session in entry.sessions.values_mut() {
                if session.spy_check.is_none_or(|due| now < due) {
                    continue;
                }
                session.spy_check = None;
                match self
                    .client
                    .spied_publication(aeron_dir, session.image.info())
                {
                    Ok(publication)
                        if !publication.connected && !publication.spies_simulate_connection =>
                    {
                        tracing::warn!(
                            "recording {} (session {} of {} stream {}) gets nothing: the publication is not connected, so its publishers cannot send, and the media driver in {aeron_dir} does not count a local recording (a spy) as a subscriber; run the driver with spies-simulate-connection (`tern driver` does unless --spies-simulate-connection false; Aeron: aeron.spies.simulate.connection=true), or add ssc=true to the publishers' channel",
                            session.descriptor.recording_id,
                            session.descriptor.session_id,
                            session.descriptor.stripped_channel,
                            session.descriptor.stream_id,
                        );
                    }
                    Ok(_) => {}
                    Err(error) => tracing::debug!(
                        "recording {}: publication state not read: {error}",
                        session.descriptor.recording_id
                    ),
                }
            }
        }
    }

    /// Start recording an image: a new recording, or the extension of the subscription's
    /// recording. Refused past the most concurrent recordings.
    /// On failure, the error and the recording id concerned (`None` if none had been given).
    fn open_image(&mut self, index: usize, image: Img<T>, now: Instant) -> Opened<T> {
        let max = self.shared.config.max_concurrent_recordings;
        if self.active_count() >= max {
            return Err((None, ArchiveError::MaxRecordings(max)));
        }
        let subscription_id = self.subscriptions[index].id;
        let mut session = match self.subscriptions[index].extend {
            Some(recording_id) => self
                .open_extension(index, recording_id, image, now)
                .map_err(|error| (Some(recording_id), error))?,
            None => self.open_session(index, image, now)?,
        };
        let fsync_seconds = self.shared.metrics.fsync_seconds.clone();
        session
            .writer
            .measure_syncs(Box::new(move |seconds| fsync_seconds.observe(seconds)));
        let (signal, position) = match self.subscriptions[index].extend {
            Some(_) => (
                crate::events::RecordingSignalKind::Extend,
                session.progress.recorded(),
            ),
            None => (
                crate::events::RecordingSignalKind::Start,
                session.descriptor.start_position,
            ),
        };
        let recording_id = session.descriptor.recording_id;
        (self.report)(Report::Signal {
            signal,
            recording_id,
            subscription_id,
            position,
        });
        Ok(session)
    }

    /// Continue a stopped recording with an image that fits it (see `extend::open_extension`).
    fn open_extension(
        &mut self,
        index: usize,
        recording_id: RecordingId,
        image: Img<T>,
        now: Instant,
    ) -> Result<RecordingSession<Img<T>, T::Counter>> {
        let subscription_id = self.subscriptions[index].id;
        let info = image.info().clone();
        let extension = super::extend::open_extension(
            &self.shared.config,
            &self.report,
            recording_id,
            subscription_id,
            &info,
            image.position(),
        )
        .inspect_err(|error| {
            tracing::error!(
                "recording subscription {subscription_id}: image of session {} refused: {error}",
                info.session_id
            );
        })?;
        let descriptor = extension.descriptor;
        let mut extension_writer = extension.writer;
        sync_time_index_with(&mut extension_writer, &extension.time_index);
        extension_writer.watch_io(extension.progress.io_watch());
        let position = extension_writer.position();
        let counter = self.position_counter(&descriptor, info.session_id, position);
        tracing::info!(
            "recording {recording_id} extended: session {} stream {} {} from position {position}",
            info.session_id,
            descriptor.stream_id,
            descriptor.stripped_channel,
        );
        Ok(RecordingSession {
            descriptor,
            image,
            writer: extension_writer,
            time_index: extension.time_index,
            progress: extension.progress,
            counter,
            last_sync: now,
            subscription_id,
            spy_check: self.subscriptions[index]
                .is_spy()
                .then(|| now + SPY_CONNECT_GRACE),
        })
    }

    /// Remove a recording subscription, stopping its recordings; returns their ids.
    fn remove_subscription(&mut self, index: usize) -> Vec<RecordingId> {
        let entry = self.subscriptions.remove(index);
        let subscription_id = entry.id;
        (self.report)(Report::SubscriptionRemoved(subscription_id));
        self.stop_subscription(entry)
    }

    /// A new recording of `image`; on failure, the error and the id it had been given (`None`
    /// if it failed before the catalog gave it one).
    fn open_session(&mut self, index: usize, image: Img<T>, now: Instant) -> Opened<T> {
        let entry = &self.subscriptions[index];
        let info = image.info().clone();
        let config = &self.shared.config;
        let start_position = image.position();
        let descriptor = RecordingDescriptor {
            // Given by the catalog.
            recording_id: RecordingId::new(0),
            state: RecordState::Valid,
            start_timestamp_ns: tern_store::epoch_nanos(),
            stop_timestamp_ns: NULL_POSITION,
            start_position,
            stop_position: NULL_POSITION,
            initial_term_id: info.initial_term_id,
            segment_length: config.segment_length.max(info.term_length),
            term_length: info.term_length,
            mtu_length: info.mtu_length,
            session_id: info.session_id,
            stream_id: entry.subscription.stream_id(),
            stripped_channel: entry.stripped_channel.clone(),
            original_channel: entry.original_channel.clone(),
            source_identity: info.source_identity.clone(),
        };
        descriptor
            .validate()
            .map_err(|reason| (None, ArchiveError::Invalid(reason)))?;
        let subscription_id = entry.id;
        let (descriptor, progress) = super::ask(&self.report, |reply| Report::NewRecording {
            descriptor,
            subscription_id,
            reply,
        })
        .map_err(|error| (None, error))?;
        let recording_id = descriptor.recording_id;
        let stop_empty = |report: &Reporter, descriptor: &RecordingDescriptor| {
            let mut stopped = descriptor.clone();
            stopped.stop_position = stopped.start_position;
            stopped.stop_timestamp_ns = tern_store::epoch_nanos();
            report(Report::Stopped(RecordingStop {
                recording_id,
                subscription_id,
                stop: stopped.stop_position,
                record: Some(stopped),
                failure: None,
                signal: false,
            }));
        };
        let geometry = SegmentGeometry {
            dir: config.dir.clone(),
            recording_id,
            start_position,
            term_length: i64::from(descriptor.term_length),
            segment_length: i64::from(descriptor.segment_length),
        };
        let opened = SegmentWriter::new_on(
            &config.io,
            geometry,
            config.write_mode,
            config.preallocate,
            config.write_buffer_length,
        )
        .and_then(|writer| {
            let interval = config.time_index_interval.as_nanos() as i64;
            Ok((
                writer,
                TimeIndexWriter::create_on(
                    &config.io.storage,
                    &config.dir,
                    recording_id,
                    interval,
                )?,
            ))
        });
        let (mut writer, time_index) = match opened {
            Ok(opened) => opened,
            Err(error) => {
                stop_empty(&self.report, &descriptor);
                return Err((Some(recording_id), error.into()));
            }
        };
        sync_time_index_with(&mut writer, &time_index);
        writer.watch_io(progress.io_watch());
        if !config.key_index.is_empty() {
            match tern_store::key_index::write_manifest_on(
                &config.io.storage,
                &config.dir,
                recording_id,
                &config.key_index,
            ) {
                Ok(()) => writer.index_keys(&config.key_index, self.indexer.clone(), &descriptor),
                Err(error) => tracing::warn!(
                    "recording {recording_id}: not indexed by key (filtered replays scan it): {error}"
                ),
            }
        }
        let counter = self.position_counter(&descriptor, info.session_id, start_position);
        tracing::info!(
            "recording {recording_id} started: session {} stream {} {} from position {start_position} ({})",
            info.session_id,
            descriptor.stream_id,
            descriptor.stripped_channel,
            if writer.is_direct() { "O_DIRECT" } else { "buffered" }
        );
        Ok(RecordingSession {
            descriptor,
            image,
            writer,
            time_index,
            progress,
            counter,
            last_sync: now,
            subscription_id: entry.id,
            spy_check: entry.is_spy().then(|| now + SPY_CONNECT_GRACE),
        })
    }

    fn stop_subscription(&mut self, mut entry: RecordingSubscription<T>) -> Vec<RecordingId> {
        let now = Instant::now();
        let mut stopped = Vec::new();
        for (_, mut session) in entry.sessions.drain() {
            let outcome = session.do_work(&self.shared.config, tern_store::epoch_nanos(), now);
            stopped.push(session.descriptor.recording_id);
            session.finish(&self.report, outcome.as_ref().err());
        }
        stopped
    }

    /// A recording's position counter in the driver (Aeron's `rec-pos` type and label, keyed by
    /// recording id and the image's session id), set to `position`; none if the driver refuses
    /// one.
    fn position_counter(
        &self,
        descriptor: &RecordingDescriptor,
        session_id: i32,
        position: i64,
    ) -> Option<T::Counter> {
        let recording_id = descriptor.recording_id;
        let mut key = Vec::with_capacity(16);
        key.extend_from_slice(&recording_id.get().to_le_bytes());
        key.extend_from_slice(&session_id.to_le_bytes());
        let label = format!(
            "rec-pos: {recording_id} {session_id} {} {}",
            descriptor.stream_id, descriptor.stripped_channel
        );
        self.client
            .add_counter(RECORDING_POSITION_TYPE_ID, &key, &label)
            .inspect(|counter| counter.set(position))
            .inspect_err(|error| {
                tracing::warn!("recording {recording_id}: no position counter: {error}")
            })
            .ok()
    }

    /// How many recordings are being recorded.
    fn active_count(&self) -> usize {
        self.subscriptions
            .iter()
            .map(|entry| entry.sessions.len())
            .sum()
    }

    fn stop_all(&mut self) {
        for entry in std::mem::take(&mut self.subscriptions) {
            self.stop_subscription(entry);
        }
    }
}

#[cfg(test)]
mod tests {
    //! The recorder agent in one test thread: a simulated transport (streams the test publishes
    //! and ends), a simulated disk with its jobs inline, and the archive's state taking the
    //! agent's reports as the conductor would (synchronously). No media driver.
    use super::*;
    use crate::conductor::{ArchiveState, Parts};
    use crate::config::{ArchiveConfig, FsyncPolicy};
    use crate::events::RecordingSignalKind;
    use std::path::Path;
    use std::sync::{mpsc, Mutex};
    use tern_store::recording_reader::RecordingReader;
    use tern_store::{Io, SimDisk, Storage};
    use tern_transport::{SimLog, SimStream, SimTransport};

    const DIR: &str = "/archive";
    const TERM: i32 = 64 * 1024;

    struct Rig {
        recorder: Recorder<SimTransport>,
        transport: SimTransport,
        commands: mpsc::Sender<RecorderCommand>,
        state: Arc<Mutex<ArchiveState>>,
        storage: Arc<dyn Storage>,
        now: Instant,
        timestamp_ns: i64,
        next_scan: Instant,
        _agents: (
            mpsc::Receiver<crate::replay::ReplayerCommand>,
            mpsc::Receiver<crate::conductor::DeleteJob>,
        ),
    }

    fn rig(max_recordings: usize) -> Rig {
        let disk = SimDisk::new();
        disk.create_dir_all(Path::new(DIR)).expect("dir");
        let storage: Arc<dyn Storage> = Arc::new(disk);
        let mut config = ArchiveConfig::new(DIR, "/no-aeron-dir");
        config.io = Io::inline(storage.clone());
        config.segment_length = 2 * TERM;
        config.max_concurrent_recordings = max_recordings;
        config.fsync = FsyncPolicy::Always;
        let catalog =
            tern_store::rebuild::open_for_recording_on(&storage, Path::new(DIR)).expect("catalog");
        let cursors =
            tern_store::cursors::CursorStore::open_on(&storage, Path::new(DIR)).expect("cursors");
        let shared = Arc::new(Shared {
            config,
            metrics: crate::metrics::Metrics::default(),
        });
        let (recorder_commands, _) = mpsc::channel();
        let (replayer, replayer_commands) = mpsc::channel();
        let (deleter, delete_jobs) = mpsc::channel();
        let state = Arc::new(Mutex::new(ArchiveState::new(Parts {
            shared: shared.clone(),
            catalog,
            cursors,
            recorder: recorder_commands,
            replayer,
            deleter,
        })));
        let reports = state.clone();
        let reporter: Reporter = Arc::new(move |report| {
            reports.lock().expect("state").on_report(report);
        });
        let (commands, received) = mpsc::channel();
        let (indexer, _) = mpsc::sync_channel(8);
        let transport = SimTransport::new();
        let now = Instant::now();
        Rig {
            recorder: Recorder::on(transport.clone(), shared, reporter, received, indexer),
            transport,
            commands,
            state,
            storage,
            now,
            timestamp_ns: 1_700_000_000_000_000_000,
            next_scan: now,
            _agents: (replayer_commands, delete_jobs),
        }
    }

    impl Rig {
        /// One duty cycle, 1 ms of simulated time after the last.
        fn step(&mut self) -> usize {
            self.now += Duration::from_millis(1);
            self.timestamp_ns += 1_000_000;
            self.recorder
                .do_work(self.timestamp_ns, self.now, &mut self.next_scan)
                .expect("running")
        }

        fn start(&mut self, subscription_id: i64, auto_stop: bool) -> Result<()> {
            let (reply, answer) = mpsc::channel();
            self.commands
                .send(RecorderCommand::Start {
                    subscription_id,
                    channel: "aeron:ipc".into(),
                    stream_id: 1001,
                    source: SourceLocation::Remote,
                    auto_stop,
                    extend: None,
                    reply,
                })
                .expect("sent");
            self.step();
            answer.try_recv().expect("answered at once")
        }

        /// Offer `count` messages of `length` bytes (the nth filled with `n`) to `log`, a
        /// duty cycle after each.
        fn publish(&mut self, log: &SimLog, count: u32, length: usize) {
            for index in 0..count {
                log.offer(&vec![index as u8; length])
                    .expect("never held back");
                self.step();
            }
        }
    }

    fn stream(session_id: i32) -> SimStream {
        SimStream {
            session_id,
            stream_id: 1001,
            initial_term_id: 11,
            term_length: TERM,
            mtu: 1408,
            start_position: 0,
        }
    }

    #[test]
    fn an_image_is_recorded_whole_and_an_auto_stop_subscription_goes_when_it_ends() {
        let mut rig = rig(4);
        let events = rig.state.lock().expect("state").subscribe_events();
        rig.start(7, true).expect("subscribed");
        let log = rig.transport.publish("aeron:ipc", stream(5));
        // Not connected (nothing can be offered) until the recorder's subscription sees it.
        assert!(log.offer(b"early").is_err());
        rig.step();
        // 600 messages of 1 KiB and some of 3 KiB (fragmented): 10 segment files of 128 KiB.
        rig.publish(&log, 600, 1000);
        rig.publish(&log, 50, 3000);
        log.close();
        for _ in 0..20 {
            rig.step();
        }
        let state = rig.state.lock().expect("state");
        let info = state.recording(RecordingId::new(0)).expect("recording 0");
        assert!(!info.active, "stopped when its image ended");
        assert_eq!(info.descriptor.session_id, 5);
        assert_eq!(info.descriptor.stop_position, log.position(), "all of it");
        assert!(state.recording_subscriptions().is_empty(), "auto-stopped");
        // The segment files hold the stream byte for byte.
        let mut reader = RecordingReader::new_on(&rig.storage, Path::new(DIR), &info.descriptor);
        assert_eq!(info.descriptor.start_position, 0);
        let original = log.bytes();
        let mut frames = 0;
        let (end, damage) = reader
            .scan(0, info.descriptor.stop_position, |frame| {
                // On disk a frame's session id field holds its checksum; the rest is the
                // stream's, byte for byte.
                let at = frame.position as usize;
                let sent = &original[at..at + frame.bytes.len()];
                assert_eq!(frame.bytes[..12], sent[..12], "frame at {at}");
                assert_eq!(frame.bytes[16..], sent[16..], "frame at {at}");
                frames += 1;
                true
            })
            .expect("read back");
        assert_eq!((end, damage), (log.position(), None));
        assert!(frames > 650, "{frames} frames");
        let signals: Vec<RecordingSignalKind> = events.try_iter().map(|e| e.signal).collect();
        assert_eq!(
            signals,
            vec![RecordingSignalKind::Start, RecordingSignalKind::Stop]
        );
        let counters = rig.transport.counters();
        assert_eq!(counters.len(), 1, "{counters:?}");
        assert_eq!(
            counters[0].1,
            log.position(),
            "the position counter followed"
        );
        assert!(
            counters[0].0.starts_with("rec-pos: 0 5 1001 aeron:ipc"),
            "{counters:?}"
        );
    }

    #[test]
    fn an_image_past_the_most_recordings_is_refused_and_its_publisher_not_held_back() {
        let mut rig = rig(1);
        rig.start(7, false).expect("subscribed");
        let first = rig.transport.publish("aeron:ipc", stream(5));
        rig.step();
        rig.publish(&first, 10, 100);
        let second = rig.transport.publish("aeron:ipc", stream(6));
        rig.step();
        // Several windows' worth: the refused image is read and dropped, never a brake.
        rig.publish(&second, 1000, 1000);
        let state = rig.state.lock().expect("state");
        let failures = state.recording_failures();
        assert_eq!(failures.len(), 1, "{failures:?}");
        assert_eq!(failures[0].session_id, 6);
        assert_eq!(
            failures[0].recording_id, None,
            "refused before it had an id"
        );
        assert!(
            failures[0]
                .error
                .contains("max concurrent recordings reached at 1"),
            "{}",
            failures[0].error
        );
        assert!(
            state
                .recording(RecordingId::new(0))
                .expect("recording 0")
                .active
        );
        assert!(
            state.recording(RecordingId::new(1)).is_err(),
            "no second recording"
        );
    }

    #[test]
    fn a_second_subscription_to_the_same_stream_is_refused_as_a_duplicate() {
        let mut rig = rig(4);
        rig.start(7, false).expect("subscribed");
        let error = rig.start(8, false).expect_err("a duplicate");
        assert!(
            matches!(
                error,
                ArchiveError::DuplicateSubscription {
                    subscription_id: 7,
                    ..
                }
            ),
            "{error}"
        );
        let (reply, answer) = mpsc::channel();
        rig.commands
            .send(RecorderCommand::Stop {
                subscription_id: 9,
                reply,
            })
            .expect("sent");
        rig.step();
        assert!(matches!(
            answer.try_recv().expect("answered"),
            Err(ArchiveError::UnknownSubscription(9))
        ));
    }
}
