//! `cluster-*`: three `tern cluster node` processes (the example service, echo mode) on
//! loopback UDP, each with its own embedded media driver and its log on the bench's data disk,
//! and this process as their client, on the bench's driver:
//!
//! - `cluster-echo`: 64 B messages echoed by the service, as fast as a window of outstanding
//!   messages allows: replies per second at the client.
//! - `cluster-rtt`: round trips (send to the reply's arrival at the client) at a fixed rate,
//!   beside `udp-rtt`, a bare Aeron UDP ping-pong on loopback in the same run at the same rate.
//! - `cluster-failover`: the leader is killed (`kill -9`) under a steady 1 k msg/s; the time from
//!   the kill to the first reply to a message sent after it.
//!
//! Every message carries its send time (i64 nanoseconds at offset 16) and a sequence number
//! (u64 at offset 8); byte 0 is `e`, so the service echoes it.

use super::{histogram, Bench};
use crate::report::{CaseResult, Latency};
use anyhow::{bail, ensure, Context};
use hdrhistogram::Histogram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tern_cluster::agent::{udp_channel, MemberEndpoints};
use tern_cluster::client::{ClusterClient, EgressMark};
use tern_cluster::Role;
use tern_transport::{BackoffIdle, Client, Idle};

const SEQUENCE_AT: usize = 8;
const SENT_AT: usize = 16;

fn free_udp_port() -> anyhow::Result<u16> {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").context("bind a UDP port")?;
    Ok(socket.local_addr()?.port())
}

/// The `tern` binary beside tern-bench.
///
/// # Errors
/// It is not there.
pub fn tern_binary() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("find tern-bench")?;
    let tern = exe.with_file_name("tern");
    if !tern.exists() {
        bail!(
            "this case runs {} (build it: cargo build --release -p tern)",
            tern.display()
        );
    }
    Ok(tern)
}

struct Nodes {
    tern: PathBuf,
    config: PathBuf,
    members: Vec<MemberEndpoints>,
    children: Vec<Option<Child>>,
}

impl Nodes {
    fn start(dir: &Path, record_egress: bool) -> anyhow::Result<Self> {
        let mut members = Vec::new();
        for id in 1..=3 {
            members.push(MemberEndpoints {
                id,
                consensus: format!("localhost:{}", free_udp_port()?),
                ingress: format!("localhost:{}", free_udp_port()?),
            });
        }
        let mut text = format!(
            "data_dir = {:?}\nsession_timeout_ms = 30000\nrecord_egress = {record_egress}\n",
            dir.join("data")
        );
        for member in &members {
            text.push_str(&format!(
                "[[members]]\nid = {}\nconsensus = {:?}\ningress = {:?}\n",
                member.id, member.consensus, member.ingress
            ));
        }
        let config = dir.join("cluster.toml");
        std::fs::write(&config, text).context("write the cluster config")?;
        let mut nodes = Self {
            tern: tern_binary()?,
            config,
            members,
            children: vec![None, None, None],
        };
        for id in 1..=3 {
            nodes.spawn(id)?;
        }
        Ok(nodes)
    }

    fn spawn(&mut self, id: u64) -> anyhow::Result<()> {
        let aeron_dir = format!("/dev/shm/tern-bench-cluster-{}-{id}", std::process::id());
        let child = Command::new(&self.tern)
            .args(["cluster", "node", "--config"])
            .arg(&self.config)
            .args([
                "--member",
                &id.to_string(),
                "--embedded-driver",
                "--aeron-dir",
                &aeron_dir,
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("start a cluster node")?;
        self.children[(id - 1) as usize] = Some(child);
        Ok(())
    }

    fn kill(&mut self, id: u64) {
        if let Some(mut child) = self.children[(id - 1) as usize].take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Nodes {
    fn drop(&mut self) {
        for id in 1..=3 {
            self.kill(id);
            let _ = std::fs::remove_dir_all(format!(
                "/dev/shm/tern-bench-cluster-{}-{id}",
                std::process::id()
            ));
        }
    }
}

fn message(sequence: u64, size: usize) -> Vec<u8> {
    let mut bytes = vec![b'x'; size.max(24)];
    bytes[0] = b'e';
    bytes[SEQUENCE_AT..SEQUENCE_AT + 8].copy_from_slice(&sequence.to_le_bytes());
    bytes[SENT_AT..SENT_AT + 8].copy_from_slice(&tern_store::epoch_nanos().to_le_bytes());
    bytes
}

fn field(payload: &[u8], at: usize) -> Option<i64> {
    payload
        .get(at..at + 8)
        .map(|bytes| i64::from_le_bytes(bytes.try_into().expect("8")))
}

fn latency(histogram: &Histogram<u64>, what: &'static str) -> Latency {
    Latency {
        unit: "us",
        what,
        samples: histogram.len(),
        p50: histogram.value_at_quantile(0.5) as f64 / 1e3,
        p99: histogram.value_at_quantile(0.99) as f64 / 1e3,
        max: histogram.max() as f64 / 1e3,
        start_skew: None,
        p99_vs_live: None,
    }
}

fn note(histogram: &Histogram<u64>, rate: u64) -> String {
    format!(
        "at {rate} msg/s: p50 {:.1} us, p99 {:.1} us, p99.9 {:.1} us, max {:.1} us over {} round trips",
        histogram.value_at_quantile(0.5) as f64 / 1e3,
        histogram.value_at_quantile(0.99) as f64 / 1e3,
        histogram.value_at_quantile(0.999) as f64 / 1e3,
        histogram.max() as f64 / 1e3,
        histogram.len()
    )
}

/// Send at `rate` for `count` messages, recording each reply's round trip.
fn paced(
    client: &mut ClusterClient,
    size: usize,
    rate: u64,
    count: u64,
) -> anyhow::Result<Histogram<u64>> {
    let mut histogram = histogram()?;
    let interval = Duration::from_nanos(1_000_000_000 / rate.max(1));
    let started = Instant::now();
    let mut sent = 0u64;
    let mut received = 0u64;
    let deadline = started + interval * count as u32 + Duration::from_secs(30);
    while received < count {
        ensure!(
            Instant::now() < deadline,
            "replies stopped at {received} of {count}"
        );
        let due = started + interval * sent as u32;
        if sent < count && Instant::now() >= due && client.offer(&message(sent, size)) {
            sent += 1;
        }
        client.poll();
        for reply in client.take_egress() {
            if let Some(sent_ns) = field(&reply.payload, SENT_AT) {
                let rtt = (tern_store::epoch_nanos() - sent_ns).max(1) as u64;
                histogram.record(rtt)?;
                received += 1;
            }
        }
        if sent < count && Instant::now() < due {
            std::thread::yield_now();
        }
    }
    Ok(histogram)
}

/// A bare Aeron UDP ping-pong on loopback at `rate`: the reference for `cluster-rtt`.
fn udp_rtt(bench: &Bench, size: usize, rate: u64, count: u64) -> anyhow::Result<CaseResult> {
    let ping = format!("localhost:{}", free_udp_port()?);
    let pong = format!("localhost:{}", free_udp_port()?);
    let stream = bench.next_stream();
    let stop = Arc::new(AtomicBool::new(false));
    let echo_stop = stop.clone();
    let aeron_dir = bench.aeron_dir.clone();
    let (echo_ping, echo_pong) = (ping.clone(), pong.clone());
    let echo = std::thread::spawn(move || -> anyhow::Result<()> {
        let client = Client::connect(&aeron_dir)?;
        let pings = client.add_subscription(&udp_channel(&echo_ping), stream)?;
        let pongs = client.add_exclusive_publication(&udp_channel(&echo_pong), stream)?;
        let mut idle = BackoffIdle::new();
        while !echo_stop.load(Ordering::Acquire) {
            let work = pings.poll(
                |message, _| {
                    let deadline = Instant::now() + Duration::from_secs(1);
                    while pongs.offer(message).is_err() && Instant::now() < deadline {
                        std::thread::yield_now();
                    }
                },
                16,
            )?;
            idle.idle(work);
        }
        Ok(())
    });
    let client = Client::connect(&bench.aeron_dir)?;
    let pings = client.add_exclusive_publication(&udp_channel(&ping), stream)?;
    let pongs = client.add_subscription(&udp_channel(&pong), stream)?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !(pings.is_connected() && pongs.is_connected()) {
        ensure!(Instant::now() < deadline, "the UDP echo did not connect");
        std::thread::sleep(Duration::from_millis(1));
    }
    let mut histogram = histogram()?;
    let interval = Duration::from_nanos(1_000_000_000 / rate.max(1));
    let started = Instant::now();
    let (mut sent, mut received) = (0u64, 0u64);
    while received < count {
        ensure!(
            started.elapsed() < interval * count as u32 + Duration::from_secs(30),
            "the UDP echo stopped answering"
        );
        let due = started + interval * sent as u32;
        if sent < count && Instant::now() >= due && pings.offer(&message(sent, size)).is_ok() {
            sent += 1;
        }
        pongs.poll(
            |reply, _| {
                if let Some(sent_ns) = field(reply, SENT_AT) {
                    let _ = histogram.record((tern_store::epoch_nanos() - sent_ns).max(1) as u64);
                    received += 1;
                }
            },
            16,
        )?;
        if sent < count && Instant::now() < due {
            std::thread::yield_now();
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    stop.store(true, Ordering::Release);
    echo.join()
        .map_err(|_| anyhow::anyhow!("the UDP echo panicked"))??;
    Ok(CaseResult::new("udp-rtt", size as u64, count, seconds)
        .with_note(note(&histogram, rate))
        .with_latency(latency(&histogram, "UDP round trip on loopback")))
}

fn leader(client: &mut ClusterClient) -> Option<u64> {
    (1..=3).find(|id| {
        client
            .status_of(*id, false, Duration::from_millis(500))
            .is_some_and(|status| status.role == Role::Leader)
    })
}

/// The three cluster figures beside the bare UDP round trip.
///
/// # Errors
/// A node or the client failed.
pub fn run(
    bench: &Bench,
    size: usize,
    messages: u64,
    rate: u64,
    window: usize,
) -> anyhow::Result<Vec<CaseResult>> {
    let mut rows = Vec::new();
    let paced_count = (rate * 5).min(messages.max(1000));
    rows.push(udp_rtt(bench, size, rate, paced_count)?);
    let scratch = bench.scratch("cluster")?;
    let mut nodes = Nodes::start(scratch.path(), true)?;
    let mut client = connected(bench, &nodes, size, rate, paced_count)?;

    rows.extend(echo_and_rtt(
        &mut client,
        size,
        messages,
        rate,
        window,
        paced_count,
        "",
    )?);

    // Failover: a steady 1 k msg/s, the leader killed.
    let Some(killed) = leader(&mut client) else {
        bail!("no leader to kill");
    };
    let mut sequence = 1u64 << 40;
    let deadline = Instant::now() + Duration::from_secs(2);
    while Instant::now() < deadline {
        client.offer(&message(sequence, size));
        sequence += 1;
        std::thread::sleep(Duration::from_millis(1));
        client.poll();
        client.take_egress();
    }
    // The clock starts before the signal: the kill and the process's teardown count.
    let killed_at = tern_store::epoch_nanos();
    nodes.kill(killed);
    let started = Instant::now();
    let recovered = loop {
        ensure!(
            started.elapsed() < Duration::from_secs(30),
            "no reply in 30 s after the leader was killed"
        );
        client.offer(&message(sequence, size));
        sequence += 1;
        std::thread::sleep(Duration::from_millis(1));
        client.poll();
        let replies = client.take_egress();
        if replies
            .iter()
            .any(|reply| field(&reply.payload, SENT_AT).is_some_and(|sent| sent > killed_at))
        {
            break tern_store::epoch_nanos() - killed_at;
        }
    };
    nodes.spawn(killed)?;
    rows.push(
        CaseResult::new("cluster-failover", size as u64, 1, recovered as f64 / 1e9).with_note(
            format!(
                "leader {killed} killed (kill -9) under 1 k msg/s: {:.0} ms to the first reply to a message sent after the kill (elections after 200-400 ms without a heartbeat)",
                recovered as f64 / 1e6
            ),
        ),
    );
    // Catching up on missed egress: the whole session's, read from a follower's recording
    // after the session closed (what a client away for hours asks for), timed at this client
    // from the request to the last message.
    let session = client.session_id().context("the session")?;
    let missed = client.last_sequence();
    client.close();
    let current = leader(&mut client).context("a leader after the failover")?;
    let follower = (1..=3)
        .find(|id| *id != current && *id != killed)
        .context("a follower")?;
    let started = Instant::now();
    let mut replayed = 0u64;
    let outcome = client.replay_egress(
        session,
        EgressMark::default(),
        Some(follower),
        Duration::from_secs(120),
        &mut |_| replayed += 1,
    )?;
    let seconds = started.elapsed().as_secs_f64();
    ensure!(
        replayed >= missed && outcome.member == follower,
        "replayed {replayed} of at least {missed} messages from member {} ({})",
        outcome.member,
        outcome.detail
    );
    rows.push(
        CaseResult::new("cluster-catch-up", size as u64, replayed, seconds).with_note(format!(
            "a closed session's {replayed} egress messages read back from follower {follower}'s recording over Aeron (ClusterClient::replay_egress), request to last message at the client"
        )),
    );
    drop(nodes);
    // The same without the egress recordings: what recording costs.
    let scratch = bench.scratch("cluster-no-egress")?;
    let bare = Nodes::start(scratch.path(), false)?;
    let mut client = connected(bench, &bare, size, rate, paced_count)?;
    rows.extend(echo_and_rtt(
        &mut client,
        size,
        messages,
        rate,
        window,
        paced_count,
        "-no-egress-recording",
    )?);
    client.close();
    Ok(rows)
}

/// A client with a session on `nodes`, warmed up (the publications and the page cache).
fn connected(
    bench: &Bench,
    nodes: &Nodes,
    size: usize,
    rate: u64,
    paced_count: u64,
) -> anyhow::Result<ClusterClient> {
    let aeron = Client::connect(&bench.aeron_dir)?;
    let mut client = ClusterClient::new(aeron, nodes.members.clone(), "localhost:0")?;
    client
        .connect(b"", Duration::from_secs(30))
        .context("connect to the cluster")?;
    paced(&mut client, size, rate, 1000.min(paced_count))?;
    Ok(client)
}

/// Echo throughput with a window of outstanding messages, then the paced round trip; row names
/// end in `suffix`.
fn echo_and_rtt(
    client: &mut ClusterClient,
    size: usize,
    messages: u64,
    rate: u64,
    window: usize,
    paced_count: u64,
    suffix: &str,
) -> anyhow::Result<Vec<CaseResult>> {
    let mut rows = Vec::new();
    // Throughput with a window of outstanding messages.
    let started = Instant::now();
    let (mut sent, mut received) = (0u64, 0u64);
    let mut idle = BackoffIdle::new();
    while received < messages {
        ensure!(
            started.elapsed() < Duration::from_secs(300),
            "echo stopped at {received} of {messages}"
        );
        let mut work = 0;
        while sent < messages && (sent - received) < window as u64 {
            if !client.offer(&message(sent, size)) {
                break;
            }
            sent += 1;
            work += 1;
        }
        work += client.poll();
        received += client.take_egress().len() as u64;
        idle.idle(work);
    }
    let seconds = started.elapsed().as_secs_f64();
    rows.push(
        CaseResult::new(&format!("cluster-echo{suffix}"), size as u64, messages, seconds).with_note(format!(
            "3 nodes, window {window}, log fsync before each acknowledgment, replies counted at the client{}", if suffix.is_empty() { ", egress recorded on every node" } else { ", egress not recorded" }
        )),
    );

    let histogram = paced(client, size, rate, paced_count)?;
    rows.push(
        CaseResult::new(
            &format!("cluster-rtt{suffix}"),
            size as u64,
            paced_count,
            paced_count as f64 / rate as f64,
        )
        .with_note(note(&histogram, rate))
        .with_latency(latency(&histogram, "ingress to egress round trip")),
    );

    Ok(rows)
}
