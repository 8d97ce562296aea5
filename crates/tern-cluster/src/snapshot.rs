//! Snapshot files: the service container's state at a log index, so the log before it can go.
//! Drawn byte by byte in `docs/cluster.md`.
//!
//! `snapshot-<index>.snap`: a 40-byte header (magic "TRNP", version, index, term, data length,
//! CRC32C of the data, CRC32C of the header before it) and the data. Written to a `.tmp` name,
//! synced, renamed, and the directory synced: a snapshot file is whole or absent.

use crate::error::{ClusterError, Result};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tern_store::crc::crc32c_parts;
use tern_store::storage::{read_all, write_whole, Storage};

/// First four bytes of a snapshot file.
pub const SNAPSHOT_MAGIC: u32 = u32::from_le_bytes(*b"TRNP");
/// The snapshot layout's version.
pub const SNAPSHOT_VERSION: u16 = 1;
/// Bytes of the header.
pub const SNAPSHOT_HEADER_LENGTH: usize = 40;

/// The name of the snapshot at `index`.
pub fn snapshot_file_name(index: u64) -> String {
    format!("snapshot-{index}.snap")
}

fn parse_snapshot_file_name(name: &str) -> Option<u64> {
    name.strip_prefix("snapshot-")?
        .strip_suffix(".snap")?
        .parse()
        .ok()
}

/// The bytes of a snapshot file.
pub fn encode_snapshot(index: u64, term: u64, data: &[u8]) -> Vec<u8> {
    let mut bytes = vec![0u8; SNAPSHOT_HEADER_LENGTH + data.len()];
    bytes[0..4].copy_from_slice(&SNAPSHOT_MAGIC.to_le_bytes());
    bytes[4..6].copy_from_slice(&SNAPSHOT_VERSION.to_le_bytes());
    bytes[8..16].copy_from_slice(&index.to_le_bytes());
    bytes[16..24].copy_from_slice(&term.to_le_bytes());
    bytes[24..32].copy_from_slice(&(data.len() as u64).to_le_bytes());
    bytes[32..36].copy_from_slice(&crc32c_parts(&[data]).to_le_bytes());
    let header_crc = crc32c_parts(&[&bytes[..36]]);
    bytes[36..40].copy_from_slice(&header_crc.to_le_bytes());
    bytes[SNAPSHOT_HEADER_LENGTH..].copy_from_slice(data);
    bytes
}

/// The (index, term, data) of a snapshot file's bytes.
///
/// # Errors
/// What is wrong with them.
pub fn decode_snapshot(bytes: &[u8]) -> std::result::Result<(u64, u64, Vec<u8>), String> {
    if bytes.len() < SNAPSHOT_HEADER_LENGTH {
        return Err(format!("{} bytes, shorter than the header", bytes.len()));
    }
    let u32_at = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4"));
    let u64_at = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8"));
    if u32_at(0) != SNAPSHOT_MAGIC {
        return Err(format!("magic {:#010x}", u32_at(0)));
    }
    if u32_at(36) != crc32c_parts(&[&bytes[..36]]) {
        return Err("header checksum mismatch".into());
    }
    let version = u16::from_le_bytes([bytes[4], bytes[5]]);
    if version != SNAPSHOT_VERSION {
        return Err(format!(
            "version {version} (this build reads {SNAPSHOT_VERSION})"
        ));
    }
    let length = u64_at(24);
    let data = &bytes[SNAPSHOT_HEADER_LENGTH..];
    if data.len() as u64 != length {
        return Err(format!(
            "{} data bytes where {length} were written",
            data.len()
        ));
    }
    if u32_at(32) != crc32c_parts(&[data]) {
        return Err("data checksum mismatch".into());
    }
    Ok((u64_at(8), u64_at(16), data.to_vec()))
}

/// The snapshot files of a node's directory.
#[derive(Debug, Clone)]
pub struct Snapshots {
    storage: Arc<dyn Storage>,
    dir: PathBuf,
}

impl Snapshots {
    /// The snapshots in `dir`.
    pub fn new(storage: Arc<dyn Storage>, dir: &Path) -> Self {
        Self {
            storage,
            dir: dir.to_path_buf(),
        }
    }

    /// Write the snapshot at `index` whole (to a temporary name, synced, renamed, directory
    /// synced).
    ///
    /// # Errors
    /// A file cannot be written, synced or renamed.
    pub fn write(&self, index: u64, term: u64, data: &[u8]) -> Result<()> {
        let name = snapshot_file_name(index);
        let path = self.dir.join(&name);
        let temporary = self.dir.join(format!("{name}.tmp"));
        let bytes = encode_snapshot(index, term, data);
        write_whole(&*self.storage, &temporary, &bytes)
            .map_err(tern_store::io_error(&temporary, "write snapshot"))?;
        self.storage
            .rename(&temporary, &path)
            .map_err(tern_store::io_error(&path, "rename snapshot"))?;
        self.storage
            .sync_dir(&self.dir)
            .map_err(tern_store::io_error(&self.dir, "sync node directory"))?;
        Ok(())
    }

    /// The term and data of the snapshot at `index`.
    ///
    /// # Errors
    /// It is missing, unreadable or damaged, or holds another index.
    pub fn read(&self, index: u64) -> Result<(u64, Vec<u8>)> {
        let path = self.dir.join(snapshot_file_name(index));
        let bytes =
            read_all(&*self.storage, &path).map_err(|error| ClusterError::CorruptState {
                path: path.clone(),
                reason: format!("the snapshot the state file names cannot be read: {error}"),
            })?;
        let (found, term, data) =
            decode_snapshot(&bytes).map_err(|reason| ClusterError::CorruptState {
                path: path.clone(),
                reason,
            })?;
        if found != index {
            return Err(ClusterError::CorruptState {
                path,
                reason: format!("holds index {found}"),
            });
        }
        Ok((term, data))
    }

    /// Delete every snapshot file (and leftover temporary) but the one at `keep`.
    ///
    /// # Errors
    /// The directory cannot be listed, or a file deleted.
    pub fn remove_all_but(&self, keep: u64) -> Result<usize> {
        let names = self
            .storage
            .list(&self.dir)
            .map_err(tern_store::io_error(&self.dir, "list node directory"))?;
        let mut removed = 0;
        for name in names {
            let doomed = match parse_snapshot_file_name(&name) {
                Some(index) => index != keep,
                None => name.starts_with("snapshot-") && name.ends_with(".snap.tmp"),
            };
            if doomed {
                let path = self.dir.join(&name);
                self.storage
                    .remove_file(&path)
                    .map_err(tern_store::io_error(&path, "delete old snapshot"))?;
                removed += 1;
            }
        }
        if removed > 0 {
            self.storage
                .sync_dir(&self.dir)
                .map_err(tern_store::io_error(&self.dir, "sync node directory"))?;
        }
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tern_store::SimDisk;

    #[test]
    fn a_snapshot_round_trips_and_damage_is_named() {
        let bytes = encode_snapshot(12, 3, b"state");
        assert_eq!(decode_snapshot(&bytes), Ok((12, 3, b"state".to_vec())));
        let mut flipped = bytes.clone();
        flipped[SNAPSHOT_HEADER_LENGTH + 1] ^= 1;
        assert_eq!(
            decode_snapshot(&flipped),
            Err("data checksum mismatch".into())
        );
        let mut header = bytes.clone();
        header[9] ^= 1;
        assert_eq!(
            decode_snapshot(&header),
            Err("header checksum mismatch".into())
        );
        assert!(decode_snapshot(&bytes[..bytes.len() - 1])
            .expect_err("short")
            .contains("4 data bytes where 5"));
    }

    #[test]
    fn a_crash_before_the_rename_is_durable_leaves_the_old_snapshot_and_leftovers_go() {
        let disk = Arc::new(SimDisk::new());
        let storage: Arc<dyn Storage> = disk.clone();
        let dir = Path::new("/node");
        storage.create_dir_all(dir).expect("dir");
        let snapshots = Snapshots::new(storage.clone(), dir);
        snapshots.write(5, 1, b"five").expect("write");
        // The next write's data is synced, then the power goes before the rename is durable.
        disk.freeze_after_syncs(1);
        snapshots.write(9, 2, b"nine").expect("write");
        let crashed: Arc<dyn Storage> = Arc::new(disk.crash());
        let after = Snapshots::new(crashed.clone(), dir);
        assert_eq!(after.read(5).expect("old"), (1, b"five".to_vec()));
        assert!(after.read(9).is_err());
        assert_eq!(
            crashed.list(dir).expect("list"),
            vec!["snapshot-5.snap".to_string()]
        );
        // A leftover temporary and an older snapshot go; the one kept stays.
        write_whole(&*crashed, &dir.join("snapshot-9.snap.tmp"), b"half").expect("leftover");
        after.write(3, 1, b"three").expect("older");
        assert_eq!(after.remove_all_but(5).expect("clean"), 2);
        assert_eq!(
            crashed.list(dir).expect("list"),
            vec!["snapshot-5.snap".to_string()]
        );
    }
}
