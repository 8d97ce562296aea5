//! Helpers the CLI's test binaries share: the `tern` binary and a runner, a steady publisher,
//! numbered messages, a small recorded archive.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use tern_archive::{Archive, ArchiveConfig};
use tern_transport::{BackoffIdle, Client, Idle, MediaDriver};

use tern_testkit::{driver, SteadyPublisher};

pub const TERN: &str = env!("CARGO_BIN_EXE_tern");

pub fn tern(args: &[&str]) -> (i32, String, String) {
    tern_testkit::run(TERN, args)
}

/// Publishes [`message`]s on `aeron:ipc` stream 1001 until stopped, pausing 200 us every 64.
pub fn steady_publisher(driver: &MediaDriver) -> SteadyPublisher {
    let pace = (64, Duration::from_micros(200));
    SteadyPublisher::start(driver.dir(), "aeron:ipc", 1001, pace, message)
}

/// Sequence-numbered messages of varying length, some longer than the MTU.
pub fn message(sequence: u64) -> Vec<u8> {
    let length = 16 + (sequence as usize * 37) % 3000;
    let mut bytes = vec![(sequence % 251) as u8; length];
    bytes[0..8].copy_from_slice(&sequence.to_le_bytes());
    bytes
}

pub fn small_archive(tag: &str) -> (MediaDriver, tempfile::TempDir) {
    let driver = driver(tag);
    let data = tempfile::tempdir().expect("temp dir");
    {
        let mut config = ArchiveConfig::new(data.path(), driver.dir());
        config.segment_length = 128 * 1024;
        let archive = Archive::launch(config).expect("archive");
        archive
            .start_recording("aeron:ipc", 5, tern_archive::SourceLocation::Remote)
            .expect("record");
        let client = Client::connect(driver.dir()).expect("client");
        let mut idle = BackoffIdle::new();
        for stream_session in 0..3 {
            let publication = client
                .add_exclusive_publication("aeron:ipc", 5)
                .expect("pub");
            let deadline = Instant::now() + Duration::from_secs(10);
            while archive.recordings().len() <= stream_session {
                assert!(Instant::now() < deadline);
                idle.idle(0);
            }
            for sequence in 0..300 {
                while publication.offer(&message(sequence)).is_err() {
                    idle.idle(0);
                }
            }
            let id = archive.recordings()[stream_session].descriptor.recording_id;
            while archive.recording(id).expect("info").recorded_position < publication.position() {
                idle.idle(0);
            }
        }
        archive.shutdown();
    }
    (driver, data)
}

/// An archive with one recording of 40 messages 5 ms apart (200 ms of original time).
pub fn record_gapped(tag: &str) -> (MediaDriver, tempfile::TempDir) {
    let driver = driver(tag);
    let data = tempfile::tempdir().expect("temp dir");
    {
        let archive =
            Archive::launch(ArchiveConfig::new(data.path(), driver.dir())).expect("archive");
        archive
            .start_recording("aeron:ipc", 11, tern_archive::SourceLocation::Remote)
            .expect("record");
        let client = Client::connect(driver.dir()).expect("client");
        let publication = client
            .add_exclusive_publication("aeron:ipc", 11)
            .expect("pub");
        let mut idle = BackoffIdle::new();
        let deadline = Instant::now() + Duration::from_secs(10);
        while archive.recordings().is_empty() {
            assert!(Instant::now() < deadline);
            idle.idle(0);
        }
        for sequence in 0..40u64 {
            std::thread::sleep(Duration::from_millis(5));
            while publication.offer(&message(sequence)).is_err() {
                idle.idle(0);
            }
        }
        while archive.recordings()[0].recorded_position < publication.position() {
            idle.idle(0);
        }
        archive.shutdown();
    }
    (driver, data)
}

/// The sequence number in a `--print hex` line of a numbered message.
pub fn sequence_of(line: &str) -> u64 {
    let hex = line.split('\t').nth(2).expect("payload column");
    let bytes: Vec<u8> = (0..8)
        .map(|index| u8::from_str_radix(&hex[index * 2..index * 2 + 2], 16).expect("hex"))
        .collect();
    u64::from_le_bytes(bytes.try_into().expect("8 bytes"))
}

/// A `tern driver` or `tern archive` child process, stopped with SIGTERM when dropped.
pub struct TernProcess {
    pub child: std::process::Child,
    /// Standard error lines as they come.
    pub stderr: std::sync::mpsc::Receiver<String>,
    /// Standard output lines up to and including the ready line.
    pub startup: Vec<String>,
}

impl TernProcess {
    /// Start `tern ARGS` and wait for a standard output line starting with `ready`.
    pub fn spawn(args: &[&str], ready: &str) -> Self {
        let mut child = Command::new(TERN)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn tern");
        let stdout = child.stdout.take().expect("stdout");
        let stderr = child.stderr.take().expect("stderr");
        let (ready_sender, ready_wait) = std::sync::mpsc::channel();
        let ready = ready.to_string();
        std::thread::spawn(move || {
            let mut startup = Vec::new();
            let mut lines = BufReader::new(stdout).lines().map_while(Result::ok);
            for line in lines.by_ref() {
                let is_ready = line.starts_with(&ready);
                startup.push(line);
                if is_ready {
                    let _ = ready_sender.send(std::mem::take(&mut startup));
                    break;
                }
            }
            // Keep the pipe drained.
            for _ in lines {}
        });
        let (lines, stderr_lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = lines.send(line);
            }
        });
        let Ok(startup) = ready_wait.recv_timeout(Duration::from_secs(30)) else {
            let _ = child.kill();
            let said: Vec<String> = stderr_lines.try_iter().collect();
            panic!("tern {args:?} did not start: {said:?}");
        };
        Self {
            child,
            stderr: stderr_lines,
            startup,
        }
    }

    /// The first standard error line containing `text` within `timeout`.
    pub fn stderr_line(&self, text: &str, timeout: Duration) -> Option<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            match self.stderr.recv_timeout(left) {
                Ok(line) if line.contains(text) => return Some(line),
                Ok(_) => {}
                Err(_) => return None,
            }
        }
    }

    pub fn stop(&mut self) {
        if !matches!(self.child.try_wait(), Ok(None)) {
            return;
        }
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if !matches!(self.child.try_wait(), Ok(None)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for TernProcess {
    fn drop(&mut self) {
        self.stop();
    }
}
