//! `tern demo --cluster`: the cluster's story on one machine, narrated.
//!
//! 1. Three members of the example key-value service, each a `tern cluster node` child process
//!    of this executable with an embedded media driver, on free loopback UDP ports, their data
//!    in the demo's directory.
//! 2. Three clients (in-process [`ClusterClient`]s on an embedded media driver of the demo's own)
//!    sending puts at a steady rate.
//! 3. The leader killed (SIGKILL) while they send; a new leader elected; the clients resume their
//!    egress from it with no gap (each message once, in order) and send again what the killed
//!    leader lost; the killed member restarted and caught up.
//! 4. One client's egress replayed from the cluster time of its middle message at 10x, by a
//!    `tern replay` child process reading a member's egress recording; another client's whole
//!    egress read back over Aeron from the restarted member ([`ClusterClient::replay_egress`])
//!    and compared with what the client got.
//! 5. Every member stopped cleanly (SIGTERM); their egress recordings byte-compared and every
//!    frame verified.
//! 6. A summary: messages, failover time as the clients saw it, replay time, where the data is.
//!
//! Exits 0 only when every check passed; each failed one prints a `FAILED:` line.

use super::{prepare_dir, DEMO_MARKER};
use crate::util::{format_time, DriverArgs};
use anyhow::{bail, ensure, Context, Result};
use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, UNIX_EPOCH};
use tern_archive::ArchiveView;
use tern_cluster::agent::MemberEndpoints;
use tern_cluster::client::{ClientCounts, ClusterClient, EgressMark};
use tern_cluster::egress::EGRESS_DIR;
use tern_cluster::{Egress, NodeStatus, Role};
use tern_transport::Client;

/// The demo's directory when `--dir` is not given.
pub const DEFAULT_DIR: &str = "tern-demo-cluster";
/// Puts per client when `--messages` is not given (about 10 s of sending).
pub const DEFAULT_MESSAGES: u64 = 2000;
/// Members of the demo cluster.
const MEMBERS: u64 = 3;
/// Clients sending puts.
const CLIENTS: usize = 3;
/// Each client sends a put this often (and sleeps in between).
const SEND_INTERVAL: Duration = Duration::from_millis(5);
/// A put not acknowledged this long after it was sent is sent again (lost with the killed
/// leader before it was committed).
const RESEND_AFTER: Duration = Duration::from_secs(1);
/// The replay's speed.
const REPLAY_SPEED: f64 = 10.0;

/// The settings of `tern demo --cluster`.
#[derive(Debug, Clone)]
pub struct Options {
    /// The demo's directory (replaced at the start).
    pub dir: PathBuf,
    /// Puts per client.
    pub messages: u64,
}

/// The checks that failed, each printed as it fails.
#[derive(Debug, Default)]
struct Checks {
    failed: Vec<String>,
}

impl Checks {
    /// Record a check: `ok`, or print and keep `what` failed.
    fn check(&mut self, ok: bool, what: impl FnOnce() -> String) -> bool {
        if !ok {
            let what = what();
            println!("   FAILED: {what}");
            self.failed.push(what);
        }
        ok
    }
}

/// The member processes; the ones still running are killed when dropped.
struct Members {
    exe: PathBuf,
    config: PathBuf,
    dir: PathBuf,
    aeron_dirs: Vec<String>,
    children: Vec<Option<Child>>,
}

impl Members {
    fn index(id: u64) -> usize {
        (id - 1) as usize
    }

    /// The log file member `id`'s output goes to.
    fn log(&self, id: u64) -> PathBuf {
        self.dir.join(format!("node-{id}.log"))
    }

    /// Start member `id` (`tern cluster node`), its output appended to its log file.
    fn spawn(&mut self, id: u64) -> Result<u32> {
        let log_path = self.log(id);
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .with_context(|| format!("open {}", log_path.display()))?;
        let errors = log
            .try_clone()
            .with_context(|| format!("open {}", log_path.display()))?;
        let child = Command::new(&self.exe)
            .args(["cluster", "node", "--config"])
            .arg(&self.config)
            .args([
                "--member",
                &id.to_string(),
                "--embedded-driver",
                "--aeron-dir",
            ])
            .arg(&self.aeron_dirs[Self::index(id)])
            // Plain text in the log file.
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(errors)
            .spawn()
            .with_context(|| format!("start member {id} ({})", self.exe.display()))?;
        let pid = child.id();
        self.children[Self::index(id)] = Some(child);
        Ok(pid)
    }

    /// Kill member `id` with SIGKILL and reap it.
    fn kill(&mut self, id: u64) -> Result<()> {
        if let Some(mut child) = self.children[Self::index(id)].take() {
            child.kill().with_context(|| format!("kill member {id}"))?;
            child.wait().with_context(|| format!("reap member {id}"))?;
        }
        Ok(())
    }

    /// Fail naming the member (and its log) that exited on its own.
    fn check_running(&mut self) -> Result<()> {
        for id in 1..=MEMBERS {
            if let Some(child) = self.children[Self::index(id)].as_mut() {
                if let Some(status) = child.try_wait().context("check a member")? {
                    self.children[Self::index(id)] = None;
                    bail!(
                        "member {id} exited ({status}); see {}",
                        self.log(id).display()
                    );
                }
            }
        }
        Ok(())
    }

    /// Stop member `id` with SIGTERM and wait up to 10 s for it to exit; its exit status.
    fn stop(&mut self, id: u64) -> Result<ExitStatus> {
        let Some(mut child) = self.children[Self::index(id)].take() else {
            bail!("member {id} is not running");
        };
        let sent = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .context("run kill -TERM")?;
        ensure!(sent.success(), "kill -TERM member {id}: {sent}");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = child.try_wait().context("wait for a member")? {
                return Ok(status);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                bail!("member {id} did not stop within 10 s of SIGTERM (killed)");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Members {
    fn drop(&mut self) {
        for child in self.children.iter_mut().filter_map(Option::take) {
            let mut child = child;
            let _ = child.kill();
            let _ = child.wait();
        }
        for dir in &self.aeron_dirs {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// Free loopback UDP ports, all different (the sockets are held until every port is chosen).
fn free_ports(count: usize) -> Result<Vec<u16>> {
    let sockets = (0..count)
        .map(|_| std::net::UdpSocket::bind("127.0.0.1:0"))
        .collect::<std::io::Result<Vec<_>>>()
        .context("find free UDP ports")?;
    sockets
        .iter()
        .map(|socket| Ok(socket.local_addr()?.port()))
        .collect::<std::io::Result<Vec<_>>>()
        .context("find free UDP ports")
}

/// The cluster's config file: its members' endpoints and the data directory.
fn config_text(data_dir: &Path, members: &[MemberEndpoints]) -> String {
    let quoted = |text: &str| toml::Value::String(text.to_string()).to_string();
    let mut text = format!(
        "# made by tern demo --cluster\ndata_dir = {}\n",
        quoted(&data_dir.to_string_lossy())
    );
    for member in members {
        text.push_str(&format!(
            "\n[[members]]\nid = {}\nconsensus = {}\ningress = {}\n",
            member.id,
            quoted(&member.consensus),
            quoted(&member.ingress)
        ));
    }
    text
}

/// Ask each of `ids` for its status until one says it leads (or `timeout`).
fn wait_for_leader(
    observer: &mut ClusterClient,
    ids: &[u64],
    timeout: Duration,
) -> Option<NodeStatus> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        for id in ids {
            if let Some(status) = observer.status_of(*id, false, Duration::from_millis(300)) {
                if status.role == Role::Leader {
                    return Some(status);
                }
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

/// Wait until `done` holds for the status of every member (or `timeout`); the last statuses.
fn wait_for_members(
    observer: &mut ClusterClient,
    timeout: Duration,
    mut done: impl FnMut(&[NodeStatus]) -> bool,
) -> (bool, Vec<Option<NodeStatus>>) {
    let deadline = Instant::now() + timeout;
    loop {
        let statuses: Vec<Option<NodeStatus>> = (1..=MEMBERS)
            .map(|id| observer.status_of(id, false, Duration::from_millis(300)))
            .collect();
        let answered: Vec<NodeStatus> = statuses.iter().flatten().cloned().collect();
        if answered.len() == statuses.len() && done(&answered) {
            return (true, statuses);
        }
        if Instant::now() > deadline {
            return (false, statuses);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// What the sending thread and the demo share.
#[derive(Debug, Default)]
struct Shared {
    /// Puts acknowledged so far, all clients.
    acknowledged: AtomicU64,
    /// When the leader was killed.
    killed_at: Mutex<Option<Instant>>,
    /// Set when the demo gives up: the sending thread stops.
    abort: AtomicBool,
}

/// One egress message as a client got it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Received {
    sequence: u64,
    timestamp_ns: i64,
}

/// What one client did, for the checks and the summary.
#[derive(Debug)]
struct ClientReport {
    session_id: i64,
    /// Puts acknowledged (of the demo's `messages`).
    acknowledged: u64,
    /// Puts sent again (lost with the killed leader, or their reply still coming).
    resent: u64,
    /// Acknowledgements of a put already acknowledged (a resent put that had been committed).
    repeated: u64,
    /// Every egress message, in the order the client got them, the `count` reply last.
    received: Vec<Received>,
    /// The `count` reply's text.
    count_reply: String,
    /// The `count` reply's log index (every member applied it before the stop).
    last_log_index: u64,
    /// What the client did to give each message once, in order.
    counts: ClientCounts,
    /// From the kill to the first reply to a put first sent after it.
    failover: Option<Duration>,
}

/// A client sending its puts.
struct Sender {
    number: usize,
    client: ClusterClient,
    /// Next put to send the first time.
    next: usize,
    first_sent: Vec<Option<Instant>>,
    last_sent: Vec<Option<Instant>>,
    acked: Vec<bool>,
    /// Puts before this one are all acknowledged.
    first_unacked: usize,
    report: ClientReport,
}

impl Sender {
    fn put(&self, key: usize) -> Vec<u8> {
        format!("put key-{}-{key} {key}", self.number).into_bytes()
    }

    /// One step: send the next put (or again the oldest one lost), take in the egress.
    fn tick(&mut self, killed_at: Option<Instant>) {
        let now = Instant::now();
        let puts = self.acked.len();
        if self.next < puts {
            if self.client.offer(&self.put(self.next)) {
                self.first_sent[self.next] = Some(now);
                self.last_sent[self.next] = Some(now);
                self.next += 1;
            }
        } else if !self.client.resuming() {
            while self.first_unacked < puts && self.acked[self.first_unacked] {
                self.first_unacked += 1;
            }
            let lost = (self.first_unacked..puts).find(|key| {
                !self.acked[*key]
                    && self.last_sent[*key].is_some_and(|sent| now - sent > RESEND_AFTER)
            });
            if let Some(key) = lost {
                if self.client.offer(&self.put(key)) {
                    self.last_sent[key] = Some(now);
                    self.report.resent += 1;
                }
            }
        }
        self.client.poll();
        for egress in self.client.take_egress() {
            self.on_egress(&egress, killed_at);
        }
    }

    fn on_egress(&mut self, egress: &Egress, killed_at: Option<Instant>) {
        self.report.received.push(Received {
            sequence: egress.sequence,
            timestamp_ns: egress.timestamp_ns,
        });
        let reply = String::from_utf8_lossy(&egress.payload);
        let prefix = format!("ok key-{}-", self.number);
        let Some(key) = reply
            .strip_prefix(&prefix)
            .and_then(|key| key.parse::<usize>().ok())
            .filter(|key| *key < self.acked.len())
        else {
            return;
        };
        if self.acked[key] {
            self.report.repeated += 1;
            return;
        }
        self.acked[key] = true;
        self.report.acknowledged += 1;
        if let (None, Some(killed_at), Some(sent)) =
            (self.report.failover, killed_at, self.first_sent[key])
        {
            if sent > killed_at {
                self.report.failover = Some(Instant::now() - killed_at);
            }
        }
    }

    fn done(&self) -> bool {
        self.report.acknowledged == self.acked.len() as u64
    }

    /// Once every put is acknowledged: ask `count` (the last message of the session), taking in
    /// what comes before its reply.
    fn finish(&mut self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        while self.client.resuming() || !self.client.offer(b"count") {
            ensure!(
                Instant::now() < deadline,
                "client {}: the leader did not take its `count`",
                self.number
            );
            self.client.poll();
            for egress in self.client.take_egress() {
                self.on_egress(&egress, None);
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        loop {
            ensure!(
                Instant::now() < deadline,
                "client {}: no reply to its `count` in {} s",
                self.number,
                timeout.as_secs()
            );
            self.client.poll();
            for egress in self.client.take_egress() {
                if egress.payload.starts_with(b"count ") {
                    self.report.received.push(Received {
                        sequence: egress.sequence,
                        timestamp_ns: egress.timestamp_ns,
                    });
                    self.report.count_reply = String::from_utf8_lossy(&egress.payload).into();
                    self.report.last_log_index = egress.log_index;
                    return Ok(());
                }
                self.on_egress(&egress, None);
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

/// The clients: connect, send every put at a steady pace (again what was lost), then `count`.
fn run_clients(
    aeron_dir: &str,
    members: &[MemberEndpoints],
    puts: u64,
    shared: &Shared,
) -> Result<Vec<ClientReport>> {
    let mut senders = Vec::new();
    for number in 1..=CLIENTS {
        let aeron = Client::connect(aeron_dir).context("connect to the demo's media driver")?;
        let mut client = ClusterClient::new(aeron, members.to_vec(), "localhost:0")
            .context("start a cluster client")?;
        let session_id = client
            .connect(b"", Duration::from_secs(20))
            .with_context(|| format!("client {number}: open a session"))?;
        let puts = puts as usize;
        senders.push(Sender {
            number,
            client,
            next: 0,
            first_sent: vec![None; puts],
            last_sent: vec![None; puts],
            acked: vec![false; puts],
            first_unacked: 0,
            report: ClientReport {
                session_id,
                acknowledged: 0,
                resent: 0,
                repeated: 0,
                received: Vec::new(),
                count_reply: String::new(),
                last_log_index: 0,
                counts: ClientCounts::default(),
                failover: None,
            },
        });
    }
    // Generous: the sending itself, a failover or two, a slow machine.
    let deadline = Instant::now() + SEND_INTERVAL * puts as u32 + Duration::from_secs(60);
    loop {
        let killed_at = shared.killed_at.lock().map_or(None, |killed_at| *killed_at);
        for sender in senders.iter_mut() {
            sender.tick(killed_at);
        }
        let acknowledged: u64 = senders
            .iter()
            .map(|sender| sender.report.acknowledged)
            .sum();
        shared.acknowledged.store(acknowledged, Ordering::SeqCst);
        if senders.iter().all(Sender::done) {
            break;
        }
        ensure!(!shared.abort.load(Ordering::SeqCst), "the demo stopped");
        if Instant::now() > deadline {
            let report: Vec<String> = senders
                .iter()
                .map(|sender| {
                    format!(
                        "client {} {} of {puts}",
                        sender.number, sender.report.acknowledged
                    )
                })
                .collect();
            bail!("puts not acknowledged in time: {}", report.join(", "));
        }
        std::thread::sleep(SEND_INTERVAL);
    }
    let mut reports = Vec::new();
    for mut sender in senders {
        sender.finish(Duration::from_secs(10))?;
        sender.report.counts = sender.client.counts();
        sender.client.close();
        reports.push(sender.report);
    }
    // Let the closes reach the leader before the driver goes.
    std::thread::sleep(Duration::from_millis(50));
    Ok(reports)
}

/// The file names and contents of a member's egress segment files, by name.
fn segment_files(egress_dir: &Path) -> Result<Vec<(String, Vec<u8>)>> {
    let mut files = Vec::new();
    for entry in
        std::fs::read_dir(egress_dir).with_context(|| format!("read {}", egress_dir.display()))?
    {
        let entry = entry.with_context(|| format!("read {}", egress_dir.display()))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.ends_with(".rec") {
            let bytes = std::fs::read(entry.path()).with_context(|| format!("read {name}"))?;
            files.push((name, bytes));
        }
    }
    files.sort();
    Ok(files)
}

/// `count` and `noun`, the noun in the plural unless the count is 1.
fn plural(count: impl Into<u64>, noun: &str) -> String {
    let count = count.into();
    if count == 1 {
        format!("{count} {noun}")
    } else {
        format!("{count} {noun}s")
    }
}

/// Seconds, short.
fn seconds(duration: Duration) -> String {
    format!("{:.2} s", duration.as_secs_f64())
}

/// An RFC 3339 time with nanoseconds (what `tern replay --from-time` reads back exactly).
fn format_time_nanos(epoch_ns: i64) -> String {
    let time = UNIX_EPOCH + Duration::from_nanos(epoch_ns.max(0) as u64);
    humantime::format_rfc3339_nanos(time).to_string()
}

/// Run the cluster demo.
pub fn run(options: Options) -> Result<ExitCode> {
    ensure!(options.messages >= 10, "--messages must be at least 10");
    let started = Instant::now();
    let exe = std::env::current_exe().context("find this executable")?;
    prepare_dir(&options.dir)?;
    std::fs::create_dir_all(&options.dir)
        .and_then(|()| std::fs::write(options.dir.join(DEMO_MARKER), b"tern demo --cluster data\n"))
        .with_context(|| format!("create {}", options.dir.display()))?;
    let dir = std::path::absolute(&options.dir)
        .with_context(|| format!("resolve {}", options.dir.display()))?;
    let ports = free_ports(2 * MEMBERS as usize)?;
    let members: Vec<MemberEndpoints> = (1..=MEMBERS)
        .map(|id| MemberEndpoints {
            id,
            consensus: format!("localhost:{}", ports[2 * (id as usize - 1)]),
            ingress: format!("localhost:{}", ports[2 * (id as usize - 1) + 1]),
        })
        .collect();
    let config = dir.join("cluster.toml");
    std::fs::write(&config, config_text(&dir, &members))
        .with_context(|| format!("write {}", config.display()))?;
    let aeron_base = std::env::temp_dir().join(format!("tern-demo-cluster-{}", std::process::id()));
    let aeron_base = aeron_base.to_string_lossy().into_owned();
    let mut nodes = Members {
        exe,
        config: config.clone(),
        dir: dir.clone(),
        aeron_dirs: (1..=MEMBERS)
            .map(|id| format!("{aeron_base}-node-{id}"))
            .collect(),
        children: (1..=MEMBERS).map(|_| None).collect(),
    };
    let mut checks = Checks::default();
    println!(
        "tern demo --cluster: {MEMBERS} members of the example key-value service on loopback, data in {}",
        options.dir.display()
    );

    // 1. The members.
    let mut pids = Vec::new();
    for id in 1..=MEMBERS {
        pids.push(nodes.spawn(id)?.to_string());
    }
    let client_dir = format!("{aeron_base}-clients");
    let driver = DriverArgs {
        aeron_dir: Some(client_dir.clone()),
        embedded_driver: true,
    }
    .resolve(true)?;
    let aeron = Client::connect(&driver.dir).context("connect to the demo's media driver")?;
    let mut observer = ClusterClient::new(aeron, members.clone(), "localhost:0")
        .context("start a cluster client")?;
    let all: Vec<u64> = (1..=MEMBERS).collect();
    let Some(first) = wait_for_leader(&mut observer, &all, Duration::from_secs(30)) else {
        nodes.check_running()?;
        bail!(
            "no leader elected in 30 s; see the members' logs {}/node-N.log",
            dir.display()
        );
    };
    println!(
        "1. cluster: members 1-{MEMBERS} started as `tern cluster node --config {} --member N --embedded-driver` (pids {}); member {} leads (term {}) after {}",
        config.display(),
        pids.join(", "),
        first.member_id,
        first.term,
        seconds(started.elapsed())
    );

    // 2. The clients, on a thread of their own.
    let shared = Arc::new(Shared::default());
    let sending = {
        let (shared, members, dir) = (shared.clone(), members.clone(), driver.dir.clone());
        let puts = options.messages;
        std::thread::spawn(move || run_clients(&dir, &members, puts, &shared))
    };
    let total = options.messages * CLIENTS as u64;
    println!(
        "2. clients: {CLIENTS} sessions, each sending {} puts (`put key-C-I I`) at about {:.0} a second",
        options.messages,
        1.0 / SEND_INTERVAL.as_secs_f64()
    );
    // A client thread that failed: its error, with the members' state.
    let client_failure =
        |sending: std::thread::JoinHandle<Result<Vec<ClientReport>>>| match sending.join() {
            Ok(Err(error)) => error,
            Ok(Ok(_)) => anyhow::anyhow!("the clients stopped early"),
            Err(_) => anyhow::anyhow!("the client thread panicked"),
        };

    // 3. The failover, while they send.
    while shared.acknowledged.load(Ordering::SeqCst) < total / 3 {
        if sending.is_finished() {
            return Err(client_failure(sending));
        }
        nodes.check_running()?;
        std::thread::sleep(Duration::from_millis(20));
    }
    let Some(leader) = wait_for_leader(&mut observer, &all, Duration::from_secs(10)) else {
        shared.abort.store(true, Ordering::SeqCst);
        bail!("no member says it leads");
    };
    let killed = leader.member_id;
    let acknowledged = shared.acknowledged.load(Ordering::SeqCst);
    nodes.kill(killed)?;
    let killed_at = Instant::now();
    if let Ok(mut at) = shared.killed_at.lock() {
        *at = Some(killed_at);
    }
    println!(
        "3. failover: killed the leader, member {killed} (SIGKILL), after {acknowledged} of {total} puts were acknowledged"
    );
    let others: Vec<u64> = all.iter().copied().filter(|id| *id != killed).collect();
    let Some(new_leader) = wait_for_leader(&mut observer, &others, Duration::from_secs(20)) else {
        shared.abort.store(true, Ordering::SeqCst);
        bail!("no new leader elected in 20 s after member {killed} was killed");
    };
    let elected_after = killed_at.elapsed();
    println!(
        "   member {} elected leader in term {}, {} after the kill",
        new_leader.member_id,
        new_leader.term,
        seconds(elected_after)
    );
    nodes.spawn(killed)?;
    let restarted_at = Instant::now();
    let target = observer
        .status_of(new_leader.member_id, false, Duration::from_secs(1))
        .map_or(new_leader.commit_index, |status| status.commit_index);
    let mut caught_up = None;
    while restarted_at.elapsed() < Duration::from_secs(30) {
        if let Some(status) = observer.status_of(killed, false, Duration::from_millis(300)) {
            if status.applied_index >= target {
                caught_up = Some(status);
                break;
            }
        }
        nodes.check_running()?;
        std::thread::sleep(Duration::from_millis(50));
    }
    if checks.check(caught_up.is_some(), || {
        format!("member {killed} restarted but did not catch up to index {target} in 30 s")
    }) {
        println!(
            "   member {killed} restarted and caught up (applied index {target}, the leader's commit at its restart) in {}",
            seconds(restarted_at.elapsed())
        );
    }
    let reports = match sending.join() {
        Ok(Ok(reports)) => reports,
        Ok(Err(error)) => return Err(error.context("the clients")),
        Err(_) => bail!("the client thread panicked"),
    };
    let mut failover = Duration::ZERO;
    for (index, report) in reports.iter().enumerate() {
        let number = index + 1;
        let sequences: Vec<u64> = report.received.iter().map(|m| m.sequence).collect();
        let expected: Vec<u64> = (1..=sequences.len() as u64).collect();
        let in_order = sequences == expected;
        checks.check(in_order, || {
            format!(
                "client {number}: {} egress messages, not the sequences 1..{} (first difference at message {:?})",
                sequences.len(),
                sequences.len(),
                sequences.iter().zip(&expected).position(|(a, b)| a != b).map(|at| at + 1)
            )
        });
        checks.check(report.acknowledged == options.messages, || {
            format!(
                "client {number}: {} of {} puts acknowledged",
                report.acknowledged, options.messages
            )
        });
        checks.check(report.count_reply == format!("count {total}"), || {
            format!(
                "client {number}: `count` answered {:?}, expected \"count {total}\"",
                report.count_reply
            )
        });
        if let Some(took) = report.failover {
            failover = failover.max(took);
        }
        println!(
            "   client {number} (session {}): {} puts acknowledged ({} sent again after the kill), {} egress messages received{}; {} dropped, {} refilled, {}; replies again {} after the kill",
            report.session_id,
            report.acknowledged,
            report.resent,
            sequences.len(),
            if in_order {
                format!(", sequences 1..{} with no gap", sequences.len())
            } else {
                String::new()
            },
            plural(report.counts.duplicates, "duplicate"),
            plural(report.counts.gaps, "gap"),
            plural(report.counts.resumes, "resume"),
            report.failover.map_or("-".to_string(), seconds)
        );
    }
    checks.check(
        reports.iter().all(|report| report.counts.resumes > 0),
        || "a client never resumed its egress after the new leader".into(),
    );
    let last_index = reports
        .iter()
        .map(|report| report.last_log_index)
        .max()
        .unwrap_or(0);
    let (converged, statuses) = wait_for_members(&mut observer, Duration::from_secs(20), |all| {
        all.iter().all(|status| status.applied_index >= last_index)
            && all
                .iter()
                .all(|status| status.egress_recorded == all[0].egress_recorded)
    });
    let egress_messages = statuses
        .first()
        .and_then(|status| status.as_ref())
        .map_or(0, |status| status.egress_recorded);
    checks.check(converged, || {
        format!(
            "the members did not all apply index {last_index} and record the same egress in 20 s: {}",
            statuses
                .iter()
                .zip(1..)
                .map(|(status, id)| match status {
                    Some(status) => format!(
                        "member {id} applied {} egress {}",
                        status.applied_index, status.egress_recorded
                    ),
                    None => format!("member {id} no answer"),
                })
                .collect::<Vec<_>>()
                .join(", ")
        )
    });

    // 4. One client's egress replayed from the middle at 10x, from the new leader's recording.
    let client = &reports[0];
    // The middle message, or the first of those made at the same cluster time (one log entry's
    // batch): a replay from that time starts there.
    let middle_time = client.received[client.received.len() / 2].timestamp_ns;
    let Some(middle) = client
        .received
        .iter()
        .find(|message| message.timestamp_ns == middle_time)
        .copied()
    else {
        bail!("client 1 received no egress");
    };
    let last = client.received[client.received.len() - 1];
    let expected = client
        .received
        .iter()
        .filter(|message| message.timestamp_ns >= middle.timestamp_ns)
        .count() as u64;
    let span = Duration::from_nanos((last.timestamp_ns - middle.timestamp_ns).max(0) as u64);
    let replay_dir = dir
        .join(format!("node-{}", new_leader.member_id))
        .join(EGRESS_DIR);
    let key = format!("tern-egress:{}", client.session_id);
    let from_time = format_time_nanos(middle.timestamp_ns);
    let speed = REPLAY_SPEED.to_string();
    let replay_args = [
        "replay",
        "0",
        "--dir",
        &replay_dir.to_string_lossy(),
        "--key",
        &key,
        "--time-source",
        "tern-egress",
        "--from-time",
        &from_time,
        "--speed",
        &speed,
        "--print",
        "none",
    ]
    .map(str::to_string);
    let replay_started = Instant::now();
    let output = Command::new(&nodes.exe)
        .args(&replay_args)
        .stdin(Stdio::null())
        .output()
        .context("run tern replay")?;
    let replay_took = replay_started.elapsed();
    let stderr = String::from_utf8_lossy(&output.stderr);
    let replayed = stderr
        .lines()
        .filter_map(|line| line.strip_suffix(" bytes"))
        .filter_map(|line| line.split(" messages, ").next())
        .find_map(|count| count.parse::<u64>().ok());
    println!(
        "4. replay: client 1's egress from {} (its message {} of {}, cluster time) at {REPLAY_SPEED}x from member {}'s recording: {} messages in {} (original span {} / {REPLAY_SPEED} = {})",
        format_time(middle.timestamp_ns),
        middle.sequence,
        client.received.len(),
        new_leader.member_id,
        replayed.map_or("?".to_string(), |count| count.to_string()),
        seconds(replay_took),
        seconds(span),
        seconds(span.div_f64(REPLAY_SPEED))
    );
    println!("   ran: tern {}", replay_args.join(" "));
    checks.check(output.status.success(), || {
        format!(
            "tern replay exited with {}: {}",
            output.status,
            stderr.trim()
        )
    });
    checks.check(replayed == Some(expected), || {
        format!("the replay gave {replayed:?} messages, expected {expected}")
    });
    // Paced: no faster than the original span / 10 (startup costs come on top).
    checks.check(
        replay_took >= span.div_f64(REPLAY_SPEED).mul_f64(0.9),
        || {
            format!(
                "the replay took {}, less than the original span / {REPLAY_SPEED} ({})",
                seconds(replay_took),
                seconds(span.div_f64(REPLAY_SPEED))
            )
        },
    );

    // A client away for a while reads its egress back over Aeron from any member: client 2's
    // session, from the restarted member (a follower now), as `tern cluster egress --remote`.
    let away = &reports[reports.len().min(2) - 1];
    let mut read_back = Vec::new();
    let started = Instant::now();
    let result = observer.replay_egress(
        away.session_id,
        EgressMark::default(),
        Some(killed),
        Duration::from_secs(20),
        &mut |egress| {
            read_back.push(Received {
                sequence: egress.sequence,
                timestamp_ns: egress.timestamp_ns,
            })
        },
    );
    let took = started.elapsed();
    match result {
        Ok(replayed) => println!(
            "   over Aeron: session {}'s {} egress messages read back from member {} (the restarted one) in {} (`tern cluster egress --config {} --remote --session {} --member {killed}` prints them)",
            away.session_id,
            replayed.messages,
            replayed.member,
            seconds(took),
            config.display(),
            away.session_id
        ),
        Err(error) => {
            checks.check(false, || format!("reading session {}'s egress over Aeron: {error}", away.session_id));
        }
    }
    checks.check(read_back == away.received, || {
        format!(
            "session {}'s egress read back over Aeron ({} messages) differs from what its client got ({})",
            away.session_id,
            read_back.len(),
            away.received.len()
        )
    });

    // 5. Every member stopped cleanly, their egress recordings compared and verified.
    drop(observer);
    drop(driver);
    let _ = std::fs::remove_dir_all(&client_dir);
    let mut stopped = Vec::new();
    for id in 1..=MEMBERS {
        let status = nodes.stop(id)?;
        checks.check(status.success(), || {
            format!(
                "member {id} exited with {status} after SIGTERM; see {}",
                nodes.log(id).display()
            )
        });
        stopped.push(status.success());
    }
    if stopped.iter().all(|clean| *clean) {
        println!("5. stop: every member stopped cleanly (SIGTERM, exit 0)");
    }
    let mut segments = Vec::new();
    for id in 1..=MEMBERS {
        segments.push(segment_files(
            &dir.join(format!("node-{id}")).join(EGRESS_DIR),
        )?);
    }
    let identical = !segments[0].is_empty() && segments.iter().all(|files| *files == segments[0]);
    if checks.check(identical, || {
        let describe = |files: &[(String, Vec<u8>)]| {
            files
                .iter()
                .map(|(name, bytes)| format!("{name} {} B", bytes.len()))
                .collect::<Vec<_>>()
                .join(" ")
        };
        format!(
            "the members' egress recordings differ: {}",
            segments
                .iter()
                .zip(1..)
                .map(|(files, id)| format!("member {id}: {}", describe(files)))
                .collect::<Vec<_>>()
                .join("; ")
        )
    }) {
        println!(
            "   egress recordings identical on the {MEMBERS} members, byte for byte ({}, {} messages)",
            plural(segments[0].len() as u64, "segment file"),
            egress_messages
        );
    }
    let mut verified = 0;
    for id in 1..=MEMBERS {
        let egress_dir = dir.join(format!("node-{id}")).join(EGRESS_DIR);
        let view = ArchiveView::open(&egress_dir)
            .with_context(|| format!("open {}", egress_dir.display()))?;
        for recording in view.recordings()? {
            let recording_id = recording.descriptor.recording_id;
            let report = view.verify(recording_id, |_| {})?;
            let sound = checks.check(report.problem.is_none(), || {
                format!(
                    "member {id}: egress recording {recording_id} damaged: {:?}",
                    report.problem
                )
            }) & checks.check(report.time_index.problem.is_none(), || {
                format!(
                    "member {id}: egress recording {recording_id}: time index damaged: {:?}",
                    report.time_index.problem
                )
            });
            if sound {
                verified += 1;
                if id == 1 {
                    println!(
                        "   verified every frame's CRC32C and the time index on each member (like `tern verify --dir {}`): {} frames, {} bytes each",
                        egress_dir.display(),
                        report.frames,
                        report.bytes
                    );
                }
            }
        }
    }
    checks.check(verified == MEMBERS, || {
        format!("{verified} of {MEMBERS} egress recordings verified")
    });

    // 6. The summary.
    let received: usize = reports.iter().map(|report| report.received.len()).sum();
    println!(
        "summary: {total} puts from {CLIENTS} clients, {received} egress messages each received once and in order across the leader's kill; failover as the clients saw it {} (new leader in {}); replay at {REPLAY_SPEED}x {} for {} of egress; {} in all",
        seconds(failover),
        seconds(elected_after),
        seconds(replay_took),
        seconds(span),
        seconds(started.elapsed())
    );
    println!(
        "data: {} (cluster.toml; node-N/: member N's Raft log, state and egress recording; node-N.log: its output); try: tern list --dir {}, tern replay 0 --dir {0}/node-1/egress --key {key} | head",
        options.dir.display(),
        options.dir.join("node-1").join(EGRESS_DIR).display()
    );
    if checks.failed.is_empty() {
        println!("all checks passed");
        Ok(ExitCode::SUCCESS)
    } else {
        println!("{} checks FAILED:", checks.failed.len());
        for failed in &checks.failed {
            println!("  {failed}");
        }
        Ok(ExitCode::FAILURE)
    }
}
