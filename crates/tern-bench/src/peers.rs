//! The peer systems (Redis Streams, NATS JetStream) measured by `shared/peers/run_all.sh`, whose
//! `RESULT label=... phase=...` lines join the report.

use crate::report::CaseResult;
use anyhow::{bail, Context};
use serde::Serialize;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

/// One `RESULT` line of a peer script.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PeerResult {
    /// The system (`redis`, `nats`, `disk`...).
    pub label: String,
    /// `write`, `replay`, `replay-ordered`...
    pub phase: String,
    /// Payload size in bytes (0 where the line has none, as the disk lines).
    pub size: u64,
    /// Messages (0 where the line has none).
    pub n: u64,
    /// Seconds of the phase.
    pub wall_s: f64,
    /// Messages per second (0 where the line has none).
    pub msgs_per_s: f64,
    /// MB (10^6 bytes of payload) per second.
    pub mb_per_s: f64,
}

impl PeerResult {
    /// Whether this is a message system's write phase (not a disk line).
    pub fn is_write(&self) -> bool {
        self.label != "disk" && self.phase == "write"
    }

    /// Whether this is a message system's replay phase.
    pub fn is_replay(&self) -> bool {
        self.label != "disk" && self.phase.starts_with("replay")
    }

    /// As a row of the report.
    pub fn to_case(&self) -> CaseResult {
        CaseResult::from_rates(
            &format!("{} {}", self.label, self.phase),
            self.size,
            self.n,
            self.wall_s,
            self.msgs_per_s,
            self.mb_per_s,
        )
        .peer()
    }
}

/// Parse a `RESULT key=value ...` line; `None` for any other line or one without label and phase.
pub fn parse_result_line(line: &str) -> Option<PeerResult> {
    let mut words = line.split_whitespace();
    if words.next() != Some("RESULT") {
        return None;
    }
    let fields: Vec<(&str, &str)> = words.filter_map(|word| word.split_once('=')).collect();
    let text = |key: &str| {
        fields
            .iter()
            .find(|(name, _)| *name == key)
            .map(|(_, value)| *value)
    };
    let number = |key: &str| text(key).and_then(|value| value.parse::<f64>().ok());
    Some(PeerResult {
        label: text("label")?.to_string(),
        phase: text("phase")?.to_string(),
        size: number("size").unwrap_or(0.0) as u64,
        n: number("n").unwrap_or(0.0) as u64,
        wall_s: number("wall_s").unwrap_or(0.0),
        msgs_per_s: number("msgs_per_s").unwrap_or(0.0),
        mb_per_s: number("mb_per_s").unwrap_or(0.0),
    })
}

/// Run `script` (run_all.sh) for `sizes`, with its temp dirs under `tmp_base`, echoing its output
/// to stderr, and return its RESULT lines. `PEERS_*` settings in the environment win over ours.
///
/// # Errors
/// The script is missing, could not run, or exited with a failure.
pub fn run(
    script: &Path,
    sizes: &[usize],
    quick: bool,
    tmp_base: &Path,
) -> anyhow::Result<Vec<PeerResult>> {
    if !script.is_file() {
        bail!("peer script {} not found", script.display());
    }
    // The scripts write results and build their client next to themselves: run a working copy,
    // so the shared directory stays untouched. Outside this workspace, or cargo would take the
    // client for one of its members.
    let source = script.parent().context("peer script directory")?;
    let copy = std::env::temp_dir().join("tern-bench-peers");
    copy_tree(source, &copy)
        .with_context(|| format!("copy {} to {}", source.display(), copy.display()))?;
    let script = copy.join(script.file_name().context("peer script name")?);
    let script = script.as_path();
    let mut command = Command::new("bash");
    command.arg(script).stdout(Stdio::piped());
    let sizes = sizes
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(" ");
    let n = if quick { "100000" } else { "1000000" };
    let defaults = [
        ("PEERS_REPS", "1"),
        ("PEERS_SYSTEMS", "redis nats"),
        ("PEERS_SIZES", sizes.as_str()),
        ("PEERS_N", n),
    ];
    for (key, value) in defaults {
        if std::env::var_os(key).is_none() {
            command.env(key, value);
        }
    }
    command.env("PEERS_TMP_BASE", tmp_base);
    let mut child = command
        .spawn()
        .with_context(|| format!("run {}", script.display()))?;
    let stdout = child.stdout.take().context("peer script stdout")?;
    let mut results = Vec::new();
    for line in BufReader::new(stdout).lines() {
        let line = line.context("read the peer script's output")?;
        eprintln!("peers | {line}");
        results.extend(parse_result_line(&line));
    }
    let status = child.wait().context("wait for the peer script")?;
    if !status.success() {
        bail!("{} exited with {status}", script.display());
    }
    Ok(results)
}

/// Copy the files of `from` into `to`, leaving out `results` and `target` directories (and
/// keeping files already in `to`, such as a built client).
fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let name = entry.file_name();
        let target = to.join(&name);
        if entry.file_type()?.is_dir() {
            if name != "results" && name != "target" {
                copy_tree(&entry.path(), &target)?;
            }
        } else {
            // The shared files are read-only: replace, do not overwrite.
            if target.exists() {
                std::fs::remove_file(&target)?;
            }
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn result_lines_parse_and_others_are_ignored() {
        let line = "RESULT label=redis phase=write n=1000000 size=32 wall_s=1.397 \
                    msgs_per_s=715622 mb_per_s=22.9 client_cpu=0.34 server_cpu=0.99 rep=1";
        let result = parse_result_line(line).expect("a RESULT line");
        assert_eq!(
            result,
            PeerResult {
                label: "redis".into(),
                phase: "write".into(),
                size: 32,
                n: 1_000_000,
                wall_s: 1.397,
                msgs_per_s: 715_622.0,
                mb_per_s: 22.9,
            }
        );
        assert!(result.is_write() && !result.is_replay());
        let replay = parse_result_line(
            "RESULT label=nats phase=replay-pull n=10 size=1024 wall_s=0.5 msgs_per_s=20 mb_per_s=0.02",
        )
        .expect("a replay line");
        assert!(replay.is_replay());
        let disk = parse_result_line(
            "RESULT label=disk phase=write-direct tool=dd bs=1M bytes=2147483648 wall_s=1.2 mb_per_s=1789.6 rep=1",
        )
        .expect("a disk line");
        assert!(!disk.is_write() && !disk.is_replay());
        assert_eq!(
            (disk.size, disk.msgs_per_s, disk.mb_per_s),
            (0, 0.0, 1789.6)
        );
        assert_eq!(parse_result_line("EXTRA label=redis size=32"), None);
        assert_eq!(parse_result_line("RESULT phase=write n=1"), None);
        assert_eq!(parse_result_line(""), None);
    }
}
