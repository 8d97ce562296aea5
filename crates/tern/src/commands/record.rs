//! `tern record`: record one channel and stream.

use super::settings::ArchiveArgs;
use crate::util::{stop_signal, DriverArgs};
use anyhow::{Context, Result};
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tern_archive::{Archive, SourceLocation};

/// Arguments of `tern record`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The channel to record, e.g. aeron:ipc or aeron:udp?endpoint=localhost:40123.
    #[arg(long, value_parser = crate::util::parse_channel)]
    channel: String,
    /// The stream id.
    #[arg(long)]
    stream: i32,
    /// The publishers are on this machine's driver: spy on them instead of subscribing over UDP.
    #[arg(long)]
    local: bool,
    /// Stop after this many seconds.
    #[arg(long, value_name = "SECONDS", value_parser = crate::util::parse_seconds)]
    duration: Option<f64>,
    /// Print each recording's recorded and durable positions this often (milliseconds).
    #[arg(long, default_value_t = 1000, value_name = "MS")]
    status_interval: u64,
    #[command(flatten)]
    archive: ArchiveArgs,
    #[command(flatten)]
    driver: DriverArgs,
}

/// Record until Ctrl-C, SIGTERM or the duration; recordings are stopped cleanly.
pub fn run(args: Args) -> Result<ExitCode> {
    let stop = stop_signal()?;
    let driver = args.driver.resolve(false)?;
    let config = args.archive.config(&driver.dir)?;
    let dir = config.dir.clone();
    let existing = tern_archive::ArchiveView::open(&dir)
        .map(|view| view.entries().len())
        .unwrap_or(0) as i64;
    let archive = Archive::launch(config)
        .with_context(|| format!("open the archive in {}", dir.display()))?;
    let source = if args.local {
        SourceLocation::Local
    } else {
        SourceLocation::Remote
    };
    archive
        .start_recording(&args.channel, args.stream, source)
        .with_context(|| format!("record {} stream {}", args.channel, args.stream))?;
    println!(
        "recording {} stream {} into {} (driver {}); Ctrl-C to stop",
        args.channel,
        args.stream,
        dir.display(),
        driver.dir
    );
    let deadline = args
        .duration
        .map(|seconds| Instant::now() + Duration::from_secs_f64(seconds));
    let interval = Duration::from_millis(args.status_interval.max(10));
    let mut next_status = Instant::now() + interval;
    let mut failures_printed = 0;
    let mut stalled = std::collections::HashSet::new();
    while !stop.load(Ordering::SeqCst) && deadline.is_none_or(|deadline| Instant::now() < deadline)
    {
        std::thread::sleep(Duration::from_millis(5));
        archive.health()?;
        super::archive::report_failures(&archive, &mut failures_printed);
        super::archive::report_io_waits(&archive, &mut stalled);
        if Instant::now() >= next_status {
            next_status += interval;
            super::archive::print_status(&archive);
        }
    }
    let failures = archive.shutdown_with_failures();
    let view = tern_archive::ArchiveView::open(&dir)?;
    for recording in view.recordings()? {
        if recording.descriptor.recording_id.get() < existing {
            continue;
        }
        println!(
            "recording {} session {} stopped at {} ({} bytes)",
            recording.descriptor.recording_id,
            recording.descriptor.session_id,
            recording.end_position,
            recording.end_position - recording.descriptor.start_position
        );
    }
    super::archive::failures_outcome(&failures)
}
