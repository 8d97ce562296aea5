//! `disk-direct` and `disk-buffered`: the file system's sequential write limit, measured the way
//! the peers' `disk_limit.sh` does (1 MiB blocks to a new file, then one `fdatasync`), in the same
//! data directory the archive writes to.

use super::Bench;
use crate::report::CaseResult;
use anyhow::{bail, Context};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::Instant;

/// Block size of every write.
pub const BLOCK: usize = 1 << 20;
/// Alignment `O_DIRECT` asks of buffers.
const PAGE: usize = 4096;

/// A block of non-zero bytes at a page-aligned address, inside an ordinary `Vec`.
struct AlignedBlock {
    storage: Vec<u8>,
    offset: usize,
}

impl AlignedBlock {
    fn new() -> Self {
        let mut storage: Vec<u8> = (0..BLOCK + PAGE).map(|i| (i % 251) as u8 | 1).collect();
        let offset = storage.as_mut_ptr().align_offset(PAGE);
        Self { storage, offset }
    }

    fn bytes(&self) -> &[u8] {
        &self.storage[self.offset..self.offset + BLOCK]
    }
}

fn open(path: &Path, direct: bool) -> anyhow::Result<File> {
    let mut options = OpenOptions::new();
    options.write(true).create(true).truncate(true);
    if direct {
        options.custom_flags(libc::O_DIRECT);
    }
    options.open(path).with_context(|| {
        format!(
            "open {} {}",
            path.display(),
            if direct { "with O_DIRECT" } else { "buffered" }
        )
    })
}

/// Write `blocks` blocks to a new file at `path` and `fdatasync` it; returns the seconds taken.
///
/// # Errors
/// The file could not be opened (`O_DIRECT` refused, as on tmpfs), written or synced.
pub fn write_file(path: &Path, blocks: u64, direct: bool) -> anyhow::Result<f64> {
    let block = AlignedBlock::new();
    let mut file = open(path, direct)?;
    let started = Instant::now();
    for index in 0..blocks {
        file.write_all(block.bytes())
            .with_context(|| format!("write block {index} of {}", path.display()))?;
    }
    file.sync_data()
        .with_context(|| format!("fdatasync {}", path.display()))?;
    let seconds = started.elapsed().as_secs_f64();
    drop(file);
    std::fs::remove_file(path).with_context(|| format!("remove {}", path.display()))?;
    Ok(seconds)
}

/// Measure `O_DIRECT` and buffered writes of `bytes` (rounded up to whole MiB).
///
/// # Errors
/// Not enough space, or a write failed.
pub fn run(bench: &Bench, bytes: u64) -> anyhow::Result<Vec<CaseResult>> {
    let blocks = bytes.div_ceil(BLOCK as u64).max(1);
    let scratch = bench.scratch("disk")?;
    let free = crate::host::free_bytes(scratch.path())?;
    if free < blocks * BLOCK as u64 + (256 << 20) {
        bail!(
            "{} has {} MB free, the disk test needs {} MB",
            scratch.path().display(),
            free / 1_000_000,
            blocks * BLOCK as u64 / 1_000_000
        );
    }
    let path = scratch.path().join("disk-limit.bin");
    let mut results = Vec::new();
    for (case, direct) in [("disk-direct", true), ("disk-buffered", false)] {
        let seconds = write_file(&path, blocks, direct)?;
        results.push(
            CaseResult::new(case, BLOCK as u64, blocks, seconds)
                .with_note("1 MiB blocks, new file, one fdatasync".into()),
        );
    }
    Ok(results)
}
