//! Durable named cursors: a consumer stores the position it got to under a name, and resumes
//! from it after a restart (its own, or the archive's).
//!
//! All cursors live in one small file, `cursors.tern`, rewritten whole on every change: written
//! to `cursors.tern.new`, synced, renamed over the old one, directory synced. A change is
//! acknowledged only after that, so an acknowledged cursor survives a crash or power loss, and a
//! torn write can only leave the `.new` file behind (ignored and replaced). Format:
//! docs/formats.md, "Cursor file".

use crate::catalog::sync_directory_on;
use crate::error::{io_error, Result, StoreError};
use crate::ids::RecordingId;
use crate::storage::{read_all, write_whole, Storage};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Name of the cursor file in the archive directory.
pub const CURSOR_FILE: &str = "cursors.tern";
const MAGIC: &[u8; 8] = b"TERNCUR\0";
const VERSION: u32 = 1;
const HEADER_LENGTH: usize = 16;
/// Longest cursor name, in bytes.
pub const MAX_CURSOR_NAME: usize = 128;
/// Most cursors one archive keeps.
pub const MAX_CURSORS: usize = 65_536;

/// A named position in a recording.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    /// Its name.
    pub name: String,
    /// The recording.
    pub recording_id: RecordingId,
    /// The position (a frame start of the recording).
    pub position: i64,
    /// When it was last set, nanoseconds since the Unix epoch.
    pub updated_ns: i64,
}

/// Check a cursor name: 1 to 128 printable ASCII characters.
///
/// # Errors
/// [`StoreError::Invalid`] saying what is wrong.
pub fn check_cursor_name(name: &str) -> Result<()> {
    if name.is_empty() || name.len() > MAX_CURSOR_NAME {
        return Err(StoreError::Invalid(format!(
            "cursor name {name:?}: must be 1 to {MAX_CURSOR_NAME} bytes"
        )));
    }
    if let Some(bad) = name.chars().find(|c| !c.is_ascii_graphic()) {
        return Err(StoreError::Invalid(format!(
            "cursor name {name:?}: {bad:?} is not a printable ASCII character (no spaces)"
        )));
    }
    Ok(())
}

/// Encode cursors into the file's bytes.
pub fn encode(cursors: &BTreeMap<String, Cursor>) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(HEADER_LENGTH + cursors.len() * 64 + 4);
    bytes.extend_from_slice(MAGIC);
    bytes.extend_from_slice(&VERSION.to_le_bytes());
    bytes.extend_from_slice(&(cursors.len() as u32).to_le_bytes());
    for cursor in cursors.values() {
        bytes.extend_from_slice(&(cursor.name.len() as u16).to_le_bytes());
        bytes.extend_from_slice(cursor.name.as_bytes());
        bytes.extend_from_slice(&cursor.recording_id.get().to_le_bytes());
        bytes.extend_from_slice(&cursor.position.to_le_bytes());
        bytes.extend_from_slice(&cursor.updated_ns.to_le_bytes());
    }
    let crc = crc32c::crc32c(&bytes);
    bytes.extend_from_slice(&crc.to_le_bytes());
    bytes
}

/// Decode the file's bytes; `Err` says what is wrong and where.
pub fn decode(bytes: &[u8]) -> std::result::Result<BTreeMap<String, Cursor>, (u64, String)> {
    if bytes.len() < HEADER_LENGTH + 4 {
        return Err((
            0,
            format!("{} bytes is too short for a cursor file", bytes.len()),
        ));
    }
    let (body, crc) = bytes.split_at(bytes.len() - 4);
    let stored = u32::from_le_bytes([crc[0], crc[1], crc[2], crc[3]]);
    let computed = crc32c::crc32c(body);
    if stored != computed {
        return Err((
            body.len() as u64,
            format!("checksum {stored:#010x} does not match the contents ({computed:#010x})"),
        ));
    }
    if &body[..8] != MAGIC {
        return Err((0, "not a tern cursor file (bad magic)".into()));
    }
    let version = u32::from_le_bytes([body[8], body[9], body[10], body[11]]);
    if version != VERSION {
        return Err((
            8,
            format!("cursor file version {version}; this tern reads {VERSION}"),
        ));
    }
    let count = u32::from_le_bytes([body[12], body[13], body[14], body[15]]) as usize;
    let mut cursors = BTreeMap::new();
    let mut at = HEADER_LENGTH;
    let take = |at: &mut usize, n: usize| -> std::result::Result<&[u8], (u64, String)> {
        let slice = body
            .get(*at..*at + n)
            .ok_or_else(|| (*at as u64, "cursor record runs past the end".to_string()))?;
        *at += n;
        Ok(slice)
    };
    let i64_at = |slice: &[u8]| {
        let mut raw = [0u8; 8];
        raw.copy_from_slice(slice);
        i64::from_le_bytes(raw)
    };
    for _ in 0..count {
        let start = at;
        let length = take(&mut at, 2)?;
        let length = u16::from_le_bytes([length[0], length[1]]) as usize;
        let name = std::str::from_utf8(take(&mut at, length)?)
            .map_err(|_| (start as u64, "cursor name is not text".to_string()))?
            .to_string();
        let recording_id = RecordingId::new(i64_at(take(&mut at, 8)?));
        let position = i64_at(take(&mut at, 8)?);
        let updated_ns = i64_at(take(&mut at, 8)?);
        cursors.insert(
            name.clone(),
            Cursor {
                name,
                recording_id,
                position,
                updated_ns,
            },
        );
    }
    if at != body.len() {
        return Err((at as u64, "bytes after the last cursor".into()));
    }
    Ok(cursors)
}

/// The cursors of an archive directory, kept in memory and in the cursor file.
#[derive(Debug)]
pub struct CursorStore {
    storage: Arc<dyn Storage>,
    dir: PathBuf,
    cursors: BTreeMap<String, Cursor>,
}

impl CursorStore {
    /// Load the cursor file of `dir` (none yet: no cursors).
    ///
    /// # Errors
    /// The file cannot be read or is damaged ([`StoreError::Corrupt`]).
    pub fn open(dir: &Path) -> Result<Self> {
        Self::open_on(&crate::storage::disk(), dir)
    }

    /// [`Self::open`] in `dir` of `storage`.
    ///
    /// # Errors
    /// As [`Self::open`].
    pub fn open_on(storage: &Arc<dyn Storage>, dir: &Path) -> Result<Self> {
        let path = dir.join(CURSOR_FILE);
        let cursors = match read_all(storage.as_ref(), &path) {
            Ok(bytes) => decode(&bytes).map_err(|(offset, reason)| StoreError::Corrupt {
                path: path.clone(),
                offset,
                reason: format!(
                    "{reason}; the cursors cannot be trusted: restore the file or remove it to \
                     start without cursors"
                ),
            })?,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(error) => return Err(io_error(&path, "read cursor file")(error)),
        };
        Ok(Self {
            storage: storage.clone(),
            dir: dir.to_path_buf(),
            cursors,
        })
    }

    pub fn get(&self, name: &str) -> Option<&Cursor> {
        self.cursors.get(name)
    }

    pub fn list(&self, prefix: &str) -> Vec<Cursor> {
        self.cursors
            .range(prefix.to_string()..)
            .take_while(|(name, _)| name.starts_with(prefix))
            .map(|(_, cursor)| cursor.clone())
            .collect()
    }

    /// Set (or create) a cursor, durably.
    ///
    /// # Errors
    /// A bad name, too many cursors, or the file cannot be written (the change is not made).
    pub fn set(&mut self, cursor: Cursor) -> Result<()> {
        check_cursor_name(&cursor.name)?;
        if !self.cursors.contains_key(&cursor.name) && self.cursors.len() >= MAX_CURSORS {
            return Err(StoreError::Invalid(format!(
                "too many cursors: an archive keeps at most {MAX_CURSORS}"
            )));
        }
        let mut next = self.cursors.clone();
        next.insert(cursor.name.clone(), cursor);
        self.save(&next)?;
        self.cursors = next;
        Ok(())
    }

    /// Delete a cursor, durably; returns whether it existed.
    ///
    /// # Errors
    /// The file cannot be written (the cursor stays).
    pub fn delete(&mut self, name: &str) -> Result<bool> {
        if !self.cursors.contains_key(name) {
            return Ok(false);
        }
        let mut next = self.cursors.clone();
        next.remove(name);
        self.save(&next)?;
        self.cursors = next;
        Ok(true)
    }

    fn save(&self, cursors: &BTreeMap<String, Cursor>) -> Result<()> {
        let path = self.dir.join(CURSOR_FILE);
        let new_path = self.dir.join(format!("{CURSOR_FILE}.new"));
        let bytes = encode(cursors);
        // Whole to a new file, synced, renamed over the old one, the directory synced: a crash
        // leaves the old cursors or the new ones.
        write_whole(self.storage.as_ref(), &new_path, &bytes)
            .map_err(io_error(&new_path, "write cursor file"))?;
        self.storage
            .rename(&new_path, &path)
            .map_err(io_error(&path, "replace cursor file"))?;
        sync_directory_on(&self.storage, &self.dir)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cursor(name: &str, recording_id: RecordingId, position: i64) -> Cursor {
        Cursor {
            name: name.into(),
            recording_id,
            position,
            updated_ns: 1_700_000_000_000_000_000 + position,
        }
    }

    #[test]
    fn cursors_survive_a_reopen_and_deletes_too() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut store = CursorStore::open(dir.path()).expect("empty store");
        store
            .set(cursor("billing", RecordingId::new(3), 4096))
            .expect("set");
        store
            .set(cursor("audit/eu", RecordingId::new(1), 64))
            .expect("set");
        store
            .set(cursor("audit/us", RecordingId::new(1), 128))
            .expect("set");
        store
            .set(cursor("billing", RecordingId::new(3), 8192))
            .expect("update");
        assert!(store.delete("audit/us").expect("delete"));
        assert!(!store.delete("audit/us").expect("delete again"));
        let reopened = CursorStore::open(dir.path()).expect("reopen");
        assert_eq!(
            reopened.get("billing"),
            Some(&cursor("billing", RecordingId::new(3), 8192))
        );
        assert_eq!(
            reopened.list("audit/"),
            vec![cursor("audit/eu", RecordingId::new(1), 64)]
        );
        assert_eq!(reopened.list("").len(), 2);
        assert!(!dir.path().join("cursors.tern.new").exists());
    }

    #[test]
    fn a_damaged_cursor_file_is_refused_with_where_and_why() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut store = CursorStore::open(dir.path()).expect("empty store");
        store
            .set(cursor("billing", RecordingId::new(3), 4096))
            .expect("set");
        let path = dir.path().join(CURSOR_FILE);
        let mut bytes = std::fs::read(&path).expect("read");
        bytes[20] ^= 0x40;
        std::fs::write(&path, &bytes).expect("write");
        let error = CursorStore::open(dir.path()).expect_err("damage is noticed");
        assert!(error.to_string().contains("checksum"), "{error}");
        std::fs::write(&path, &bytes[..10]).expect("write");
        let error = CursorStore::open(dir.path()).expect_err("truncation is noticed");
        assert!(error.to_string().contains("too short"), "{error}");
    }

    #[test]
    fn a_leftover_new_file_from_a_torn_write_is_ignored() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut store = CursorStore::open(dir.path()).expect("empty store");
        store
            .set(cursor("billing", RecordingId::new(3), 4096))
            .expect("set");
        std::fs::write(dir.path().join("cursors.tern.new"), b"torn").expect("write");
        let reopened = CursorStore::open(dir.path()).expect("reopen");
        assert_eq!(reopened.get("billing").map(|c| c.position), Some(4096));
    }

    #[test]
    fn names_are_checked() {
        assert!(check_cursor_name("consumer-1/eu.west").is_ok());
        assert!(check_cursor_name("").is_err());
        assert!(check_cursor_name("with space").is_err());
        assert!(check_cursor_name(&"x".repeat(129)).is_err());
        assert!(check_cursor_name("caf\u{e9}").is_err());
    }

    proptest::proptest! {
        #[test]
        fn decode_inverts_encode_and_never_panics_on_garbage(
            entries in proptest::collection::vec(("[a-z/]{1,20}", 0i64..100, 0i64..1 << 40), 0..20),
            garbage in proptest::collection::vec(proptest::num::u8::ANY, 0..200),
        ) {
            let cursors: BTreeMap<String, Cursor> = entries
                .into_iter()
                .map(|(name, recording_id, position)| {
                    (name.clone(), cursor(&name, RecordingId::new(recording_id), position))
                })
                .collect();
            proptest::prop_assert_eq!(decode(&encode(&cursors)).ok(), Some(cursors));
            let _ = decode(&garbage);
        }
    }
}
