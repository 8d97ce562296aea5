//! `tern archive`: a long-lived archive that records what its config names.

use super::settings::ArchiveArgs;
use crate::util::{parse_channel_stream, size_from_toml, stop_signal, DriverArgs};
use anyhow::{bail, Context, Result};
use serde::Deserialize;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tern_archive::control::{Authenticator, ControlChannel, ControlConfig, ControlServer};
use tern_archive::{Archive, MetricsServer, RecordingId, SourceLocation};

/// Arguments of `tern archive`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// A TOML config file (see README.md); flags override it.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Record CHANNEL@STREAM, e.g. aeron:ipc@1001 (repeatable; added to the config's).
    #[arg(long = "record", value_name = "CHANNEL@STREAM", value_parser = parse_channel_stream)]
    records: Vec<(String, i32)>,
    /// Record CHANNEL@STREAM of a UDP channel whose publishers use this archive's driver, through
    /// a spy instead of a network subscription (repeatable).
    #[arg(long = "record-local", value_name = "CHANNEL@STREAM", value_parser = parse_channel_stream)]
    local_records: Vec<(String, i32)>,
    /// Answer Aeron archive control requests on CHANNEL@STREAM (repeatable; replaces the
    /// defaults aeron:udp?endpoint=localhost:8010@10 and aeron:ipc?term-length=64k@10).
    #[arg(long = "control", value_name = "CHANNEL@STREAM", value_parser = parse_channel_stream)]
    controls: Vec<(String, i32)>,
    /// Do not run the control server (record only what the config and flags name).
    #[arg(long, conflicts_with = "controls")]
    no_control: bool,
    /// Serve Prometheus metrics at http://ADDR/metrics, e.g. 127.0.0.1:9464 (port 0: any free
    /// port, printed at startup). Default: off, or the config's `metrics`.
    #[arg(long, value_name = "ADDR")]
    metrics: Option<String>,
    /// Print the recordings' positions this often (seconds; 0: never).
    #[arg(long, default_value_t = 10)]
    status_interval: u64,
    #[command(flatten)]
    archive: ArchiveArgs,
    #[command(flatten)]
    driver: DriverArgs,
}

/// The config file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    dir: Option<PathBuf>,
    aeron_dir: Option<String>,
    embedded_driver: Option<bool>,
    segment_length: Option<toml::Value>,
    fsync: Option<String>,
    write_mode: Option<String>,
    /// The archive's Aeron clients' idle sleep, e.g. "1ms".
    client_idle_sleep: Option<String>,
    /// The recorder's longest sleep between polls, e.g. "100us".
    recorder_idle_max: Option<String>,
    /// Key kinds to index, e.g. ["reserved", "cluster-egress", "tern-egress"].
    #[serde(default)]
    key_index: Vec<String>,
    #[serde(default)]
    record: Vec<RecordEntry>,
    control: Option<ControlSection>,
    /// Where to serve Prometheus metrics (`"127.0.0.1:9464"`).
    metrics: Option<String>,
}

/// The `[control]` section: the control server.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ControlSection {
    /// false: no control server.
    enabled: Option<bool>,
    #[serde(default)]
    channels: Vec<RecordEntry>,
    /// Credentials a client must present (none: anyone may connect).
    #[serde(default)]
    credentials: Vec<String>,
    /// Sent to clients that connect without credentials (otherwise they are refused).
    challenge: Option<String>,
    max_sessions: Option<usize>,
    session_timeout_ms: Option<u64>,
    archive_id: Option<i64>,
}

impl ControlSection {
    fn config(&self, flags: &[(String, i32)]) -> Result<ControlConfig> {
        let mut config = ControlConfig::default();
        let channels: Vec<ControlChannel> = if flags.is_empty() {
            self.channels
                .iter()
                .map(|entry| ControlChannel::new(entry.channel.clone(), entry.stream_id))
                .collect()
        } else {
            flags
                .iter()
                .map(|(channel, stream)| ControlChannel::new(channel.clone(), *stream))
                .collect()
        };
        if !channels.is_empty() {
            config.channels = channels;
        }
        if !self.credentials.is_empty() {
            config.authenticator = Authenticator::Credentials {
                accepted: self
                    .credentials
                    .iter()
                    .map(|c| c.as_bytes().to_vec())
                    .collect(),
                challenge: self.challenge.as_ref().map(|c| c.as_bytes().to_vec()),
            };
        } else if self.challenge.is_some() {
            bail!("[control] challenge needs credentials to check the response against");
        }
        if let Some(max) = self.max_sessions {
            config.max_sessions = max;
        }
        if let Some(ms) = self.session_timeout_ms {
            config.session_timeout = Duration::from_millis(ms);
        }
        config.archive_id = self.archive_id;
        config.validate().map_err(anyhow::Error::msg)?;
        Ok(config)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RecordEntry {
    channel: String,
    stream_id: i32,
    #[serde(default)]
    source: Option<String>,
}

fn read_config(path: &PathBuf) -> Result<ConfigFile> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("read config {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("config {}", path.display()))
}

/// The key kinds the config file asks to index.
fn key_kinds(file: &ConfigFile) -> Result<Vec<tern_archive::KeyKind>> {
    file.key_index
        .iter()
        .map(|kind| {
            kind.parse()
                .map_err(anyhow::Error::msg)
                .context("key_index")
        })
        .collect()
}

/// Print each recording failure not printed yet (`printed` of them were), one `tern:` line each
/// on standard error.
pub fn report_failures(archive: &Archive, printed: &mut usize) {
    let failures = archive.recording_failures();
    for failure in failures.iter().skip(*printed) {
        eprintln!("tern: {failure}");
    }
    *printed = failures.len();
}

/// The outcome of a run that ended with these recording failures: an error naming the first.
pub fn failures_outcome(failures: &[tern_archive::RecordingFailure]) -> Result<ExitCode> {
    match failures.first() {
        None => Ok(ExitCode::SUCCESS),
        Some(first) => bail!(
            "{} recording{} could not be written (the first: {first})",
            failures.len(),
            if failures.len() == 1 { "" } else { "s" }
        ),
    }
}

/// How long a write may stay in the disk's hands before the archive says so.
pub const IO_WAIT_WARNING: Duration = Duration::from_secs(5);

/// Say, once per stall, when the disk has held a recording's write longer than
/// [`IO_WAIT_WARNING`], and when it finishes again. `stalled` holds the recordings said so.
pub fn report_io_waits(archive: &Archive, stalled: &mut std::collections::HashSet<RecordingId>) {
    let recordings = archive.recordings();
    for info in &recordings {
        let id = info.descriptor.recording_id;
        match info.io_waiting {
            Some(waiting) if waiting >= IO_WAIT_WARNING && stalled.insert(id) => eprintln!(
                "tern: recording {id}: the disk has not finished a write or sync for {:.1} s ({}); the recording waits and its publishers will be held back",
                waiting.as_secs_f64(),
                archive.config().dir.display()
            ),
            Some(waiting) if waiting >= IO_WAIT_WARNING => {}
            _ => {
                if stalled.remove(&id) {
                    eprintln!("tern: recording {id}: the disk writes again");
                }
            }
        }
    }
}

/// Print one status line per active recording, and one per failed recording.
pub fn print_status(archive: &Archive) {
    for failure in archive.recording_failures() {
        println!(
            "status recording={} session={} stream={} failed at={} error={:?}",
            // -1 (Aeron's null) for a recording that failed before it had an id.
            failure.recording_id.map_or(-1, RecordingId::get),
            failure.session_id,
            failure.stream_id,
            failure.position,
            failure.error
        );
    }
    for info in archive.recordings().into_iter().filter(|info| info.active) {
        println!(
            "status recording={} session={} stream={} recorded={} durable={} bytes={}{}",
            info.descriptor.recording_id,
            info.descriptor.session_id,
            info.descriptor.stream_id,
            info.recorded_position,
            info.durable_position,
            info.recorded_position - info.descriptor.start_position,
            match info.io_waiting {
                Some(waiting) if waiting >= Duration::from_secs(1) =>
                    format!(" io_waiting={:.1}s", waiting.as_secs_f64()),
                _ => String::new(),
            }
        );
    }
}

/// Run until Ctrl-C or SIGTERM.
pub fn run(mut args: Args) -> Result<ExitCode> {
    let file = match &args.config {
        Some(path) => read_config(path)?,
        None => ConfigFile::default(),
    };
    if args.archive.dir.is_none() {
        args.archive.dir = file.dir.clone();
    }
    if args.archive.segment_length.is_none() {
        if let Some(value) = &file.segment_length {
            args.archive.segment_length = Some(size_from_toml(value).context("segment_length")?);
        }
    }
    if args.archive.fsync.is_none() {
        if let Some(text) = &file.fsync {
            args.archive.fsync = Some(text.parse().map_err(anyhow::Error::msg).context("fsync")?);
        }
    }
    if args.archive.write_mode.is_none() {
        args.archive.write_mode = match file.write_mode.as_deref() {
            None => None,
            Some("direct") => Some(tern_archive::WriteMode::Direct),
            Some("buffered") => Some(tern_archive::WriteMode::Buffered),
            Some(other) => bail!("write_mode {other:?}: expected direct or buffered"),
        };
    }
    if args.archive.client_idle_sleep.is_none() {
        if let Some(text) = &file.client_idle_sleep {
            args.archive.client_idle_sleep = Some(
                crate::util::parse_short_duration(text)
                    .map_err(anyhow::Error::msg)
                    .context("client_idle_sleep")?,
            );
        }
    }
    if args.archive.recorder_idle_max.is_none() {
        if let Some(text) = &file.recorder_idle_max {
            args.archive.recorder_idle_max = Some(
                crate::util::parse_short_duration(text)
                    .map_err(anyhow::Error::msg)
                    .context("recorder_idle_max")?,
            );
        }
    }
    if args.archive.key_index.is_empty() {
        args.archive.key_index = key_kinds(&file)?;
    }
    // The driver: --embedded-driver embeds; --aeron-dir alone attaches; otherwise the config's
    // embedded_driver (default true) decides, in its aeron_dir (or Aeron's default).
    let embed = args.driver.embedded_driver
        || (args.driver.aeron_dir.is_none() && file.embedded_driver.unwrap_or(true));
    if args.driver.aeron_dir.is_none() {
        args.driver.aeron_dir = file.aeron_dir.clone();
    }
    let mut records: Vec<(String, i32, SourceLocation)> = Vec::new();
    for entry in &file.record {
        let source = match entry.source.as_deref() {
            None | Some("remote") => SourceLocation::Remote,
            Some("local") => SourceLocation::Local,
            Some(other) => bail!("record source {other:?}: expected local or remote"),
        };
        records.push((entry.channel.clone(), entry.stream_id, source));
    }
    records.extend(
        args.records
            .iter()
            .map(|(channel, stream)| (channel.clone(), *stream, SourceLocation::Remote)),
    );
    records.extend(
        args.local_records
            .iter()
            .map(|(channel, stream)| (channel.clone(), *stream, SourceLocation::Local)),
    );
    let control_section = file.control.unwrap_or_default();
    let control = if args.no_control || control_section.enabled == Some(false) {
        None
    } else {
        Some(control_section.config(&args.controls)?)
    };
    if records.is_empty() && control.is_none() {
        bail!(
            "nothing to do: give --record CHANNEL@STREAM or [[record]] entries in --config, \
             or run the control server (drop --no-control)"
        );
    }
    // Bound before anything starts: a bad or busy address is an error at once.
    let metrics_listener = match args.metrics.as_ref().or(file.metrics.as_ref()) {
        Some(address) => Some(
            std::net::TcpListener::bind(address.as_str())
                .with_context(|| format!("serve metrics on {address}"))?,
        ),
        None => None,
    };
    let stop = stop_signal()?;
    let driver = args.driver.start(embed)?;
    let config = args.archive.config(&driver.dir)?;
    let dir = config.dir.clone();
    let archive = Arc::new(
        Archive::launch(config)
            .with_context(|| format!("open the archive in {}", dir.display()))?,
    );
    for (channel, stream, source) in &records {
        archive
            .start_recording(channel, *stream, *source)
            .with_context(|| format!("record {channel} stream {stream}"))?;
        println!("recording {channel} stream {stream}");
    }
    let metrics = match metrics_listener {
        Some(listener) => {
            let server = MetricsServer::start(listener, archive.metrics_exporter())
                .context("start the metrics server")?;
            println!("metrics on http://{}/metrics", server.local_addr());
            Some(server)
        }
        None => None,
    };
    let server = match control {
        Some(control) => {
            let channels: Vec<String> = control
                .channels
                .iter()
                .map(|c| format!("{}@{}", c.channel, c.stream_id))
                .collect();
            let server = ControlServer::start(archive.clone(), control)
                .context("start the control server")?;
            println!("control server on {}", channels.join(" "));
            Some(server)
        }
        None => None,
    };
    println!(
        "archive running in {} on the media driver in {}{}; Ctrl-C to stop",
        dir.display(),
        driver.dir,
        if driver.embedded.is_some() {
            " (embedded)"
        } else {
            ""
        }
    );
    let interval = Duration::from_secs(args.status_interval);
    let mut next_status = Instant::now() + interval;
    let mut failures_printed = 0;
    let mut stalled = std::collections::HashSet::new();
    while !stop.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(20));
        archive.health()?;
        report_failures(&archive, &mut failures_printed);
        report_io_waits(&archive, &mut stalled);
        if server.as_ref().is_some_and(|server| !server.is_running()) {
            bail!("the control server stopped");
        }
        if args.status_interval > 0 && Instant::now() >= next_status {
            next_status += interval;
            print_status(&archive);
        }
    }
    if let Some(server) = server {
        server.stop();
    }
    if let Some(metrics) = metrics {
        metrics.stop();
    }
    let failures = match Arc::try_unwrap(archive) {
        Ok(archive) => archive.shutdown_with_failures(),
        Err(_) => bail!("the archive is still in use at shutdown"),
    };
    println!("archive stopped; recordings are closed");
    failures_outcome(&failures)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_config_file_names_the_key_kinds_to_index() {
        let file: ConfigFile = toml::from_str(
            "key_index = [\"reserved\", \"field:16:i64\"]\n[[record]]\nchannel = \"aeron:ipc\"\nstream_id = 1\n",
        )
        .expect("config");
        let kinds: Vec<String> = key_kinds(&file)
            .expect("kinds")
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(kinds, vec!["reserved", "field:16:i64"]);
        let bad: ConfigFile = toml::from_str("key_index = [\"client\"]").expect("config");
        let error = format!("{:#}", key_kinds(&bad).expect_err("unknown kind"));
        assert!(
            error.contains("key_index") && error.contains("expected session"),
            "{error}"
        );
    }
}
