//! The per-key index of a recording: for each finished segment file and each indexed key kind, a
//! sidecar file listing every message of the segment that has a key of that kind, sorted by key,
//! so a reader finds one key's messages by a binary search without reading the others'.
//!
//! Files (see `docs/formats.md`, section 15):
//! - `<recordingId>-<segmentBase>.<kind-tag>.kix`: a 64-byte header (magic `TERNKIX\0`, version,
//!   header CRC32C, kind, recording id, segment base, end position, counts, CRC32C of the key
//!   table and of the positions), then the key table (16-byte entries {key i64, first u32,
//!   count u32}, keys strictly increasing), then the positions (u32 offsets from the segment base,
//!   increasing within each key's run).
//! - `<recordingId>.kix`: the manifest, the kinds indexed for the recording (so `verify` knows
//!   what to rebuild after a crash).
//!
//! Index files are written whole to a temporary file, synced, and renamed: a reader sees a whole
//! file or none. A missing or damaged one only makes a filtered read scan that segment.

use crate::error::{io_error, Result, StoreError};
use crate::frame::{align_frame, FrameHeader, FRAME_ALIGNMENT, HEADER_LENGTH};
use crate::ids::RecordingId;
use crate::key::KeyKind;
use crate::storage::{disk, read_all, OpenOptions, Storage, StorageFile};
use std::path::{Path, PathBuf};
use std::sync::Arc;

const MAGIC: &[u8; 8] = b"TERNKIX\0";
const MANIFEST_MAGIC: &[u8; 8] = b"TERNKIM\0";
/// Version of the index and manifest layouts.
pub const VERSION: u32 = 1;
/// Length of an index file's header.
pub const HEADER_LENGTH_KIX: usize = 64;
/// Length of a key table entry.
pub const KEY_ENTRY_LENGTH: usize = 16;
/// Length of a position (an offset from the segment base).
pub const POSITION_LENGTH: usize = 4;

/// The index file of `kind` for the segment of `recording_id` based at `base`.
pub fn key_index_file_name(recording_id: RecordingId, base: i64, kind: &KeyKind) -> String {
    format!("{recording_id}-{base}.{}.kix", kind.tag())
}

/// The manifest file of a recording: the kinds indexed for it.
pub fn manifest_file_name(recording_id: RecordingId) -> String {
    format!("{recording_id}.kix")
}

/// Parse an index file name into (recording id, segment base, kind tag).
pub fn parse_key_index_file_name(name: &str) -> Option<(i64, i64, &str)> {
    let stem = name.strip_suffix(".kix")?;
    let (segment, tag) = stem.split_once('.')?;
    let (id, base) = segment.split_once('-')?;
    Some((id.parse().ok()?, base.parse().ok()?, tag))
}

/// The header of an index file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyIndexHeader {
    /// The kind indexed.
    pub kind: KeyKind,
    /// The recording.
    pub recording_id: RecordingId,
    /// The segment's base position.
    pub segment_base: i64,
    /// Messages starting before this position (and at or after the segment base) are indexed:
    /// the segment's end, or the recording's stop position in its last segment.
    pub end_position: i64,
    /// Distinct keys.
    pub key_count: u32,
    /// Messages indexed.
    pub position_count: u32,
    /// CRC32C of the key table.
    pub keys_crc: u32,
    /// CRC32C of the positions.
    pub positions_crc: u32,
}

impl KeyIndexHeader {
    /// The file length this header describes.
    pub fn file_length(&self) -> u64 {
        HEADER_LENGTH_KIX as u64
            + u64::from(self.key_count) * KEY_ENTRY_LENGTH as u64
            + u64::from(self.position_count) * POSITION_LENGTH as u64
    }

    fn positions_offset(&self) -> u64 {
        HEADER_LENGTH_KIX as u64 + u64::from(self.key_count) * KEY_ENTRY_LENGTH as u64
    }

    fn encode(&self) -> [u8; HEADER_LENGTH_KIX] {
        let mut bytes = [0u8; HEADER_LENGTH_KIX];
        bytes[0..8].copy_from_slice(MAGIC);
        bytes[8..12].copy_from_slice(&VERSION.to_le_bytes());
        bytes[16..24].copy_from_slice(&self.kind.encode().expect("an indexable kind"));
        bytes[24..32].copy_from_slice(&self.recording_id.get().to_le_bytes());
        bytes[32..40].copy_from_slice(&self.segment_base.to_le_bytes());
        bytes[40..48].copy_from_slice(&self.end_position.to_le_bytes());
        bytes[48..52].copy_from_slice(&self.key_count.to_le_bytes());
        bytes[52..56].copy_from_slice(&self.position_count.to_le_bytes());
        bytes[56..60].copy_from_slice(&self.keys_crc.to_le_bytes());
        bytes[60..64].copy_from_slice(&self.positions_crc.to_le_bytes());
        let crc = header_crc(&bytes);
        bytes[12..16].copy_from_slice(&crc.to_le_bytes());
        bytes
    }

    /// Decode and check a header: magic, version, its CRC32C, the kind.
    ///
    /// # Errors
    /// (file offset, what is wrong).
    pub fn decode(bytes: &[u8]) -> Result<Self, (u64, String)> {
        if bytes.len() < HEADER_LENGTH_KIX || &bytes[0..8] != MAGIC {
            return Err((0, "not a tern key index".into()));
        }
        let version = u32_at(bytes, 8);
        if version != VERSION {
            return Err((
                8,
                format!("key index version {version}; this tern reads version {VERSION}"),
            ));
        }
        let stored = u32_at(bytes, 12);
        let computed = header_crc(bytes);
        if stored != computed {
            return Err((
                12,
                format!(
                    "header checksum mismatch: stored {stored:#010x}, computed {computed:#010x}"
                ),
            ));
        }
        let kind_bytes: [u8; 8] = bytes[16..24].try_into().expect("8 bytes");
        let kind = KeyKind::decode(&kind_bytes).ok_or((16, "unknown key kind".to_string()))?;
        Ok(Self {
            kind,
            recording_id: RecordingId::new(i64_at(bytes, 24)),
            segment_base: i64_at(bytes, 32),
            end_position: i64_at(bytes, 40),
            key_count: u32_at(bytes, 48),
            position_count: u32_at(bytes, 52),
            keys_crc: u32_at(bytes, 56),
            positions_crc: u32_at(bytes, 60),
        })
    }
}

fn header_crc(bytes: &[u8]) -> u32 {
    crate::crc::crc32c_parts(&[&bytes[0..12], &bytes[16..HEADER_LENGTH_KIX]])
}

fn u32_at(bytes: &[u8], offset: usize) -> u32 {
    u32::from_le_bytes(bytes[offset..offset + 4].try_into().expect("4 bytes"))
}

fn i64_at(bytes: &[u8], offset: usize) -> i64 {
    i64::from_le_bytes(bytes[offset..offset + 8].try_into().expect("8 bytes"))
}

/// One entry of the key table: the messages of `key` are positions `first .. first + count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyEntry {
    /// The key.
    pub key: i64,
    /// Index of its first position.
    pub first: u32,
    /// How many messages have it.
    pub count: u32,
}

/// Encode the index of the messages `entries` ((key, offset from the segment base), any order;
/// sorted here) of the segment of `recording_id` at `segment_base`, indexed up to `end_position`.
/// The encoding is deterministic: the same messages always give the same bytes.
pub fn encode_key_index(
    kind: KeyKind,
    recording_id: RecordingId,
    segment_base: i64,
    end_position: i64,
    entries: &mut [(i64, u32)],
) -> Vec<u8> {
    sort_entries(entries);
    let mut keys: Vec<u8> = Vec::new();
    let mut positions: Vec<u8> = Vec::with_capacity(entries.len() * POSITION_LENGTH);
    let mut key_count = 0u32;
    let mut index = 0usize;
    while index < entries.len() {
        let key = entries[index].0;
        let first = index;
        while index < entries.len() && entries[index].0 == key {
            positions.extend_from_slice(&entries[index].1.to_le_bytes());
            index += 1;
        }
        keys.extend_from_slice(&key.to_le_bytes());
        keys.extend_from_slice(&(first as u32).to_le_bytes());
        keys.extend_from_slice(&((index - first) as u32).to_le_bytes());
        key_count += 1;
    }
    let header = KeyIndexHeader {
        kind,
        recording_id,
        segment_base,
        end_position,
        key_count,
        position_count: entries.len() as u32,
        keys_crc: crate::crc::crc32c_parts(&[&keys]),
        positions_crc: crate::crc::crc32c_parts(&[&positions]),
    };
    let mut bytes = Vec::with_capacity(HEADER_LENGTH_KIX + keys.len() + positions.len());
    bytes.extend_from_slice(&header.encode());
    bytes.extend_from_slice(&keys);
    bytes.extend_from_slice(&positions);
    bytes
}

/// Sort (key, offset) entries by key, then offset. Entries come from a segment in stream order
/// (offsets increasing), so a stable radix sort on the key alone does it, in a few passes over
/// the entries (one per byte in which the keys differ): sorting millions of entries per segment
/// then costs far less CPU than a comparison sort, which matters on the cores the recorder uses.
fn sort_entries(entries: &mut [Entry]) {
    if !entries.windows(2).all(|pair| pair[0].1 < pair[1].1) {
        entries.sort_unstable();
        return;
    }
    if entries.windows(2).all(|pair| pair[0].0 <= pair[1].0) {
        return;
    }
    // Keys as unsigned, so byte order is signed order.
    let unsigned = |key: i64| (key as u64) ^ (1 << 63);
    // A byte in which every key is the same leaves the order as it is: only the others are sorted
    // on (two bytes for keys below 65536).
    let first = unsigned(entries[0].0);
    let differing = entries
        .iter()
        .fold(0u64, |bits, (key, _)| bits | (unsigned(*key) ^ first));
    let bytes: Vec<usize> = (0..8)
        .filter(|byte| (differing >> (8 * byte)) & 0xFF != 0)
        .collect();
    let mut counts = vec![[0usize; 256]; bytes.len()];
    for (key, _) in entries.iter() {
        let key = unsigned(*key);
        for (count, byte) in counts.iter_mut().zip(&bytes) {
            count[((key >> (8 * byte)) & 0xFF) as usize] += 1;
        }
    }
    let mut scratch = entries.to_vec();
    let mut in_scratch = false;
    for (count, byte) in counts.iter().zip(bytes) {
        let mut starts = [0usize; 256];
        let mut sum = 0;
        for (value, count) in count.iter().enumerate() {
            starts[value] = sum;
            sum += count;
        }
        let (from, to): (&[Entry], &mut [Entry]) = if in_scratch {
            (&scratch, entries)
        } else {
            (entries, &mut scratch)
        };
        for entry in from {
            let value = ((unsigned(entry.0) >> (8 * byte)) & 0xFF) as usize;
            to[starts[value]] = *entry;
            starts[value] += 1;
        }
        in_scratch = !in_scratch;
    }
    if in_scratch {
        entries.copy_from_slice(&scratch);
    }
}

/// A message noted for an index: its key and the offset of its first frame from the segment base.
type Entry = (i64, u32);

/// What an index file must be to be used for a segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expected {
    /// The kind.
    pub kind: KeyKind,
    /// The recording.
    pub recording_id: RecordingId,
    /// The segment's base.
    pub segment_base: i64,
    /// Where the segment's data ends: its end, or the recording's stop in its last segment.
    pub end_position: i64,
}

impl Expected {
    fn check(&self, header: &KeyIndexHeader) -> Result<(), (u64, String)> {
        if header.kind != self.kind {
            return Err((
                16,
                format!("an index of {}, not {}", header.kind, self.kind),
            ));
        }
        if header.recording_id != self.recording_id {
            return Err((
                24,
                format!(
                    "an index of recording {}, not {}",
                    header.recording_id, self.recording_id
                ),
            ));
        }
        if header.segment_base != self.segment_base {
            return Err((
                32,
                format!(
                    "an index of the segment at {}, not {}",
                    header.segment_base, self.segment_base
                ),
            ));
        }
        if header.end_position != self.end_position {
            return Err((
                40,
                format!(
                    "indexes up to {}, but the segment's data ends at {}",
                    header.end_position, self.end_position
                ),
            ));
        }
        Ok(())
    }
}

/// Decode and check a key table (its CRC32C, keys strictly increasing, runs back to back and
/// covering every position).
fn decode_key_table(header: &KeyIndexHeader, bytes: &[u8]) -> Result<Vec<KeyEntry>, (u64, String)> {
    let table_offset = HEADER_LENGTH_KIX as u64;
    let computed = crate::crc::crc32c_parts(&[bytes]);
    if computed != header.keys_crc {
        return Err((
            table_offset,
            format!(
                "key table checksum mismatch: stored {:#010x}, computed {computed:#010x}",
                header.keys_crc
            ),
        ));
    }
    let mut entries = Vec::with_capacity(header.key_count as usize);
    let mut next_first = 0u64;
    for (index, chunk) in bytes.chunks_exact(KEY_ENTRY_LENGTH).enumerate() {
        let entry = KeyEntry {
            key: i64_at(chunk, 0),
            first: u32_at(chunk, 8),
            count: u32_at(chunk, 12),
        };
        let offset = table_offset + (index * KEY_ENTRY_LENGTH) as u64;
        let previous: Option<&KeyEntry> = entries.last();
        if previous.is_some_and(|previous| previous.key >= entry.key) {
            return Err((offset, "keys are not strictly increasing".into()));
        }
        if u64::from(entry.first) != next_first || entry.count == 0 {
            return Err((offset, "key runs are not back to back".into()));
        }
        next_first += u64::from(entry.count);
        entries.push(entry);
    }
    if next_first != u64::from(header.position_count) {
        return Err((
            table_offset,
            format!(
                "the key runs cover {next_first} positions of {}",
                header.position_count
            ),
        ));
    }
    Ok(entries)
}

/// Decode a key's run of positions and check it: increasing frame starts inside the indexed
/// range. Returns absolute positions.
fn decode_run(
    header: &KeyIndexHeader,
    entry: &KeyEntry,
    bytes: &[u8],
) -> Result<Vec<i64>, (u64, String)> {
    let run_offset = header.positions_offset() + u64::from(entry.first) * POSITION_LENGTH as u64;
    let mut positions = Vec::with_capacity(entry.count as usize);
    for (index, chunk) in bytes.chunks_exact(POSITION_LENGTH).enumerate() {
        let position = header.segment_base + i64::from(u32_at(chunk, 0));
        let bad = position % FRAME_ALIGNMENT as i64 != 0
            || position >= header.end_position
            || positions.last().is_some_and(|last| *last >= position);
        if bad {
            return Err((
                run_offset + (index * POSITION_LENGTH) as u64,
                format!(
                    "position {position} of key {} is not an increasing frame start before {}",
                    entry.key, header.end_position
                ),
            ));
        }
        positions.push(position);
    }
    Ok(positions)
}

/// Check a whole index file in memory: header, length, both CRCs, the key table and every run.
/// Returns its header and key table.
///
/// # Errors
/// (file offset, what is wrong).
pub fn check_key_index(
    bytes: &[u8],
    expected: &Expected,
) -> Result<(KeyIndexHeader, Vec<KeyEntry>), (u64, String)> {
    let header = KeyIndexHeader::decode(bytes)?;
    expected.check(&header)?;
    if bytes.len() as u64 != header.file_length() {
        return Err((
            bytes.len().min(HEADER_LENGTH_KIX) as u64,
            format!(
                "file of {} bytes; its header describes {}",
                bytes.len(),
                header.file_length()
            ),
        ));
    }
    let positions_offset = header.positions_offset() as usize;
    let table = decode_key_table(&header, &bytes[HEADER_LENGTH_KIX..positions_offset])?;
    let positions = &bytes[positions_offset..];
    let computed = crate::crc::crc32c_parts(&[positions]);
    if computed != header.positions_crc {
        return Err((
            positions_offset as u64,
            format!(
                "positions checksum mismatch: stored {:#010x}, computed {computed:#010x}",
                header.positions_crc
            ),
        ));
    }
    for entry in &table {
        let start = entry.first as usize * POSITION_LENGTH;
        let end = start + entry.count as usize * POSITION_LENGTH;
        decode_run(&header, entry, &positions[start..end])?;
    }
    Ok((header, table))
}

/// The positions of `key`'s messages in a whole index file held in memory (checked as
/// [`check_key_index`] does).
///
/// # Errors
/// (file offset, what is wrong).
pub fn lookup_in(bytes: &[u8], expected: &Expected, key: i64) -> Result<Vec<i64>, (u64, String)> {
    let (header, table) = check_key_index(bytes, expected)?;
    let Ok(found) = table.binary_search_by_key(&key, |entry| entry.key) else {
        return Ok(Vec::new());
    };
    let entry = table[found];
    let start = header.positions_offset() as usize + entry.first as usize * POSITION_LENGTH;
    let end = start + entry.count as usize * POSITION_LENGTH;
    decode_run(&header, &entry, &bytes[start..end])
}

/// An index file opened for lookups: reads its header, key table and the runs asked for, never
/// the other keys' positions.
pub struct KeyIndexReader {
    path: PathBuf,
    file: Arc<dyn StorageFile>,
    header: KeyIndexHeader,
    table: Vec<KeyEntry>,
    bytes_read: u64,
}

fn corrupt(path: &Path, (offset, reason): (u64, String)) -> StoreError {
    StoreError::Corrupt {
        path: path.to_path_buf(),
        offset,
        reason,
    }
}

fn read_exact_at(
    file: &Arc<dyn StorageFile>,
    path: &Path,
    buffer: &mut [u8],
    offset: u64,
) -> Result<()> {
    let read = file
        .read_full_at(buffer, offset)
        .map_err(io_error(path, "read key index"))?;
    if read < buffer.len() {
        return Err(StoreError::Corrupt {
            path: path.to_path_buf(),
            offset: offset + read as u64,
            reason: "key index truncated".into(),
        });
    }
    Ok(())
}

impl KeyIndexReader {
    /// Open the index of `expected.kind` for a segment and check its header, length and key
    /// table.
    ///
    /// # Errors
    /// The file is missing (`Io`, not found), unreadable, or not the index expected (`Corrupt`).
    pub fn open(dir: &Path, expected: &Expected) -> Result<Self> {
        Self::open_on(&disk(), dir, expected)
    }

    /// [`Self::open`] in `dir` of `storage`.
    ///
    /// # Errors
    /// As [`Self::open`].
    pub fn open_on(storage: &Arc<dyn Storage>, dir: &Path, expected: &Expected) -> Result<Self> {
        let path = dir.join(key_index_file_name(
            expected.recording_id,
            expected.segment_base,
            &expected.kind,
        ));
        let file = storage
            .open(&path, OpenOptions::read())
            .map_err(io_error(&path, "open key index"))?;
        let mut header_bytes = [0u8; HEADER_LENGTH_KIX];
        read_exact_at(&file, &path, &mut header_bytes, 0)?;
        let header = KeyIndexHeader::decode(&header_bytes).map_err(|e| corrupt(&path, e))?;
        expected.check(&header).map_err(|e| corrupt(&path, e))?;
        let length = file.len().map_err(io_error(&path, "stat key index"))?;
        if length != header.file_length() {
            return Err(corrupt(
                &path,
                (
                    length.min(HEADER_LENGTH_KIX as u64),
                    format!(
                        "file of {length} bytes; its header describes {}",
                        header.file_length()
                    ),
                ),
            ));
        }
        let mut table_bytes = vec![0u8; header.key_count as usize * KEY_ENTRY_LENGTH];
        read_exact_at(&file, &path, &mut table_bytes, HEADER_LENGTH_KIX as u64)?;
        let table = decode_key_table(&header, &table_bytes).map_err(|e| corrupt(&path, e))?;
        Ok(Self {
            bytes_read: (HEADER_LENGTH_KIX + table_bytes.len()) as u64,
            path,
            file,
            header,
            table,
        })
    }

    /// The header.
    pub fn header(&self) -> &KeyIndexHeader {
        &self.header
    }

    /// The key table.
    pub fn keys(&self) -> &[KeyEntry] {
        &self.table
    }

    /// Bytes read from the file so far.
    pub fn bytes_read(&self) -> u64 {
        self.bytes_read
    }

    /// The positions of `key`'s messages, in order (empty if no message has it).
    ///
    /// # Errors
    /// The run cannot be read or is not increasing frame starts inside the segment.
    pub fn positions_of(&mut self, key: i64) -> Result<Vec<i64>> {
        let Ok(found) = self.table.binary_search_by_key(&key, |entry| entry.key) else {
            return Ok(Vec::new());
        };
        let entry = self.table[found];
        let mut bytes = vec![0u8; entry.count as usize * POSITION_LENGTH];
        let offset =
            self.header.positions_offset() + u64::from(entry.first) * POSITION_LENGTH as u64;
        read_exact_at(&self.file, &self.path, &mut bytes, offset)?;
        self.bytes_read += bytes.len() as u64;
        decode_run(&self.header, &entry, &bytes).map_err(|e| corrupt(&self.path, e))
    }
}

/// Encode a manifest: the kinds indexed for `recording_id`.
pub fn encode_manifest(recording_id: RecordingId, kinds: &[KeyKind]) -> Vec<u8> {
    let indexable: Vec<[u8; 8]> = kinds.iter().filter_map(KeyKind::encode).collect();
    let mut bytes = Vec::with_capacity(28 + indexable.len() * 8);
    bytes.extend_from_slice(MANIFEST_MAGIC);
    bytes.extend_from_slice(&VERSION.to_le_bytes());
    bytes.extend_from_slice(&(indexable.len() as u32).to_le_bytes());
    bytes.extend_from_slice(&recording_id.get().to_le_bytes());
    for kind in &indexable {
        bytes.extend_from_slice(kind);
    }
    let crc = crate::crc::crc32c_parts(&[&bytes]);
    bytes.extend_from_slice(&crc.to_le_bytes());
    bytes
}

/// Decode a manifest of `recording_id`.
///
/// # Errors
/// (file offset, what is wrong).
pub fn decode_manifest(
    bytes: &[u8],
    recording_id: RecordingId,
) -> Result<Vec<KeyKind>, (u64, String)> {
    if bytes.len() < 28 || &bytes[0..8] != MANIFEST_MAGIC {
        return Err((0, "not a tern key index manifest".into()));
    }
    let version = u32_at(bytes, 8);
    if version != VERSION {
        return Err((
            8,
            format!("manifest version {version}; this tern reads version {VERSION}"),
        ));
    }
    let count = u32_at(bytes, 12) as usize;
    let length = 24 + count * 8 + 4;
    if bytes.len() != length {
        return Err((
            12,
            format!("{count} kinds need {length} bytes, not {}", bytes.len()),
        ));
    }
    let stored = u32_at(bytes, length - 4);
    let computed = crate::crc::crc32c_parts(&[&bytes[..length - 4]]);
    if stored != computed {
        return Err((
            (length - 4) as u64,
            format!("manifest checksum mismatch: stored {stored:#010x}, computed {computed:#010x}"),
        ));
    }
    let owner = RecordingId::new(i64_at(bytes, 16));
    if owner != recording_id {
        return Err((
            16,
            format!("manifest of recording {owner}, not {recording_id}"),
        ));
    }
    (0..count)
        .map(|index| {
            let at = 24 + index * 8;
            let kind: [u8; 8] = bytes[at..at + 8].try_into().expect("8 bytes");
            KeyKind::decode(&kind).ok_or((at as u64, "unknown key kind".to_string()))
        })
        .collect()
}

/// Write the manifest of a recording that indexes `kinds`, when it starts: synced, and its
/// directory entry too, so a power loss never leaves an indexed recording without it (it would
/// count as not indexed, and its index files would never be rebuilt). One sync of a small file
/// per recording start, on the recorder's thread.
///
/// # Errors
/// The file could not be written.
pub fn write_manifest(dir: &Path, recording_id: RecordingId, kinds: &[KeyKind]) -> Result<()> {
    write_manifest_on(&disk(), dir, recording_id, kinds)
}

/// [`write_manifest`] in `dir` of `storage`.
///
/// # Errors
/// The file could not be written.
pub fn write_manifest_on(
    storage: &Arc<dyn Storage>,
    dir: &Path,
    recording_id: RecordingId,
    kinds: &[KeyKind],
) -> Result<()> {
    write_atomically_on(
        storage,
        dir,
        &manifest_file_name(recording_id),
        &encode_manifest(recording_id, kinds),
        true,
    )
}

/// The kinds indexed for a recording: its manifest, or none when it has no manifest.
///
/// # Errors
/// The manifest is unreadable or damaged.
pub fn read_manifest(dir: &Path, recording_id: RecordingId) -> Result<Vec<KeyKind>> {
    read_manifest_on(&disk(), dir, recording_id)
}

/// [`read_manifest`] in `dir` of `storage`.
///
/// # Errors
/// The manifest is unreadable or damaged.
pub fn read_manifest_on(
    storage: &Arc<dyn Storage>,
    dir: &Path,
    recording_id: RecordingId,
) -> Result<Vec<KeyKind>> {
    let path = dir.join(manifest_file_name(recording_id));
    match read_all(storage.as_ref(), &path) {
        Ok(bytes) => decode_manifest(&bytes, recording_id).map_err(|e| corrupt(&path, e)),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(error) => Err(io_error(&path, "read key index manifest")(error)),
    }
}

/// Write `bytes` as `dir/name`: to a temporary file of a name no reader takes for an index,
/// (if `sync`) synced, renamed over `name`, and (if `sync`) the directory synced. A reader sees
/// the old file or the new one, never a part.
///
/// # Errors
/// A write, sync or rename failed (the temporary file is removed).
pub fn write_atomically(dir: &Path, name: &str, bytes: &[u8], sync: bool) -> Result<()> {
    write_atomically_on(&disk(), dir, name, bytes, sync)
}

/// [`write_atomically`] in `dir` of `storage`.
///
/// # Errors
/// A write, sync or rename failed (the temporary file is removed).
pub fn write_atomically_on(
    storage: &Arc<dyn Storage>,
    dir: &Path,
    name: &str,
    bytes: &[u8],
    sync: bool,
) -> Result<()> {
    static SEQUENCE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let sequence = SEQUENCE.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let temporary = dir.join(format!(".{name}.{}-{sequence}.tmp", std::process::id()));
    let path = dir.join(name);
    let written = (|| {
        let file = storage
            .open(&temporary, OpenOptions::create())
            .map_err(io_error(&temporary, "create key index"))?;
        file.set_len(0)
            .and_then(|()| file.write_all_at(bytes, 0))
            .map_err(io_error(&temporary, "write key index"))?;
        if sync {
            file.sync_data()
                .map_err(io_error(&temporary, "sync key index"))?;
        }
        storage
            .rename(&temporary, &path)
            .map_err(io_error(&path, "rename key index"))?;
        if sync {
            crate::catalog::sync_directory_on(storage, dir)?;
        }
        Ok(())
    })();
    if written.is_err() {
        let _ = storage.remove_file(&temporary);
    }
    written
}

/// The keys of the messages of one segment, per kind, as they are recorded: (key, offset of the
/// message's first frame from the segment base).
#[derive(Debug)]
pub struct KeyCollector {
    kinds: Vec<KeyKind>,
    entries: Vec<Vec<(i64, u32)>>,
    base: i64,
}

impl KeyCollector {
    /// Collect `kinds` for the segment based at `base`.
    pub fn new(kinds: &[KeyKind], base: i64) -> Self {
        Self {
            kinds: kinds.to_vec(),
            entries: vec![Vec::new(); kinds.len()],
            base,
        }
    }

    /// The segment's base.
    pub fn base(&self) -> i64 {
        self.base
    }

    /// The kinds collected.
    pub fn kinds(&self) -> &[KeyKind] {
        &self.kinds
    }

    /// Note the keys of the messages that start in `block` (whole frames from stream `position`,
    /// inside this segment).
    pub fn collect(&mut self, block: &[u8], position: i64) {
        use crate::frame::{FLAGS_OFFSET, RESERVED_VALUE_OFFSET, TYPE_OFFSET, TYPE_PAD};
        let mut offset = 0;
        // Only the fields needed, read in place: this runs on the recorder's thread for every
        // frame recorded.
        while offset + HEADER_LENGTH <= block.len() {
            let frame = &block[offset..];
            let frame_length = i32::from_le_bytes([frame[0], frame[1], frame[2], frame[3]]);
            if frame_length <= 0 {
                break;
            }
            let frame_type = u16::from_le_bytes([frame[TYPE_OFFSET], frame[TYPE_OFFSET + 1]]);
            if frame_type != TYPE_PAD && frame[FLAGS_OFFSET] & crate::frame::BEGIN_FLAG != 0 {
                let reserved = i64::from_le_bytes(
                    frame[RESERVED_VALUE_OFFSET..RESERVED_VALUE_OFFSET + 8]
                        .try_into()
                        .expect("8 bytes"),
                );
                let end = (frame_length as usize).min(frame.len());
                let payload = &frame[HEADER_LENGTH.min(end)..end];
                self.note_key(reserved, payload, position + offset as i64);
            }
            offset += align_frame(frame_length as usize);
        }
    }

    /// Note the keys of one message whose first frame (`header`, `payload`) is at `position`.
    pub fn note(&mut self, header: &FrameHeader, payload: &[u8], position: i64) {
        self.note_key(header.reserved_value, payload, position);
    }

    fn note_key(&mut self, reserved_value: i64, payload: &[u8], position: i64) {
        let relative = (position - self.base) as u32;
        for (kind, entries) in self.kinds.iter().zip(self.entries.iter_mut()) {
            if let Some(key) = kind.key_of(reserved_value, payload) {
                entries.push((key, relative));
            }
        }
    }

    /// A collector for the next segment, at `base`, with room for as many entries as this one
    /// holds (segments of a recording tend to hold as many messages): lists from `recycled` when
    /// there are (emptied, their memory kept), new ones otherwise.
    pub fn next(&self, base: i64, mut recycled: impl FnMut() -> Option<Vec<(i64, u32)>>) -> Self {
        Self {
            kinds: self.kinds.clone(),
            entries: self
                .entries
                .iter()
                .map(|entries| match recycled() {
                    Some(mut list) => {
                        list.clear();
                        list.reserve(entries.len());
                        list
                    }
                    None => Vec::with_capacity(entries.len()),
                })
                .collect(),
            base,
        }
    }

    /// The entries collected, per kind.
    pub fn into_entries(self) -> Vec<(KeyKind, Vec<(i64, u32)>)> {
        self.kinds.into_iter().zip(self.entries).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const BASE: i64 = 1 << 20;

    fn expected(end: i64) -> Expected {
        Expected {
            kind: KeyKind::Reserved,
            recording_id: RecordingId::new(3),
            segment_base: BASE,
            end_position: end,
        }
    }

    fn sample() -> (Vec<(i64, u32)>, Vec<u8>) {
        let entries: Vec<(i64, u32)> = (0..40u32).map(|i| (i64::from(i % 3) - 1, i * 64)).collect();
        let bytes = encode_key_index(
            KeyKind::Reserved,
            RecordingId::new(3),
            BASE,
            BASE + 4096,
            &mut entries.clone(),
        );
        (entries, bytes)
    }

    #[test]
    fn an_index_round_trips_and_is_deterministic() {
        let (entries, bytes) = sample();
        let mut shuffled = entries.clone();
        shuffled.reverse();
        assert_eq!(
            encode_key_index(
                KeyKind::Reserved,
                RecordingId::new(3),
                BASE,
                BASE + 4096,
                &mut shuffled
            ),
            bytes,
            "the same messages in another order give the same bytes"
        );
        let (header, table) = check_key_index(&bytes, &expected(BASE + 4096)).expect("valid");
        assert_eq!((header.key_count, header.position_count), (3, 40));
        assert_eq!(
            table.iter().map(|e| e.key).collect::<Vec<_>>(),
            vec![-1, 0, 1]
        );
        let ones = lookup_in(&bytes, &expected(BASE + 4096), 1).expect("lookup");
        assert_eq!(
            ones,
            (0..40)
                .filter(|i| i % 3 == 2)
                .map(|i| BASE + i64::from(i) * 64)
                .collect::<Vec<_>>()
        );
        assert!(lookup_in(&bytes, &expected(BASE + 4096), 5)
            .expect("lookup")
            .is_empty());
        let empty = encode_key_index(
            KeyKind::Reserved,
            RecordingId::new(3),
            BASE,
            BASE + 32,
            &mut [],
        );
        assert_eq!(empty.len(), HEADER_LENGTH_KIX);
        assert!(lookup_in(&empty, &expected(BASE + 32), 0)
            .expect("empty index")
            .is_empty());
    }

    #[test]
    fn a_truncated_or_damaged_index_or_another_segments_is_refused() {
        let (_, bytes) = sample();
        let expect = expected(BASE + 4096);
        for length in [0, 10, 63, 64, 100, bytes.len() - 1] {
            assert!(
                check_key_index(&bytes[..length], &expect).is_err(),
                "truncated to {length}"
            );
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(check_key_index(&longer, &expect).is_err());
        // Every flipped bit anywhere in the file is caught.
        for byte in 0..bytes.len() {
            for bit in [0, 3, 7] {
                let mut damaged = bytes.clone();
                damaged[byte] ^= 1 << bit;
                assert!(
                    check_key_index(&damaged, &expect).is_err(),
                    "flip of byte {byte} bit {bit} missed"
                );
            }
        }
        let (offset, reason) =
            check_key_index(&bytes, &expected(BASE + 8192)).expect_err("another end");
        assert_eq!(offset, 40);
        assert!(reason.contains("ends at"), "{reason}");
        let other_kind = Expected {
            kind: KeyKind::ClusterEgress,
            ..expect
        };
        assert!(check_key_index(&bytes, &other_kind).is_err());
        let mut version = bytes.clone();
        version[8] = 2;
        assert!(check_key_index(&version, &expect)
            .expect_err("version")
            .1
            .contains("version 2"));
    }

    #[test]
    fn a_reader_finds_a_key_reading_only_its_run_and_detects_a_damaged_table() {
        let dir = tempfile::tempdir().expect("dir");
        let (_, bytes) = sample();
        let name = key_index_file_name(RecordingId::new(3), BASE, &KeyKind::Reserved);
        assert_eq!(name, format!("3-{BASE}.reserved.kix"));
        assert_eq!(
            parse_key_index_file_name(&name),
            Some((3, BASE, "reserved"))
        );
        write_atomically(dir.path(), &name, &bytes, true).expect("write");
        let mut reader = KeyIndexReader::open(dir.path(), &expected(BASE + 4096)).expect("open");
        let zeros = reader.positions_of(0).expect("lookup");
        assert_eq!(zeros.len(), 13);
        assert_eq!(
            reader.bytes_read(),
            (HEADER_LENGTH_KIX + 3 * KEY_ENTRY_LENGTH + 13 * POSITION_LENGTH) as u64
        );
        let mut damaged = bytes.clone();
        damaged[HEADER_LENGTH_KIX + 17] ^= 1;
        write_atomically(dir.path(), &name, &damaged, true).expect("write");
        let error = KeyIndexReader::open(dir.path(), &expected(BASE + 4096))
            .err()
            .expect("damaged key table");
        assert!(error.to_string().contains("key table checksum"), "{error}");
        let leftovers: Vec<_> = std::fs::read_dir(dir.path())
            .expect("list")
            .map(|entry| entry.expect("entry").file_name())
            .collect();
        assert_eq!(leftovers.len(), 1, "no temporary file left: {leftovers:?}");
        let missing = KeyIndexReader::open(
            dir.path(),
            &Expected {
                segment_base: 0,
                ..expected(BASE + 4096)
            },
        );
        assert!(matches!(missing, Err(StoreError::Io { .. })));
    }

    /// The example of `docs/formats.md` section 15.2, byte for byte.
    #[test]
    fn the_documented_example_encodes_to_these_bytes() {
        let bytes = encode_key_index(
            KeyKind::Reserved,
            RecordingId::new(0),
            0,
            4096,
            &mut [(7, 0), (3, 96), (7, 224)],
        );
        let hex: Vec<String> = bytes
            .chunks(16)
            .enumerate()
            .map(|(line, chunk)| {
                let bytes: Vec<String> = chunk.iter().map(|b| format!("{b:02x}")).collect();
                format!("{:04x}: {}", line * 16, bytes.join(" "))
            })
            .collect();
        assert_eq!(hex.join("\n"), DOCUMENTED_EXAMPLE);
    }

    const DOCUMENTED_EXAMPLE: &str = "0000: 54 45 52 4e 4b 49 58 00 01 00 00 00 a6 15 0e e8\n\
                                       0010: 01 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00\n\
                                       0020: 00 00 00 00 00 00 00 00 00 10 00 00 00 00 00 00\n\
                                       0030: 02 00 00 00 03 00 00 00 f4 22 9e d8 64 e7 b7 53\n\
                                       0040: 03 00 00 00 00 00 00 00 00 00 00 00 01 00 00 00\n\
                                       0050: 07 00 00 00 00 00 00 00 01 00 00 00 02 00 00 00\n\
                                       0060: 60 00 00 00 00 00 00 00 e0 00 00 00";

    #[test]
    fn manifests_round_trip_and_damage_is_found() {
        let kinds = [KeyKind::Reserved, KeyKind::ClusterEgress];
        let bytes = encode_manifest(RecordingId::new(7), &kinds);
        assert_eq!(
            decode_manifest(&bytes, RecordingId::new(7)).expect("valid"),
            kinds
        );
        assert!(
            decode_manifest(&bytes, RecordingId::new(8)).is_err(),
            "another recording's"
        );
        for byte in 0..bytes.len() {
            let mut damaged = bytes.clone();
            damaged[byte] ^= 0x10;
            assert!(
                decode_manifest(&damaged, RecordingId::new(7)).is_err(),
                "byte {byte}"
            );
        }
        assert!(decode_manifest(&bytes[..bytes.len() - 1], RecordingId::new(7)).is_err());
    }

    #[test]
    fn the_collector_notes_first_fragments_only_with_their_offsets() {
        let mut block = Vec::new();
        let mut frame = |flags: u8, reserved: i64, payload: &[u8], frame_type: u16| {
            let mut bytes = vec![0u8; align_frame(HEADER_LENGTH + payload.len())];
            FrameHeader {
                frame_length: (HEADER_LENGTH + payload.len()) as i32,
                flags,
                frame_type,
                term_offset: 0,
                session_id: 0,
                stream_id: 1,
                term_id: 0,
                reserved_value: reserved,
            }
            .encode(&mut bytes);
            bytes[HEADER_LENGTH..HEADER_LENGTH + payload.len()].copy_from_slice(payload);
            block.extend_from_slice(&bytes);
        };
        frame(0xC0, 5, b"whole", 1);
        frame(0x80, 6, b"first", 1);
        frame(0x40, 7, b"last", 1);
        frame(0x00, 8, &[0u8; 64], 0);
        frame(0xC0, 5, b"again", 1);
        let mut collector = KeyCollector::new(&[KeyKind::Reserved], BASE);
        collector.collect(&block, BASE + 4096);
        let entries = collector.into_entries();
        assert_eq!(
            entries[0].1,
            vec![(5, 4096), (6, 4096 + 64), (5, 4096 + 192 + 96)]
        );
    }

    proptest! {
        /// The radix sort of entries in stream order equals a comparison sort.
        #[test]
        fn entries_in_stream_order_sort_as_a_comparison_sort_does(
            keys in proptest::collection::vec(
                prop_oneof![-3i64..300, Just(i64::MIN), Just(i64::MAX), any::<i64>()],
                0..500,
            ),
        ) {
            let mut entries: Vec<(i64, u32)> = keys
                .iter()
                .enumerate()
                .map(|(i, key)| (*key, i as u32 * 32))
                .collect();
            let mut expected = entries.clone();
            expected.sort_unstable();
            sort_entries(&mut entries);
            prop_assert_eq!(entries, expected);
        }

        /// A lookup in an index equals filtering every message by its key.
        #[test]
        fn lookup_equals_a_linear_scan(
            keys in proptest::collection::vec(-3i64..20, 0..300),
            wanted in -4i64..21,
        ) {
            let messages: Vec<(i64, u32)> = keys
                .iter()
                .enumerate()
                .map(|(i, key)| (*key, i as u32 * 96))
                .collect();
            let end = BASE + messages.len() as i64 * 96 + 32;
            let bytes = encode_key_index(KeyKind::Reserved, RecordingId::new(3), BASE, end, &mut messages.clone());
            let scanned: Vec<i64> = messages
                .iter()
                .filter(|(key, _)| *key == wanted)
                .map(|(_, offset)| BASE + i64::from(*offset))
                .collect();
            prop_assert_eq!(lookup_in(&bytes, &expected(end), wanted).expect("lookup"), scanned);
        }
    }
}
