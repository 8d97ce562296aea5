//! The catalog file: a header, then one fixed-size checksummed record per recording, the
//! recording id being the record's index. See `docs/formats.md`.

use crate::descriptor::{RecordState, RecordingDescriptor, RECORD_LENGTH};
use crate::error::{io_error, Result, StoreError};
use crate::ids::RecordingId;
use crate::storage::{read_all, OpenOptions, Storage, StorageFile};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Name of the catalog file in an archive directory.
pub const CATALOG_FILE: &str = "catalog.tern";
const MAGIC: &[u8; 8] = b"TERNCAT\0";
const VERSION: u32 = 1;
/// Length of the catalog header; records follow, so each starts on a 1 KiB boundary.
pub const HEADER_LENGTH: usize = 1024;

/// One slot of the catalog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CatalogEntry {
    /// A readable record.
    Recording(RecordingDescriptor),
    /// A record that failed its checks; the other recordings are unaffected.
    Damaged {
        /// The slot's recording id.
        recording_id: RecordingId,
        /// Offset of the record in the catalog file.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
}

/// The catalog of an archive directory, all records held in memory, changes written through.
#[derive(Debug)]
pub struct Catalog {
    path: PathBuf,
    file: Arc<dyn StorageFile>,
    writable: bool,
    entries: Vec<CatalogEntry>,
    /// The redo file (writable catalogs): each record is written here, synced, before it is
    /// written in place, so a torn in-place write is repaired at the next open.
    redo: Option<Arc<dyn StorageFile>>,
}

/// Name of the catalog's redo file: the last record written, whole, with its slot.
pub const REDO_FILE: &str = "catalog.tern.redo";
const REDO_MAGIC: &[u8; 8] = b"TERNRDO\0";
const REDO_VERSION: u32 = 1;
/// Length of the redo file: magic, version, reserved, slot, record, CRC32C.
pub const REDO_LENGTH: usize = 24 + RECORD_LENGTH + 4;

/// The recording id of catalog slot `slot` (a recording's id is its slot).
fn slot_id(slot: usize) -> RecordingId {
    RecordingId::new(slot as i64)
}

fn encode_redo(slot: i64, record: &[u8; RECORD_LENGTH]) -> [u8; REDO_LENGTH] {
    let mut bytes = [0u8; REDO_LENGTH];
    bytes[0..8].copy_from_slice(REDO_MAGIC);
    bytes[8..12].copy_from_slice(&REDO_VERSION.to_le_bytes());
    bytes[16..24].copy_from_slice(&slot.to_le_bytes());
    bytes[24..24 + RECORD_LENGTH].copy_from_slice(record);
    let crc = crc32c::crc32c(&bytes[..REDO_LENGTH - 4]);
    bytes[REDO_LENGTH - 4..].copy_from_slice(&crc.to_le_bytes());
    bytes
}

/// The redo file's record and its slot, if the file is whole and its record sound.
pub fn read_redo(dir: &Path) -> Option<(usize, RecordingDescriptor, Vec<u8>)> {
    read_redo_on(&crate::storage::disk(), dir)
}

/// [`read_redo`] in `dir` of `storage`.
pub fn read_redo_on(
    storage: &Arc<dyn Storage>,
    dir: &Path,
) -> Option<(usize, RecordingDescriptor, Vec<u8>)> {
    let bytes = read_all(storage.as_ref(), &dir.join(REDO_FILE)).ok()?;
    if bytes.len() != REDO_LENGTH || &bytes[0..8] != REDO_MAGIC {
        return None;
    }
    let version = u32::from_le_bytes(bytes[8..12].try_into().ok()?);
    let crc = u32::from_le_bytes(bytes[REDO_LENGTH - 4..].try_into().ok()?);
    if version != REDO_VERSION || crc != crc32c::crc32c(&bytes[..REDO_LENGTH - 4]) {
        return None;
    }
    let slot = usize::try_from(i64::from_le_bytes(bytes[16..24].try_into().ok()?)).ok()?;
    let record = bytes[24..24 + RECORD_LENGTH].to_vec();
    let descriptor = RecordingDescriptor::decode(&record).ok()?;
    (descriptor.recording_id == slot_id(slot)).then_some((slot, descriptor, record))
}

fn open_redo(storage: &Arc<dyn Storage>, dir: &Path) -> Result<Arc<dyn StorageFile>> {
    let path = dir.join(REDO_FILE);
    let existed = storage.exists(&path);
    let file = storage
        .open(&path, OpenOptions::create())
        .map_err(io_error(&path, "open catalog redo file"))?;
    if !existed {
        sync_directory_on(storage, dir)?;
    }
    Ok(file)
}

fn encode_header() -> [u8; HEADER_LENGTH] {
    let mut header = [0u8; HEADER_LENGTH];
    header[0..8].copy_from_slice(MAGIC);
    header[8..12].copy_from_slice(&VERSION.to_le_bytes());
    header[12..16].copy_from_slice(&(HEADER_LENGTH as u32).to_le_bytes());
    header[16..20].copy_from_slice(&(RECORD_LENGTH as u32).to_le_bytes());
    let crc = crc32c::crc32c(&header[..HEADER_LENGTH - 4]);
    header[HEADER_LENGTH - 4..].copy_from_slice(&crc.to_le_bytes());
    header
}

fn check_header(path: &Path, header: &[u8]) -> Result<()> {
    let corrupt = |offset: u64, reason: String| StoreError::Corrupt {
        path: path.to_path_buf(),
        offset,
        reason,
    };
    if header.len() < 8 || &header[0..8] != MAGIC {
        return Err(corrupt(0, "not a tern catalog (bad magic)".into()));
    }
    if header.len() < HEADER_LENGTH {
        return Err(corrupt(
            header.len() as u64,
            format!(
                "catalog header truncated: {} of {HEADER_LENGTH} bytes",
                header.len()
            ),
        ));
    }
    let u32_at =
        |offset: usize| u32::from_le_bytes(header[offset..offset + 4].try_into().expect("4 bytes"));
    // The version first: a later layout must read as "unsupported", not as damage.
    let version = u32_at(8);
    if version != VERSION {
        return Err(corrupt(
            8,
            format!("catalog version {version}; this tern reads version {VERSION}"),
        ));
    }
    let stored = u32_at(HEADER_LENGTH - 4);
    let computed = crc32c::crc32c(&header[..HEADER_LENGTH - 4]);
    if stored != computed {
        return Err(corrupt(
            (HEADER_LENGTH - 4) as u64,
            format!("catalog header checksum mismatch (stored {stored:#010x}, computed {computed:#010x})"),
        ));
    }
    if u32_at(12) as usize != HEADER_LENGTH {
        return Err(corrupt(
            12,
            format!("header length {}, expected {HEADER_LENGTH}", u32_at(12)),
        ));
    }
    if u32_at(16) as usize != RECORD_LENGTH {
        return Err(corrupt(
            16,
            format!("record length {}, expected {RECORD_LENGTH}", u32_at(16)),
        ));
    }
    Ok(())
}

/// Create the catalog with its header in one step: written to a temporary file, synced, renamed
/// into place, and the directory synced, so a crash never leaves a half-written catalog.
fn create(storage: &Arc<dyn Storage>, dir: &Path, path: &Path) -> Result<Arc<dyn StorageFile>> {
    let temporary = dir.join(format!("{CATALOG_FILE}.new"));
    write_whole(
        storage,
        &temporary,
        &encode_header(),
        "write catalog header",
    )?;
    storage
        .rename(&temporary, path)
        .map_err(io_error(path, "create catalog"))?;
    sync_directory_on(storage, dir)?;
    storage
        .open(path, OpenOptions::read_write())
        .map_err(io_error(path, "open catalog"))
}

/// Write `bytes` as the whole of the file at `path` (created or cut to them), synced.
fn write_whole(
    storage: &Arc<dyn Storage>,
    path: &Path,
    bytes: &[u8],
    operation: &'static str,
) -> Result<()> {
    crate::storage::write_whole(storage.as_ref(), path, bytes).map_err(io_error(path, operation))
}

/// Replace the catalog of `dir` with one holding `records` (in id order, record `i` for
/// recording `i`), in one step: written whole to `catalog.tern.rebuild`, synced, renamed over the
/// catalog, and the directory synced. A crash leaves either the old catalog or the new one.
///
/// # Errors
/// A record's id is not its slot, a record cannot be encoded, or a file error.
pub fn replace(dir: &Path, records: &[RecordingDescriptor]) -> Result<()> {
    replace_on(&crate::storage::disk(), dir, records)
}

/// [`replace`] in `dir` of `storage`.
///
/// # Errors
/// A record's id is not its slot, a record cannot be encoded, or a file error.
pub fn replace_on(
    storage: &Arc<dyn Storage>,
    dir: &Path,
    records: &[RecordingDescriptor],
) -> Result<()> {
    let path = dir.join(CATALOG_FILE);
    let temporary = dir.join(format!("{CATALOG_FILE}.rebuild"));
    let mut bytes = Vec::with_capacity(HEADER_LENGTH + records.len() * RECORD_LENGTH);
    bytes.extend_from_slice(&encode_header());
    for (slot, record) in records.iter().enumerate() {
        if record.recording_id != slot_id(slot) {
            return Err(StoreError::Invalid(format!(
                "record of recording {} in slot {slot}",
                record.recording_id
            )));
        }
        bytes.extend_from_slice(&record.encode().map_err(StoreError::Invalid)?);
    }
    write_whole(storage, &temporary, &bytes, "write catalog")?;
    // The redo record belongs to the catalog being replaced: it must not be applied to this one.
    remove_redo(storage, dir)?;
    storage
        .rename(&temporary, &path)
        .map_err(io_error(&path, "replace catalog"))?;
    sync_directory_on(storage, dir)
}

fn remove_redo(storage: &Arc<dyn Storage>, dir: &Path) -> Result<()> {
    let redo = dir.join(REDO_FILE);
    match storage.remove_file(&redo) {
        Ok(()) => sync_directory_on(storage, dir),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(error) => Err(io_error(&redo, "remove catalog redo file")(error)),
    }
}

/// Sync a directory, so the files created in it survive a power loss.
///
/// # Errors
/// The directory cannot be opened or synced.
pub fn sync_directory(dir: &Path) -> Result<()> {
    sync_directory_on(&crate::storage::disk(), dir)
}

/// [`sync_directory`] on `storage`.
///
/// # Errors
/// The directory cannot be opened or synced.
pub fn sync_directory_on(storage: &Arc<dyn Storage>, dir: &Path) -> Result<()> {
    storage
        .sync_dir(dir)
        .map_err(io_error(dir, "sync directory"))
}

impl Catalog {
    /// Open the catalog of `dir`. A writable open creates the catalog when it is missing.
    ///
    /// # Errors
    /// The file cannot be read, or its header is damaged (a damaged record is not an error: it is
    /// reported as [`CatalogEntry::Damaged`]).
    pub fn open(dir: &Path, writable: bool) -> Result<Self> {
        Self::open_on(&crate::storage::disk(), dir, writable)
    }

    /// [`Self::open`] in `dir` of `storage`.
    ///
    /// # Errors
    /// As [`Self::open`].
    pub fn open_on(storage: &Arc<dyn Storage>, dir: &Path, writable: bool) -> Result<Self> {
        let path = dir.join(CATALOG_FILE);
        if !storage.exists(&path) {
            if !writable {
                return Err(StoreError::Io {
                    path: path.clone(),
                    operation: "open catalog (is this an archive directory?)",
                    source: std::io::Error::from(std::io::ErrorKind::NotFound),
                });
            }
            // A redo record left of a catalog that is gone belongs to no catalog.
            remove_redo(storage, dir)?;
            let file = create(storage, dir, &path)?;
            return Ok(Self {
                path,
                file,
                writable,
                entries: Vec::new(),
                redo: Some(open_redo(storage, dir)?),
            });
        }
        let options = if writable {
            OpenOptions::read_write()
        } else {
            OpenOptions::read()
        };
        let file = storage
            .open(&path, options)
            .map_err(io_error(&path, "open catalog"))?;
        let bytes = read_all(storage.as_ref(), &path).map_err(io_error(&path, "read catalog"))?;
        check_header(&path, &bytes[..bytes.len().min(HEADER_LENGTH)])?;
        let mut entries = Vec::new();
        let mut offset = HEADER_LENGTH;
        while offset < bytes.len() {
            let recording_id = slot_id(entries.len());
            let end = (offset + RECORD_LENGTH).min(bytes.len());
            let record = &bytes[offset..end];
            let entry = match RecordingDescriptor::decode(record) {
                Ok(descriptor) if descriptor.recording_id == recording_id => {
                    CatalogEntry::Recording(descriptor)
                }
                Ok(descriptor) => CatalogEntry::Damaged {
                    recording_id,
                    offset: offset as u64,
                    reason: format!(
                        "record holds recording id {} in slot {recording_id}",
                        descriptor.recording_id
                    ),
                },
                Err(reason) => CatalogEntry::Damaged {
                    recording_id,
                    offset: offset as u64,
                    reason,
                },
            };
            entries.push(entry);
            offset += RECORD_LENGTH;
        }
        let mut catalog = Self {
            path,
            file,
            writable,
            entries,
            redo: None,
        };
        catalog.apply_redo(storage, dir, &bytes)?;
        if writable {
            catalog.redo = Some(open_redo(storage, dir)?);
        }
        Ok(catalog)
    }

    /// Put back the last record written if its in-place write did not finish (a crash tore or
    /// lost it): the redo file holds it whole. A writable catalog writes it in place; a
    /// read-only one only reads it so.
    fn apply_redo(&mut self, storage: &Arc<dyn Storage>, dir: &Path, bytes: &[u8]) -> Result<()> {
        let Some((slot, descriptor, record)) = read_redo_on(storage, dir) else {
            return Ok(());
        };
        let offset = HEADER_LENGTH + slot * RECORD_LENGTH;
        if bytes.get(offset..offset + RECORD_LENGTH) == Some(record.as_slice()) {
            return Ok(());
        }
        if slot > self.entries.len() {
            // Not the catalog this record was written to (a slot past its end plus one).
            return Ok(());
        }
        if self.writable {
            self.file
                .write_all_at(&record, offset as u64)
                .map_err(io_error(&self.path, "repair catalog record"))?;
            self.file
                .sync_data()
                .map_err(io_error(&self.path, "sync catalog"))?;
        }
        tracing::info!(
            "catalog record of recording {slot} restored from {REDO_FILE} (its last write had not finished)"
        );
        let entry = CatalogEntry::Recording(descriptor);
        if slot == self.entries.len() {
            self.entries.push(entry);
        } else {
            self.entries[slot] = entry;
        }
        Ok(())
    }

    /// The catalog file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// All slots, in recording id order, deleted records (state [`RecordState::Deleted`])
    /// included.
    pub fn entries(&self) -> &[CatalogEntry] {
        &self.entries
    }

    /// The readable recordings, in id order; deleted ones (purged) are left out.
    pub fn recordings(&self) -> impl Iterator<Item = &RecordingDescriptor> {
        self.entries.iter().filter_map(|entry| match entry {
            CatalogEntry::Recording(descriptor) if descriptor.state != RecordState::Deleted => {
                Some(descriptor)
            }
            _ => None,
        })
    }

    /// The recording `recording_id`.
    ///
    /// # Errors
    /// The id is unknown or deleted, or its record is damaged.
    pub fn get(&self, recording_id: RecordingId) -> Result<&RecordingDescriptor> {
        let slot = usize::try_from(recording_id.get())
            .map_err(|_| StoreError::UnknownRecording(recording_id))?;
        match self.entries.get(slot) {
            Some(CatalogEntry::Recording(descriptor))
                if descriptor.state == RecordState::Deleted =>
            {
                Err(StoreError::UnknownRecording(recording_id))
            }
            Some(CatalogEntry::Recording(descriptor)) => Ok(descriptor),
            Some(CatalogEntry::Damaged { offset, reason, .. }) => {
                Err(StoreError::DamagedRecording {
                    recording_id,
                    reason: format!("{} at offset {offset}: {reason}", self.path.display()),
                })
            }
            None => Err(StoreError::UnknownRecording(recording_id)),
        }
    }

    /// Add a recording, giving it the next id (set in the returned descriptor), durably.
    ///
    /// # Errors
    /// The record cannot be encoded or written.
    pub fn add(&mut self, mut descriptor: RecordingDescriptor) -> Result<RecordingDescriptor> {
        descriptor.recording_id = slot_id(self.entries.len());
        self.write(&descriptor)?;
        self.entries
            .push(CatalogEntry::Recording(descriptor.clone()));
        Ok(descriptor)
    }

    /// Replace the record of an existing recording, durably.
    ///
    /// # Errors
    /// The id is unknown, or the record cannot be written.
    pub fn update(&mut self, descriptor: &RecordingDescriptor) -> Result<()> {
        let slot = usize::try_from(descriptor.recording_id.get())
            .ok()
            .filter(|slot| *slot < self.entries.len())
            .ok_or(StoreError::UnknownRecording(descriptor.recording_id))?;
        self.write(descriptor)?;
        self.entries[slot] = CatalogEntry::Recording(descriptor.clone());
        Ok(())
    }

    fn write(&mut self, descriptor: &RecordingDescriptor) -> Result<()> {
        if !self.writable {
            return Err(StoreError::Invalid(format!(
                "{} is open read-only",
                self.path.display()
            )));
        }
        let record = descriptor.encode().map_err(StoreError::Invalid)?;
        let offset =
            (HEADER_LENGTH + descriptor.recording_id.get() as usize * RECORD_LENGTH) as u64;
        // The record whole in the redo file first: a crash during the in-place write below leaves
        // a torn record that the next open restores from it.
        if let Some(redo) = &self.redo {
            let redo_path = || self.path.with_file_name(REDO_FILE);
            redo.write_all_at(&encode_redo(descriptor.recording_id.get(), &record), 0)
                .map_err(|error| io_error(&redo_path(), "write catalog redo file")(error))?;
            redo.sync_data()
                .map_err(|error| io_error(&redo_path(), "sync catalog redo file")(error))?;
        }
        self.file
            .write_all_at(&record, offset)
            .map_err(io_error(&self.path, "write catalog record"))?;
        self.file
            .sync_data()
            .map_err(io_error(&self.path, "sync catalog"))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::descriptor::sample;

    #[test]
    fn records_survive_reopen_and_a_damaged_record_spares_the_others() {
        let dir = tempfile::tempdir().expect("temp dir");
        {
            let mut catalog = Catalog::open(dir.path(), true).expect("create");
            for _ in 0..3 {
                catalog.add(sample(RecordingId::new(0))).expect("add");
            }
            let mut stopped = catalog.get(RecordingId::new(1)).expect("1").clone();
            stopped.stop_position = 8192;
            catalog.update(&stopped).expect("update");
        }
        let path = dir.path().join(CATALOG_FILE);
        let mut bytes = std::fs::read(&path).expect("read");
        bytes[HEADER_LENGTH + 2 * RECORD_LENGTH + 100] ^= 0xFF;
        std::fs::write(&path, &bytes).expect("write");
        let catalog = Catalog::open(dir.path(), false).expect("reopen");
        assert_eq!(
            catalog.get(RecordingId::new(1)).expect("1").stop_position,
            8192
        );
        assert_eq!(
            catalog.get(RecordingId::new(0)).expect("0").recording_id,
            RecordingId::new(0)
        );
        let error = catalog
            .get(RecordingId::new(2))
            .expect_err("damaged")
            .to_string();
        assert!(
            error.contains("checksum mismatch") && error.contains("offset 3072"),
            "{error}"
        );
        assert!(matches!(
            catalog.get(RecordingId::new(3)),
            Err(StoreError::UnknownRecording(id)) if id == RecordingId::new(3)
        ));
    }

    #[test]
    fn a_deleted_record_keeps_its_slot_but_is_neither_listed_nor_found() {
        let dir = tempfile::tempdir().expect("temp dir");
        {
            let mut catalog = Catalog::open(dir.path(), true).expect("create");
            for _ in 0..3 {
                catalog.add(sample(RecordingId::new(0))).expect("add");
            }
            let mut deleted = catalog.get(RecordingId::new(1)).expect("1").clone();
            deleted.state = RecordState::Deleted;
            catalog.update(&deleted).expect("delete");
        }
        let mut catalog = Catalog::open(dir.path(), true).expect("reopen");
        let ids: Vec<i64> = catalog.recordings().map(|d| d.recording_id.get()).collect();
        assert_eq!(ids, vec![0, 2]);
        assert!(matches!(
            catalog.get(RecordingId::new(1)),
            Err(StoreError::UnknownRecording(id)) if id == RecordingId::new(1)
        ));
        assert_eq!(catalog.entries().len(), 3);
        assert_eq!(
            catalog
                .add(sample(RecordingId::new(0)))
                .expect("add")
                .recording_id,
            RecordingId::new(3)
        );
    }

    #[test]
    fn a_truncated_or_foreign_header_is_a_clear_error() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join(CATALOG_FILE);
        std::fs::write(&path, b"TERNCAT\0short").expect("write");
        let error = Catalog::open(dir.path(), false)
            .expect_err("truncated")
            .to_string();
        assert!(
            error.contains("catalog.tern") && error.contains("truncated"),
            "{error}"
        );
        std::fs::write(&path, vec![7u8; 4096]).expect("write");
        let error = Catalog::open(dir.path(), true)
            .expect_err("foreign")
            .to_string();
        assert!(error.contains("bad magic"), "{error}");
    }

    #[test]
    fn creation_is_atomic_and_a_later_version_is_refused_as_such() {
        let dir = tempfile::tempdir().expect("temp dir");
        // A crash during an earlier creation leaves only the temporary file.
        std::fs::write(dir.path().join("catalog.tern.new"), b"TERNCAT\0").expect("leftover");
        let mut catalog = Catalog::open(dir.path(), true).expect("create");
        catalog.add(sample(RecordingId::new(0))).expect("add");
        drop(catalog);
        assert!(!dir.path().join("catalog.tern.new").exists());
        let path = dir.path().join(CATALOG_FILE);
        let mut bytes = std::fs::read(&path).expect("read");
        bytes[8] = 2;
        std::fs::write(&path, bytes).expect("write");
        let error = Catalog::open(dir.path(), false)
            .expect_err("version 2")
            .to_string();
        assert!(
            error.contains("catalog version 2; this tern reads version 1"),
            "{error}"
        );
    }

    #[test]
    fn a_torn_last_record_is_reported_damaged() {
        let dir = tempfile::tempdir().expect("temp dir");
        {
            let mut catalog = Catalog::open(dir.path(), true).expect("create");
            catalog.add(sample(RecordingId::new(0))).expect("add");
            catalog.add(sample(RecordingId::new(0))).expect("add");
        }
        let path = dir.path().join(CATALOG_FILE);
        let bytes = std::fs::read(&path).expect("read");
        std::fs::write(&path, &bytes[..bytes.len() - 500]).expect("truncate");
        // Without the redo file (the next test has it restore the record).
        std::fs::remove_file(dir.path().join(REDO_FILE)).expect("no redo");
        let mut catalog = Catalog::open(dir.path(), true).expect("reopen");
        assert!(matches!(
            catalog.entries()[1],
            CatalogEntry::Damaged {
                recording_id,
                offset: 2048,
                ..
            } if recording_id == RecordingId::new(1)
        ));
        let added = catalog
            .add(sample(RecordingId::new(0)))
            .expect("add after damage");
        assert_eq!(added.recording_id, RecordingId::new(2));
        drop(catalog);
        let catalog = Catalog::open(dir.path(), false).expect("reopen");
        assert_eq!(
            catalog.get(RecordingId::new(2)).expect("2").recording_id,
            RecordingId::new(2)
        );
    }

    #[test]
    fn a_record_torn_by_a_crash_during_its_write_is_restored_from_the_redo_file() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join(CATALOG_FILE);
        let before;
        {
            let mut catalog = Catalog::open(dir.path(), true).expect("create");
            catalog.add(sample(RecordingId::new(0))).expect("add");
            catalog.add(sample(RecordingId::new(0))).expect("add");
            before = std::fs::read(&path).expect("read");
            let mut stopped = catalog.get(RecordingId::new(0)).expect("0").clone();
            stopped.stop_position = 4096;
            catalog.update(&stopped).expect("update");
        }
        let after = std::fs::read(&path).expect("read");
        // The crash: the in-place write of record 0 got only its first 512 bytes to the disk.
        let mut torn = after.clone();
        torn[HEADER_LENGTH + 512..HEADER_LENGTH + RECORD_LENGTH]
            .copy_from_slice(&before[HEADER_LENGTH + 512..HEADER_LENGTH + RECORD_LENGTH]);
        std::fs::write(&path, &torn).expect("tear");
        let read_only = Catalog::open(dir.path(), false).expect("read-only open");
        assert_eq!(
            read_only.get(RecordingId::new(0)).expect("0").stop_position,
            4096
        );
        assert_eq!(
            std::fs::read(&path).expect("read"),
            torn,
            "a reader writes nothing"
        );
        drop(read_only);
        let catalog = Catalog::open(dir.path(), true).expect("writable open");
        assert_eq!(
            catalog.get(RecordingId::new(0)).expect("0").stop_position,
            4096
        );
        assert_eq!(
            std::fs::read(&path).expect("read"),
            after,
            "repaired in place"
        );
        drop(catalog);

        // The crash came earlier, during the redo write: the record in place is the old one,
        // whole, and stays.
        std::fs::write(&path, &before).expect("old catalog");
        let redo = dir.path().join(REDO_FILE);
        let mut bytes = std::fs::read(&redo).expect("redo");
        bytes[REDO_LENGTH - 100] ^= 0xFF;
        std::fs::write(&redo, &bytes).expect("torn redo");
        let catalog = Catalog::open(dir.path(), true).expect("open");
        assert_eq!(
            catalog.get(RecordingId::new(0)).expect("0").stop_position,
            -1
        );
        assert_eq!(std::fs::read(&path).expect("read"), before);

        // An added record whose append was lost entirely comes back too.
        let mut catalog = catalog;
        catalog.add(sample(RecordingId::new(0))).expect("add");
        drop(catalog);
        std::fs::write(&path, &before).expect("append lost");
        let catalog = Catalog::open(dir.path(), true).expect("open");
        assert_eq!(catalog.entries().len(), 3);
        assert_eq!(
            catalog.get(RecordingId::new(2)).expect("2").recording_id,
            RecordingId::new(2)
        );
    }
}
