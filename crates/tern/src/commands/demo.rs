//! `tern demo`: the whole archive story on one machine. An embedded media driver; an archive
//! recording a shared IPC stream fed by several publishers (one log, one recording) and a UDP
//! stream with two publishers (one recording each); then every recording replayed through the
//! archive and every message checked; a verify of every frame; a summary. `tern demo --cluster`
//! tells the cluster's story instead (see [`cluster`]).

pub mod cluster;

use crate::util::format_bytes;
use anyhow::{bail, ensure, Context, Result};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};
use tern_archive::{
    Archive, ArchiveConfig, ArchiveView, RecordingId, ReplayRequest, ReplayState, SourceLocation,
};
use tern_transport::{BackoffIdle, Client, DriverConfig, FragmentAssembler, Idle, MediaDriver};

const SHARED_STREAM: i32 = 1001;
const UDP_STREAM: i32 = 1002;

/// Arguments of `tern demo`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The cluster demo instead: 3 members as child processes, 3 clients sending puts, the
    /// leader killed and replaced, the clients recovering with no gap, a replay of one client's
    /// egress at 10x, every member's egress recording verified identical.
    #[arg(long)]
    cluster: bool,
    /// The demo's directory; a previous demo's there is replaced (default: ./tern-demo, or
    /// ./tern-demo-cluster with --cluster).
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// Publishers on the shared IPC stream.
    #[arg(long, default_value_t = 4, conflicts_with = "cluster")]
    publishers: u32,
    /// Messages per IPC publisher (default: 250000), or with --cluster puts per client (default:
    /// 2000, about 10 s of sending).
    #[arg(long)]
    messages: Option<u64>,
    /// Message length in bytes (at least 16).
    #[arg(long, default_value_t = 256, conflicts_with = "cluster")]
    size: usize,
    /// Messages per UDP publisher (two of them).
    #[arg(long, default_value_t = 20_000, conflicts_with = "cluster")]
    udp_messages: u64,
}

/// The archive demo's settings (the arguments with their defaults).
struct ArchiveDemo {
    dir: PathBuf,
    publishers: u32,
    messages: u64,
    size: usize,
    udp_messages: u64,
}

/// Message: publisher id (u32), sequence (u64), then bytes derived from both.
fn fill(message: &mut [u8], publisher: u32, sequence: u64) {
    message[0..4].copy_from_slice(&publisher.to_le_bytes());
    message[4..12].copy_from_slice(&sequence.to_le_bytes());
    for (index, byte) in message.iter_mut().enumerate().skip(12) {
        *byte = (sequence as usize)
            .wrapping_mul(31)
            .wrapping_add(index)
            .wrapping_add(publisher as usize) as u8;
    }
}

fn publish(
    aeron_dir: &str,
    channel: &str,
    stream: i32,
    exclusive: bool,
    publisher: u32,
    count: u64,
    size: usize,
) -> Result<(i32, i64)> {
    let client = Client::connect(aeron_dir)?;
    let mut idle = BackoffIdle::new();
    let mut message = vec![0u8; size];
    let deadline = Instant::now() + Duration::from_secs(120);
    let offer_all = |offer: &dyn Fn(&[u8]) -> Result<i64, tern_transport::OfferError>,
                     message: &mut Vec<u8>,
                     idle: &mut BackoffIdle|
     -> Result<()> {
        for sequence in 0..count {
            fill(message, publisher, sequence);
            loop {
                match offer(message) {
                    Ok(_) => break,
                    Err(error) if error.is_retryable() => {
                        ensure!(
                            Instant::now() < deadline,
                            "publisher {publisher} stuck: {error}"
                        );
                        idle.idle(0);
                    }
                    Err(error) => bail!("publisher {publisher}: {error}"),
                }
            }
        }
        Ok(())
    };
    if exclusive {
        let publication = client.add_exclusive_publication(channel, stream)?;
        offer_all(&|bytes| publication.offer(bytes), &mut message, &mut idle)?;
        Ok((publication.session_id(), publication.position()))
    } else {
        let publication = client.add_publication(channel, stream)?;
        offer_all(&|bytes| publication.offer(bytes), &mut message, &mut idle)?;
        Ok((publication.session_id(), publication.position()))
    }
}

/// Replay one recording through the archive and check every message; returns (messages, bytes, seconds).
fn replay_and_check(
    archive: &Archive,
    client: &Client,
    recording_id: RecordingId,
    stream: i32,
    expected: &HashMap<u32, u64>,
    size: usize,
) -> Result<(u64, u64, f64)> {
    let subscription = client.add_subscription("aeron:ipc", stream)?;
    let started = Instant::now();
    let replay_id = archive.start_replay(&ReplayRequest {
        recording_id,
        channel: "aeron:ipc".into(),
        stream_id: stream,
        ..ReplayRequest::default()
    })?;
    let status = archive.replay_status(replay_id)?;
    let total: u64 = expected.values().sum();
    let mut next: HashMap<u32, u64> = expected.keys().map(|publisher| (*publisher, 0)).collect();
    let mut assembler = FragmentAssembler::new();
    let mut idle = BackoffIdle::new();
    let (mut messages, mut bytes) = (0u64, 0u64);
    let mut problem: Option<String> = None;
    let mut check = vec![0u8; size];
    let deadline = Instant::now() + Duration::from_secs(120);
    while messages < total && problem.is_none() {
        ensure!(
            Instant::now() < deadline,
            "replay of recording {recording_id} gave {messages} of {total} messages"
        );
        if status.state() == ReplayState::Failed {
            bail!("{}", status.error().unwrap_or_default());
        }
        let work = subscription.poll(
            |fragment, header| {
                assembler.on_fragment(fragment, header, &mut |message, _| {
                    messages += 1;
                    bytes += message.len() as u64;
                    if problem.is_some() {
                        return;
                    }
                    let publisher = u32::from_le_bytes([message[0], message[1], message[2], message[3]]);
                    let sequence = u64::from_le_bytes(message[4..12].try_into().unwrap_or([0; 8]));
                    let Some(expected_sequence) = next.get_mut(&publisher) else {
                        problem = Some(format!("message from unknown publisher {publisher}"));
                        return;
                    };
                    if sequence != *expected_sequence {
                        problem = Some(format!("publisher {publisher}: got sequence {sequence}, expected {expected_sequence}"));
                        return;
                    }
                    fill(&mut check, publisher, sequence);
                    if message != check.as_slice() {
                        problem = Some(format!("publisher {publisher} sequence {sequence}: content differs"));
                    }
                    *expected_sequence += 1;
                });
            },
            256,
        )?;
        idle.idle(work);
    }
    if let Some(problem) = problem {
        bail!("recording {recording_id}: {problem}");
    }
    let seconds = started.elapsed().as_secs_f64();
    for (publisher, count) in expected {
        ensure!(
            next[publisher] == *count,
            "publisher {publisher}: replayed {} of {count}",
            next[publisher]
        );
    }
    Ok((messages, bytes, seconds))
}

/// Marks an archive directory the demo made, so a later demo may replace it (and no other).
const DEMO_MARKER: &str = "made-by-tern-demo";

/// Make way for a demo in `dir`: remove a previous demo's directory there (refuse any other
/// non-empty directory).
fn prepare_dir(dir: &Path) -> Result<()> {
    if dir.exists() {
        let is_demo = dir.join(DEMO_MARKER).exists();
        let is_empty = std::fs::read_dir(dir)
            .map(|mut entries| entries.next().is_none())
            .unwrap_or(false);
        ensure!(
            is_demo || is_empty,
            "{} exists and was not made by tern demo: choose another --dir",
            dir.display()
        );
        std::fs::remove_dir_all(dir)
            .with_context(|| format!("remove the previous demo archive {}", dir.display()))?;
    }
    Ok(())
}

/// Run the demo.
pub fn run(args: Args) -> Result<ExitCode> {
    if args.cluster {
        return cluster::run(cluster::Options {
            dir: args
                .dir
                .unwrap_or_else(|| PathBuf::from(cluster::DEFAULT_DIR)),
            messages: args.messages.unwrap_or(cluster::DEFAULT_MESSAGES),
        });
    }
    let args = ArchiveDemo {
        dir: args.dir.unwrap_or_else(|| PathBuf::from("tern-demo")),
        publishers: args.publishers,
        messages: args.messages.unwrap_or(250_000),
        size: args.size,
        udp_messages: args.udp_messages,
    };
    ensure!(args.size >= 16, "--size must be at least 16");
    ensure!(args.publishers >= 1, "--publishers must be at least 1");
    prepare_dir(&args.dir)?;
    let aeron_dir = std::env::temp_dir().join(format!("tern-demo-aeron-{}", std::process::id()));
    let aeron_dir = aeron_dir.to_string_lossy().into_owned();
    let driver = MediaDriver::launch(&DriverConfig {
        dir: Some(aeron_dir.clone()),
        spies_simulate_connection: true,
        ..DriverConfig::default()
    })?;
    std::fs::create_dir_all(&args.dir)
        .and_then(|()| std::fs::write(args.dir.join(DEMO_MARKER), b"tern demo archive\n"))
        .with_context(|| format!("create {}", args.dir.display()))?;
    let config = ArchiveConfig::new(&args.dir, driver.dir());
    let archive = Archive::launch(config.clone())?;
    let port = std::net::UdpSocket::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let udp = format!("aeron:udp?endpoint=localhost:{port}");
    archive.start_recording("aeron:ipc", SHARED_STREAM, SourceLocation::Remote)?;
    archive.start_recording(&udp, UDP_STREAM, SourceLocation::Local)?;
    println!(
        "tern demo: embedded media driver in {aeron_dir}, archive in {}",
        args.dir.display()
    );
    println!(
        "  recording aeron:ipc stream {SHARED_STREAM} ({} publishers x {} messages of {} B, one shared log)",
        args.publishers, args.messages, args.size
    );
    println!(
        "  recording {udp} stream {UDP_STREAM} (2 publishers x {} messages, one recording each)",
        args.udp_messages
    );

    let started = Instant::now();
    let mut threads = Vec::new();
    for publisher in 0..args.publishers {
        let (dir, count, size) = (aeron_dir.clone(), args.messages, args.size);
        threads.push(std::thread::spawn(move || {
            publish(
                &dir,
                "aeron:ipc",
                SHARED_STREAM,
                false,
                publisher,
                count,
                size,
            )
        }));
    }
    for publisher in 0..2u32 {
        let (dir, udp, count, size) =
            (aeron_dir.clone(), udp.clone(), args.udp_messages, args.size);
        threads.push(std::thread::spawn(move || {
            publish(&dir, &udp, UDP_STREAM, true, 100 + publisher, count, size)
        }));
    }
    let mut ends = Vec::new();
    for thread in threads {
        let outcome = thread
            .join()
            .map_err(|_| anyhow::anyhow!("a publisher thread panicked"))??;
        ends.push(outcome);
    }
    let published = started.elapsed().as_secs_f64();
    // Every publication's last position must be recorded.
    let deadline = Instant::now() + Duration::from_secs(60);
    for (session_id, position) in &ends {
        loop {
            let recorded = archive
                .recordings()
                .into_iter()
                .find(|info| info.descriptor.session_id == *session_id)
                .map(|info| info.recorded_position);
            if recorded.is_some_and(|recorded| recorded >= *position) {
                break;
            }
            ensure!(
                Instant::now() < deadline,
                "session {session_id} not recorded up to {position}"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    let recorded_in = started.elapsed().as_secs_f64();
    let recorded_bytes: i64 = archive
        .recordings()
        .iter()
        .map(|info| info.recorded_position - info.descriptor.start_position)
        .sum();
    let total_messages = args.publishers as u64 * args.messages + 2 * args.udp_messages;
    println!(
        "published and recorded {total_messages} messages in {recorded_in:.2} s (publishing took {published:.2} s): {:.0} msg/s, {}/s to disk",
        total_messages as f64 / recorded_in,
        format_bytes(recorded_bytes as f64 / recorded_in)
    );

    let client = Client::connect(&aeron_dir)?;
    let mut replayed_messages = 0;
    for (index, info) in archive.recordings().into_iter().enumerate() {
        let recording_id = info.descriptor.recording_id;
        let expected: HashMap<u32, u64> = if info.descriptor.stream_id == SHARED_STREAM {
            (0..args.publishers)
                .map(|publisher| (publisher, args.messages))
                .collect()
        } else {
            let which = ends
                .iter()
                .position(|(session, _)| *session == info.descriptor.session_id)
                .unwrap_or(0);
            let publisher = 100 + (which as u32).saturating_sub(args.publishers);
            HashMap::from([(publisher, args.udp_messages)])
        };
        let (messages, bytes, seconds) = replay_and_check(
            &archive,
            &client,
            recording_id,
            3000 + index as i32,
            &expected,
            args.size,
        )?;
        replayed_messages += messages;
        println!(
            "replayed recording {recording_id} (session {}, stream {}): {messages} messages, {} in {seconds:.2} s ({:.0} msg/s), every message in order and intact",
            info.descriptor.session_id,
            info.descriptor.stream_id,
            format_bytes(bytes as f64),
            messages as f64 / seconds
        );
    }
    ensure!(
        replayed_messages == total_messages,
        "replayed {replayed_messages} of {total_messages} messages"
    );
    archive.shutdown();
    drop(driver);

    let view = ArchiveView::open(&args.dir)?;
    for recording in view.recordings()? {
        let report = view.verify(recording.descriptor.recording_id, |_| {})?;
        if let Some(problem) = report.problem {
            bail!(
                "verify of recording {}: {problem}",
                recording.descriptor.recording_id
            );
        }
    }
    let disk: u64 = std::fs::read_dir(&args.dir)?
        .filter_map(|entry| entry.ok()?.metadata().ok())
        .map(|metadata| metadata.len())
        .sum();
    println!("verified every frame's CRC32C: ok");
    println!(
        "data: {} ({} recordings, {} of segment files allocated); try: tern list --dir {0}, tern describe 0 --dir {0}, tern replay 0 --dir {0} --print hex | head",
        args.dir.display(),
        view.recordings()?.len(),
        format_bytes(disk as f64)
    );
    Ok(ExitCode::SUCCESS)
}
