//! Results: one row per case and size, the ratios between them, the table printed at the end, and
//! the JSON file.

use crate::host::HostInfo;
use anyhow::Context;
use serde::Serialize;
use std::fmt::Write as _;
use std::path::Path;

/// Who measured a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// This benchmark.
    Tern,
    /// A peer system's script.
    Peer,
}

/// Our rate divided by a peer's, at the same size.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PeerRatio {
    /// The peer system.
    pub peer: String,
    /// The peer phase compared with.
    pub phase: String,
    /// Our msgs/s over the peer's.
    pub ratio: f64,
}

/// Latency figures of a row (the pacing and replay-start cases).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Latency {
    /// The unit of the figures: `us` or `ms`.
    pub unit: &'static str,
    /// What each sample is.
    pub what: &'static str,
    /// How many samples.
    pub samples: u64,
    /// Median.
    pub p50: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Largest.
    pub max: f64,
    /// For a paced replay: the median signed error of every message after the first against the
    /// schedule set by the first (a constant offset of all of them from the first).
    pub start_skew: Option<f64>,
    /// For a paced replay: its p99 over the live path's p99 in the same run (goal: at most 2).
    pub p99_vs_live: Option<f64>,
}

/// One measurement.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CaseResult {
    /// `ipc-raw`, `record`, `replay-cold`, `replay-warm`, `disk-direct`, `disk-buffered`, or a
    /// peer's `label phase`.
    pub case: String,
    /// Payload bytes per message (per block for the disk cases).
    pub size: u64,
    /// Messages (blocks for the disk cases).
    pub messages: u64,
    /// Wall-clock seconds.
    pub seconds: f64,
    /// Messages per second.
    pub msgs_per_s: f64,
    /// Payload MB per second (MB = 10^6 bytes).
    pub mb_per_s: f64,
    /// For `record`: bytes written to segments (frames with headers) per second, in MB/s.
    pub disk_mb_per_s: Option<f64>,
    /// For `record`: `disk_mb_per_s` over the `disk-direct` rate of the same run.
    pub vs_disk_direct: Option<f64>,
    /// For `record` and the replays: our msgs/s over each peer's best at the same size.
    pub vs_peers: Vec<PeerRatio>,
    /// Who measured it.
    pub source: Source,
    /// Settings worth knowing.
    pub note: String,
    /// Latency figures, for the cases that measure latency.
    pub latency: Option<Latency>,
}

impl CaseResult {
    /// A row from a count of `size`-byte messages sent in `seconds`.
    pub fn new(case: &str, size: u64, messages: u64, seconds: f64) -> Self {
        let seconds = seconds.max(1e-9);
        Self::from_rates(
            case,
            size,
            messages,
            seconds,
            messages as f64 / seconds,
            messages as f64 * size as f64 / 1e6 / seconds,
        )
    }

    /// A row with rates as measured elsewhere.
    pub fn from_rates(
        case: &str,
        size: u64,
        messages: u64,
        seconds: f64,
        msgs_per_s: f64,
        mb_per_s: f64,
    ) -> Self {
        Self {
            case: case.to_string(),
            size,
            messages,
            seconds,
            msgs_per_s,
            mb_per_s,
            disk_mb_per_s: None,
            vs_disk_direct: None,
            vs_peers: Vec::new(),
            source: Source::Tern,
            note: String::new(),
            latency: None,
        }
    }

    /// With the bytes written to disk during the measurement.
    pub fn with_disk_bytes(mut self, bytes: u64) -> Self {
        self.disk_mb_per_s = Some(crate::cases::mb_per_s(bytes, self.seconds));
        self
    }

    /// With a note.
    pub fn with_note(mut self, note: String) -> Self {
        self.note = note;
        self
    }

    /// With latency figures.
    pub fn with_latency(mut self, latency: Latency) -> Self {
        self.latency = Some(latency);
        self
    }

    /// Marked as a peer's.
    pub fn peer(mut self) -> Self {
        self.source = Source::Peer;
        self
    }
}

/// The best msgs/s of each peer at `size` among the peer rows whose phase `wanted` accepts.
fn best_peers(
    results: &[CaseResult],
    size: u64,
    wanted: impl Fn(&str) -> bool,
) -> Vec<(String, String, f64)> {
    let mut best: Vec<(String, String, f64)> = Vec::new();
    for row in results
        .iter()
        .filter(|r| r.source == Source::Peer && r.size == size)
    {
        let Some((peer, phase)) = row.case.split_once(' ') else {
            continue;
        };
        if peer == "disk" || !wanted(phase) || row.msgs_per_s <= 0.0 {
            continue;
        }
        match best.iter_mut().find(|(name, _, _)| name == peer) {
            Some(entry) if entry.2 >= row.msgs_per_s => {}
            Some(entry) => *entry = (peer.into(), phase.into(), row.msgs_per_s),
            None => best.push((peer.into(), phase.into(), row.msgs_per_s)),
        }
    }
    best
}

/// Fill in the ratios: `record` against `disk-direct`; `record` against the peers' writes and the
/// replays against the peers' replays, at the same size.
pub fn add_ratios(results: &mut [CaseResult]) {
    let direct = results
        .iter()
        .find(|r| r.case == "disk-direct" && r.source == Source::Tern)
        .map(|r| r.mb_per_s);
    let snapshot = results.to_vec();
    for row in results.iter_mut().filter(|r| r.source == Source::Tern) {
        if let (Some(disk), Some(direct)) = (row.disk_mb_per_s, direct) {
            row.vs_disk_direct = Some(disk / direct);
        }
        let peers = match row.case.as_str() {
            "record" => best_peers(&snapshot, row.size, |phase| phase == "write"),
            "replay-cold" | "replay-warm" => {
                best_peers(&snapshot, row.size, |phase| phase.starts_with("replay"))
            }
            _ => Vec::new(),
        };
        row.vs_peers = peers
            .into_iter()
            .map(|(peer, phase, rate)| PeerRatio {
                peer,
                phase,
                ratio: row.msgs_per_s / rate,
            })
            .collect();
    }
}

/// `1234567.8` as `1,234,568`.
pub fn thousands(value: f64) -> String {
    let digits = format!("{:.0}", value.max(0.0));
    let mut out = String::new();
    for (index, digit) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index) % 3 == 0 {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

fn cells(row: &CaseResult) -> Vec<String> {
    let optional =
        |value: Option<f64>, text: &dyn Fn(f64) -> String| value.map_or("-".into(), text);
    let peers = row
        .vs_peers
        .iter()
        .map(|ratio| format!("{} {:.2}x", ratio.peer, ratio.ratio))
        .collect::<Vec<_>>()
        .join(", ");
    vec![
        row.case.clone(),
        row.size.to_string(),
        thousands(row.messages as f64),
        format!("{:.3}", row.seconds),
        thousands(row.msgs_per_s),
        format!("{:.1}", row.mb_per_s),
        optional(row.disk_mb_per_s, &|v| format!("{v:.1}")),
        optional(row.vs_disk_direct, &|v| format!("{:.0}%", v * 100.0)),
        if peers.is_empty() { "-".into() } else { peers },
    ]
}

/// `headers` and `rows` as aligned text: the columns `left` names left, the others right.
fn aligned(headers: &[&str], rows: &[Vec<String>], left: impl Fn(usize) -> bool) -> String {
    let widths: Vec<usize> = (0..headers.len())
        .map(|column| {
            rows.iter()
                .map(|row| row[column].len())
                .chain([headers[column].len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |texts: &[String]| {
        let mut out = String::new();
        for (column, text) in texts.iter().enumerate() {
            let width = widths[column];
            let _ = if left(column) {
                write!(out, "{text:<width$}  ")
            } else {
                write!(out, "{text:>width$}  ")
            };
        }
        out.trim_end().to_string() + "\n"
    };
    let headers: Vec<String> = headers.iter().map(ToString::to_string).collect();
    let mut table = line(&headers);
    table.push_str(&line(
        &widths.iter().map(|w| "-".repeat(*w)).collect::<Vec<_>>(),
    ));
    for row in rows {
        table.push_str(&line(row));
    }
    table
}

/// The results as an aligned text table: text columns left, numbers right.
pub fn format_table(results: &[CaseResult]) -> String {
    const HEADERS: [&str; 9] = [
        "case",
        "size",
        "messages",
        "seconds",
        "msgs/s",
        "MB/s",
        "disk MB/s",
        "vs O_DIRECT",
        "vs peers",
    ];
    let rows: Vec<Vec<String>> = results.iter().map(cells).collect();
    aligned(&HEADERS, &rows, |column| {
        column == 0 || column == HEADERS.len() - 1
    })
}

/// The rows with latency figures as a second table (empty when there are none).
pub fn format_latency_table(results: &[CaseResult]) -> String {
    const HEADERS: [&str; 9] = [
        "case",
        "samples",
        "unit",
        "p50",
        "p99",
        "max",
        "start skew",
        "p99 / live",
        "what",
    ];
    let rows: Vec<Vec<String>> = results
        .iter()
        .filter_map(|row| {
            let latency = row.latency.as_ref()?;
            let figure = |value: f64| {
                if latency.unit == "us" {
                    format!("{value:.1}")
                } else {
                    format!("{value:.2}")
                }
            };
            Some(vec![
                row.case.clone(),
                thousands(latency.samples as f64),
                latency.unit.to_string(),
                figure(latency.p50),
                figure(latency.p99),
                figure(latency.max),
                latency.start_skew.map_or("-".into(), figure),
                latency
                    .p99_vs_live
                    .map_or("-".into(), |ratio| format!("{ratio:.2}x")),
                latency.what.to_string(),
            ])
        })
        .collect();
    if rows.is_empty() {
        return String::new();
    }
    aligned(&HEADERS, &rows, |column| {
        column == 0 || column == 2 || column == HEADERS.len() - 1
    })
}

/// Everything the JSON file holds.
#[derive(Debug, Serialize)]
pub struct Report<'a, S: Serialize> {
    /// The machine.
    pub host: &'a HostInfo,
    /// The run's settings.
    pub settings: &'a S,
    /// One object per case and size.
    pub results: &'a [CaseResult],
    /// Cases that failed, with why.
    pub failures: &'a [String],
}

/// Write `report` to `path` as pretty JSON, creating its directory.
///
/// # Errors
/// The directory or file could not be written.
pub fn write_json<S: Serialize>(path: &Path, report: &Report<'_, S>) -> anyhow::Result<()> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).with_context(|| format!("create {}", parent.display()))?;
    }
    let text = serde_json::to_string_pretty(report).context("encode the results")?;
    std::fs::write(path, text + "\n").with_context(|| format!("write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<CaseResult> {
        let mut results = vec![
            CaseResult::new("record", 1024, 4_000_000, 2.0).with_disk_bytes(4_224_000_000),
            CaseResult::new("replay-warm", 1024, 4_000_000, 1.0),
            CaseResult::new("disk-direct", 1 << 20, 2048, 1.0),
            CaseResult::from_rates("redis write", 1024, 1_000_000, 2.0, 500_000.0, 512.0).peer(),
            CaseResult::from_rates("nats write", 1024, 1_000_000, 1.0, 1_000_000.0, 1024.0).peer(),
            CaseResult::from_rates("nats replay-pull", 1024, 1_000_000, 1.0, 800_000.0, 819.2)
                .peer(),
            CaseResult::from_rates("nats replay-ordered", 1024, 1_000_000, 1.0, 2e6, 2048.0).peer(),
        ];
        add_ratios(&mut results);
        results
    }

    #[test]
    fn rates_and_ratios_are_computed_against_the_same_run() {
        let results = sample();
        let record = &results[0];
        assert_eq!(record.msgs_per_s, 2_000_000.0);
        assert!((record.mb_per_s - 2048.0).abs() < 1e-9);
        assert_eq!(record.disk_mb_per_s, Some(2112.0));
        let direct = 2048.0 * 1048576.0 / 1e6;
        assert!((record.vs_disk_direct.expect("ratio") - 2112.0 / direct).abs() < 1e-9);
        let peers: Vec<(&str, f64)> = record
            .vs_peers
            .iter()
            .map(|r| (r.peer.as_str(), r.ratio))
            .collect();
        assert_eq!(peers, vec![("redis", 4.0), ("nats", 2.0)]);
        let replay = &results[1];
        assert_eq!(replay.vs_peers.len(), 1);
        assert_eq!(replay.vs_peers[0].phase, "replay-ordered");
        assert_eq!(replay.vs_peers[0].ratio, 2.0);
        assert!(results[3].vs_peers.is_empty() && results[3].vs_disk_direct.is_none());
    }

    #[test]
    fn the_table_aligns_columns_and_formats_numbers() {
        let table = format_table(&sample());
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 2 + 7);
        assert!(lines[0].starts_with("case ") && lines[0].ends_with("vs peers"));
        assert!(lines[1].chars().all(|c| c == '-' || c == ' '));
        let record = lines[2];
        assert!(record.starts_with("record "));
        assert!(record.contains(" 4,000,000 ") && record.contains(" 2,000,000 "));
        assert!(record.contains(" 2048.0 ") && record.contains(" 2112.0 "));
        assert!(record.contains(" 98% ") && record.ends_with("redis 4.00x, nats 2.00x"));
        assert!(lines[4].contains(" - "), "absent values show as -");
        let msgs_column = lines[0].find("msgs/s").expect("header") + "msgs/s".len();
        for line in &lines[2..] {
            assert!(line.as_bytes()[msgs_column - 1].is_ascii_digit(), "{line}");
        }
        assert_eq!(thousands(999.0), "999");
        assert_eq!(thousands(1_234_567.6), "1,234,568");
    }

    #[test]
    fn the_latency_table_lists_only_rows_with_latency() {
        assert!(format_latency_table(&sample()).is_empty());
        let mut results = sample();
        results.push(
            CaseResult::new("pacing-live", 64, 3000, 3.0).with_latency(Latency {
                unit: "us",
                what: "arrival - send",
                samples: 3000,
                p50: 12.34,
                p99: 41.0,
                max: 300.0,
                start_skew: Some(0.0),
                p99_vs_live: None,
            }),
        );
        let table = format_latency_table(&results);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 3, "{table}");
        assert!(lines[0].starts_with("case ") && lines[0].ends_with("what"));
        assert!(lines[2].starts_with("pacing-live "));
        assert!(lines[2].contains(" 3,000  us ") && lines[2].contains(" 12.3 "));
        assert!(lines[2].contains(" 0.0 ") && lines[2].ends_with(" -  arrival - send"));
    }
}
