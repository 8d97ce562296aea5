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
use tern_transport::{BackoffIdle, Client, Idle};

pub(crate) struct Replayer {
    shared: Arc<Shared>,
    client: Client,
    commands: Receiver<ReplayerCommand>,
    sessions: Vec<ReplaySession>,
    /// The time its sessions keep (deadlines, pauses, pacing).
    clock: Arc<dyn Clock>,
}

impl Replayer {
    pub(crate) fn new(shared: Arc<Shared>, commands: Receiver<ReplayerCommand>) -> Result<Self> {
        let client =
            Client::connect_with_idle(&shared.config.aeron_dir, shared.config.client_idle_sleep)?;
        Ok(Self {
            shared,
            client,
            commands,
            sessions: Vec::new(),
            clock: tern_store::system_clock(),
        })
    }

    pub(crate) fn run(mut self) {
        precise_sleeps();
        let mut idle = BackoffIdle::new();
        loop {
            let mut work = 0;
            loop {
                match self.commands.try_recv() {
                    Ok(ReplayerCommand::Shutdown)
                    | Err(std::sync::mpsc::TryRecvError::Disconnected) => {
                        for session in self.sessions.drain(..) {
                            session.plan.status.set_state(ReplayState::Stopped);
                        }
                        self.shared.metrics.replays_running.set(0);
                        return;
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
                        let result = match self
                            .sessions
                            .iter()
                            .position(|s| s.plan.replay_id == replay_id)
                        {
                            Some(index) => self.seek(index, position, session_id),
                            None => Err(crate::error::ArchiveError::UnknownReplay(replay_id)),
                        };
                        let _ = reply.send(result);
                        work += 1;
                    }
                    Ok(ReplayerCommand::Pause { replay_id }) => {
                        if let Some(session) = self
                            .sessions
                            .iter_mut()
                            .find(|s| s.plan.replay_id == replay_id)
                        {
                            session.pause();
                        }
                        work += 1;
                    }
                    Ok(ReplayerCommand::Resume { replay_id }) => {
                        if let Some(session) = self
                            .sessions
                            .iter_mut()
                            .find(|s| s.plan.replay_id == replay_id)
                        {
                            session.resume();
                        }
                        work += 1;
                    }
                    Ok(ReplayerCommand::Stop { replay_id }) => {
                        if let Some(index) = self
                            .sessions
                            .iter()
                            .position(|s| s.plan.replay_id == replay_id)
                        {
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
            match next_due {
                Some(due) if work == 0 => wait_until(due),
                _ => idle.idle(work),
            }
        }
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
            .map(|counter_id| crate::replay::limit::LimitCounter::open(&self.client, counter_id))
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
