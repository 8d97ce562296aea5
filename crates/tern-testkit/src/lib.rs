//! Fixtures every tern test binary shares: a media driver in a fresh directory, an archive on
//! it (alone, or served by its control server: [`ServedArchive`]), waiting with a deadline,
//! offering until a message goes through, a reproducible seed, a free UDP port, the CLI
//! runner and three `tern cluster node` processes ([`cluster::Cluster`]). A dev-dependency only:
//! nothing here is product code.
//!
//! Every wait has a deadline and backs off (the test machines have 2 cores and the media driver
//! needs one); every failure panics with what was awaited, which is how a test reports it.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tern_archive::control::{ControlChannel, ControlConfig, ControlServer};
use tern_archive::{Archive, ArchiveConfig, RecordingDescriptor, RecordingId, RecordingInfo};
use tern_transport::{
    BackoffIdle, Client, DriverConfig, Idle, MediaDriver, OfferError, Publication,
};

pub mod cluster;

/// The archive crate, for the test binaries of crates that do not depend on it (tern-client's):
/// they reach the real archive's types (`SourceLocation`, `ReplayState`, ...) through the kit.
pub use tern_archive;

/// The term length of the test drivers' publications (IPC and UDP): small, so tests roll over
/// terms and segments quickly.
pub const TERM: usize = 64 * 1024;

/// How long [`offer_with`] retries a back-pressured offer before failing the test.
pub const OFFER_TIMEOUT: Duration = Duration::from_secs(20);

/// A fresh, not yet existing directory under the system's temp dir, named for the test.
pub fn temp_aeron_dir(tag: &str) -> String {
    std::env::temp_dir()
        .join(format!(
            "tern-test-{tag}-{}-{}",
            std::process::id(),
            Client::nano_clock()
        ))
        .to_string_lossy()
        .into_owned()
}

/// The driver configuration of [`driver`]: a fresh directory (deleted when the driver stops),
/// [`TERM`]-long IPC and UDP terms, spies counting as subscribers (as `tern driver` does).
pub fn driver_config(tag: &str) -> DriverConfig {
    DriverConfig {
        dir: Some(temp_aeron_dir(tag)),
        ipc_term_length: Some(TERM),
        term_length: Some(TERM),
        spies_simulate_connection: true,
        ..DriverConfig::default()
    }
}

/// An embedded media driver for one test, configured by [`driver_config`].
pub fn driver(tag: &str) -> MediaDriver {
    driver_with(tag, |_| {})
}

/// An embedded media driver configured by [`driver_config`], then by `configure`.
pub fn driver_with(tag: &str, configure: impl FnOnce(&mut DriverConfig)) -> MediaDriver {
    let mut config = driver_config(tag);
    configure(&mut config);
    MediaDriver::launch(&config).expect("the media driver starts")
}

/// An archive configuration on `dir` with segments of `segment_length` bytes.
pub fn archive_config(dir: &Path, aeron_dir: &str, segment_length: i32) -> ArchiveConfig {
    let mut config = ArchiveConfig::new(dir, aeron_dir);
    config.segment_length = segment_length;
    config
}

/// An archive on `dir` with segments of two terms ([`TERM`]), so tests cross segment files.
pub fn archive(dir: &Path, aeron_dir: &str) -> Archive {
    Archive::launch(archive_config(dir, aeron_dir, 2 * TERM as i32)).expect("the archive starts")
}

/// An archive (as [`archive`], on a fresh directory of its own) with its control server
/// answering on `channels`, as `tern archive` runs them: what a client test talks to. It derefs
/// to the [`Archive`], so a test records, replays and inspects through it directly. Dropping it
/// (or [`ServedArchive::stop`]) stops the control server (its sessions end, clients see the
/// archive go), then the archive, then deletes the directory.
pub struct ServedArchive {
    server: Option<ControlServer>,
    archive: Option<Arc<Archive>>,
    dir: PathBuf,
}

impl ServedArchive {
    /// Launches the archive on the driver in `aeron_dir` and its control server on `channels`
    /// (channel, stream id); `tag` names the directory.
    pub fn start(tag: &str, aeron_dir: &str, channels: &[(&str, i32)]) -> Self {
        let dir = PathBuf::from(temp_aeron_dir(&format!("{tag}-archive")));
        let archive = Arc::new(
            Archive::launch(archive_config(&dir, aeron_dir, 2 * TERM as i32))
                .expect("the archive starts"),
        );
        let server = ControlServer::start(
            archive.clone(),
            ControlConfig {
                channels: channels
                    .iter()
                    .map(|(channel, stream_id)| ControlChannel::new(*channel, *stream_id))
                    .collect(),
                ..ControlConfig::default()
            },
        )
        .expect("the control server starts");
        Self {
            server: Some(server),
            archive: Some(archive),
            dir,
        }
    }

    /// The archive's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The control server (its counts of sessions and requests).
    pub fn server(&self) -> &ControlServer {
        self.server.as_ref().expect("the archive is running")
    }

    /// How many control requests named `request` (a message name: `ReplayRequest`,
    /// `PositionAtTimeRequest`, ...) the control server has received (see [`control_requests`]).
    pub fn control_requests(&self, request: &str) -> u64 {
        control_requests(self, request)
    }

    /// Stops the control server, then the archive (everything recorded is written); the
    /// directory goes when this is dropped.
    pub fn stop(&mut self) {
        if let Some(server) = self.server.take() {
            server.stop();
        }
        self.archive.take();
    }
}

impl std::ops::Deref for ServedArchive {
    type Target = Archive;

    fn deref(&self) -> &Archive {
        self.archive.as_ref().expect("the archive is running")
    }
}

impl Drop for ServedArchive {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// How many control requests named `request` (a message name: `ReplayRequest`,
/// `StopReplayRequest`, `PositionAtTimeRequest`, ...) `archive`'s control servers have received
/// so far, read from its metrics (`tern_archive_control_requests_total`); 0 for none.
pub fn control_requests(archive: &Archive, request: &str) -> u64 {
    let text = archive
        .metrics_exporter()
        .encode()
        .expect("the metrics encode");
    let prefix = format!(
        "{}_control_requests_total{{request=\"{request}\"}} ",
        tern_archive::METRICS_PREFIX
    );
    text.lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .map_or(0, |value| {
            value
                .trim()
                .parse::<f64>()
                .unwrap_or_else(|_| panic!("a count in {value:?}")) as u64
        })
}

/// Polls `condition` until it holds; fails the test naming `what` once `timeout` has passed.
pub fn wait_until(what: &str, timeout: Duration, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    // Parks up to 2 ms: a condition may lock the archive or read files.
    let mut idle = BackoffIdle::with(10, 20, Duration::from_micros(1), Duration::from_millis(2));
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        idle.idle(0);
    }
}

/// Waits until `recording_id` has recorded up to `position`; returns what the archive said then.
pub fn wait_recorded(archive: &Archive, recording_id: RecordingId, position: i64) -> RecordingInfo {
    let mut info = archive
        .recording(recording_id)
        .expect("the recording is known");
    wait_until("the recording to catch up", Duration::from_secs(20), || {
        info = archive
            .recording(recording_id)
            .expect("the recording is known");
        info.recorded_position >= position
    });
    info
}

/// Waits until the archive records `stream_id` (the newest such recording); returns its id.
pub fn recording_of(archive: &Archive, stream_id: i32) -> RecordingId {
    let mut found = None;
    wait_until("the recording to start", Duration::from_secs(20), || {
        found = archive
            .recordings()
            .iter()
            .filter(|info| info.descriptor.stream_id == stream_id)
            .map(|info| info.descriptor.recording_id)
            .max();
        found.is_some()
    });
    found.expect("found")
}

/// Waits until `recording_id` has stopped; returns its descriptor.
pub fn wait_stopped(archive: &Archive, recording_id: RecordingId) -> RecordingDescriptor {
    wait_until("the recording to stop", Duration::from_secs(20), || {
        !archive
            .recording(recording_id)
            .expect("the recording is known")
            .active
    });
    archive
        .recording(recording_id)
        .expect("the recording is known")
        .descriptor
}

/// Offers `message` on `publication` until it goes through (see [`offer_with`]).
pub fn offer(publication: &Publication, message: &[u8]) {
    offer_with(|| publication.offer(message));
}

/// Calls `offer` until it goes through, backing off while the error is retryable (back
/// pressure, not connected yet); fails the test on any other error or after [`OFFER_TIMEOUT`].
pub fn offer_with(mut offer: impl FnMut() -> Result<i64, OfferError>) -> i64 {
    let mut idle = BackoffIdle::new();
    let deadline = Instant::now() + OFFER_TIMEOUT;
    loop {
        match offer() {
            Ok(position) => return position,
            Err(error) if error.is_retryable() => {
                assert!(Instant::now() < deadline, "offer stuck: {error}");
                idle.idle(0);
            }
            Err(error) => panic!("offer failed: {error}"),
        }
    }
}

/// The seed of a randomised test: `TERN_SEED` if set, else the clock; printed so a failing run
/// can be repeated.
pub fn seed() -> u64 {
    let seed = std::env::var("TERN_SEED")
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or_else(|| Client::nano_clock() as u64);
    println!("seed {seed} (rerun with TERN_SEED={seed})");
    seed
}

/// A UDP port free right now on the loopback interface.
pub fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|socket| socket.local_addr())
        .map(|address| address.port())
        .expect("a free UDP port")
}

/// Where a service a test needs listens, from `variable` (`TERN_TEST_POSTGRES`,
/// `TERN_TEST_KAFKA`), which `scripts/test.sh` sets after starting it with `script`
/// (`postgres.sh`, `kafka.sh`). A test without it fails, naming the commands: it never passes
/// unseen.
pub fn service(variable: &str, script: &str) -> String {
    match std::env::var(variable) {
        Ok(value) if !value.trim().is_empty() => value,
        _ => panic!(
            "{variable} is not set: this test needs the service scripts/{script} starts; run \
             `scripts/{script} start` and `eval \"$(scripts/{script} env)\"` first \
             (scripts/test.sh does both)"
        ),
    }
}

/// Runs `program` (a test's `env!("CARGO_BIN_EXE_tern")`) with `args` to its end; returns its
/// exit code (-1 when killed by a signal), stdout and stderr.
pub fn run(program: &str, args: &[&str]) -> (i32, String, String) {
    let output = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|error| panic!("cannot run {program}: {error}"));
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// A thread publishing numbered messages (`message(0)`, `message(1)`, ...) on one exclusive
/// publication until stopped, pausing `pause` after every `burst` messages so the test's
/// machine keeps a core for the driver. Stopped (and joined) when dropped.
pub struct SteadyPublisher {
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
    position: Arc<AtomicI64>,
    thread: Option<JoinHandle<u64>>,
}

impl SteadyPublisher {
    /// Starts publishing on `channel` / `stream` through the driver in `aeron_dir`.
    pub fn start(
        aeron_dir: &str,
        channel: &str,
        stream: i32,
        (burst, pause): (u64, Duration),
        message: impl Fn(u64) -> Vec<u8> + Send + 'static,
    ) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicU64::new(0));
        let position = Arc::new(AtomicI64::new(0));
        let (aeron_dir, channel) = (aeron_dir.to_string(), channel.to_string());
        let thread = {
            let (stop, sent, position) = (stop.clone(), sent.clone(), position.clone());
            std::thread::spawn(move || {
                let client = Client::connect(&aeron_dir).expect("the publisher's client connects");
                let publication = client
                    .add_exclusive_publication(&channel, stream)
                    .expect("the publisher's publication");
                let mut idle = BackoffIdle::new();
                let mut sequence = 0u64;
                while !stop.load(Ordering::Acquire) {
                    match publication.offer(&message(sequence)) {
                        Ok(at) => {
                            sequence += 1;
                            position.store(at, Ordering::Release);
                            sent.store(sequence, Ordering::Release);
                            if sequence.is_multiple_of(burst.max(1)) {
                                std::thread::sleep(pause);
                            }
                        }
                        Err(error) if error.is_retryable() => idle.idle(0),
                        Err(error) => panic!("offer: {error}"),
                    }
                }
                sequence
            })
        };
        Self {
            stop,
            sent,
            position,
            thread: Some(thread),
        }
    }

    /// How many messages have gone out so far.
    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::Acquire)
    }

    /// The publication's position after the last message that went out.
    pub fn position(&self) -> i64 {
        self.position.load(Ordering::Acquire)
    }

    /// Asks the thread to stop after the message it is offering; [`Self::stop`] waits for it.
    pub fn request_stop(&self) {
        self.stop.store(true, Ordering::Release);
    }

    /// Whether a stop was asked for.
    pub fn stopping(&self) -> bool {
        self.stop.load(Ordering::Acquire)
    }

    /// Stops the thread and waits for it; returns how many messages went out.
    pub fn stop(mut self) -> u64 {
        self.request_stop();
        self.join()
    }

    fn join(&mut self) -> u64 {
        match self.thread.take() {
            Some(thread) => thread
                .join()
                .expect("the publisher thread ends without a panic"),
            None => self.sent(),
        }
    }
}

impl Drop for SteadyPublisher {
    fn drop(&mut self) {
        self.request_stop();
        if !std::thread::panicking() {
            self.join();
        }
    }
}
