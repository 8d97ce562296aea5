//! Settings of an archive.

use std::path::PathBuf;
use std::time::Duration;
use tern_store::segment_writer::WriteMode;

/// When recorded data is synced to the device (`fdatasync`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsyncPolicy {
    /// Never explicitly (segments are still synced when they fill). Data written survives a crash
    /// of the process, not of the machine; the durable position is the written position.
    None,
    /// At most this long after data is written.
    Interval(Duration),
    /// After every batch of frames written: the durable position is what `fdatasync` confirmed.
    Always,
}

impl std::str::FromStr for FsyncPolicy {
    type Err = String;

    /// `none`, `always`, or an interval in milliseconds (`interval:100` or `100ms`).
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let interval = text
            .strip_prefix("interval:")
            .or_else(|| text.strip_suffix("ms"))
            .map(|ms| ms.trim().parse::<u64>());
        match (text, interval) {
            ("none", _) => Ok(Self::None),
            ("always", _) => Ok(Self::Always),
            (_, Some(Ok(ms))) if ms > 0 => Ok(Self::Interval(Duration::from_millis(ms))),
            _ => Err(format!(
                "fsync policy {text:?}: expected none, always, or interval:<ms>"
            )),
        }
    }
}

impl std::fmt::Display for FsyncPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::None => write!(f, "none"),
            Self::Always => write!(f, "always"),
            Self::Interval(interval) => write!(f, "interval:{}", interval.as_millis()),
        }
    }
}

/// Settings of an archive.
#[derive(Debug, Clone)]
pub struct ArchiveConfig {
    /// The archive directory: catalog, segments, time indexes.
    pub dir: PathBuf,
    /// The Aeron directory of the media driver to use.
    pub aeron_dir: String,
    /// Segment file length: a power of two; a recording whose term is longer uses its term length.
    pub segment_length: i32,
    /// When to sync.
    pub fsync: FsyncPolicy,
    /// How segments are written.
    pub write_mode: WriteMode,
    /// Allocate each segment file's blocks when it is created.
    pub preallocate: bool,
    /// Bytes a recording buffers before writing.
    pub write_buffer_length: usize,
    /// Minimum time between two time index entries of a recording.
    pub time_index_interval: Duration,
    /// Largest block a replay sends at once.
    pub replay_block_length: usize,
    /// How long a replay waits for a subscriber on its channel.
    pub replay_connect_timeout: Duration,
    /// Most recordings, and most recording subscriptions, at once: past it starting or extending
    /// a recording is refused ([`ArchiveError::MaxRecordings`](crate::ArchiveError::MaxRecordings))
    /// and a new image is not recorded. Default 64.
    pub max_concurrent_recordings: usize,
    /// Most replays running at once: past it a replay is refused
    /// ([`ArchiveError::MaxReplays`](crate::ArchiveError::MaxReplays)). Default 64.
    pub max_concurrent_replays: usize,
    /// Key kinds indexed for every new recording (one index file per finished segment and kind),
    /// so a replay filtered by one of these kinds reads only that key's messages. Default: none
    /// (indexing costs recording throughput; see `docs/replay.md`). A filtered replay works
    /// without an index, by scanning.
    pub key_index: Vec<tern_store::key::KeyKind>,
    /// How long the archive's own Aeron clients (recorder, replayer, control server) sleep when
    /// their conductor has nothing to do. Aeron's default is 16 ms: a new image (a publisher to
    /// record, a replay's subscriber) waits up to that long to be seen, which delays the first
    /// capture times and every replay's start. Default 1 ms (a wake-up a millisecond per client:
    /// no measurable CPU).
    pub client_idle_sleep: Duration,
    /// The longest the recorder sleeps between two polls when nothing comes (it backs off from
    /// 1 us to this). A message's capture time is when the recorder read it, so a message that
    /// arrives in a quiet stream is stamped up to this late. Default 1 ms. Measured on 2 cores
    /// (1000 msg/s): 100 us cuts the median lateness from 62 to 28 us but not the p99 (about
    /// 0.5 ms either way: scheduling), and costs 8% of a core more (see `docs/replay.md`).
    /// 1 us to 100 ms.
    pub recorder_idle_max: Duration,
    /// The storage the archive's files are on and where its segment writers' I/O runs: the real
    /// disk with an I/O thread per recording (the default), or a simulated disk with the jobs
    /// run inline (tests). Segments, the catalog, the time indexes, key index files and
    /// manifests, the cursor file, recovery, truncates and purges go through it; the directory
    /// lock, `tern catalog rebuild` and the read-only view use the real file system.
    pub io: tern_store::Io,
}

impl ArchiveConfig {
    /// Defaults for an archive in `dir` using the driver in `aeron_dir`.
    pub fn new(dir: impl Into<PathBuf>, aeron_dir: impl Into<String>) -> Self {
        Self {
            dir: dir.into(),
            aeron_dir: aeron_dir.into(),
            segment_length: 128 * 1024 * 1024,
            fsync: FsyncPolicy::None,
            write_mode: WriteMode::Direct,
            preallocate: true,
            write_buffer_length: 2 * 1024 * 1024,
            time_index_interval: Duration::from_micros(10),
            replay_block_length: 256 * 1024,
            replay_connect_timeout: Duration::from_secs(5),
            max_concurrent_recordings: 64,
            max_concurrent_replays: 64,
            key_index: Vec::new(),
            client_idle_sleep: tern_transport::DEFAULT_CLIENT_IDLE_SLEEP,
            recorder_idle_max: Duration::from_millis(1),
            io: tern_store::Io::default(),
        }
    }

    /// Check the settings.
    ///
    /// # Errors
    /// A description of the first bad setting.
    pub fn validate(&self) -> Result<(), String> {
        let length = self.segment_length;
        if length < 64 * 1024 || length & (length - 1) != 0 {
            return Err(format!(
                "segment length {length} is not a power of two >= 64 KiB"
            ));
        }
        if self.write_buffer_length < 128 * 1024 {
            return Err(format!(
                "write buffer length {} is below 128 KiB",
                self.write_buffer_length
            ));
        }
        // A block must hold the longest frame (an MTU is at most 64 KiB).
        if self.replay_block_length < 64 * 1024 {
            return Err(format!(
                "replay block length {} is below 64 KiB, the longest frame",
                self.replay_block_length
            ));
        }
        if self.client_idle_sleep.is_zero() || self.client_idle_sleep > Duration::from_secs(1) {
            return Err(format!(
                "client idle sleep {:?} is outside 1 ns to 1 s",
                self.client_idle_sleep
            ));
        }
        if self.recorder_idle_max < Duration::from_micros(1)
            || self.recorder_idle_max > Duration::from_millis(100)
        {
            return Err(format!(
                "recorder idle max {:?} is outside 1 us to 100 ms",
                self.recorder_idle_max
            ));
        }
        for (index, kind) in self.key_index.iter().enumerate() {
            if !kind.is_indexable() {
                return Err(format!(
                    "key kind {kind} cannot be indexed: a session is a whole recording"
                ));
            }
            if self.key_index[..index].contains(kind) {
                return Err(format!("key kind {kind} is listed twice"));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fsync_policies_parse_and_print_back() {
        for text in ["none", "always", "interval:250"] {
            let policy: FsyncPolicy = text.parse().expect("parses");
            assert_eq!(policy.to_string(), text);
        }
        assert_eq!(
            "5ms".parse::<FsyncPolicy>(),
            Ok(FsyncPolicy::Interval(Duration::from_millis(5)))
        );
        assert!("sometimes".parse::<FsyncPolicy>().is_err());
        assert!("interval:0".parse::<FsyncPolicy>().is_err());
    }

    #[test]
    fn idle_settings_outside_their_range_are_refused_by_name() {
        let config = ArchiveConfig::new("/tmp/unused", "/tmp/unused-aeron");
        assert_eq!(config.validate(), Ok(()));
        let mut zero = config.clone();
        zero.recorder_idle_max = Duration::ZERO;
        let mut long = config.clone();
        long.recorder_idle_max = Duration::from_millis(150);
        for bad in [zero, long] {
            let error = bad.validate().expect_err("refused");
            assert!(error.starts_with("recorder idle max"), "{error}");
        }
        let mut sleepless = config;
        sleepless.client_idle_sleep = Duration::ZERO;
        let error = sleepless.validate().expect_err("refused");
        assert!(error.starts_with("client idle sleep"), "{error}");
    }
}
