//! Small helpers shared by the commands: sizes, times, the media driver to use, stop signals.

use anyhow::{bail, Context, Result};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};
use tern_transport::{default_aeron_dir, Client, DriverConfig, MediaDriver, ThreadingMode};

/// Parse a size: a number of bytes with an optional k/m/g suffix (powers of 1024).
pub fn parse_size(text: &str) -> Result<u64, String> {
    let lower = text.trim().to_ascii_lowercase();
    let lower = lower.trim_end_matches("ib").trim_end_matches('b');
    let (digits, factor) = match lower.chars().last() {
        Some('k') => (&lower[..lower.len() - 1], 1u64 << 10),
        Some('m') => (&lower[..lower.len() - 1], 1 << 20),
        Some('g') => (&lower[..lower.len() - 1], 1 << 30),
        _ => (lower, 1),
    };
    digits
        .trim()
        .parse::<u64>()
        .ok()
        .and_then(|value| value.checked_mul(factor))
        .ok_or_else(|| "not a size (e.g. 4096, 64k, 128m, 1g)".to_string())
}

/// A size given as text or a number in a config file.
pub fn size_from_toml(value: &toml::Value) -> Result<u64> {
    match value {
        toml::Value::Integer(number) if *number >= 0 => Ok(*number as u64),
        toml::Value::String(text) => {
            parse_size(text).map_err(|error| anyhow::anyhow!("{text:?}: {error}"))
        }
        other => bail!("{other} is not a size"),
    }
}

/// Epoch nanoseconds as an RFC 3339 time in UTC with millisecond precision.
pub fn format_time(epoch_ns: i64) -> String {
    if epoch_ns <= 0 {
        return "-".into();
    }
    let time = UNIX_EPOCH + Duration::from_nanos(epoch_ns as u64);
    humantime::format_rfc3339_millis(time).to_string()
}

/// A time (nanoseconds since the Unix epoch) as RFC 3339 with nanoseconds, `-` for none: exact,
/// so it can be given back to `--from-time`.
pub fn format_time_nanos(epoch_ns: i64) -> String {
    if epoch_ns <= 0 {
        return "-".into();
    }
    let time = UNIX_EPOCH + Duration::from_nanos(epoch_ns as u64);
    humantime::format_rfc3339_nanos(time).to_string()
}

/// Bytes as a short human text.
pub fn format_bytes(bytes: f64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{value:.0} {}", UNITS[unit])
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// Which media driver a command uses.
#[derive(Debug, Clone, clap::Args)]
pub struct DriverArgs {
    /// Aeron directory of the media driver to use (default: $AERON_DIR or Aeron's default).
    #[arg(long, value_name = "DIR")]
    pub aeron_dir: Option<String>,
    /// Run a media driver inside this process, in --aeron-dir (or the default directory).
    #[arg(long)]
    pub embedded_driver: bool,
}

/// The driver a command runs on: its own embedded one, or one already running.
pub struct DriverHandle {
    /// The Aeron directory.
    pub dir: String,
    /// The embedded driver, if this process runs one.
    pub embedded: Option<MediaDriver>,
}

impl DriverArgs {
    /// Start the embedded driver or check that one runs in the directory.
    pub fn resolve(&self, embedded_by_default: bool) -> Result<DriverHandle> {
        self.start(self.embedded_driver || (embedded_by_default && self.aeron_dir.is_none()))
    }

    /// Start an embedded driver in the directory (`embed`), or check that one runs there.
    pub fn start(&self, embed: bool) -> Result<DriverHandle> {
        let dir = self.aeron_dir.clone().unwrap_or_else(default_aeron_dir);
        if embed {
            let driver = MediaDriver::launch(&DriverConfig {
                dir: Some(dir.clone()),
                threading: ThreadingMode::Shared,
                spies_simulate_connection: true,
                ..DriverConfig::default()
            })
            .with_context(|| format!("start an embedded media driver in {dir}"))?;
            return Ok(DriverHandle {
                dir,
                embedded: Some(driver),
            });
        }
        if !std::path::Path::new(&dir).join("cnc.dat").exists() {
            bail!("no media driver in {dir}: start one with `tern driver --aeron-dir {dir}`, or pass --embedded-driver");
        }
        // Connecting proves the driver is alive (a stale directory times out with an error).
        Client::connect(&dir).with_context(|| format!("no live media driver in {dir}"))?;
        Ok(DriverHandle {
            dir,
            embedded: None,
        })
    }
}

/// A flag set on Ctrl-C or SIGTERM.
pub fn stop_signal() -> Result<Arc<AtomicBool>> {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst))
        .context("install the Ctrl-C handler")?;
    Ok(stop)
}

/// Parse a point in time: RFC 3339 (`2026-11-24T23:25:28.631Z`), `now`, or a time relative to
/// now (`-5m`, `-90s`, `-1h30m`). Returns epoch nanoseconds.
pub fn parse_time(text: &str) -> Result<i64, String> {
    let now = std::time::SystemTime::now();
    let time = if text == "now" {
        now
    } else if let Some(ago) = text.strip_prefix('-') {
        let ago = humantime::parse_duration(ago)
            .map_err(|error| format!("{text:?}: {error} (e.g. -5m, -90s, -1h30m)"))?;
        now.checked_sub(ago)
            .ok_or_else(|| format!("{text:?} is before the Unix epoch"))?
    } else {
        humantime::parse_rfc3339_weak(text)
            .map_err(|error| format!("{text:?}: {error} (e.g. 2026-11-24T23:25:28Z, now, -5m)"))?
    };
    time.duration_since(UNIX_EPOCH)
        .map(|since| since.as_nanos() as i64)
        .map_err(|_| format!("{text:?} is before the Unix epoch"))
}

/// Parse a short duration: `500us`, `1ms`, `0.5s`; between 1 us and 1 s.
pub fn parse_short_duration(text: &str) -> Result<std::time::Duration, String> {
    let text = text.trim();
    let (number, scale) = if let Some(number) = text.strip_suffix("us") {
        (number, 1e-6)
    } else if let Some(number) = text.strip_suffix("ms") {
        (number, 1e-3)
    } else if let Some(number) = text.strip_suffix('s') {
        (number, 1.0)
    } else {
        return Err(format!(
            "{text:?}: expected a duration such as 500us, 1ms or 0.5s"
        ));
    };
    let value: f64 = number
        .trim()
        .parse()
        .map_err(|_| format!("{text:?}: expected a duration such as 500us, 1ms or 0.5s"))?;
    let seconds = value * scale;
    if !(1e-6..=1.0).contains(&seconds) {
        return Err(format!("{text:?}: must be between 1us and 1s"));
    }
    Ok(std::time::Duration::from_secs_f64(seconds))
}

/// Parse a number of seconds: finite and positive.
pub fn parse_seconds(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(seconds) if seconds.is_finite() && seconds > 0.0 && seconds < 1e9 => Ok(seconds),
        _ => Err("not a positive number of seconds".to_string()),
    }
}

/// Parse an Aeron channel for a subscription (a spy allowed): checked as Aeron would parse it, so
/// a bad one is refused with the reason before anything starts.
pub fn parse_channel(text: &str) -> Result<String, String> {
    tern_transport::check_channel(text, tern_transport::ChannelUse::Subscription)?;
    Ok(text.to_string())
}

/// Parse an Aeron channel to publish on (no spy).
pub fn parse_publication_channel(text: &str) -> Result<String, String> {
    tern_transport::check_channel(text, tern_transport::ChannelUse::Publication)?;
    Ok(text.to_string())
}

/// Parse `CHANNEL@STREAM` (the stream id after the last `@`), the channel checked as a
/// subscription's (see [`parse_channel`]).
pub fn parse_channel_stream(text: &str) -> Result<(String, i32), String> {
    let (channel, stream) = text
        .rsplit_once('@')
        .ok_or_else(|| "expected CHANNEL@STREAM, e.g. aeron:ipc@1001".to_string())?;
    let stream = stream
        .parse::<i32>()
        .map_err(|_| format!("stream id {stream:?} is not an integer"))?;
    let channel =
        parse_channel(channel).map_err(|problem| format!("channel {channel}: {problem}"))?;
    Ok((channel, stream))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_suffixes_and_bad_ones_are_refused() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("64k"), Ok(65536));
        assert_eq!(parse_size("128MiB"), Ok(128 << 20));
        assert_eq!(parse_size("1g"), Ok(1 << 30));
        assert!(parse_size("lots").is_err());
    }

    #[test]
    fn channel_and_stream_parse() {
        assert_eq!(
            parse_channel_stream("aeron:ipc@1001"),
            Ok(("aeron:ipc".into(), 1001))
        );
        assert_eq!(
            parse_channel_stream("aeron:udp?endpoint=localhost:40123@7"),
            Ok(("aeron:udp?endpoint=localhost:40123".into(), 7))
        );
        assert!(parse_channel_stream("aeron:ipc").is_err());
        assert!(parse_channel_stream("tcp://x@1")
            .expect_err("not aeron")
            .contains("starts with aeron:ipc or aeron:udp"));
        assert!(parse_channel_stream("aeron:bogus@1")
            .expect_err("no such media")
            .contains("unknown media"));
    }

    #[test]
    fn times_parse_absolute_and_relative() {
        assert_eq!(
            parse_time("2023-11-14T22:13:20.123Z"),
            Ok(1_700_000_000_123_000_000)
        );
        let now = parse_time("now").expect("now");
        let earlier = parse_time("-5m").expect("relative");
        assert!((now - earlier - 300_000_000_000).abs() < 1_000_000_000);
        assert!(parse_time("yesterday-ish").is_err());
        assert!(parse_time("-5 parsecs").is_err());
    }

    #[test]
    fn times_print_as_rfc3339() {
        assert_eq!(
            format_time(1_700_000_000_123_456_789),
            "2023-11-14T22:13:20.123Z"
        );
        assert_eq!(format_bytes(1536.0), "1.5 KiB");
    }
}
