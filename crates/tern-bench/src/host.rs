//! Facts about the machine and the data directory's file system, for the report.

use anyhow::Context;
use serde::Serialize;
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// `statfs` magic of tmpfs.
const TMPFS_MAGIC: i64 = 0x0102_1994;

/// The machine a run was made on.
#[derive(Debug, Clone, Serialize)]
pub struct HostInfo {
    /// CPUs available to this process.
    pub nproc: usize,
    /// Kernel release (`uname -r`).
    pub kernel: String,
    /// Start of the run, UTC, ISO 8601.
    pub date: String,
    /// CPU model name.
    pub cpu: String,
    /// Memory in GiB.
    pub mem_gib: f64,
    /// Load averages at the start of the run.
    pub loadavg: String,
    /// The data directory (absolute).
    pub data_dir: PathBuf,
    /// Its file system type (`ext4`, `tmpfs`...).
    pub data_dir_fs: String,
}

impl HostInfo {
    /// Read the host's facts; `data_dir` must exist.
    pub fn collect(data_dir: &Path) -> Self {
        let read = |path: &str| std::fs::read_to_string(path).unwrap_or_default();
        let cpu = read("/proc/cpuinfo")
            .lines()
            .find_map(|line| line.strip_prefix("model name"))
            .map(|rest| rest.trim_start_matches([' ', '\t', ':']).to_string())
            .unwrap_or_default();
        let mem_kib: f64 = read("/proc/meminfo")
            .lines()
            .find_map(|line| line.strip_prefix("MemTotal:"))
            .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
            .unwrap_or(0.0);
        Self {
            nproc: std::thread::available_parallelism().map_or(1, |n| n.get()),
            kernel: read("/proc/sys/kernel/osrelease").trim().to_string(),
            date: iso_utc(now_secs()),
            cpu,
            mem_gib: (mem_kib / 1048576.0 * 10.0).round() / 10.0,
            loadavg: read("/proc/loadavg")
                .split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" "),
            data_dir: std::fs::canonicalize(data_dir).unwrap_or_else(|_| data_dir.to_path_buf()),
            data_dir_fs: fs_type(data_dir).unwrap_or_else(|_| "unknown".into()),
        }
    }
}

fn statfs(path: &Path) -> anyhow::Result<libc::statfs> {
    let c_path = CString::new(path.as_os_str().as_bytes())
        .with_context(|| format!("{} contains a NUL byte", path.display()))?;
    let mut stats = std::mem::MaybeUninit::<libc::statfs>::zeroed();
    // SAFETY: `c_path` is a NUL-terminated path and `stats` is a writable statfs record.
    let status = unsafe { libc::statfs(c_path.as_ptr(), stats.as_mut_ptr()) };
    if status != 0 {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("statfs {}", path.display()));
    }
    // SAFETY: statfs succeeded and filled the record.
    Ok(unsafe { stats.assume_init() })
}

/// The `statfs` magic number of `path`'s file system.
#[allow(clippy::unnecessary_cast)] // `f_type`'s integer type differs between targets.
fn fs_magic(path: &Path) -> anyhow::Result<i64> {
    Ok(statfs(path)?.f_type as i64)
}

/// The file system type of `path`, by name where known.
///
/// # Errors
/// `statfs` failed (the path does not exist).
pub fn fs_type(path: &Path) -> anyhow::Result<String> {
    let magic = fs_magic(path)?;
    Ok(match magic {
        0xEF53 => "ext4".into(),
        0x5846_5342 => "xfs".into(),
        0x9123_683E => "btrfs".into(),
        TMPFS_MAGIC => "tmpfs".into(),
        0x794C_7630 => "overlayfs".into(),
        0x0102_1997 => "9p".into(),
        other => format!("0x{other:x}"),
    })
}

/// Whether `path` is on tmpfs (memory, not a disk).
pub fn is_tmpfs(path: &Path) -> bool {
    fs_magic(path).is_ok_and(|magic| magic == TMPFS_MAGIC)
}

/// Bytes free for an unprivileged writer on `path`'s file system.
///
/// # Errors
/// `statfs` failed.
pub fn free_bytes(path: &Path) -> anyhow::Result<u64> {
    let stats = statfs(path)?;
    Ok((stats.f_bavail as u64).saturating_mul(stats.f_bsize as u64))
}

/// Seconds since the Unix epoch.
pub fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs() as i64)
}

/// Year, month and day of a count of days since 1970-01-01 (proleptic Gregorian).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * month_index + 2) / 5 + 1) as u32;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

fn utc_parts(secs: i64) -> (i64, u32, u32, i64, i64, i64) {
    let (year, month, day) = civil_from_days(secs.div_euclid(86_400));
    let in_day = secs.rem_euclid(86_400);
    (
        year,
        month,
        day,
        in_day / 3600,
        in_day / 60 % 60,
        in_day % 60,
    )
}

/// `secs` as `2024-05-01T12:34:56Z`.
pub fn iso_utc(secs: i64) -> String {
    let (y, mo, d, h, mi, s) = utc_parts(secs);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z")
}

/// `secs` as `20240501T123456Z`, for file names.
pub fn stamp_utc(secs: i64) -> String {
    let (y, mo, d, h, mi, s) = utc_parts(secs);
    format!("{y:04}{mo:02}{d:02}T{h:02}{mi:02}{s:02}Z")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_dates_format_like_date_u() {
        assert_eq!(iso_utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(iso_utc(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(iso_utc(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(stamp_utc(1_700_000_000), "20231114T221320Z");
    }

    #[test]
    fn shared_memory_is_tmpfs_and_the_current_dir_has_a_type() {
        if Path::new("/dev/shm").exists() {
            assert!(is_tmpfs(Path::new("/dev/shm")));
        }
        assert!(fs_type(Path::new(".")).is_ok());
        assert!(free_bytes(Path::new(".")).is_ok_and(|free| free > 0));
    }
}
