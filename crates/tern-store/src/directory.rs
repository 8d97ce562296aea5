//! The archive directory as a whole: its lock, and the temporary files an interrupted write leaves.

use crate::error::{io_error, Result, StoreError};
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::path::Path;

/// Name of the lock file that keeps two archives out of one directory.
pub const LOCK_FILE: &str = "archive.lock";

/// Take the directory's lock: an exclusive `flock` on [`LOCK_FILE`], which names the holder's pid.
/// Held while the returned file is open.
///
/// # Errors
/// [`StoreError::Locked`] when another process holds it; the lock file cannot be opened or written.
pub fn lock_directory(dir: &Path) -> Result<File> {
    lock_file(&dir.join(LOCK_FILE)).map_err(|error| match error {
        StoreError::Locked { holder, .. } => StoreError::Locked {
            path: dir.to_path_buf(),
            holder,
        },
        other => other,
    })
}

/// Take an exclusive `flock` on the file at `path` (created if absent), which then names the
/// holder's pid. Held while the returned file is open.
///
/// # Errors
/// [`StoreError::Locked`] (naming `path`) when another process holds it; the file cannot be
/// opened or written.
pub fn lock_file(path: &Path) -> Result<File> {
    let path = path.to_path_buf();
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(io_error(&path, "open lock file"))?;
    // SAFETY: flock on a descriptor we own.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        let mut holder = String::new();
        let _ = file.read_to_string(&mut holder);
        return Err(StoreError::Locked {
            path: path.clone(),
            holder: holder.trim().to_string(),
        });
    }
    file.set_len(0)
        .map_err(io_error(&path, "write lock file"))?;
    writeln!(file, "pid {}", std::process::id()).map_err(io_error(&path, "write lock file"))?;
    Ok(file)
}

/// Remove the temporary files a crash left: catalogs and time indexes being replaced whole
/// (`catalog.tern.new`, `catalog.tern.rebuild`, `N.tix.rebuild`), and key index files being
/// written (`.NAME.PID-SEQUENCE.tmp`) by a process that is gone (`tern verify` or `tern index`
/// may be writing one now, without the directory lock). Returns how many were removed.
///
/// # Errors
/// The directory cannot be listed.
pub fn remove_leftovers(dir: &Path) -> Result<usize> {
    let mut removed = 0;
    for entry in std::fs::read_dir(dir).map_err(io_error(dir, "list archive directory"))? {
        let entry = entry.map_err(io_error(dir, "list archive directory"))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let leftover = if name == "catalog.tern.new"
            || name == "catalog.tern.rebuild"
            || name.ends_with(".tix.rebuild")
        {
            true
        } else if let Some(rest) = name.strip_prefix('.').and_then(|n| n.strip_suffix(".tmp")) {
            // `.NAME.PID-SEQUENCE.tmp`: gone if its writer is.
            rest.rsplit_once('.')
                .and_then(|(_, tail)| tail.split_once('-'))
                .and_then(|(pid, _)| pid.parse::<i32>().ok())
                // SAFETY: kill with signal 0 only checks whether the process exists.
                .is_some_and(|pid| {
                    pid > 0
                        && unsafe { libc::kill(pid, 0) } != 0
                        && std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH)
                })
        } else {
            false
        };
        if leftover {
            match std::fs::remove_file(entry.path()) {
                Ok(()) => {
                    tracing::info!("removed {name}, left by an interrupted write");
                    removed += 1;
                }
                Err(error) => tracing::warn!("{name}: left by an interrupted write: {error}"),
            }
        }
    }
    Ok(removed)
}
