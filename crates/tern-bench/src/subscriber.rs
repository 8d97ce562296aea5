//! The measuring subscriber: a separate process (tern-bench re-executed as
//! `tern-bench --subscriber ...`) on the bench's media driver, so that what the pacing and
//! replay-start cases measure is what a user's subscriber sees, not what the replayer believes.
//!
//! It subscribes, prints `ready`, and polls without sleeping (yielding when idle). Each message
//! carries its sequence number (little-endian u64 at offset 0) and its send time (i64
//! CLOCK_REALTIME nanoseconds since the epoch, little-endian at offset 16, what
//! `--time-source field:16:ns` reads); both processes read the same clock, so arrival - send is
//! meaningful.
//!
//! - `--mode messages`: prints `connected` once it has an image, keeps every arrival in memory
//!   and, after `--messages` of them (or on the timeout, or when its standard input closes),
//!   prints one `m SEQUENCE SENT_NS ARRIVAL_NS` line each and `done COUNT SHORT`.
//! - `--mode starts`: prints `first SESSION ARRIVAL_NS` at the first message of each new
//!   publisher session (a replay), until the timeout or its standard input closes.
//!
//! The parent side, [`Subscriber`], starts the process and reads its lines.

use anyhow::{bail, Context};
use clap::{Parser, ValueEnum};
use std::collections::HashSet;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tern_archive::epoch_nanos;
use tern_transport::{Client, Subscription};

/// The first argument that makes tern-bench the subscriber process.
pub const FLAG: &str = "--subscriber";
/// Where a message's sequence number is (little-endian u64).
pub const SEQUENCE_OFFSET: usize = 0;
/// Where a message's send time is (little-endian i64 epoch nanoseconds).
pub const SEND_TIME_OFFSET: usize = 16;
/// The subscriber's client conductor idle sleep: short, so that its own discovery of a new image
/// adds little to what is measured (a tern client's default is 1 ms, Aeron's 16 ms).
pub const CLIENT_IDLE: Duration = Duration::from_micros(100);
/// How long to wait for the process to subscribe.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// What the subscriber reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// Every message's sequence, send time and arrival.
    Messages,
    /// The arrival of the first message of each session.
    Starts,
}

/// The subscriber process's command line (after [`FLAG`]).
#[derive(Debug, Parser)]
#[command(name = "tern-bench --subscriber")]
pub struct SubscriberArgs {
    /// The media driver's directory.
    #[arg(long)]
    aeron_dir: String,
    /// The channel to subscribe to.
    #[arg(long, default_value = "aeron:ipc")]
    channel: String,
    /// The stream id.
    #[arg(long)]
    stream: i32,
    /// What to report.
    #[arg(long, value_enum)]
    mode: Mode,
    /// Messages to wait for (`--mode messages`).
    #[arg(long, default_value_t = 0)]
    messages: usize,
    /// Give up (reporting what arrived) after this many milliseconds.
    #[arg(long)]
    timeout_ms: u64,
    /// The client conductor's idle sleep in microseconds.
    #[arg(long, default_value_t = CLIENT_IDLE.as_micros() as u64)]
    client_idle_us: u64,
}

fn le_u64(bytes: &[u8], offset: usize) -> Option<u64> {
    let field: [u8; 8] = bytes.get(offset..offset + 8)?.try_into().ok()?;
    Some(u64::from_le_bytes(field))
}

/// A flag set when standard input reaches its end: the parent went away or is done with us.
fn watch_stdin() -> Arc<AtomicBool> {
    let closed = Arc::new(AtomicBool::new(false));
    let flag = closed.clone();
    let watcher = std::thread::Builder::new()
        .name("stdin".into())
        .spawn(move || {
            let _ = std::io::copy(&mut std::io::stdin().lock(), &mut std::io::sink());
            flag.store(true, Ordering::Release);
        });
    if let Err(error) = watcher {
        tracing::warn!("subscriber: no standard input watcher: {error}");
    }
    closed
}

/// The subscriber process: subscribe, report, exit.
///
/// # Errors
/// The driver, the subscription or standard output failed.
pub fn run(args: &SubscriberArgs) -> anyhow::Result<()> {
    let idle = Duration::from_micros(args.client_idle_us.max(1));
    let client = Client::connect_with_idle(&args.aeron_dir, idle)?;
    let subscription = client.add_subscription(&args.channel, args.stream)?;
    let closed = watch_stdin();
    let mut out = BufWriter::new(std::io::stdout().lock());
    writeln!(out, "ready")?;
    out.flush()?;
    let deadline = Instant::now() + Duration::from_millis(args.timeout_ms);
    let stop = || closed.load(Ordering::Acquire) || Instant::now() > deadline;
    match args.mode {
        Mode::Messages => messages(&subscription, args.messages, stop, &mut out),
        Mode::Starts => starts(&subscription, stop, &mut out),
    }
}

fn messages(
    subscription: &Subscription,
    wanted: usize,
    stop: impl Fn() -> bool,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let mut arrivals: Vec<(u64, i64, i64)> = Vec::with_capacity(wanted);
    let mut short = 0usize;
    let mut connected = false;
    while arrivals.len() < wanted {
        if !connected && subscription.is_connected() {
            connected = true;
            writeln!(out, "connected")?;
            out.flush()?;
        }
        let work = subscription.poll(
            |fragment, _| {
                let arrival = epoch_nanos();
                match (
                    le_u64(fragment, SEQUENCE_OFFSET),
                    le_u64(fragment, SEND_TIME_OFFSET),
                ) {
                    (Some(sequence), Some(sent)) => {
                        arrivals.push((sequence, sent as i64, arrival));
                    }
                    _ => short += 1,
                }
            },
            16,
        )?;
        if work == 0 {
            if stop() {
                break;
            }
            // The arrival time is the measurement: no sleep, only a yield to the other cores.
            std::thread::yield_now();
        }
    }
    for (sequence, sent, arrival) in &arrivals {
        writeln!(out, "m {sequence} {sent} {arrival}")?;
    }
    writeln!(out, "done {} {short}", arrivals.len())?;
    out.flush()?;
    Ok(())
}

fn starts(
    subscription: &Subscription,
    stop: impl Fn() -> bool,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let mut seen = HashSet::new();
    let mut firsts: Vec<(i32, i64)> = Vec::new();
    loop {
        let work = subscription.poll(
            |_, header| {
                if seen.insert(header.session_id) {
                    firsts.push((header.session_id, epoch_nanos()));
                }
            },
            64,
        )?;
        if !firsts.is_empty() {
            for (session, arrival) in firsts.drain(..) {
                writeln!(out, "first {session} {arrival}")?;
            }
            out.flush()?;
        }
        if work == 0 {
            if stop() {
                return Ok(());
            }
            std::thread::yield_now();
        }
    }
}

/// One message as the subscriber process saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Arrival {
    /// Its sequence number.
    pub sequence: u64,
    /// The send time inside it (epoch ns).
    pub sent_ns: i64,
    /// When the subscriber got it (epoch ns).
    pub arrival_ns: i64,
}

/// A subscriber process started by this one; killed if still running when dropped.
pub struct Subscriber {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    what: String,
}

impl Subscriber {
    /// Start a subscriber process on `stream` of the driver in `aeron_dir` and wait until it has
    /// subscribed. `messages` is what `Mode::Messages` waits for; after `timeout` it gives up.
    ///
    /// # Errors
    /// The process could not be started or did not subscribe.
    pub fn spawn(
        aeron_dir: &str,
        stream: i32,
        mode: Mode,
        messages: usize,
        timeout: Duration,
        what: &str,
    ) -> anyhow::Result<Self> {
        let exe = std::env::current_exe().context("find tern-bench's own executable")?;
        let mode_name = match mode {
            Mode::Messages => "messages",
            Mode::Starts => "starts",
        };
        let mut child = Command::new(&exe)
            .arg(FLAG)
            .args(["--aeron-dir", aeron_dir, "--mode", mode_name])
            .args(["--stream", &stream.to_string()])
            .args(["--messages", &messages.to_string()])
            .args(["--timeout-ms", &timeout.as_millis().to_string()])
            .args(["--client-idle-us", &CLIENT_IDLE.as_micros().to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("start {} {FLAG} ({what})", exe.display()))?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take();
        let (send, lines) = mpsc::channel();
        let mut subscriber = Self {
            child,
            stdin,
            lines,
            what: what.to_string(),
        };
        let stdout = stdout.context("the subscriber's standard output")?;
        std::thread::Builder::new()
            .name("subscriber-lines".into())
            .spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    if send.send(line).is_err() {
                        break;
                    }
                }
            })
            .context("spawn the subscriber's reader")?;
        subscriber.wait_for("ready", START_TIMEOUT)?;
        Ok(subscriber)
    }

    /// The next line, within `timeout`.
    ///
    /// # Errors
    /// None came in time, or the process ended.
    pub fn next_line(&mut self, timeout: Duration) -> anyhow::Result<String> {
        match self.lines.recv_timeout(timeout) {
            Ok(line) => Ok(line),
            Err(RecvTimeoutError::Timeout) => {
                bail!(
                    "the subscriber process ({}) said nothing for {timeout:?}",
                    self.what
                )
            }
            Err(RecvTimeoutError::Disconnected) => {
                let status = self.child.wait().ok();
                bail!(
                    "the subscriber process ({}) ended ({})",
                    self.what,
                    status.map_or("status unknown".into(), |status| status.to_string())
                )
            }
        }
    }

    /// Skip lines until one whose first word is `word`; returns its other words.
    ///
    /// # Errors
    /// No such line within `timeout`, or the process ended.
    pub fn wait_for(&mut self, word: &str, timeout: Duration) -> anyhow::Result<Vec<String>> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self
                .next_line(left)
                .with_context(|| format!("waiting for {word:?}"))?;
            let mut words = line.split_whitespace();
            if words.next() == Some(word) {
                return Ok(words.map(str::to_string).collect());
            }
        }
    }

    /// The arrival of the first message of `session` (a line `first SESSION ARRIVAL_NS`), within
    /// `timeout`; lines of other sessions are skipped.
    ///
    /// # Errors
    /// None came in time, the process ended, or it wrote nonsense.
    pub fn first_of(&mut self, session: i32, timeout: Duration) -> anyhow::Result<i64> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let words = self
                .wait_for("first", left)
                .with_context(|| format!("the first message of session {session}"))?;
            if let [seen, arrival] = words.as_slice() {
                if seen.parse::<i32>().ok() == Some(session) {
                    return arrival.parse().context("an arrival time");
                }
            } else {
                bail!("subscriber line `first {}`", words.join(" "));
            }
        }
    }

    /// Wait (up to `timeout`) for a `Mode::Messages` subscriber to finish and return what it
    /// received, in arrival order.
    ///
    /// # Errors
    /// It did not finish in time, ended early, or wrote nonsense.
    pub fn arrivals(mut self, timeout: Duration) -> anyhow::Result<Vec<Arrival>> {
        let deadline = Instant::now() + timeout;
        let mut arrivals = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self.next_line(left)?;
            let words: Vec<&str> = line.split_whitespace().collect();
            match words.as_slice() {
                ["m", sequence, sent, arrival] => arrivals.push(Arrival {
                    sequence: sequence.parse().context("a sequence number")?,
                    sent_ns: sent.parse().context("a send time")?,
                    arrival_ns: arrival.parse().context("an arrival time")?,
                }),
                ["done", _, short] => {
                    if *short != "0" {
                        bail!("{short} messages shorter than 24 bytes arrived");
                    }
                    return Ok(arrivals);
                }
                _ => {}
            }
        }
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        // A closed standard input tells it to stop; give it a moment, then kill it.
        drop(self.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(2);
        loop {
            match self.child.try_wait() {
                Ok(Some(_)) => return,
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(5));
                }
                _ => break,
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
