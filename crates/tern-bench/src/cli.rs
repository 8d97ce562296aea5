//! The command line: which cases to run, at which sizes and counts, and where data and results go.

use clap::{Parser, ValueEnum};
use serde::Serialize;
use std::path::PathBuf;
use std::time::Duration;
use tern_archive::{FsyncPolicy, WriteMode};
use tern_transport::DEFAULT_CLIENT_IDLE_SLEEP;

/// Default count of a full run: about 4 GiB of payload per size...
const DEFAULT_BYTES: u64 = 4 << 30;
/// ...but no more than this many messages (small messages would otherwise take minutes).
const DEFAULT_MAX_MESSAGES: u64 = 50_000_000;
/// Payload of a `--quick` run per size.
const QUICK_BYTES: u64 = 128 << 20;
/// Most messages of a `--quick` run per size.
const QUICK_MAX_MESSAGES: u64 = 4_000_000;
/// File size of the disk case in a `--quick` run.
const QUICK_DISK_MIB: u64 = 64;
/// Smallest message: the sequence number the receivers check.
pub const MIN_SIZE: usize = 8;

/// One kind of measurement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum CaseKind {
    /// Aeron IPC publisher to subscriber, no archive.
    IpcRaw,
    /// Publisher to archive to disk.
    Record,
    /// The recording replayed to a subscriber, cold and then warm page cache.
    Replay,
    /// The disk's sequential write limit, `O_DIRECT` and buffered.
    Disk,
    /// Locating a time in the time index of a 100 M-message recording.
    Seek,
    /// How closely a paced replay (1x, 10x; capture and in-message times) keeps the original
    /// timing, at a subscriber process, beside the live path.
    Pacing,
    /// Time from a replay request to its first message at a subscriber process.
    ReplayStart,
    /// The archive control protocol's round trip over IPC, beside a bare IPC ping-pong.
    Control,
    /// Replay-merge of a stream published at a steady 1 M msg/s (200 k with --quick): time to merge, gaps, duplicates.
    Merge,
    /// Replaying one key of many interleaved ones: through the key index against a scan.
    Keys,
    /// Three `tern cluster node` processes (needs the `tern` binary beside tern-bench): echo
    /// throughput, round trips at a fixed rate beside a bare UDP round trip, leader failover.
    Cluster,
    /// A 1 M-message recording copied whole by `tern sink` processes (the `tern` binary beside
    /// tern-bench): files, and PostgreSQL and Kafka beside their own bulk tools when
    /// --postgres and --kafka are given.
    Sink,
}

/// How the archive writes segments (the `--write-mode` flag).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum WriteModeArg {
    /// `O_DIRECT` (buffered where the file system refuses it).
    Direct,
    /// Through the page cache.
    Buffered,
}

impl From<WriteModeArg> for WriteMode {
    fn from(mode: WriteModeArg) -> Self {
        match mode {
            WriteModeArg::Direct => WriteMode::Direct,
            WriteModeArg::Buffered => WriteMode::Buffered,
        }
    }
}

/// tern's throughput benchmark: raw Aeron IPC, recording, replay and the disk, side by side.
#[derive(Debug, Parser)]
#[command(name = "tern-bench", version, about)]
pub struct Args {
    /// Cases to run (replay implies a recording to replay).
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "ipc-raw,record,replay,disk,seek,pacing,replay-start,keys,control,merge"
    )]
    pub cases: Vec<CaseKind>,
    /// Payload sizes in bytes (at least 8: the sequence number).
    #[arg(long, value_delimiter = ',', default_value = "32,1024")]
    pub sizes: Vec<usize>,
    /// Messages per size (default: ~4 GiB of payload, at most 50M messages).
    #[arg(long, conflicts_with = "bytes")]
    pub messages: Option<u64>,
    /// Payload bytes per size; the message count is this divided by the size.
    #[arg(long)]
    pub bytes: Option<u64>,
    /// Where recordings and the disk test's file go: a real disk, not tmpfs. Removed after each case.
    #[arg(long, default_value = "target/bench-data")]
    pub data_dir: PathBuf,
    /// Where the JSON results go (default: target/bench/UTC-TIMESTAMP.json).
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Also run the peer systems (shared/peers/run_all.sh) and put them in the table.
    #[arg(long)]
    pub peers: bool,
    /// The peers' run_all.sh.
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/peers/run_all.sh"))]
    pub peers_script: PathBuf,
    /// Small counts (a few seconds in all), for a smoke test.
    #[arg(long)]
    pub quick: bool,
    /// The archive's fsync policy: none, always, or interval:MS (e.g. interval:100).
    #[arg(long, default_value = "none")]
    pub fsync: FsyncPolicy,
    /// How the archive writes segments.
    #[arg(long, value_enum, default_value = "direct")]
    pub write_mode: WriteModeArg,
    /// Bytes the archive buffers per recording before a write, in KiB (default: the archive's).
    #[arg(long)]
    pub write_buffer_kib: Option<usize>,
    /// Do not preallocate segment files (the archive's default is to preallocate them).
    #[arg(long)]
    pub no_preallocate: bool,
    /// Largest block a replay reads and sends at once, in KiB (default: the archive's).
    #[arg(long)]
    pub replay_block_kib: Option<usize>,
    /// Term length of IPC publications in MiB (a power of two).
    #[arg(long, default_value_t = 64)]
    pub ipc_term_mib: usize,
    /// Size of the disk test's file in MiB (default: the largest recording's size, else 2048).
    #[arg(long)]
    pub disk_mib: Option<u64>,
    /// Key kinds the archive indexes in the record case (repeatable): reserved, cluster-egress,
    /// tern-egress, field:OFFSET:i32 or field:OFFSET:i64. Default: none (the archive's default).
    #[arg(long = "key-index", value_name = "KIND")]
    pub key_index: Vec<tern_archive::KeyKind>,
    /// Distinct keys the publishers put in the reserved value, in turn (0: a key per message).
    #[arg(long, default_value_t = 1000)]
    pub keys: u64,
    /// Payload size of the keys case (at least 8 bytes).
    #[arg(long, default_value_t = 256)]
    pub key_size: usize,
    /// The cluster case's fixed rate for round trips (msg/s).
    #[arg(long, default_value_t = 10_000)]
    pub cluster_rate: u64,
    /// The cluster case's window of outstanding messages for throughput.
    #[arg(long, default_value_t = 4096)]
    pub cluster_window: usize,
    /// Messages of the cluster case's throughput run (default 2 M, 200 k with --quick).
    #[arg(long)]
    pub cluster_messages: Option<u64>,
    /// Messages of the sink case (default 1 M, 100 k with --quick).
    #[arg(long)]
    pub sink_messages: Option<u64>,
    /// A PostgreSQL server for the sink case (libpq key=value, e.g. 'host=127.0.0.1 port=55432
    /// user=postgres dbname=postgres').
    #[arg(long, value_name = "CONNINFO")]
    pub postgres: Option<String>,
    /// A Kafka broker for the sink case (bootstrap servers, e.g. 127.0.0.1:59092).
    #[arg(long, value_name = "SERVERS")]
    pub kafka: Option<String>,
    /// Kafka's jars, for the broker's own producer benchmark beside sink-kafka.
    #[arg(long, value_name = "DIR", default_value = "target/services/kafka/lib")]
    pub kafka_lib: PathBuf,
    /// Payload bytes recorded for the keys case (default: 4 GiB, 64 MiB with --quick).
    #[arg(long)]
    pub key_bytes: Option<u64>,
    /// The pacing and replay-start cases run with the archive's default client idle sleep
    /// (1 ms) and again with this one, in ms (rows ending in `-idleNms`; 0: only the default).
    #[arg(long, default_value_t = 16)]
    pub compare_client_idle_ms: u64,
    /// The archive recorder's longest sleep between polls in microseconds (default: the
    /// archive's, 1000): bounds how late capture times are.
    #[arg(long)]
    pub recorder_idle_max_us: Option<u64>,
}

impl Args {
    /// Whether `kind` was asked for.
    pub fn wants(&self, kind: CaseKind) -> bool {
        self.cases.contains(&kind)
    }

    /// Reject settings no case can run with.
    ///
    /// # Errors
    /// A description of the first bad setting.
    pub fn validate(&self) -> anyhow::Result<()> {
        if let Some(size) = self.sizes.iter().find(|size| **size < MIN_SIZE) {
            anyhow::bail!("size {size} is below {MIN_SIZE} bytes (the sequence number)");
        }
        if self.key_size < MIN_SIZE {
            anyhow::bail!(
                "--key-size {} is below {MIN_SIZE} bytes (the sequence number)",
                self.key_size
            );
        }
        if self.messages == Some(0) || self.bytes == Some(0) {
            anyhow::bail!("--messages and --bytes must be positive");
        }
        if !self.ipc_term_mib.is_power_of_two() || self.ipc_term_mib > 1024 {
            anyhow::bail!(
                "--ipc-term-mib {} is not a power of two up to 1024",
                self.ipc_term_mib
            );
        }
        if self
            .recorder_idle_max_us
            .is_some_and(|us| !(1..=100_000).contains(&us))
        {
            anyhow::bail!("--recorder-idle-max-us must be 1 to 100000");
        }
        if self.compare_client_idle_ms > 1000 {
            anyhow::bail!(
                "--compare-client-idle-ms {} is above 1000",
                self.compare_client_idle_ms
            );
        }
        Ok(())
    }

    /// The archive client idle sleeps the pacing and replay-start cases run with, each with the
    /// suffix of its rows: the default (no suffix), then the one to compare with, if another.
    pub fn client_idles(&self) -> Vec<(Duration, String)> {
        let mut idles = vec![(DEFAULT_CLIENT_IDLE_SLEEP, String::new())];
        let compare = Duration::from_millis(self.compare_client_idle_ms);
        if !compare.is_zero() && compare != DEFAULT_CLIENT_IDLE_SLEEP {
            idles.push((compare, format!("-idle{}ms", self.compare_client_idle_ms)));
        }
        idles
    }

    /// How many messages of `size` bytes each case sends.
    pub fn messages_for(&self, size: usize) -> u64 {
        message_count(self.messages, self.bytes, self.quick, size)
    }

    /// The disk test's file size in bytes when no recording gave one.
    pub fn disk_bytes_default(&self) -> u64 {
        match (self.disk_mib, self.quick) {
            (Some(mib), _) => mib << 20,
            (None, true) => QUICK_DISK_MIB << 20,
            (None, false) => 2048 << 20,
        }
    }
}

/// Messages of `size` bytes to send: `messages` if given, else `bytes / size`, else the quick or
/// full default (a payload budget, capped in count).
pub fn message_count(messages: Option<u64>, bytes: Option<u64>, quick: bool, size: usize) -> u64 {
    let size = size.max(1) as u64;
    match (messages, bytes) {
        (Some(messages), _) => messages,
        (None, Some(bytes)) => (bytes / size).max(1),
        (None, None) if quick => (QUICK_BYTES / size).clamp(1, QUICK_MAX_MESSAGES),
        (None, None) => (DEFAULT_BYTES / size).clamp(1, DEFAULT_MAX_MESSAGES),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_counts_are_4_gib_capped_at_50m() {
        assert_eq!(message_count(None, None, false, 1024), 4 * 1024 * 1024);
        assert_eq!(message_count(None, None, false, 32), 50_000_000);
        assert_eq!(message_count(None, None, true, 32), 4_000_000);
        assert_eq!(message_count(None, None, true, 1024), 128 * 1024);
        assert_eq!(message_count(Some(7), None, false, 1024), 7);
        assert_eq!(message_count(None, Some(10_240), false, 1024), 10);
    }

    #[test]
    fn the_command_line_parses_lists_and_policies() {
        let args = Args::try_parse_from([
            "tern-bench",
            "--cases",
            "record,disk",
            "--sizes",
            "64",
            "--fsync",
            "interval:100",
            "--write-mode",
            "buffered",
        ])
        .expect("parses");
        assert!(args.wants(CaseKind::Record) && !args.wants(CaseKind::IpcRaw));
        assert_eq!(args.sizes, vec![64]);
        assert_eq!(args.fsync.to_string(), "interval:100");
        assert_eq!(WriteMode::from(args.write_mode), WriteMode::Buffered);
        assert!(args.validate().is_ok());
        let small = Args::try_parse_from(["tern-bench", "--sizes", "4"]).expect("parses");
        assert!(small.validate().is_err());
        assert!(small.wants(CaseKind::Pacing) && small.wants(CaseKind::ReplayStart));
        let idles = small.client_idles();
        assert_eq!(idles.len(), 2);
        assert_eq!(idles[0], (DEFAULT_CLIENT_IDLE_SLEEP, String::new()));
        assert_eq!(idles[1], (Duration::from_millis(16), "-idle16ms".into()));
        let only = Args::try_parse_from([
            "tern-bench",
            "--cases",
            "pacing,replay-start",
            "--compare-client-idle-ms",
            "0",
        ])
        .expect("parses");
        assert_eq!(only.client_idles().len(), 1);
        assert_eq!(only.cases, vec![CaseKind::Pacing, CaseKind::ReplayStart]);
    }
}
