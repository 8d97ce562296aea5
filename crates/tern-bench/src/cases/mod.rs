//! The measurements, and what they share: the embedded media driver, the archive settings, stream
//! ids, scratch directories, and threads that stop each other when one fails.

pub mod cluster;
pub mod control;
pub mod disk;
pub mod ipc;
pub mod keys;
pub mod pacing;
pub mod record;
pub mod replay;
pub mod replay_start;
pub mod seek;
pub mod sink;

use anyhow::{anyhow, Context};
use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

/// A histogram of nanoseconds, 1 ns to 60 s, 3 significant digits: the latency cases' one.
///
/// # Errors
/// Never for these bounds; hdrhistogram's constructor is fallible.
pub fn histogram() -> anyhow::Result<hdrhistogram::Histogram<u64>> {
    hdrhistogram::Histogram::new_with_bounds(1, 60_000_000_000, 3).context("histogram")
}
use tern_archive::{ArchiveConfig, FsyncPolicy, WriteMode};

/// What every case needs to know.
#[derive(Debug)]
pub struct Bench {
    /// The embedded media driver's directory.
    pub aeron_dir: String,
    /// Where scratch directories go (a real disk).
    pub data_dir: PathBuf,
    /// The archive's fsync policy.
    pub fsync: FsyncPolicy,
    /// How the archive writes segments.
    pub write_mode: WriteMode,
    /// The archive's write buffer per recording, if not its default.
    pub write_buffer_length: Option<usize>,
    /// The archive's replay block, if not its default.
    pub replay_block_length: Option<usize>,
    /// Whether the archive preallocates segment files.
    pub preallocate: bool,
    /// The recorder's longest sleep between polls, if not the archive's default.
    pub recorder_idle_max: Option<std::time::Duration>,
    /// Key kinds the archive indexes (the `record` case).
    pub key_index: Vec<tern_archive::KeyKind>,
    /// Distinct keys in the reserved values the publisher sets (0: a key per message).
    pub keys: u64,
    next_stream: Cell<i32>,
}

impl Bench {
    /// Settings for cases on the driver in `aeron_dir`, writing under `data_dir`.
    pub fn new(
        aeron_dir: String,
        data_dir: PathBuf,
        fsync: FsyncPolicy,
        write_mode: WriteMode,
    ) -> Self {
        Self {
            aeron_dir,
            data_dir,
            fsync,
            write_mode,
            write_buffer_length: None,
            replay_block_length: None,
            preallocate: true,
            recorder_idle_max: None,
            key_index: Vec::new(),
            keys: 0,
            next_stream: Cell::new(1001),
        }
    }

    /// The settings of an archive in `dir`: the archive's defaults with this run's overrides.
    pub fn archive_config(&self, dir: &Path) -> ArchiveConfig {
        let mut config = ArchiveConfig::new(dir, self.aeron_dir.clone());
        config.fsync = self.fsync;
        config.write_mode = self.write_mode;
        config.preallocate = self.preallocate;
        config.key_index = self.key_index.clone();
        if let Some(length) = self.write_buffer_length {
            config.write_buffer_length = length;
        }
        if let Some(length) = self.replay_block_length {
            config.replay_block_length = length;
        }
        if let Some(max) = self.recorder_idle_max {
            config.recorder_idle_max = max;
        }
        config
    }

    /// A stream id no earlier case used, so no image lingers from one case into the next.
    pub fn next_stream(&self) -> i32 {
        let stream = self.next_stream.get();
        self.next_stream.set(stream + 1);
        stream
    }

    /// A new, empty scratch directory under the data directory, removed when dropped.
    ///
    /// # Errors
    /// The directory could not be created.
    pub fn scratch(&self, name: &str) -> anyhow::Result<ScratchDir> {
        ScratchDir::create(&self.data_dir.join(format!("{name}-{}", std::process::id())))
    }
}

/// A directory that is deleted, with everything in it, when dropped.
#[derive(Debug)]
pub struct ScratchDir {
    path: PathBuf,
}

impl ScratchDir {
    /// Create `path` afresh (a leftover of an earlier run is removed first).
    ///
    /// # Errors
    /// It could not be removed or created.
    pub fn create(path: &Path) -> anyhow::Result<Self> {
        if path.exists() {
            std::fs::remove_dir_all(path)
                .with_context(|| format!("remove leftover {}", path.display()))?;
        }
        std::fs::create_dir_all(path).with_context(|| format!("create {}", path.display()))?;
        Ok(Self {
            path: path.to_path_buf(),
        })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        if let Err(error) = std::fs::remove_dir_all(&self.path) {
            tracing::warn!("could not remove {}: {error}", self.path.display());
        }
    }
}

/// A flag the threads of one case share: set by the first that fails, so the others stop waiting.
pub type Abort = Arc<AtomicBool>;

/// Run `body` on a named thread; if it fails, set `abort`.
///
/// # Errors
/// The thread could not be spawned.
pub fn spawn_worker<T: Send + 'static>(
    name: &str,
    abort: &Abort,
    body: impl FnOnce(&AtomicBool) -> anyhow::Result<T> + Send + 'static,
) -> anyhow::Result<JoinHandle<anyhow::Result<T>>> {
    let abort = abort.clone();
    std::thread::Builder::new()
        .name(name.to_string())
        .spawn(move || {
            let result = body(&abort);
            if result.is_err() {
                abort.store(true, Ordering::Release);
            }
            result
        })
        .with_context(|| format!("spawn {name}"))
}

/// Wait for a worker and return what it returned.
///
/// # Errors
/// The worker failed or panicked.
pub fn join_worker<T>(handle: JoinHandle<anyhow::Result<T>>) -> anyhow::Result<T> {
    let name = handle.thread().name().unwrap_or("worker").to_string();
    handle
        .join()
        .map_err(|_| anyhow!("{name} panicked"))?
        .with_context(|| format!("{name} failed"))
}

/// Payload rate in MB/s (MB = 10^6 bytes).
pub fn mb_per_s(bytes: u64, seconds: f64) -> f64 {
    bytes as f64 / 1e6 / seconds.max(1e-9)
}
