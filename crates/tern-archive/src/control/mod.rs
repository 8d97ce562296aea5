//! The archive's control server: Aeron's archive control protocol (SBE schema 101, version 14)
//! and tern's extensions (schema 1101), spoken over Aeron to any number of clients.
//!
//! [`ControlServer::start`] runs a control conductor, with its own Aeron client, on the
//! archive's conductor thread. It polls the
//! control channels (by default a UDP endpoint on localhost and a local IPC channel, both stream
//! 10), opens one control session (`session::ControlSession`) per `AuthConnect`, answers each request on that
//! client's response channel, and sends recording signals to the session that started a
//! recording. Where to look:
//! - `session.rs`: a control session's states (connecting, challenged, authenticated, active,
//!   rejected, done), its outbox and its timeouts; pure, tested without a driver.
//! - `conductor.rs`: the duty cycle (a room of the archive's conductor): poll, connect, send,
//!   time out, close sessions, dead clients.
//! - `adapter.rs`: what comes in, decoded and checked against its session; malformed requests.
//! - `handlers/`: one arm per request (`mod.rs`), recordings and replays in their own files.
//! - `proxy.rs`: what goes out, encoded: descriptors, listings, errors.
//! - `awaiting.rs`: requests an agent answers later, and the recording signals.
//! - `auth.rs`: the authenticator (none, or credentials with an optional challenge).

mod adapter;
mod auth;
mod awaiting;
mod conductor;
mod handlers;
mod proxy;
mod session;

pub use auth::{Authenticator, Decision};

use crate::archive::Archive;
use crate::error::{ArchiveError, Result};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, TryRecvError};
use std::sync::Arc;
use std::time::Duration;

/// The UDP control channel Aeron's archive listens on by default.
pub const DEFAULT_CONTROL_CHANNEL: &str = "aeron:udp?endpoint=localhost:8010";
/// The local (IPC) control channel Aeron's archive listens on by default.
pub const DEFAULT_LOCAL_CONTROL_CHANNEL: &str = "aeron:ipc?term-length=64k";
/// The control stream id of both default channels.
pub const DEFAULT_CONTROL_STREAM_ID: i32 = 10;

/// A channel and stream the control server listens on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlChannel {
    /// An Aeron channel URI.
    pub channel: String,
    /// Its stream id.
    pub stream_id: i32,
}

impl ControlChannel {
    /// A channel and stream.
    pub fn new(channel: impl Into<String>, stream_id: i32) -> Self {
        Self {
            channel: channel.into(),
            stream_id,
        }
    }
}

/// How the control server runs.
#[derive(Debug, Clone)]
pub struct ControlConfig {
    /// The channels requests come in on (default: UDP `localhost:8010` and IPC, stream 10).
    pub channels: Vec<ControlChannel>,
    /// Most control sessions at once; a client past it is refused with an error (default 64).
    pub max_sessions: usize,
    /// A session that cannot be answered for this long (its response channel never connects,
    /// or stays full) is closed; also the time a challenged client has to respond (default 10 s).
    pub session_timeout: Duration,
    /// Most responses waiting for a slow client before its session is closed (default 4096).
    pub max_queued_responses: usize,
    /// Who may connect (default: anyone).
    pub authenticator: Authenticator,
    /// The id `ArchiveId` answers (default: the conductor's Aeron client id).
    pub archive_id: Option<i64>,
}

impl Default for ControlConfig {
    fn default() -> Self {
        Self {
            channels: vec![
                ControlChannel::new(DEFAULT_CONTROL_CHANNEL, DEFAULT_CONTROL_STREAM_ID),
                ControlChannel::new(DEFAULT_LOCAL_CONTROL_CHANNEL, DEFAULT_CONTROL_STREAM_ID),
            ],
            max_sessions: 64,
            session_timeout: Duration::from_secs(10),
            max_queued_responses: 4096,
            authenticator: Authenticator::None,
            archive_id: None,
        }
    }
}

impl ControlConfig {
    /// Check the settings.
    ///
    /// # Errors
    /// What is wrong, in words.
    pub fn validate(&self) -> std::result::Result<(), String> {
        if self.channels.is_empty() {
            return Err("the control server needs at least one control channel".into());
        }
        if self.max_sessions == 0 {
            return Err("max_sessions must be at least 1".into());
        }
        if self.session_timeout < Duration::from_millis(100) {
            return Err("session_timeout must be at least 100 ms".into());
        }
        if self.max_queued_responses < 16 {
            return Err("max_queued_responses must be at least 16".into());
        }
        Ok(())
    }
}

/// Counts of what the control server did, readable while it runs.
#[derive(Debug, Default)]
pub struct ControlStats {
    sessions_opened: AtomicU64,
    sessions_closed: AtomicU64,
    requests: AtomicU64,
    errors_sent: AtomicU64,
    malformed: AtomicU64,
}

impl ControlStats {
    /// Sessions opened (AuthConnect requests).
    pub fn sessions_opened(&self) -> u64 {
        self.sessions_opened.load(Ordering::Relaxed)
    }
    /// Sessions ended, for any reason.
    pub fn sessions_closed(&self) -> u64 {
        self.sessions_closed.load(Ordering::Relaxed)
    }
    /// Requests handled.
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }
    /// ERROR responses sent.
    pub fn errors_sent(&self) -> u64 {
        self.errors_sent.load(Ordering::Relaxed)
    }
    /// Messages that could not be decoded (answered with an error when their session was known).
    pub fn malformed(&self) -> u64 {
        self.malformed.load(Ordering::Relaxed)
    }
    fn add(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// A running control server. Dropping it stops the server (sessions end without a goodbye;
/// the archive keeps running).
///
/// It runs on the archive's conductor thread, beside the state it serves (`conductor.rs` of
/// the crate), and keeps the archive alive while it runs.
pub struct ControlServer {
    stop: Arc<AtomicBool>,
    stats: Arc<ControlStats>,
    /// Disconnected once the server's conductor is gone.
    alive: Receiver<()>,
    archive: Option<Arc<Archive>>,
}

impl ControlServer {
    /// Start answering control requests for `archive` on the media driver of its configuration.
    ///
    /// # Errors
    /// A bad setting, no media driver, or a control channel the driver refuses.
    pub fn start(archive: Arc<Archive>, config: ControlConfig) -> Result<Self> {
        config.validate().map_err(ArchiveError::Invalid)?;
        let stop = Arc::new(AtomicBool::new(false));
        let stats = Arc::new(ControlStats::default());
        let (started, wait) = std::sync::mpsc::channel::<Result<()>>();
        let (alive_sender, alive) = std::sync::mpsc::channel::<()>();
        let room_stop = stop.clone();
        let room_stats = stats.clone();
        archive.add_room(Box::new(move |state| {
            match conductor::Conductor::new(state, config, room_stop, room_stats, alive_sender) {
                Ok(conductor) => {
                    let _ = started.send(Ok(()));
                    Some(Box::new(conductor))
                }
                Err(error) => {
                    let _ = started.send(Err(error));
                    None
                }
            }
        }))?;
        match wait.recv_timeout(Duration::from_secs(30)) {
            Ok(Ok(())) => Ok(Self {
                stop,
                stats,
                alive,
                archive: Some(archive),
            }),
            Ok(Err(error)) => Err(error),
            Err(_) => Err(ArchiveError::NotRunning(
                "the control conductor did not start".into(),
            )),
        }
    }

    /// What the server did so far.
    pub fn stats(&self) -> &ControlStats {
        &self.stats
    }

    /// Whether the server is still running.
    pub fn is_running(&self) -> bool {
        matches!(self.alive.try_recv(), Err(TryRecvError::Empty))
    }

    /// Stop the server and wait for it.
    pub fn stop(mut self) {
        self.halt();
    }

    fn halt(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(archive) = self.archive.take() {
            // The conductor drops the server at its next duty cycle.
            let _ = self.alive.recv_timeout(Duration::from_secs(30));
            drop(archive);
        }
    }
}

impl Drop for ControlServer {
    fn drop(&mut self) {
        self.halt();
    }
}
