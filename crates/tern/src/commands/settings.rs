//! Archive settings shared by `tern archive` and `tern record`.

use crate::util::parse_size;
use anyhow::{bail, Context, Result};
use std::path::PathBuf;
use tern_archive::{ArchiveConfig, FsyncPolicy, WriteMode};

/// Where the archive lives and how it writes.
#[derive(Debug, Clone, clap::Args)]
pub struct ArchiveArgs {
    /// Archive directory (default: ./tern-data).
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Segment file length: a power of two, e.g. 128m (default 128 MiB).
    #[arg(long, value_parser = parse_size)]
    pub segment_length: Option<u64>,
    /// When to fdatasync: none, always, or interval:MS, e.g. interval:100 (default none).
    #[arg(long)]
    pub fsync: Option<FsyncPolicy>,
    /// How segments are written: direct (O_DIRECT where supported) or buffered.
    #[arg(long, value_parser = parse_write_mode)]
    pub write_mode: Option<WriteMode>,
    /// Index new recordings by this key kind (repeatable): reserved, cluster-egress,
    /// tern-egress, or field:OFFSET:i32 or field:OFFSET:i64. A replay filtered by an indexed kind reads only that
    /// key's messages; without an index it scans. Default: none.
    #[arg(long = "key-index", value_name = "KIND")]
    pub key_index: Vec<tern_archive::KeyKind>,
    /// How long the archive's Aeron clients sleep when idle, e.g. 1ms (the default; Aeron's own
    /// default, 16ms, delays the first capture times and each replay's start by up to that).
    #[arg(long, value_parser = crate::util::parse_short_duration, value_name = "DURATION")]
    pub client_idle_sleep: Option<std::time::Duration>,
    /// The longest the recorder sleeps between polls when nothing comes, e.g. 100us: a capture
    /// time is up to this late (default 1ms; shorter costs CPU while recordings are open).
    #[arg(long, value_parser = crate::util::parse_short_duration, value_name = "DURATION")]
    pub recorder_idle_max: Option<std::time::Duration>,
}

fn parse_write_mode(text: &str) -> Result<WriteMode, String> {
    match text {
        "direct" => Ok(WriteMode::Direct),
        "buffered" => Ok(WriteMode::Buffered),
        other => Err(format!("write mode {other:?}: expected direct or buffered")),
    }
}

/// The default archive directory.
pub fn default_dir() -> PathBuf {
    PathBuf::from("tern-data")
}

impl ArchiveArgs {
    /// Build the archive settings on the driver in `aeron_dir`.
    pub fn config(&self, aeron_dir: &str) -> Result<ArchiveConfig> {
        let mut config =
            ArchiveConfig::new(self.dir.clone().unwrap_or_else(default_dir), aeron_dir);
        if let Some(length) = self.segment_length {
            if length > 1 << 30 {
                bail!("segment length {length} is above 1 GiB");
            }
            config.segment_length = length as i32;
        }
        if let Some(fsync) = self.fsync {
            config.fsync = fsync;
        }
        if let Some(mode) = self.write_mode {
            config.write_mode = mode;
        }
        config.key_index = self.key_index.clone();
        if let Some(sleep) = self.client_idle_sleep {
            config.client_idle_sleep = sleep;
        }
        if let Some(max) = self.recorder_idle_max {
            config.recorder_idle_max = max;
        }
        config.validate().map_err(anyhow::Error::msg)?;
        Ok(config)
    }
}

/// The archive directory of a command that reads one.
#[derive(Debug, Clone, clap::Args)]
pub struct DirArg {
    /// Archive directory (default: ./tern-data).
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

impl DirArg {
    /// The directory.
    pub fn path(&self) -> PathBuf {
        self.dir.clone().unwrap_or_else(default_dir)
    }

    /// Open it read-only.
    pub fn open(&self) -> Result<tern_archive::ArchiveView> {
        let dir = self.path();
        tern_archive::ArchiveView::open(&dir)
            .with_context(|| format!("open the archive in {}", dir.display()))
    }
}
