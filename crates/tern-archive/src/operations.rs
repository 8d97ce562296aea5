//! Changing stopped recordings: truncate (cut a recording at a position), purge (delete it), and
//! the clean-up an extension does before it writes. Also which recordings are active or busy,
//! and the offline forms of truncate and purge for a directory no archive runs on.
//!
//! Crash safety: the catalog is written first, and the files follow it. A stopped recording's
//! stop position is the truth about its data (readers never look past it), so a crash between
//! the catalog update and the file changes leaves only bytes past the stop position or files of
//! a deleted record: readers ignore both, and an extension cleans them up before it writes.

use crate::error::{io_error, ArchiveError, Result};
use std::collections::{HashMap, HashSet};
use std::fs::OpenOptions;
use std::path::Path;
use tern_store::catalog::{sync_directory, Catalog};
use tern_store::descriptor::{RecordState, RecordingDescriptor};
use tern_store::segment::{segment_base, segment_file_name};
use tern_store::time_index::{read_time_index, time_index_file_name, ENTRY_LENGTH, HEADER_LENGTH};

/// Which recordings are being recorded (and through which subscription), and which a truncate,
/// purge or extension is working on.
#[derive(Debug, Default)]
pub(crate) struct Activity {
    /// Active recordings: recording id → recording subscription id.
    pub active: HashMap<i64, i64>,
    /// Recordings a truncate or purge is changing.
    pub busy: HashSet<i64>,
}

/// A file of a recording in the archive directory.
#[derive(Debug)]
struct RecordingFile {
    name: String,
    /// The segment base of a `<id>-<base>.…` file (a segment or a sidecar of one); `None` for
    /// `<id>.…` files (the time index).
    base: Option<i64>,
}

/// Every file of `recording_id` in `dir`: `<id>-<base>.<anything>` (segments and their sidecars)
/// and `<id>.<anything>` (the time index and any other file of the recording).
fn files_of(dir: &Path, recording_id: i64) -> Result<Vec<RecordingFile>> {
    let segment_prefix = format!("{recording_id}-");
    let own_prefix = format!("{recording_id}.");
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io_error(dir, "list archive directory"))? {
        let entry = entry.map_err(io_error(dir, "list archive directory"))?;
        let Some(name) = entry.file_name().to_str().map(str::to_string) else {
            continue;
        };
        if let Some(rest) = name.strip_prefix(&segment_prefix) {
            let base = rest
                .split_once('.')
                .and_then(|(base, _)| base.parse::<i64>().ok());
            if let Some(base) = base {
                files.push(RecordingFile {
                    name,
                    base: Some(base),
                });
            }
        } else if name.starts_with(&own_prefix) {
            files.push(RecordingFile { name, base: None });
        }
    }
    Ok(files)
}

fn remove(dir: &Path, name: &str) -> Result<()> {
    let path = dir.join(name);
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(()),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(error) => Err(io_error(&path, "delete recording file")(error)),
    }
}

/// Check a truncate of `descriptor` at `position` and return the record it leaves: stopped at
/// `position`, with the stop timestamp of the last time index entry before it.
///
/// # Errors
/// [`ArchiveError::Active`] for an active (or unrecovered) recording; [`StoreError::BadPosition`](tern_store::StoreError::BadPosition)
/// for a position outside `[start, stop]`, not frame aligned, or not at a frame start.
pub(crate) fn plan_truncate(
    dir: &Path,
    descriptor: &RecordingDescriptor,
    position: i64,
) -> Result<RecordingDescriptor> {
    if descriptor.is_active() {
        return Err(ArchiveError::Active {
            recording_id: descriptor.recording_id,
            operation: "truncate",
        });
    }
    tern_store::check_replay_position(dir, descriptor, position, descriptor.stop_position)?;
    let mut truncated = descriptor.clone();
    if position < descriptor.stop_position {
        truncated.stop_position = position;
        truncated.stop_timestamp_ns = read_time_index(dir, descriptor.recording_id, position)
            .ok()
            .and_then(|entries| entries.last().map(|entry| entry.timestamp_ns))
            .unwrap_or(descriptor.start_timestamp_ns);
    }
    Ok(truncated)
}

/// Remove everything of a recording at and after `position`: the rest of the segment holding it
/// is zeroed (the file keeps its length), later segment files and every sidecar of theirs
/// (`<id>-<base>.…`) are deleted (so is the segment holding `position` when it holds nothing
/// before it), and the time index loses its entries at or after `position`. Everything is
/// synced. Returns the number of segment files (`.rec`) deleted.
///
/// # Errors
/// A file cannot be listed, changed, deleted or synced.
pub(crate) fn cut_files(
    dir: &Path,
    descriptor: &RecordingDescriptor,
    position: i64,
) -> Result<usize> {
    let plan = plan_cut(dir, descriptor, position)?;
    let deleted = plan.segments;
    delete_named(dir, &plan.doomed)?;
    cut_in_place(dir, descriptor, position, &plan)?;
    Ok(deleted)
}

/// What a truncate at a position deletes and changes in place.
#[derive(Debug)]
pub(crate) struct CutPlan {
    /// Files to delete, highest segment base first (what is left is always a prefix).
    pub doomed: Vec<String>,
    /// How many of them are segment files.
    pub segments: usize,
    /// Whether the segment holding the position keeps data before it (and is zeroed after it).
    partial: bool,
    keep_base: i64,
}

/// The files a truncate of `descriptor` at `position` deletes (see [`cut_files`]).
///
/// # Errors
/// The directory cannot be listed.
pub(crate) fn plan_cut(
    dir: &Path,
    descriptor: &RecordingDescriptor,
    position: i64,
) -> Result<CutPlan> {
    let recording_id = descriptor.recording_id;
    let segment_length = i64::from(descriptor.segment_length);
    let keep_base = segment_base(
        descriptor.start_position,
        position,
        i64::from(descriptor.term_length),
        segment_length,
    );
    // Does the segment holding `position` hold data before it?
    let partial = position > keep_base.max(descriptor.start_position);
    let mut doomed: Vec<RecordingFile> = files_of(dir, recording_id)?
        .into_iter()
        .filter(|file| match file.base {
            // The segment holding `position` keeps its `.rec` file when data comes before the
            // cut, but never its sidecars (key indexes): they describe what is cut away, and a
            // missing index is scanned around or rebuilt.
            Some(base) => {
                base > keep_base
                    || (base == keep_base && (!partial || !file.name.ends_with(".rec")))
            }
            None => false,
        })
        .collect();
    // Highest first: at any moment what is left is a prefix of the recording.
    doomed.sort_by_key(|file| std::cmp::Reverse(file.base));
    let segments = doomed
        .iter()
        .filter(|file| file.name.ends_with(".rec"))
        .count();
    Ok(CutPlan {
        doomed: doomed.into_iter().map(|file| file.name).collect(),
        segments,
        partial,
        keep_base,
    })
}

/// Delete `names` in `dir` in that order (a file already gone is no error), then sync the
/// directory.
///
/// # Errors
/// A file cannot be deleted, or the directory synced.
pub(crate) fn delete_named(dir: &Path, names: &[String]) -> Result<()> {
    for name in names {
        remove(dir, name)?;
    }
    if !names.is_empty() {
        sync_directory(dir)?;
    }
    Ok(())
}

/// The in-place part of a truncate: zero the segment holding `position` from it on (when it
/// keeps data before it), and cut the time index there.
///
/// # Errors
/// A file cannot be changed or synced.
pub(crate) fn cut_in_place(
    dir: &Path,
    descriptor: &RecordingDescriptor,
    position: i64,
    plan: &CutPlan,
) -> Result<()> {
    if plan.partial {
        erase_segment_from(
            &dir.join(segment_file_name(descriptor.recording_id, plan.keep_base)),
            (position - plan.keep_base) as u64,
            descriptor.segment_length as u64,
        )?;
    }
    truncate_time_index(dir, descriptor.recording_id, position)
}

/// Zero a segment file from `offset` to its end, keeping its length (and its blocks when it was
/// preallocated): cut it at `offset`, grow it back, sync.
fn erase_segment_from(path: &Path, offset: u64, segment_length: u64) -> Result<()> {
    let file = match OpenOptions::new().read(true).write(true).open(path) {
        Ok(file) => file,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(error) => return Err(io_error(path, "open segment to erase")(error)),
    };
    let length = file
        .metadata()
        .map_err(io_error(path, "stat segment"))?
        .len();
    if length <= offset {
        return Ok(());
    }
    file.set_len(offset)
        .map_err(io_error(path, "erase segment"))?;
    if length >= segment_length {
        // It was preallocated: give it its blocks back, reading as zeroes.
        // SAFETY: plain syscall on an owned descriptor.
        let result = unsafe {
            libc::fallocate(
                std::os::fd::AsRawFd::as_raw_fd(&file),
                0,
                0,
                segment_length as libc::off_t,
            )
        };
        if result != 0 {
            file.set_len(segment_length)
                .map_err(io_error(path, "size segment"))?;
        }
    }
    file.sync_all().map_err(io_error(path, "sync segment"))
}

/// Drop the time index entries at or after `position` (and a torn tail). A missing index is left
/// missing; one that cannot be read is emptied (its header kept), with a warning.
fn truncate_time_index(dir: &Path, recording_id: i64, position: i64) -> Result<()> {
    let path = dir.join(time_index_file_name(recording_id));
    if !path.exists() {
        return Ok(());
    }
    let kept = match read_time_index(dir, recording_id, position) {
        Ok(entries) => entries.len(),
        Err(error) => {
            tracing::warn!("recording {recording_id}: time index unreadable, emptied: {error}");
            return Ok(tern_store::time_index::reset_time_index(dir, recording_id)?);
        }
    };
    let file = OpenOptions::new()
        .write(true)
        .open(&path)
        .map_err(io_error(&path, "open time index"))?;
    let length = (HEADER_LENGTH + kept * ENTRY_LENGTH) as u64;
    let current = file
        .metadata()
        .map_err(io_error(&path, "stat time index"))?
        .len();
    if current > length {
        file.set_len(length)
            .map_err(io_error(&path, "truncate time index"))?;
        file.sync_all()
            .map_err(io_error(&path, "sync time index"))?;
    }
    Ok(())
}

/// Delete every file of a recording (segments, sidecars, time index). Returns the number of
/// segment files deleted.
///
/// # Errors
/// A file cannot be listed or deleted, or the directory cannot be synced.
/// Every file of a recording, highest segment base first, and how many are segment files: what
/// a purge deletes.
///
/// # Errors
/// The directory cannot be listed.
pub(crate) fn plan_delete(dir: &Path, recording_id: i64) -> Result<(Vec<String>, usize)> {
    let mut files = files_of(dir, recording_id)?;
    files.sort_by_key(|file| std::cmp::Reverse(file.base));
    let segments = files
        .iter()
        .filter(|file| file.name.ends_with(".rec"))
        .count();
    Ok((files.into_iter().map(|file| file.name).collect(), segments))
}

pub(crate) fn delete_files(dir: &Path, recording_id: i64) -> Result<usize> {
    let mut files = files_of(dir, recording_id)?;
    files.sort_by_key(|file| std::cmp::Reverse(file.base));
    let mut deleted = 0;
    for file in &files {
        remove(dir, &file.name)?;
        if file.name.ends_with(".rec") {
            deleted += 1;
        }
    }
    if !files.is_empty() {
        sync_directory(dir)?;
    }
    Ok(deleted)
}

/// Finish the purges a crash interrupted: delete the files left of recordings whose record says
/// deleted (a purge writes the record first, then deletes). Returns how many recordings had
/// files left.
///
/// # Errors
/// The directory cannot be listed or a file cannot be deleted.
pub(crate) fn finish_purges(dir: &Path, catalog: &Catalog) -> Result<usize> {
    let deleted: std::collections::BTreeSet<i64> = catalog
        .entries()
        .iter()
        .filter_map(|entry| match entry {
            tern_store::catalog::CatalogEntry::Recording(descriptor)
                if descriptor.state == tern_store::descriptor::RecordState::Deleted =>
            {
                Some(descriptor.recording_id)
            }
            _ => None,
        })
        .collect();
    if deleted.is_empty() {
        return Ok(0);
    }
    let mut owners = std::collections::BTreeSet::new();
    for entry in std::fs::read_dir(dir).map_err(io_error(dir, "list archive directory"))? {
        let entry = entry.map_err(io_error(dir, "list archive directory"))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let digits = name.bytes().take_while(u8::is_ascii_digit).count();
        let owner = name[..digits].parse::<i64>().ok();
        let separator = name.as_bytes().get(digits).copied();
        if let (Some(owner), Some(b'-' | b'.')) = (owner, separator) {
            if deleted.contains(&owner) {
                owners.insert(owner);
            }
        }
    }
    for recording_id in &owners {
        let files = delete_files(dir, *recording_id)?;
        tracing::info!(
            "recording {recording_id}: purge finished ({files} segment files left by an interrupted purge deleted)"
        );
    }
    Ok(owners.len())
}

/// Finish the truncates a crash interrupted: a truncate writes the record (stopped at the cut)
/// before the later segment files go. At launch every segment file (and sidecar) of a stopped
/// recording based past the segment that holds its stop position is deleted. Returns how many
/// recordings had such files.
///
/// # Errors
/// The directory cannot be listed or a file cannot be deleted.
pub(crate) fn finish_truncates(dir: &Path, catalog: &Catalog) -> Result<usize> {
    let segments = tern_store::recording_reader::list_segments(dir)?;
    let mut finished = 0;
    for descriptor in catalog.recordings() {
        if descriptor.is_active() || descriptor.state != RecordState::Valid {
            continue;
        }
        let Some(bases) = segments.get(&descriptor.recording_id) else {
            continue;
        };
        let last = segment_base(
            descriptor.start_position,
            descriptor.stop_position,
            i64::from(descriptor.term_length),
            i64::from(descriptor.segment_length),
        );
        if !bases.iter().any(|base| *base > last) {
            continue;
        }
        let mut doomed: Vec<RecordingFile> = files_of(dir, descriptor.recording_id)?
            .into_iter()
            .filter(|file| file.base.is_some_and(|base| base > last))
            .collect();
        doomed.sort_by_key(|file| std::cmp::Reverse(file.base));
        let names: Vec<String> = doomed.into_iter().map(|file| file.name).collect();
        delete_named(dir, &names)?;
        tracing::info!(
            "recording {}: truncate finished ({} files past its stop position {} deleted)",
            descriptor.recording_id,
            names.len(),
            descriptor.stop_position
        );
        finished += 1;
    }
    Ok(finished)
}

/// The record of a purged recording: state deleted.
///
/// # Errors
/// [`ArchiveError::Active`] for an active (or unrecovered) recording.
pub(crate) fn plan_purge(descriptor: &RecordingDescriptor) -> Result<RecordingDescriptor> {
    if descriptor.is_active() {
        return Err(ArchiveError::Active {
            recording_id: descriptor.recording_id,
            operation: "purge",
        });
    }
    let mut deleted = descriptor.clone();
    deleted.state = RecordState::Deleted;
    Ok(deleted)
}

/// Truncate a recording of an archive directory no archive runs on (the directory is locked
/// meanwhile): see [`Archive::truncate_recording`](crate::Archive::truncate_recording). Returns
/// the number of segment files deleted.
///
/// # Errors
/// The directory is in use by a running archive; the recording is unknown, active or interrupted
/// (a running archive recovers it first); a bad position; a file error.
pub fn truncate_recording_offline(dir: &Path, recording_id: i64, position: i64) -> Result<usize> {
    let _lock = tern_store::lock_directory(dir)?;
    let mut catalog = Catalog::open(dir, true)?;
    let descriptor = catalog.get(recording_id)?.clone();
    let truncated = plan_truncate(dir, &descriptor, position)?;
    catalog.update(&truncated)?;
    cut_files(dir, &descriptor, position)
}

/// Purge a recording of an archive directory no archive runs on (the directory is locked
/// meanwhile): see [`Archive::purge_recording`](crate::Archive::purge_recording). Returns the
/// number of segment files deleted.
///
/// # Errors
/// The directory is in use by a running archive; the recording is unknown, active or interrupted;
/// a file error.
pub fn purge_recording_offline(dir: &Path, recording_id: i64) -> Result<usize> {
    let _lock = tern_store::lock_directory(dir)?;
    let mut catalog = Catalog::open(dir, true)?;
    let descriptor = catalog.get(recording_id)?.clone();
    catalog.update(&plan_purge(&descriptor)?)?;
    delete_files(dir, recording_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .expect("list")
            .map(|entry| {
                entry
                    .expect("entry")
                    .file_name()
                    .into_string()
                    .expect("utf-8")
            })
            .collect();
        names.sort();
        names
    }

    #[test]
    fn cutting_keeps_the_prefix_and_deletes_later_segments_and_the_cut_segments_sidecars() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut descriptor = tern_store::descriptor::sample(7);
        descriptor.start_position = 0;
        descriptor.segment_length = 1 << 17;
        descriptor.term_length = 1 << 16;
        let segment = 1u64 << 17;
        for base in [0u64, segment, 2 * segment] {
            std::fs::write(
                dir.path().join(segment_file_name(7, base as i64)),
                vec![0xAB; segment as usize],
            )
            .expect("segment");
            std::fs::write(dir.path().join(format!("7-{base}.keys")), b"k").expect("sidecar");
        }
        std::fs::write(dir.path().join("17-0.rec"), b"other").expect("other recording");
        std::fs::write(dir.path().join("7-0.keys.idx"), b"k").expect("second sidecar");
        let deleted = cut_files(dir.path(), &descriptor, segment as i64 + 4096).expect("cut");
        assert_eq!(deleted, 1);
        assert_eq!(
            names(dir.path()),
            vec![
                "17-0.rec",
                "7-0.keys",
                "7-0.keys.idx",
                "7-0.rec",
                "7-131072.rec"
            ],
            "the cut segment keeps its data before the cut but loses its sidecars"
        );
        let kept = std::fs::read(dir.path().join("7-131072.rec")).expect("read");
        assert_eq!(kept.len(), segment as usize, "length kept");
        assert!(kept[..4096].iter().all(|byte| *byte == 0xAB));
        assert!(kept[4096..].iter().all(|byte| *byte == 0));
        // At a segment base, that segment goes too; at the start, everything.
        assert_eq!(
            cut_files(dir.path(), &descriptor, segment as i64).expect("cut"),
            1
        );
        assert_eq!(cut_files(dir.path(), &descriptor, 0).expect("cut"), 1);
        assert_eq!(names(dir.path()), vec!["17-0.rec"]);
    }
}
