//! tern-bench: measures, in one run and side by side, raw Aeron IPC throughput, recording through
//! tern's archive to disk, cold and warm replay of that recording, the disk's own sequential write
//! limit, and optionally the peer systems of `shared/peers`. Prints one table and writes JSON.

mod cases;
mod cli;
mod host;
mod peers;
mod report;
mod subscriber;
mod traffic;

use anyhow::Context;
use cases::replay::Cache;
use cases::{disk, ipc, keys, pacing, record, replay, replay_start, seek, Bench};
use clap::Parser;
use cli::{Args, CaseKind};
use report::{CaseResult, Report};
use serde::Serialize;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;
use tern_transport::{DriverConfig, MediaDriver};

/// The run's settings, as written to the JSON file.
#[derive(Debug, Serialize)]
struct Settings {
    /// The cases asked for.
    cases: Vec<CaseKind>,
    /// Payload sizes.
    sizes: Vec<usize>,
    /// Messages sent per size.
    messages: Vec<SizeCount>,
    /// Whether counts were the small smoke-test ones.
    quick: bool,
    /// The archive's fsync policy.
    fsync: String,
    /// How the archive wrote segments.
    write_mode: cli::WriteModeArg,
    /// Term length of the IPC publications.
    ipc_term_length: usize,
    /// The archive's segment length.
    segment_length: i32,
    /// The archive's write buffer per recording.
    write_buffer_length: usize,
    /// The archive's replay block.
    replay_block_length: usize,
    /// The archive client idle sleep the pacing and replay-start cases also ran with (ms; 0: none).
    compare_client_idle_ms: u64,
    /// The archive recorder's longest sleep between polls (us).
    recorder_idle_max_us: u64,
    /// Key kinds the archive indexed in the record case.
    key_index: Vec<String>,
    /// Distinct keys the publishers used (0: a key per message).
    keys: u64,
    /// Payload size of the keys case.
    key_size: usize,
    /// The embedded media driver's directory.
    driver_dir: String,
}

/// The message count of one size.
#[derive(Debug, Serialize)]
struct SizeCount {
    /// Payload bytes.
    size: usize,
    /// Messages of that size.
    messages: u64,
}

/// What the cases produced so far.
#[derive(Debug, Default)]
struct Outcomes {
    results: Vec<CaseResult>,
    failures: Vec<String>,
}

impl Outcomes {
    /// Keep a case's value, or note its failure and go on with the next case.
    fn keep<T>(&mut self, what: &str, outcome: anyhow::Result<T>) -> Option<T> {
        match outcome {
            Ok(value) => Some(value),
            Err(error) => {
                eprintln!("tern-bench: {what} failed: {error:#}");
                self.failures.push(format!("{what}: {error:#}"));
                None
            }
        }
    }

    /// Add result rows, echoing them as they come.
    fn add(&mut self, rows: impl IntoIterator<Item = CaseResult>) {
        for row in rows {
            eprintln!(
                "   {} {} B: {} msgs/s, {:.1} MB/s in {:.3} s",
                row.case,
                row.size,
                report::thousands(row.msgs_per_s),
                row.mb_per_s,
                row.seconds
            );
            if !row.note.is_empty() {
                eprintln!("      {}", row.note);
            }
            self.results.push(row);
        }
    }
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

fn launch_driver(args: &Args) -> anyhow::Result<MediaDriver> {
    let config = DriverConfig {
        dir: Some(format!("/dev/shm/tern-bench-{}", std::process::id())),
        ipc_term_length: Some(args.ipc_term_mib << 20),
        ..DriverConfig::default()
    };
    MediaDriver::launch(&config).context("launch the embedded media driver")
}

fn run_ipc(args: &Args, bench: &Bench, out: &mut Outcomes) {
    for &size in &args.sizes {
        let messages = args.messages_for(size);
        eprintln!(
            "== ipc-raw {size} B x {}",
            report::thousands(messages as f64)
        );
        let what = format!("ipc-raw {size} B");
        if let Some(row) = out.keep(&what, ipc::run(bench, size, messages)) {
            out.add([row]);
        }
    }
}

/// Record each size and, if asked, replay it cold and warm; returns the largest recording's bytes.
fn run_record_replay(args: &Args, bench: &Bench, out: &mut Outcomes) -> Option<u64> {
    let mut largest = None;
    for &size in &args.sizes {
        let messages = args.messages_for(size);
        eprintln!(
            "== record {size} B x {}",
            report::thousands(messages as f64)
        );
        let what = format!("record {size} B");
        let Some(recording) = out.keep(&what, record::run(bench, size, messages)) else {
            continue;
        };
        out.add([recording.result.clone()]);
        largest = largest.max(Some(record::recorded_bytes(size, messages)));
        if args.wants(CaseKind::Replay) {
            for cache in [Cache::Cold, Cache::Warm] {
                eprintln!("== replay ({cache:?}) {size} B");
                let what = format!("replay ({cache:?}) {size} B");
                let outcome = replay::run(bench, &recording, size, messages, cache);
                if let Some(row) = out.keep(&what, outcome) {
                    out.add([row]);
                }
            }
        }
    }
    largest
}

fn run_peers(args: &Args, data_dir: &std::path::Path, out: &mut Outcomes) {
    eprintln!("== peers: {}", args.peers_script.display());
    let outcome = peers::run(&args.peers_script, &args.sizes, args.quick, data_dir);
    if let Some(lines) = out.keep("peers", outcome) {
        let rows: Vec<CaseResult> = lines
            .iter()
            .filter(|line| line.is_write() || line.is_replay())
            .map(peers::PeerResult::to_case)
            .collect();
        out.add(rows);
    }
}

fn settings(args: &Args, bench: &Bench) -> Settings {
    let archive = bench.archive_config(&bench.data_dir);
    Settings {
        cases: args.cases.clone(),
        sizes: args.sizes.clone(),
        messages: args
            .sizes
            .iter()
            .map(|&size| SizeCount {
                size,
                messages: args.messages_for(size),
            })
            .collect(),
        quick: args.quick,
        fsync: args.fsync.to_string(),
        write_mode: args.write_mode,
        ipc_term_length: args.ipc_term_mib << 20,
        segment_length: archive.segment_length,
        write_buffer_length: archive.write_buffer_length,
        replay_block_length: archive.replay_block_length,
        compare_client_idle_ms: args.compare_client_idle_ms,
        recorder_idle_max_us: archive.recorder_idle_max.as_micros() as u64,
        key_index: args.key_index.iter().map(ToString::to_string).collect(),
        keys: args.keys,
        key_size: args.key_size,
        driver_dir: bench.aeron_dir.clone(),
    }
}

fn json_path(args: &Args, host_date_secs: i64) -> PathBuf {
    args.json.clone().unwrap_or_else(|| {
        PathBuf::from("target/bench").join(format!("{}.json", host::stamp_utc(host_date_secs)))
    })
}

/// Run every case asked for; returns whether all succeeded.
fn run(args: &Args) -> anyhow::Result<bool> {
    args.validate()?;
    let started = host::now_secs();
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("create {}", args.data_dir.display()))?;
    if host::is_tmpfs(&args.data_dir) {
        eprintln!(
            "tern-bench: WARNING: {} is on tmpfs (memory): the archive falls back to buffered \
             writes and the disk numbers measure memory; pass --data-dir on a real disk",
            args.data_dir.display()
        );
    }
    let host = host::HostInfo::collect(&args.data_dir);
    let driver = launch_driver(args)?;
    let mut bench = Bench::new(
        driver.dir().to_string(),
        host.data_dir.clone(),
        args.fsync,
        args.write_mode.into(),
    );
    bench.write_buffer_length = args.write_buffer_kib.map(|kib| kib << 10);
    bench.preallocate = !args.no_preallocate;
    bench.replay_block_length = args.replay_block_kib.map(|kib| kib << 10);
    bench.recorder_idle_max = args
        .recorder_idle_max_us
        .map(std::time::Duration::from_micros);
    bench.key_index = args.key_index.clone();
    bench.keys = args.keys;
    let settings = settings(args, &bench);
    let mut out = Outcomes::default();
    if args.wants(CaseKind::IpcRaw) {
        run_ipc(args, &bench, &mut out);
    }
    let mut largest = None;
    if args.wants(CaseKind::Record) || args.wants(CaseKind::Replay) {
        largest = run_record_replay(args, &bench, &mut out);
    }
    if args.wants(CaseKind::Disk) {
        let bytes = match args.disk_mib {
            Some(mib) => mib << 20,
            None => largest.unwrap_or_else(|| args.disk_bytes_default()),
        };
        eprintln!("== disk {} MB", bytes / 1_000_000);
        if let Some(rows) = out.keep("disk", disk::run(&bench, bytes)) {
            out.add(rows);
        }
    }
    if args.wants(CaseKind::Seek) {
        let (entries, seeks) = if args.quick {
            (1 << 20, 10_000)
        } else {
            (100_000_000, 100_000)
        };
        eprintln!("== seek in a time index of {entries} entries");
        if let Some(rows) = out.keep("seek", seek::run(&bench, entries, seeks)) {
            out.add(rows);
        }
    }
    if args.wants(CaseKind::Pacing) {
        let messages = if args.quick { 300 } else { 3000 };
        for (idle, suffix) in args.client_idles() {
            eprintln!(
                "== pacing{suffix}: {messages} messages at 1000 msg/s with 80% jitter, live and \
                 replayed, at a subscriber process (archive client idle {idle:?})"
            );
            let what = format!("pacing{suffix}");
            if let Some(rows) = out.keep(&what, pacing::run(&bench, messages, idle, &suffix)) {
                out.add(rows);
            }
        }
    }
    if args.wants(CaseKind::ReplayStart) {
        let replays = if args.quick { 10 } else { 50 };
        for (idle, suffix) in args.client_idles() {
            eprintln!(
                "== replay-start{suffix}: {replays} replays to a subscriber process (archive \
                 client idle {idle:?})"
            );
            let what = format!("replay-start{suffix}");
            if let Some(row) = out.keep(&what, replay_start::run(&bench, replays, idle, &suffix)) {
                out.add([row]);
            }
        }
    }
    if args.wants(CaseKind::Control) {
        let round_trips = if args.quick { 5_000 } else { 100_000 };
        eprintln!("== control round trips over IPC ({round_trips})");
        if let Some(rows) = out.keep("control", cases::control::rtt(&bench, round_trips)) {
            out.add(rows);
        }
    }
    if args.wants(CaseKind::Cluster) {
        let messages =
            args.cluster_messages
                .unwrap_or(if args.quick { 200_000 } else { 2_000_000 });
        eprintln!(
            "== cluster: 3 node processes, 64 B echo ({messages} messages, window {}), round trips at {} msg/s, leader failover",
            args.cluster_window, args.cluster_rate
        );
        if let Some(rows) = out.keep(
            "cluster",
            cases::cluster::run(&bench, 64, messages, args.cluster_rate, args.cluster_window),
        ) {
            out.add(rows);
        }
    }
    if args.wants(CaseKind::Sink) {
        let messages = args
            .sink_messages
            .unwrap_or(if args.quick { 100_000 } else { 1_000_000 });
        eprintln!("== sink: a recording of {messages} messages of 64 B copied whole by tern sink processes");
        let services = cases::sink::Services {
            postgres: args.postgres.clone(),
            kafka: args.kafka.clone(),
            kafka_lib: args.kafka_lib.clone(),
        };
        if let Some(rows) = out.keep("sink", cases::sink::run(&bench, messages, &services)) {
            out.add(rows);
        }
    }
    if args.wants(CaseKind::Merge) {
        // The smoke run checks the merge (no gap, no duplicate) at a rate a loaded CI machine's
        // replay outruns (one such run replayed 0.8 M msg/s, short of a 1 M msg/s stream).
        let (rate, backlog, after) = if args.quick {
            (
                200_000,
                Duration::from_millis(500),
                Duration::from_millis(300),
            )
        } else {
            (1_000_000, Duration::from_secs(3), Duration::from_secs(1))
        };
        eprintln!(
            "== replay-merge of a stream at {} k msg/s after a {backlog:?} backlog",
            rate / 1000
        );
        if let Some(rows) = out.keep("merge", cases::control::merge(&bench, rate, backlog, after)) {
            out.add(rows);
        }
    }
    let mut summaries = Vec::new();
    if args.wants(CaseKind::Keys) {
        let bytes = args
            .key_bytes
            .unwrap_or(if args.quick { 64 << 20 } else { 4 << 30 });
        let messages = (bytes / args.key_size.max(1) as u64).max(1);
        eprintln!(
            "== keys: {} messages of {} B, {} keys",
            report::thousands(messages as f64),
            args.key_size,
            args.keys
        );
        let outcome = keys::run(&bench, args.key_size, messages, args.keys);
        if let Some((rows, summary)) = out.keep("keys", outcome) {
            out.add(rows);
            eprintln!("   {summary}");
            summaries.push(summary);
        }
    }
    drop(driver);
    if args.peers {
        run_peers(args, &host.data_dir, &mut out);
    }
    report::add_ratios(&mut out.results);
    println!();
    print!("{}", report::format_table(&out.results));
    let latency = report::format_latency_table(&out.results);
    if !latency.is_empty() {
        println!();
        print!("{latency}");
    }
    for summary in &summaries {
        println!("{summary}");
    }
    println!(
        "\nhost: {} cpus ({}), {} GiB, kernel {}, data dir {} ({}), {}",
        host.nproc,
        host.cpu,
        host.mem_gib,
        host.kernel,
        host.data_dir.display(),
        host.data_dir_fs,
        host.date
    );
    let path = json_path(args, started);
    report::write_json(
        &path,
        &Report {
            host: &host,
            settings: &settings,
            results: &out.results,
            failures: &out.failures,
        },
    )?;
    println!("json: {}", path.display());
    for failure in &out.failures {
        println!("FAILED {failure}");
    }
    Ok(out.failures.is_empty())
}

fn main() -> ExitCode {
    init_tracing();
    let mut raw: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if raw.get(1).is_some_and(|first| first == subscriber::FLAG) {
        raw.remove(1);
        let args = subscriber::SubscriberArgs::parse_from(raw);
        return match subscriber::run(&args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("tern-bench {}: {error:#}", subscriber::FLAG);
                ExitCode::FAILURE
            }
        };
    }
    let args = Args::parse_from(raw);
    match run(&args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(error) => {
            eprintln!("tern-bench: {error:#}");
            ExitCode::FAILURE
        }
    }
}
