//! Changing stopped recordings: truncate (cut a recording at a position), purge (delete it), and
//! the clean-up an extension does before it writes. Also which recordings are active or busy,
//! and the offline forms of truncate and purge for a directory no archive runs on.
//!
//! Every file access goes through the archive's storage backend (`ArchiveConfig::io`), so the
//! crash tests run these on a simulated disk, crashed after each sync.
//!
//! Crash safety: the catalog is written first, and the files follow it. A stopped recording's
//! stop position is the truth about its data (readers never look past it), so a crash between
//! the catalog update and the file changes leaves only bytes past the stop position or files of
//! a deleted record: readers ignore both, and an extension cleans them up before it writes.

use crate::error::{io_error, ArchiveError, Result};
use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use tern_store::catalog::{sync_directory_on, Catalog};
use tern_store::descriptor::{RecordState, RecordingDescriptor};
use tern_store::segment::{segment_base, segment_file_name};
use tern_store::storage::{OpenOptions, Storage};
use tern_store::time_index::{
    read_time_index_on, time_index_file_name, ENTRY_LENGTH, HEADER_LENGTH,
};
use tern_store::RecordingId;

/// Which recordings are being recorded (and through which subscription), and which a truncate,
/// purge or extension is working on.
#[derive(Debug, Default)]
pub(crate) struct Activity {
    /// Active recordings: recording id → recording subscription id.
    pub active: HashMap<RecordingId, i64>,
    /// Recordings a truncate or purge is changing.
    pub busy: HashSet<RecordingId>,
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
fn files_of(
    storage: &Arc<dyn Storage>,
    dir: &Path,
    recording_id: RecordingId,
) -> Result<Vec<RecordingFile>> {
    let segment_prefix = format!("{recording_id}-");
    let own_prefix = format!("{recording_id}.");
    let mut files = Vec::new();
    for name in storage
        .list(dir)
        .map_err(io_error(dir, "list archive directory"))?
    {
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

fn remove(storage: &Arc<dyn Storage>, dir: &Path, name: &str) -> Result<()> {
    let path = dir.join(name);
    match storage.remove_file(&path) {
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
    storage: &Arc<dyn Storage>,
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
    tern_store::recording_reader::check_replay_position_on(
        storage,
        dir,
        descriptor,
        position,
        descriptor.stop_position,
    )?;
    let mut truncated = descriptor.clone();
    if position < descriptor.stop_position {
        truncated.stop_position = position;
        truncated.stop_timestamp_ns =
            read_time_index_on(storage, dir, descriptor.recording_id, position)
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
    storage: &Arc<dyn Storage>,
    dir: &Path,
    descriptor: &RecordingDescriptor,
    position: i64,
) -> Result<usize> {
    let plan = plan_cut(storage, dir, descriptor, position)?;
    let deleted = plan.segments;
    delete_named(storage, dir, &plan.doomed)?;
    cut_in_place(storage, dir, descriptor, position, &plan)?;
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
    storage: &Arc<dyn Storage>,
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
    let mut doomed: Vec<RecordingFile> = files_of(storage, dir, recording_id)?
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
pub(crate) fn delete_named(storage: &Arc<dyn Storage>, dir: &Path, names: &[String]) -> Result<()> {
    for name in names {
        remove(storage, dir, name)?;
    }
    if !names.is_empty() {
        sync_directory_on(storage, dir)?;
    }
    Ok(())
}

/// The in-place part of a truncate: zero the segment holding `position` from it on (when it
/// keeps data before it), and cut the time index there.
///
/// # Errors
/// A file cannot be changed or synced.
pub(crate) fn cut_in_place(
    storage: &Arc<dyn Storage>,
    dir: &Path,
    descriptor: &RecordingDescriptor,
    position: i64,
    plan: &CutPlan,
) -> Result<()> {
    if plan.partial {
        tern_store::segment_writer::erase_segment_from(
            storage,
            &dir.join(segment_file_name(descriptor.recording_id, plan.keep_base)),
            (position - plan.keep_base) as u64,
            descriptor.segment_length as u64,
        )?;
    }
    truncate_time_index(storage, dir, descriptor.recording_id, position)
}

/// Drop the time index entries at or after `position` (and a torn tail). A missing index is left
/// missing; one that cannot be read is emptied (its header kept), with a warning.
fn truncate_time_index(
    storage: &Arc<dyn Storage>,
    dir: &Path,
    recording_id: RecordingId,
    position: i64,
) -> Result<()> {
    let path = dir.join(time_index_file_name(recording_id));
    if !storage.exists(&path) {
        return Ok(());
    }
    let kept = match read_time_index_on(storage, dir, recording_id, position) {
        Ok(entries) => entries.len(),
        Err(error) => {
            tracing::warn!("recording {recording_id}: time index unreadable, emptied: {error}");
            return Ok(tern_store::time_index::reset_time_index_on(
                storage,
                dir,
                recording_id,
            )?);
        }
    };
    let file = storage
        .open(&path, OpenOptions::read_write())
        .map_err(io_error(&path, "open time index"))?;
    let length = (HEADER_LENGTH + kept * ENTRY_LENGTH) as u64;
    let current = file.len().map_err(io_error(&path, "stat time index"))?;
    if current > length {
        file.set_len(length)
            .map_err(io_error(&path, "truncate time index"))?;
        file.sync_data()
            .map_err(io_error(&path, "sync time index"))?;
    }
    Ok(())
}

/// Every file of a recording, highest segment base first, and how many are segment files: what
/// a purge deletes.
///
/// # Errors
/// The directory cannot be listed.
pub(crate) fn plan_delete(
    storage: &Arc<dyn Storage>,
    dir: &Path,
    recording_id: RecordingId,
) -> Result<(Vec<String>, usize)> {
    let mut files = files_of(storage, dir, recording_id)?;
    files.sort_by_key(|file| std::cmp::Reverse(file.base));
    let segments = files
        .iter()
        .filter(|file| file.name.ends_with(".rec"))
        .count();
    Ok((files.into_iter().map(|file| file.name).collect(), segments))
}

/// Delete every file of a recording (segments, sidecars, time index), highest segment first.
/// Returns the number of segment files deleted.
///
/// # Errors
/// A file cannot be listed or deleted, or the directory cannot be synced.
pub(crate) fn delete_files(
    storage: &Arc<dyn Storage>,
    dir: &Path,
    recording_id: RecordingId,
) -> Result<usize> {
    let (files, segments) = plan_delete(storage, dir, recording_id)?;
    delete_named(storage, dir, &files)?;
    Ok(segments)
}

/// Finish the purges a crash interrupted: delete the files left of recordings whose record says
/// deleted (a purge writes the record first, then deletes). Returns how many recordings had
/// files left.
///
/// # Errors
/// The directory cannot be listed or a file cannot be deleted.
pub(crate) fn finish_purges(
    storage: &Arc<dyn Storage>,
    dir: &Path,
    catalog: &Catalog,
) -> Result<usize> {
    let deleted: std::collections::BTreeSet<RecordingId> = catalog
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
    for name in storage
        .list(dir)
        .map_err(io_error(dir, "list archive directory"))?
    {
        let digits = name.bytes().take_while(u8::is_ascii_digit).count();
        let owner = name[..digits].parse::<RecordingId>().ok();
        let separator = name.as_bytes().get(digits).copied();
        if let (Some(owner), Some(b'-' | b'.')) = (owner, separator) {
            if deleted.contains(&owner) {
                owners.insert(owner);
            }
        }
    }
    for recording_id in &owners {
        let files = delete_files(storage, dir, *recording_id)?;
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
pub(crate) fn finish_truncates(
    storage: &Arc<dyn Storage>,
    dir: &Path,
    catalog: &Catalog,
) -> Result<usize> {
    let segments = tern_store::recording_reader::list_segments_on(storage, dir)?;
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
        let mut doomed: Vec<RecordingFile> = files_of(storage, dir, descriptor.recording_id)?
            .into_iter()
            .filter(|file| file.base.is_some_and(|base| base > last))
            .collect();
        doomed.sort_by_key(|file| std::cmp::Reverse(file.base));
        let names: Vec<String> = doomed.into_iter().map(|file| file.name).collect();
        delete_named(storage, dir, &names)?;
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
pub fn truncate_recording_offline(
    dir: &Path,
    recording_id: RecordingId,
    position: i64,
) -> Result<usize> {
    let _lock = tern_store::lock_directory(dir)?;
    truncate_on(&tern_store::disk(), dir, recording_id, position)
}

/// A truncate of a stopped recording on `storage`, with no archive running: the record first,
/// then the files (what [`truncate_recording_offline`] does once it holds the lock).
pub(crate) fn truncate_on(
    storage: &Arc<dyn Storage>,
    dir: &Path,
    recording_id: RecordingId,
    position: i64,
) -> Result<usize> {
    let mut catalog = Catalog::open_on(storage, dir, true)?;
    let descriptor = catalog.get(recording_id)?.clone();
    let truncated = plan_truncate(storage, dir, &descriptor, position)?;
    catalog.update(&truncated)?;
    cut_files(storage, dir, &descriptor, position)
}

/// Purge a recording of an archive directory no archive runs on (the directory is locked
/// meanwhile): see [`Archive::purge_recording`](crate::Archive::purge_recording). Returns the
/// number of segment files deleted.
///
/// # Errors
/// The directory is in use by a running archive; the recording is unknown, active or interrupted;
/// a file error.
pub fn purge_recording_offline(dir: &Path, recording_id: RecordingId) -> Result<usize> {
    let _lock = tern_store::lock_directory(dir)?;
    purge_on(&tern_store::disk(), dir, recording_id)
}

/// A purge of a stopped recording on `storage`, with no archive running: the record first,
/// then the files.
pub(crate) fn purge_on(
    storage: &Arc<dyn Storage>,
    dir: &Path,
    recording_id: RecordingId,
) -> Result<usize> {
    let mut catalog = Catalog::open_on(storage, dir, true)?;
    let descriptor = catalog.get(recording_id)?.clone();
    catalog.update(&plan_purge(&descriptor)?)?;
    delete_files(storage, dir, recording_id)
}

#[cfg(test)]
pub(crate) mod tests {
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
        let mut descriptor = tern_store::descriptor::sample(RecordingId::new(7));
        descriptor.start_position = 0;
        descriptor.segment_length = 1 << 17;
        descriptor.term_length = 1 << 16;
        let segment = 1u64 << 17;
        for base in [0u64, segment, 2 * segment] {
            std::fs::write(
                dir.path()
                    .join(segment_file_name(RecordingId::new(7), base as i64)),
                vec![0xAB; segment as usize],
            )
            .expect("segment");
            std::fs::write(dir.path().join(format!("7-{base}.keys")), b"k").expect("sidecar");
        }
        std::fs::write(dir.path().join("17-0.rec"), b"other").expect("other recording");
        std::fs::write(dir.path().join("7-0.keys.idx"), b"k").expect("second sidecar");
        let deleted = cut_files(
            &tern_store::disk(),
            dir.path(),
            &descriptor,
            segment as i64 + 4096,
        )
        .expect("cut");
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
            cut_files(&tern_store::disk(), dir.path(), &descriptor, segment as i64).expect("cut"),
            1
        );
        assert_eq!(
            cut_files(&tern_store::disk(), dir.path(), &descriptor, 0).expect("cut"),
            1
        );
        assert_eq!(names(dir.path()), vec!["17-0.rec"]);
    }

    /// Crash tests at the write in question: a truncate or purge of a stopped recording on a
    /// simulated disk, crashed after each of its syncs (and with the write in flight torn), then
    /// what a launch does (`finish_purges`, `finish_truncates`).
    pub(crate) mod crashes {
        use super::*;
        use crate::testing::{stopped_recording, Written, TERM};
        use tern_store::recording_reader::RecordingReader;
        use tern_store::{Io, SimDisk};

        /// Where the crash tests' recording is, on its simulated disk.
        pub(crate) const DIR: &str = "/archive";

        /// A disk holding one synced, stopped recording of 300 messages (three segments), as a
        /// restarted process finds it, and the recording.
        pub(crate) fn recorded() -> (SimDisk, Written) {
            let disk = SimDisk::new();
            disk.create_dir_all(Path::new(DIR)).expect("dir");
            let storage: Arc<dyn Storage> = Arc::new(disk.clone());
            let written = stopped_recording(&Io::inline(storage.clone()), Path::new(DIR), 300);
            sync_directory_on(&storage, Path::new(DIR)).expect("dir synced");
            (disk.crash(), written)
        }

        /// The frames of the recording from its start up to `stop` on `storage`, checked.
        fn frames_up_to(storage: &Arc<dyn Storage>, descriptor: &RecordingDescriptor) -> Vec<u8> {
            let mut reader = RecordingReader::new_on(storage, Path::new(DIR), descriptor);
            let mut bytes = Vec::new();
            let (end, damage) = reader
                .scan(
                    descriptor.start_position,
                    descriptor.stop_position,
                    |frame| {
                        bytes.extend_from_slice(frame.payload());
                        true
                    },
                )
                .expect("scanned");
            assert_eq!(damage, None, "damage before the stop position");
            assert_eq!(
                end, descriptor.stop_position,
                "frames missing before the stop"
            );
            bytes
        }

        /// Launch-time recovery, then the record of recording 0.
        fn launch(storage: &Arc<dyn Storage>) -> RecordingDescriptor {
            let catalog = tern_store::rebuild::open_for_recording_on(storage, Path::new(DIR))
                .expect("catalog opens after the crash");
            finish_purges(storage, Path::new(DIR), &catalog).expect("purges finished");
            finish_truncates(storage, Path::new(DIR), &catalog).expect("truncates finished");
            match catalog.entries().first() {
                Some(tern_store::catalog::CatalogEntry::Recording(descriptor)) => {
                    descriptor.clone()
                }
                other => panic!("record 0: {other:?}"),
            }
        }

        fn syncs_of(operation: impl Fn(&Arc<dyn Storage>)) -> u64 {
            let (disk, _) = recorded();
            let storage: Arc<dyn Storage> = Arc::new(disk.clone());
            let before = disk.syncs();
            operation(&storage);
            disk.syncs() - before
        }

        #[test]
        fn a_crash_after_any_sync_of_a_truncate_leaves_the_old_or_the_new_recording_whole() {
            truncates_survive_a_crash_after_any_sync(|storage, cut| {
                truncate_on(storage, Path::new(DIR), RecordingId::new(0), cut).expect("truncated");
            });
        }

        /// Run `truncate` (recording 0 of [`recorded`] cut at `cut` on `storage`) on a disk
        /// frozen after each of its syncs, with 0, 100 and 4096 bytes of the write in flight
        /// torn; after what a launch does the record is the old one or the cut one, every frame
        /// before its stop is the one recorded, nothing is left past it, and both outcomes occur.
        pub(crate) fn truncates_survive_a_crash_after_any_sync(
            truncate: impl Fn(&Arc<dyn Storage>, i64),
        ) {
            let (_, written) = recorded();
            let cut = written.frames[100];
            let original = {
                let (disk, _) = recorded();
                frames_up_to(&(Arc::new(disk) as Arc<dyn Storage>), &written.descriptor)
            };
            let truncate = |storage: &Arc<dyn Storage>| truncate(storage, cut);
            let total = syncs_of(truncate);
            assert!(
                total >= 4,
                "a truncate syncs the record, the cut and the deletions"
            );
            let mut outcomes = HashSet::new();
            for freeze in 0..=total {
                for torn in [0, 100, 4096] {
                    let (disk, _) = recorded();
                    disk.freeze_after_syncs(freeze);
                    truncate(&(Arc::new(disk.clone()) as Arc<dyn Storage>));
                    let crashed: Arc<dyn Storage> = Arc::new(disk.crash_torn(torn));
                    let record = launch(&crashed);
                    let what = format!("crash after sync {freeze} of {total}, {torn} bytes torn");
                    assert!(
                        record.stop_position == written.descriptor.stop_position
                            || record.stop_position == cut,
                        "{what}: stop position {}",
                        record.stop_position
                    );
                    let bytes = frames_up_to(&crashed, &record);
                    assert_eq!(bytes[..], original[..bytes.len()], "{what}: data changed");
                    // No segment file past the one holding the stop remains, and an extension's
                    // clean-up from the stop leaves nothing to read past it.
                    let last =
                        segment_base(0, record.stop_position, i64::from(TERM), i64::from(TERM));
                    let segments =
                        tern_store::recording_reader::list_segments_on(&crashed, Path::new(DIR))
                            .expect("listed");
                    assert!(
                        segments
                            .get(&RecordingId::new(0))
                            .into_iter()
                            .flatten()
                            .all(|base| *base <= last),
                        "{what}: segments {segments:?} past {last}"
                    );
                    cut_files(&crashed, Path::new(DIR), &record, record.stop_position)
                        .expect("cleaned up");
                    let mut reader = RecordingReader::new_on(&crashed, Path::new(DIR), &record);
                    let (end, _) = reader
                        .scan(record.stop_position, record.stop_position + 4096, |_| true)
                        .expect("scanned past the stop");
                    assert_eq!(end, record.stop_position, "{what}: frames past the stop");
                    outcomes.insert(record.stop_position);
                }
            }
            assert_eq!(outcomes.len(), 2, "both outcomes were seen: {outcomes:?}");
        }

        #[test]
        fn a_crash_after_any_sync_of_a_purge_leaves_the_recording_whole_or_gone() {
            purges_survive_a_crash_after_any_sync(|storage| {
                purge_on(storage, Path::new(DIR), RecordingId::new(0)).expect("purged");
            });
        }

        /// Run `purge` (of recording 0 of [`recorded`]) on a disk frozen after each of its
        /// syncs, with writes torn; after what a launch does the recording is whole as it was,
        /// or deleted with no file of it left, and both outcomes occur.
        pub(crate) fn purges_survive_a_crash_after_any_sync(purge: impl Fn(&Arc<dyn Storage>)) {
            let (_, written) = recorded();
            let total = syncs_of(&purge);
            let mut outcomes = HashSet::new();
            for freeze in 0..=total {
                for torn in [0, 100, 4096] {
                    let (disk, _) = recorded();
                    disk.freeze_after_syncs(freeze);
                    purge(&(Arc::new(disk.clone()) as Arc<dyn Storage>));
                    let crashed: Arc<dyn Storage> = Arc::new(disk.crash_torn(torn));
                    let record = launch(&crashed);
                    let what = format!("crash after sync {freeze} of {total}, {torn} bytes torn");
                    let files = crashed.list(Path::new(DIR)).expect("listed");
                    match record.state {
                        RecordState::Valid => {
                            assert_eq!(record, written.descriptor, "{what}");
                            frames_up_to(&crashed, &record);
                        }
                        RecordState::Deleted => assert!(
                            !files
                                .iter()
                                .any(|name| name.starts_with("0-") || name.starts_with("0.")),
                            "{what}: files left of a purged recording: {files:?}"
                        ),
                        other => panic!("{what}: state {other:?}"),
                    }
                    outcomes.insert(record.state.name());
                }
            }
            assert_eq!(outcomes.len(), 2, "both outcomes were seen: {outcomes:?}");
        }
    }
}
