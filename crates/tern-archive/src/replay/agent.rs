//! The replayer agent: one thread that sends recordings back out on replay publications,
//! frame by frame as they were recorded, so stream positions are the recorded ones.

use super::pacing::{precise_sleeps, wait_until, Pacing};
use super::session::{KeyReplay, ReplaySession, Step};
use super::{replay_channel, ReplayPlan, ReplayState, ReplayerCommand};
use crate::error::Result;
use crate::replay::key_search::KeySearch;
use crate::types::Shared;
use std::sync::atomic::Ordering;
use std::sync::mpsc::Receiver;
use std::sync::Arc;
use std::time::Instant;
use tern_store::clock::Clock;
use tern_store::recording_reader::RecordingReader;
use tern_store::ReplayId;
use tern_transport::{BackoffIdle, Client, Idle, ReplayTransport};

pub(crate) struct Replayer<T: ReplayTransport = Client> {
    shared: Arc<Shared>,
    client: T,
    commands: Receiver<ReplayerCommand>,
    sessions: Vec<ReplaySession<T::Publication>>,
    /// The time its sessions keep (deadlines, pauses, pacing).
    clock: Arc<dyn Clock>,
}

impl Replayer {
    pub(crate) fn new(shared: Arc<Shared>, commands: Receiver<ReplayerCommand>) -> Result<Self> {
        let client =
            Client::connect_with_idle(&shared.config.aeron_dir, shared.config.client_idle_sleep)?;
        Ok(Self::on(
            client,
            shared,
            commands,
            tern_store::system_clock(),
        ))
    }
}

impl<T: ReplayTransport> Replayer<T> {
    /// A replayer on `transport` keeping `clock`'s time (the real ones: [`Replayer::new`];
    /// simulated ones in tests).
    pub(crate) fn on(
        transport: T,
        shared: Arc<Shared>,
        commands: Receiver<ReplayerCommand>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            shared,
            client: transport,
            commands,
            sessions: Vec::new(),
            clock,
        }
    }

    pub(crate) fn run(mut self) {
        precise_sleeps();
        let mut idle = BackoffIdle::new();
        while let Some((work, next_due)) = self.do_work() {
            match next_due {
                Some(due) if work == 0 => wait_until(due),
                _ => idle.idle(work),
            }
        }
    }

    /// One duty cycle: commands, then a step of each replay. The work done and the earliest
    /// time a paced replay waits for; `None` once told to shut down (every replay stopped).
    pub(crate) fn do_work(&mut self) -> Option<(usize, Option<Instant>)> {
        {
            let mut work = 0;
            loop {
                match self.commands.try_recv() {
                    Ok(ReplayerCommand::Shutdown)
                    | Err(std::sync::mpsc::TryRecvError::Disconnected) => {
                        for session in self.sessions.drain(..) {
                            session.plan.status.set_state(ReplayState::Stopped);
                        }
                        self.shared.metrics.replays_running.set(0);
                        return None;
                    }
                    Ok(ReplayerCommand::Start { plan, reply }) => {
                        let status = plan.status.clone();
                        let result = self.start(*plan);
                        if let Err(error) = &result {
                            // Finished, so nothing waits for it to stop (a truncate, say).
                            status.fail(error.to_string());
                        }
                        let _ = reply.send(result);
                        work += 1;
                    }
                    Ok(ReplayerCommand::Seek {
                        replay_id,
                        position,
                        session_id,
                        reply,
                    }) => {
                        let result = match self.session_index(replay_id) {
                            Some(index) => self.seek(index, position, session_id),
                            None => Err(crate::error::ArchiveError::UnknownReplay(replay_id)),
                        };
                        let _ = reply.send(result);
                        work += 1;
                    }
                    Ok(ReplayerCommand::Pause { replay_id }) => {
                        if let Some(index) = self.session_index(replay_id) {
                            self.sessions[index].pause();
                        }
                        work += 1;
                    }
                    Ok(ReplayerCommand::Resume { replay_id }) => {
                        if let Some(index) = self.session_index(replay_id) {
                            self.sessions[index].resume();
                        }
                        work += 1;
                    }
                    Ok(ReplayerCommand::Stop { replay_id }) => {
                        if let Some(index) = self.session_index(replay_id) {
                            let session = self.sessions.remove(index);
                            session.plan.status.set_state(ReplayState::Stopped);
                        }
                        work += 1;
                    }
                    Err(std::sync::mpsc::TryRecvError::Empty) => break,
                }
            }
            let shared = self.shared.clone();
            let mut index = 0;
            let mut next_due: Option<Instant> = None;
            while index < self.sessions.len() {
                match self.sessions[index].do_work(&shared.config, &shared.metrics) {
                    Step::Worked(amount) => {
                        work += amount;
                        index += 1;
                    }
                    Step::Idle => index += 1,
                    Step::Wait(due) => {
                        next_due = Some(next_due.map_or(due, |next| next.min(due)));
                        index += 1;
                    }
                    Step::Finished(state) => {
                        let session = self.sessions.remove(index);
                        if state != ReplayState::Failed {
                            session.plan.status.set_state(state);
                        }
                        work += 1;
                    }
                }
            }
            shared
                .metrics
                .replays_running
                .set(self.sessions.len() as i64);
            Some((work, next_due))
        }
    }

    /// Where the replay `replay_id` is among the sessions, if it runs.
    fn session_index(&self, replay_id: ReplayId) -> Option<usize> {
        self.sessions
            .iter()
            .position(|session| session.plan.replay_id == replay_id)
    }

    /// Move a replay to `position` (checked by the caller): the current image ends after what was
    /// sent, and a new one (`session_id`) starts at `position`, so replayed positions stay the
    /// recorded ones. A paused replay stays paused; a paced one starts a new schedule there.
    fn seek(&mut self, index: usize, position: i64, session_id: i32) -> Result<()> {
        let session = &mut self.sessions[index];
        let channel = replay_channel(
            &session.plan.channel,
            &session.plan.descriptor,
            position,
            session_id,
        );
        let publication = self
            .client
            .add_exclusive_publication(&channel, session.plan.stream_id)?;
        if let Some(pacing) = &session.pacing {
            session.pacing = Some(Pacing::new(
                &self.shared.config.io.storage,
                &self.shared.config.dir,
                session.plan.descriptor.recording_id,
                position,
                pacing.speed,
            )?);
        }
        tracing::info!(
            "replay {} seeks to {position} as session {session_id}",
            session.plan.replay_id
        );
        session.publication = publication;
        session.plan.session_id = session_id;
        session.position = position;
        session.out_position = position;
        session.pending = 0;
        session.pending_due = None;
        session.scheduled = None;
        session.padding_left = 0;
        if let Some(keys) = session.keys.as_mut() {
            keys.search.reset(position);
            keys.in_message = false;
            keys.pending_ends_message = false;
        }
        session.deadline = session.clock.now() + self.shared.config.replay_connect_timeout;
        let status = &session.plan.status;
        status.session_id.store(session_id, Ordering::Release);
        status.set_positions(position, position);
        if session.paused_at.is_none() {
            status.set_state(ReplayState::Connecting);
        }
        Ok(())
    }

    fn start(&mut self, plan: ReplayPlan) -> Result<()> {
        let channel = replay_channel(
            &plan.channel,
            &plan.descriptor,
            plan.position,
            plan.session_id,
        );
        let limit = plan
            .limit_counter_id
            .map(|counter_id| {
                crate::replay::limit::LimitCounter::open(self.client.counter_values(), counter_id)
            })
            .transpose()?;
        let publication = self
            .client
            .add_exclusive_publication(&channel, plan.stream_id)?;
        let reader = RecordingReader::new_on(
            &self.shared.config.io.storage,
            &self.shared.config.dir,
            &plan.descriptor,
        );
        let pacing = match plan.speed {
            Some(speed) => Some(Pacing::new(
                &self.shared.config.io.storage,
                &self.shared.config.dir,
                plan.descriptor.recording_id,
                plan.position,
                speed,
            )?),
            None => None,
        };
        tracing::info!(
            "replay {} of recording {} from {} on {channel} stream {}",
            plan.replay_id,
            plan.descriptor.recording_id,
            plan.position,
            plan.stream_id
        );
        let keys = plan.key.map(|filter| KeyReplay {
            search: KeySearch::new(
                &self.shared.config.io.storage,
                self.shared.config.dir.clone(),
                &plan.descriptor,
                filter,
                plan.position,
            ),
            in_message: false,
            pending_ends_message: false,
            compact: !plan.keep_positions,
        });
        let mut session = ReplaySession::new(
            plan,
            reader,
            publication,
            self.clock.clone(),
            &self.shared.config,
        );
        session.pacing = pacing;
        session.keys = keys;
        session.limit = limit;
        self.sessions.push(session);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    //! The replayer agent in one test thread: a recording on a simulated disk, replays on a
    //! simulated transport (a subscriber the test polls), a simulated clock. No media driver.
    use super::*;
    use crate::config::ArchiveConfig;
    use crate::replay::{ReplayEnd, ReplayStatus};
    use std::path::Path;
    use std::sync::mpsc;
    use std::time::Duration;
    use tern_store::{Io, RecordingId, SimClock, SimDisk, Storage};
    use tern_transport::{
        ImageSubscription, PositionCounter, RecordingImage, SimSubscription, SimTransport,
        Transport,
    };

    const DIR: &str = "/archive";

    struct Rig {
        replayer: Replayer<SimTransport>,
        transport: SimTransport,
        commands: mpsc::Sender<ReplayerCommand>,
        clock: SimClock,
        subscriber: SimSubscription,
        written: crate::testing::Written,
        /// (image session id, message) as delivered to the subscriber.
        delivered: Vec<(i32, Vec<u8>)>,
    }

    fn rig() -> Rig {
        let disk = SimDisk::new();
        disk.create_dir_all(Path::new(DIR)).expect("dir");
        let storage: Arc<dyn Storage> = Arc::new(disk);
        let io = Io::inline(storage);
        let written = crate::testing::stopped_recording(&io, Path::new(DIR), 300);
        let mut config = ArchiveConfig::new(DIR, "/no-aeron-dir");
        config.io = io;
        let shared = Arc::new(Shared {
            config,
            metrics: crate::metrics::Metrics::default(),
        });
        let transport = SimTransport::new();
        let subscriber = transport
            .add_subscription("aeron:ipc", 2)
            .expect("subscribed");
        let clock = SimClock::new(1_700_000_000_000_000_000);
        let (commands, received) = mpsc::channel();
        Rig {
            replayer: Replayer::on(transport.clone(), shared, received, Arc::new(clock.clone())),
            transport,
            commands,
            clock,
            subscriber,
            written,
            delivered: Vec::new(),
        }
    }

    impl Rig {
        /// Start a replay of the whole recording (bounded by `limit`, a counter id) as image
        /// session `session_id`; its status.
        fn start(&mut self, session_id: i32, limit: Option<i32>) -> Arc<ReplayStatus> {
            let descriptor = self.written.descriptor.clone();
            let status = Arc::new(ReplayStatus::new_at(RecordingId::new(0), 0, session_id));
            let (reply, answer) = mpsc::channel();
            self.commands
                .send(ReplayerCommand::Start {
                    plan: Box::new(ReplayPlan {
                        replay_id: ReplayId::new(i64::from(session_id)),
                        end: ReplayEnd::At(descriptor.stop_position),
                        descriptor,
                        position: 0,
                        channel: "aeron:ipc".into(),
                        stream_id: 2,
                        session_id,
                        progress: None,
                        status: status.clone(),
                        speed: None,
                        time_source: Default::default(),
                        limit_counter_id: limit,
                        key: None,
                        keep_positions: false,
                    }),
                    reply,
                })
                .expect("sent");
            self.step();
            answer.try_recv().expect("answered").expect("started");
            status
        }

        /// A duty cycle of the replayer, 1 ms of simulated time on, then the subscriber polls.
        fn step(&mut self) {
            self.clock.advance(Duration::from_millis(1));
            self.replayer.do_work().expect("running");
            for image in self.subscriber.images() {
                let session = image.info().session_id;
                let delivered = &mut self.delivered;
                while image.poll(|message, _| delivered.push((session, message.to_vec())), 64) > 0 {
                }
            }
        }

        fn steps(&mut self, count: usize) {
            for _ in 0..count {
                self.step();
            }
        }

        /// Whether the subscriber's image of session `session_id` has reached end of stream.
        fn image_ended(&self, session_id: i32) -> bool {
            self.subscriber
                .images()
                .iter()
                .any(|image| image.info().session_id == session_id && image.is_end_of_stream())
        }

        /// The messages delivered so far, each checked: the nth is 400 bytes of `n`.
        fn messages(&self) -> Vec<u32> {
            self.delivered
                .iter()
                .map(|(_, message)| {
                    assert_eq!(message.len(), 400);
                    assert!(message.iter().all(|byte| *byte == message[0]));
                    u32::from(message[0])
                })
                .collect()
        }
    }

    #[test]
    fn a_replay_delivers_the_recording_in_order_on_its_own_image_and_is_done() {
        let mut rig = rig();
        let status = rig.start(77, None);
        rig.steps(50);
        assert_eq!(status.state(), ReplayState::Done);
        let messages = rig.messages();
        assert_eq!(messages.len(), 300);
        assert!(messages
            .iter()
            .enumerate()
            .all(|(n, m)| *m == n as u32 % 256));
        assert!(rig.delivered.iter().all(|(session, _)| *session == 77));
        assert_eq!(status.position(), rig.written.descriptor.stop_position);
    }

    #[test]
    fn a_bounded_replay_waits_at_its_counter_pauses_resumes_and_stops() {
        let mut rig = rig();
        let limit = rig.transport.add_counter(0, &[], "limit").expect("counter");
        limit.set(rig.written.frames[50]);
        let status = rig.start(78, Some(limit.id()));
        rig.steps(20);
        assert_eq!(rig.messages().len(), 50, "up to the counter, not past it");
        assert_ne!(
            status.state(),
            ReplayState::Done,
            "it waits for the counter"
        );
        limit.set(rig.written.frames[120]);
        rig.steps(20);
        assert_eq!(rig.messages().len(), 120);
        rig.commands
            .send(ReplayerCommand::Pause {
                replay_id: ReplayId::new(78),
            })
            .expect("sent");
        limit.set(rig.written.frames[200]);
        rig.steps(20);
        assert_eq!(rig.messages().len(), 120, "paused: nothing more");
        assert_eq!(status.state(), ReplayState::Paused);
        rig.commands
            .send(ReplayerCommand::Resume {
                replay_id: ReplayId::new(78),
            })
            .expect("sent");
        rig.steps(20);
        assert_eq!(rig.messages().len(), 200, "resumed, up to the counter");
        rig.commands
            .send(ReplayerCommand::Stop {
                replay_id: ReplayId::new(78),
            })
            .expect("sent");
        rig.steps(5);
        assert_eq!(status.state(), ReplayState::Stopped);
        assert!(
            rig.image_ended(78),
            "the stopped replay's publication is closed: its image ends"
        );
        limit.set(rig.written.descriptor.stop_position);
        rig.steps(20);
        assert_eq!(rig.messages().len(), 200, "stopped: nothing more");
        let messages = rig.messages();
        assert!(messages
            .iter()
            .enumerate()
            .all(|(n, m)| *m == n as u32 % 256));
    }

    #[test]
    fn a_seek_moves_a_replay_to_a_new_image_at_the_recorded_position() {
        let mut rig = rig();
        let limit = rig.transport.add_counter(0, &[], "limit").expect("counter");
        limit.set(rig.written.frames[30]);
        let status = rig.start(79, Some(limit.id()));
        rig.steps(10);
        assert_eq!(rig.messages().len(), 30);
        let (reply, answer) = mpsc::channel();
        rig.commands
            .send(ReplayerCommand::Seek {
                replay_id: ReplayId::new(79),
                position: rig.written.frames[250],
                session_id: 81,
                reply,
            })
            .expect("sent");
        limit.set(rig.written.descriptor.stop_position);
        rig.steps(30);
        answer.try_recv().expect("answered").expect("moved");
        assert_eq!(status.state(), ReplayState::Done);
        let messages = rig.messages();
        let expected: Vec<u32> = (0..30).chain(250..300).map(|n| n % 256).collect();
        assert_eq!(messages, expected);
        let sessions: Vec<i32> = rig.delivered.iter().map(|(session, _)| *session).collect();
        assert!(sessions[..30].iter().all(|s| *s == 79));
        assert!(sessions[30..].iter().all(|s| *s == 81), "{sessions:?}");
        assert!(rig.image_ended(79), "the old image ends after what it sent");
    }
}
