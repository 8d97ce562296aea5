//! The catalog and the cursor file on a simulated disk: a crash after any sync, with or without a
//! torn write, loses no acknowledged change and leaves no damaged record (the catalog's redo file
//! repairs a torn one; the cursor file is replaced whole); a failed write or sync is an error and
//! what is in memory does not run ahead of the disk.

use std::path::Path;
use std::sync::Arc;
use tern_store::cursors::CursorStore;
use tern_store::descriptor::sample;
use tern_store::{
    Catalog, CatalogEntry, Cursor, FaultDisk, RecordingDescriptor, RecordingId, SimDisk, Storage,
    WriteFault,
};

const DIR: &str = "/archive";

fn disk() -> SimDisk {
    let disk = SimDisk::new();
    disk.create_dir_all(Path::new(DIR)).expect("dir");
    disk
}

/// The changes a recorder makes: add three recordings, stop each, add a fourth. Returns, after
/// each change, (syncs the disk has seen, the records then acknowledged).
fn churn(disk: &SimDisk) -> Vec<(u64, Vec<RecordingDescriptor>)> {
    let storage: Arc<dyn Storage> = Arc::new(disk.clone());
    let mut acknowledged = Vec::new();
    let Ok(mut catalog) = Catalog::open_on(&storage, Path::new(DIR), true) else {
        return acknowledged;
    };
    let mut records: Vec<RecordingDescriptor> = Vec::new();
    acknowledged.push((disk.syncs(), records.clone()));
    for _ in 0..3 {
        records.push(catalog.add(sample(RecordingId::new(0))).expect("add"));
        acknowledged.push((disk.syncs(), records.clone()));
    }
    for index in 0..3 {
        let mut stopped = records[index].clone();
        stopped.stop_position = 4096 * (index as i64 + 2);
        stopped.stop_timestamp_ns = 1_700_000_000_000_000_000 + index as i64;
        catalog.update(&stopped).expect("update");
        records[index] = stopped;
        acknowledged.push((disk.syncs(), records.clone()));
    }
    records.push(catalog.add(sample(RecordingId::new(0))).expect("add"));
    acknowledged.push((disk.syncs(), records.clone()));
    acknowledged
}

/// Of states noted as (syncs by then, state): the last acknowledged by the `freeze`th sync, and
/// the one after it (in flight at the crash, so it may have landed).
fn at_crash<T: Clone>(acks: &[(u64, T)], freeze: u64) -> (Option<T>, Option<T>) {
    let durable = acks
        .iter()
        .rev()
        .find(|(syncs, _)| *syncs <= freeze)
        .map(|(_, state)| state.clone());
    let next = acks
        .iter()
        .find(|(syncs, _)| *syncs > freeze)
        .map(|(_, state)| state.clone());
    (durable, next)
}

#[test]
fn a_crash_after_any_sync_even_with_a_torn_write_keeps_every_acknowledged_record() {
    let full = disk();
    let acks = churn(&full);
    let total = full.syncs();
    assert!(total >= 14, "{total} syncs");
    for freeze in 0..=total {
        for torn in [0, 1, 100, 700, 2000] {
            let disk = disk();
            disk.freeze_after_syncs(freeze);
            assert_eq!(churn(&disk), acks, "the runs are the same");
            let crashed: Arc<dyn Storage> = Arc::new(disk.crash_torn(torn));
            let at = format!("crash after sync {freeze}, {torn} bytes torn");
            let (durable, next) = at_crash(&acks, freeze);
            let catalog = match Catalog::open_on(&crashed, Path::new(DIR), true) {
                Ok(catalog) => catalog,
                Err(error) => {
                    // Only before the catalog's creation was acknowledged.
                    assert!(durable.is_none(), "{at}: {error}");
                    continue;
                }
            };
            let found: Vec<RecordingDescriptor> = catalog
                .entries()
                .iter()
                .map(|entry| match entry {
                    CatalogEntry::Recording(descriptor) => descriptor.clone(),
                    CatalogEntry::Damaged { reason, .. } => panic!("{at}: damaged: {reason}"),
                })
                .collect();
            let durable = durable.unwrap_or_default();
            assert!(
                found == durable || Some(&found) == next.as_ref(),
                "{at}: found {found:?}\nacknowledged {durable:?}"
            );
            // Reopened read-only, a second time: the repair was written, the same records read.
            drop(catalog);
            let again = Catalog::open_on(&crashed, Path::new(DIR), false).expect("reopen");
            assert_eq!(
                again.recordings().cloned().collect::<Vec<_>>(),
                found,
                "{at}"
            );
        }
    }
}

#[test]
fn a_failed_record_write_or_sync_is_an_error_and_not_taken_in() {
    for fault in [Some(WriteFault::NoSpace), Some(WriteFault::Io), None] {
        let base = disk();
        let storage: Arc<dyn Storage> = Arc::new(base.clone());
        let mut catalog = Catalog::open_on(&storage, Path::new(DIR), true).expect("create");
        catalog.add(sample(RecordingId::new(0))).expect("add");
        drop(catalog);
        let faults = FaultDisk::new(storage.clone()).only_files_ending("catalog.tern");
        let faults = match fault {
            Some(fault) => faults.fail_write(1, fault),
            None => faults.fail_sync(1),
        };
        let failing: Arc<dyn Storage> = Arc::new(faults);
        let mut catalog = Catalog::open_on(&failing, Path::new(DIR), true).expect("reopen");
        let error = catalog
            .add(sample(RecordingId::new(0)))
            .expect_err("the write fails");
        assert!(error.to_string().contains("catalog.tern"), "{error}");
        assert_eq!(catalog.entries().len(), 1, "{fault:?}: not taken in");
        // The next add works and gets the id the failed one would have had.
        assert_eq!(
            catalog
                .add(sample(RecordingId::new(0)))
                .expect("add")
                .recording_id,
            RecordingId::new(1)
        );
        drop(catalog);
        let reopened = Catalog::open_on(&storage, Path::new(DIR), false).expect("reopen");
        assert_eq!(reopened.recordings().count(), 2, "{fault:?}");
    }
}

fn cursor(name: &str, position: i64) -> Cursor {
    Cursor {
        name: name.into(),
        recording_id: RecordingId::new(3),
        position,
        updated_ns: 1_700_000_000_000_000_000 + position,
    }
}

/// Cursor changes a consumer makes: set three, move two, delete one. Returns, after each, (syncs
/// the disk has seen, the cursors then acknowledged).
fn cursor_churn(disk: &SimDisk) -> Vec<(u64, Vec<Cursor>)> {
    let storage: Arc<dyn Storage> = Arc::new(disk.clone());
    let mut store = CursorStore::open_on(&storage, Path::new(DIR)).expect("open");
    let mut acks = vec![(disk.syncs(), store.list(""))];
    for (name, position) in [("a", 64), ("b", 128), ("c", 192), ("a", 4096), ("c", 8192)] {
        store.set(cursor(name, position)).expect("set");
        acks.push((disk.syncs(), store.list("")));
    }
    store.delete("b").expect("delete");
    acks.push((disk.syncs(), store.list("")));
    acks
}

#[test]
fn a_crash_after_any_sync_keeps_every_acknowledged_cursor_and_never_a_damaged_file() {
    let full = disk();
    let acks = cursor_churn(&full);
    let total = full.syncs();
    assert_eq!(total, 12, "a file sync and a directory sync per change");
    for freeze in 0..=total {
        for torn in [0, 10, 100] {
            let disk = disk();
            disk.freeze_after_syncs(freeze);
            assert_eq!(cursor_churn(&disk), acks, "the runs are the same");
            let crashed: Arc<dyn Storage> = Arc::new(disk.crash_torn(torn));
            let at = format!("crash after sync {freeze}, {torn} bytes torn");
            let found = CursorStore::open_on(&crashed, Path::new(DIR))
                .unwrap_or_else(|error| panic!("{at}: {error}"))
                .list("");
            let (durable, next) = at_crash(&acks, freeze);
            let durable = durable.unwrap_or_default();
            assert!(
                found == durable || Some(&found) == next.as_ref(),
                "{at}: found {found:?}, acknowledged {durable:?}"
            );
        }
    }
}

/// A key index file (and a recording's manifest) replaced on a disk that crashes after any of
/// its syncs, with the write in flight torn: a restarted reader finds the old file or the new
/// one under the index's name, whole, never a part of one (a torn temporary file is not an
/// index: the next launch removes it as a leftover).
#[test]
fn a_crash_during_a_key_index_or_manifest_write_leaves_the_old_file_or_the_new_one_whole() {
    use tern_store::key::KeyKind;
    use tern_store::key_index::{
        encode_key_index, key_index_file_name, read_manifest_on, write_atomically_on,
        write_manifest_on, Expected, KeyIndexReader,
    };
    let expected = |end_position| Expected {
        kind: KeyKind::Reserved,
        recording_id: RecordingId::new(4),
        segment_base: 0,
        end_position,
    };
    let name = key_index_file_name(RecordingId::new(4), 0, &KeyKind::Reserved);
    let old = encode_key_index(
        KeyKind::Reserved,
        RecordingId::new(4),
        0,
        4096,
        &mut [(7, 0), (9, 64)],
    );
    let mut entries: Vec<(i64, u32)> = (0..2000).map(|n| (n % 37, n as u32 * 64)).collect();
    let new = encode_key_index(
        KeyKind::Reserved,
        RecordingId::new(4),
        0,
        128_000,
        &mut entries,
    );
    let mut outcomes = std::collections::HashSet::new();
    for freeze in 0..=4 {
        for torn in [0, 1, 100, 4096, 20_000] {
            let disk = disk();
            let storage: Arc<dyn Storage> = Arc::new(disk.clone());
            write_atomically_on(&storage, Path::new(DIR), &name, &old, true).expect("old");
            write_manifest_on(
                &storage,
                Path::new(DIR),
                RecordingId::new(4),
                &[KeyKind::Reserved],
            )
            .expect("manifest");
            disk.freeze_after_syncs(freeze);
            let _ = write_atomically_on(&storage, Path::new(DIR), &name, &new, true);
            let _ = write_manifest_on(
                &storage,
                Path::new(DIR),
                RecordingId::new(4),
                &[KeyKind::Reserved, KeyKind::ClusterEgress],
            );
            let crashed: Arc<dyn Storage> = Arc::new(disk.crash_torn(torn));
            let what = format!("crash after {freeze} syncs, {torn} bytes torn");
            let found = match KeyIndexReader::open_on(&crashed, Path::new(DIR), &expected(128_000))
            {
                Ok(mut reader) => {
                    assert_eq!(
                        reader.positions_of(7).expect("looked up").len(),
                        54,
                        "{what}"
                    );
                    "new"
                }
                Err(_) => {
                    let mut reader =
                        KeyIndexReader::open_on(&crashed, Path::new(DIR), &expected(4096))
                            .unwrap_or_else(|error| panic!("{what}: neither file: {error}"));
                    assert_eq!(
                        reader.positions_of(7).expect("looked up"),
                        vec![0],
                        "{what}"
                    );
                    "old"
                }
            };
            let kinds = read_manifest_on(&crashed, Path::new(DIR), RecordingId::new(4))
                .unwrap_or_else(|error| panic!("{what}: manifest unreadable: {error}"));
            assert!(
                kinds == vec![KeyKind::Reserved]
                    || kinds == vec![KeyKind::Reserved, KeyKind::ClusterEgress],
                "{what}: manifest {kinds:?}"
            );
            outcomes.insert(found);
        }
    }
    assert_eq!(outcomes.len(), 2, "both outcomes were seen: {outcomes:?}");
}
