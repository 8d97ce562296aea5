//! The file sink: records appended to files in a directory, as JSON Lines or a raw
//! length-prefixed form, rotated by size and age; the resume point is read back from the last
//! file itself (a torn last record is cut). Formats: `docs/sinks.md` §File.
//!
//! Files are named `sink-<first position, 20 digits>.jsonl` (or `.tsr`), so that their names
//! sort as the stream. Every write appends one batch with one `write`, then `fdatasync`; a new
//! file's directory entry is synced before its first batch counts. Only the last file can hold
//! a torn tail (a crash in the middle of an append): opening cuts it back to its last whole
//! record, or removes the file if none is whole. A directory holds one sink (a lock file,
//! `sink.lock`, keeps a second out).

use crate::destination::{Destination, Resume, SinkError};
use crate::record::{Batch, SinkRecord};
use base64::Engine as _;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tern_store::RecordingId;

/// Name of the lock file in a sink's directory.
pub const LOCK_FILE: &str = "sink.lock";
/// Magic of a raw file's header.
pub const RAW_MAGIC: &[u8; 8] = b"TERNSINK";
/// Version of the raw form.
pub const RAW_VERSION: u32 = 1;
/// Bytes of a raw file's header.
pub const RAW_FILE_HEADER: usize = 32;
/// Bytes of a raw record's header (before its payload).
pub const RAW_RECORD_HEADER: usize = 40;
/// Longest payload a raw record holds (a message is at most 16 MiB in Aeron).
pub const RAW_MAX_PAYLOAD: usize = 64 << 20;

/// How records are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileFormat {
    /// One JSON object per line.
    JsonLines {
        /// Payloads as UTF-8 text when they are valid UTF-8 (else base64); otherwise always
        /// base64.
        text: bool,
    },
    /// Length-prefixed binary records with a checksum, after a file header.
    Raw,
}

impl FileFormat {
    fn extension(self) -> &'static str {
        match self {
            Self::JsonLines { .. } => "jsonl",
            Self::Raw => "tsr",
        }
    }
}

/// Settings of a [`FileDestination`].
#[derive(Debug, Clone)]
pub struct FileConfig {
    /// The directory (created if absent).
    pub dir: PathBuf,
    /// The form of the records.
    pub format: FileFormat,
    /// A file is closed and the next one started once it holds this many bytes.
    pub max_file_bytes: u64,
    /// ... or once it has been written to for this long (`None`: no limit).
    pub max_file_age: Option<Duration>,
}

impl FileConfig {
    /// JSON Lines with base64 payloads in `dir`, files of 256 MiB, no age limit.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            format: FileFormat::JsonLines { text: false },
            max_file_bytes: 256 << 20,
            max_file_age: None,
        }
    }
}

/// The file being appended to.
#[derive(Debug)]
struct Current {
    file: File,
    path: PathBuf,
    length: u64,
    opened: Instant,
}

/// A [`Destination`] of files in a directory.
#[derive(Debug)]
pub struct FileDestination {
    config: FileConfig,
    lock: Option<File>,
    current: Option<Current>,
    recording_id: Option<RecordingId>,
    buffer: Vec<u8>,
    scratch: String,
}

fn io_error(what: &str, path: &Path, error: std::io::Error) -> SinkError {
    let text = format!("{what} {}: {error}", path.display());
    match error.raw_os_error() {
        // A full disk or quota may clear; the rest of the I/O errors are reported as they come
        // and retried as well: nothing is acknowledged before the sync.
        Some(libc::ENOSPC) | Some(libc::EDQUOT) | Some(libc::EIO) => SinkError::Unavailable(text),
        _ if error.kind() == std::io::ErrorKind::PermissionDenied => SinkError::Fatal(text),
        _ => SinkError::Unavailable(text),
    }
}

impl FileDestination {
    /// A destination in `config.dir` (nothing is touched before [`Destination::open`]).
    pub fn new(config: FileConfig) -> Self {
        Self {
            config,
            lock: None,
            current: None,
            recording_id: None,
            buffer: Vec::with_capacity(1 << 20),
            scratch: String::new(),
        }
    }

    /// The files of the sink's format in `dir`, in stream order.
    ///
    /// # Errors
    /// The directory cannot be listed.
    pub fn files(dir: &Path, format: FileFormat) -> std::io::Result<Vec<PathBuf>> {
        let mut files = Vec::new();
        let suffix = format!(".{}", format.extension());
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with("sink-") && name.ends_with(&suffix) {
                files.push(entry.path());
            }
        }
        files.sort();
        Ok(files)
    }

    fn sync_dir(&self) -> Result<(), SinkError> {
        File::open(&self.config.dir)
            .and_then(|dir| dir.sync_all())
            .map_err(|error| io_error("sync directory", &self.config.dir, error))
    }

    /// Recovers the last file: its last whole record (cutting a torn tail), or removes it if
    /// it holds none and goes on with the one before.
    fn recover(&mut self) -> Result<Option<Resume>, SinkError> {
        let files = Self::files(&self.config.dir, self.config.format)
            .map_err(|error| io_error("list", &self.config.dir, error))?;
        let other = match self.config.format {
            FileFormat::Raw => FileFormat::JsonLines { text: false },
            FileFormat::JsonLines { .. } => FileFormat::Raw,
        };
        let others = Self::files(&self.config.dir, other)
            .map_err(|error| io_error("list", &self.config.dir, error))?;
        if let Some(file) = others.first() {
            return Err(SinkError::Fatal(format!(
                "{} holds {}, a file of the other format: use the format it was written in",
                self.config.dir.display(),
                file.display()
            )));
        }
        for path in files.iter().rev() {
            let data = std::fs::read(path).map_err(|error| io_error("read", path, error))?;
            let last = last_record(&data, path, self.config.format)?;
            match last {
                Some((whole, resume)) => {
                    let mut file = OpenOptions::new()
                        .read(true)
                        .write(true)
                        .open(path)
                        .map_err(|error| io_error("open", path, error))?;
                    if whole < data.len() as u64 {
                        tracing::warn!(
                            "{}: cut a torn last record ({} bytes) at offset {whole}",
                            path.display(),
                            data.len() as u64 - whole
                        );
                        file.set_len(whole)
                            .and_then(|()| file.sync_all())
                            .map_err(|error| io_error("cut", path, error))?;
                    }
                    file.seek(SeekFrom::End(0))
                        .map_err(|error| io_error("seek", path, error))?;
                    self.current = Some(Current {
                        file,
                        path: path.clone(),
                        length: whole,
                        opened: Instant::now(),
                    });
                    return Ok(Some(resume));
                }
                None => {
                    tracing::warn!(
                        "{}: no whole record (a crash as it was started): removed",
                        path.display()
                    );
                    std::fs::remove_file(path).map_err(|error| io_error("remove", path, error))?;
                    self.sync_dir()?;
                }
            }
        }
        Ok(None)
    }

    fn start_file(&mut self, batch: &Batch) -> Result<(), SinkError> {
        let first = batch.first_position().unwrap_or(batch.end_position);
        let path = self.config.dir.join(format!(
            "sink-{:020}.{}",
            first.max(0),
            self.config.format.extension()
        ));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|error| io_error("create", &path, error))?;
        self.sync_dir()?;
        self.current = Some(Current {
            file,
            path,
            length: 0,
            opened: Instant::now(),
        });
        Ok(())
    }

    fn encode(&mut self, batch: &Batch, new_file: bool) {
        self.buffer.clear();
        match self.config.format {
            FileFormat::JsonLines { text } => {
                for record in &batch.records {
                    encode_json(
                        &mut self.buffer,
                        &mut self.scratch,
                        batch.recording_id,
                        record,
                        text,
                    );
                }
            }
            FileFormat::Raw => {
                if new_file {
                    encode_raw_header(
                        &mut self.buffer,
                        batch.recording_id,
                        batch.first_position().unwrap_or(0),
                    );
                }
                for record in &batch.records {
                    encode_raw(&mut self.buffer, record);
                }
            }
        }
    }
}

impl Destination for FileDestination {
    fn describe(&self) -> String {
        format!("file sink {}", self.config.dir.display())
    }

    fn open(&mut self) -> Result<Option<Resume>, SinkError> {
        // A reopen of the file being written keeps its age (for --max-file-age).
        let previous = self
            .current
            .take()
            .map(|current| (current.path, current.opened));
        std::fs::create_dir_all(&self.config.dir)
            .map_err(|error| io_error("create directory", &self.config.dir, error))?;
        if self.lock.is_none() {
            let path = self.config.dir.join(LOCK_FILE);
            let lock = tern_store::lock_file(&path).map_err(|error| match error {
                tern_store::StoreError::Locked { holder, .. } => SinkError::Fatal(format!(
                    "{} is in use by another sink ({holder})",
                    self.config.dir.display()
                )),
                other => SinkError::Unavailable(other.to_string()),
            })?;
            self.lock = Some(lock);
        }
        let resume = self.recover()?;
        if let (Some(current), Some((path, opened))) = (self.current.as_mut(), previous) {
            if current.path == path {
                current.opened = opened;
            }
        }
        self.recording_id = resume.map(|resume| resume.recording_id);
        Ok(resume)
    }

    fn write(&mut self, batch: &Batch) -> Result<(), SinkError> {
        if batch.is_empty() {
            return Ok(());
        }
        if let Some(held) = self.recording_id {
            if held != batch.recording_id {
                return Err(SinkError::Fatal(format!(
                    "{} holds recording {held}, not recording {}",
                    self.config.dir.display(),
                    batch.recording_id
                )));
            }
        }
        let rotate = self.current.as_ref().is_some_and(|current| {
            current.length >= self.config.max_file_bytes
                || self
                    .config
                    .max_file_age
                    .is_some_and(|age| current.opened.elapsed() >= age)
        });
        if rotate {
            // Every batch was synced as it was written: closing needs nothing more.
            self.current = None;
        }
        let new_file = self.current.is_none();
        if new_file {
            self.start_file(batch)?;
        }
        self.encode(batch, new_file);
        let Some(current) = self.current.as_mut() else {
            return Err(SinkError::Unavailable("no file to write".into()));
        };
        if let Err(error) = current.file.write_all(&self.buffer) {
            let path = current.path.clone();
            // A short append: cut back now (or on the next open, which cuts a torn tail).
            let _ = current.file.set_len(current.length);
            self.current = None;
            return Err(io_error("append to", &path, error));
        }
        if let Err(error) = current.file.sync_data() {
            // After a failed fdatasync the page cache may show bytes the disk never got, and a
            // second fdatasync can succeed without writing them: this batch cannot be trusted,
            // nor the file. Cut it off and stop.
            let path = current.path.clone();
            let _ = current.file.set_len(current.length);
            let _ = current.file.sync_data();
            self.current = None;
            return Err(SinkError::Fatal(format!(
                "fdatasync of {}: {error}: the last batch was cut off; check the disk, then \
                 start the sink again",
                path.display()
            )));
        }
        current.length += self.buffer.len() as u64;
        self.recording_id = Some(batch.recording_id);
        Ok(())
    }
}

fn encode_json(
    out: &mut Vec<u8>,
    scratch: &mut String,
    recording_id: RecordingId,
    record: &SinkRecord,
    text: bool,
) {
    use std::io::Write as _;
    let _ = write!(
        out,
        "{{\"recording\":{},\"position\":{},\"timestamp_ns\":{},\"key\":",
        recording_id.get(),
        record.position,
        record.timestamp_ns
    );
    match record.key {
        Some(key) => {
            let _ = write!(out, "{key}");
        }
        None => out.extend_from_slice(b"null"),
    }
    let utf8 = if text {
        std::str::from_utf8(&record.payload).ok()
    } else {
        None
    };
    match utf8 {
        Some(utf8) => {
            out.extend_from_slice(b",\"encoding\":\"utf8\",\"payload\":");
            // Writing JSON into a Vec cannot fail.
            let _ = serde_json::to_writer(&mut *out, utf8);
        }
        _ => {
            out.extend_from_slice(b",\"encoding\":\"base64\",\"payload\":\"");
            scratch.clear();
            base64::engine::general_purpose::STANDARD.encode_string(&record.payload, scratch);
            out.extend_from_slice(scratch.as_bytes());
            out.push(b'"');
        }
    }
    out.extend_from_slice(b"}\n");
}

/// One record of a JSON Lines file, read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRecord {
    /// Its recording.
    pub recording_id: RecordingId,
    /// The record.
    pub record: SinkRecord,
}

/// Reads a JSON Lines record (one line, without its newline).
///
/// # Errors
/// A line that is not a sink's record, with what is wrong.
pub fn parse_json_record(line: &[u8]) -> Result<StoredRecord, String> {
    let value: serde_json::Value =
        serde_json::from_slice(line).map_err(|error| format!("not JSON: {error}"))?;
    let int = |name: &str| {
        value
            .get(name)
            .and_then(serde_json::Value::as_i64)
            .ok_or_else(|| format!("no integer {name:?}"))
    };
    let key = match value.get("key") {
        Some(serde_json::Value::Null) | None => None,
        Some(key) => Some(key.as_i64().ok_or("\"key\" is not an integer")?),
    };
    let payload = value
        .get("payload")
        .and_then(serde_json::Value::as_str)
        .ok_or("no string \"payload\"")?;
    let payload = match value.get("encoding").and_then(serde_json::Value::as_str) {
        Some("utf8") => payload.as_bytes().to_vec(),
        Some("base64") => base64::engine::general_purpose::STANDARD
            .decode(payload)
            .map_err(|error| format!("payload is not base64: {error}"))?,
        _ => return Err("no \"encoding\" utf8 or base64".into()),
    };
    Ok(StoredRecord {
        recording_id: RecordingId::new(int("recording")?),
        record: SinkRecord {
            position: int("position")?,
            timestamp_ns: int("timestamp_ns")?,
            key,
            payload,
        },
    })
}

/// The end of a file's last whole record and its resume point; `None` when it holds none.
fn last_record(
    data: &[u8],
    path: &Path,
    format: FileFormat,
) -> Result<Option<(u64, Resume)>, SinkError> {
    match format {
        FileFormat::JsonLines { .. } => last_json_record(data, path),
        FileFormat::Raw => last_raw_record(data, path),
    }
}

/// The end of the last whole line of a JSON Lines file and its record's resume point; `None`
/// when it holds no whole line.
fn last_json_record(data: &[u8], path: &Path) -> Result<Option<(u64, Resume)>, SinkError> {
    let Some(end) = data.iter().rposition(|&byte| byte == b'\n') else {
        return Ok(None);
    };
    let start = data[..end]
        .iter()
        .rposition(|&byte| byte == b'\n')
        .map_or(0, |newline| newline + 1);
    let stored = parse_json_record(&data[start..end]).map_err(|error| {
        SinkError::Fatal(format!(
            "{}: its last line (offset {start}) is not a sink record: {error}",
            path.display()
        ))
    })?;
    Ok(Some((
        end as u64 + 1,
        Resume {
            recording_id: stored.recording_id,
            position: stored.record.position,
        },
    )))
}

fn encode_raw_header(out: &mut Vec<u8>, recording_id: RecordingId, first_position: i64) {
    out.extend_from_slice(RAW_MAGIC);
    out.extend_from_slice(&RAW_VERSION.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&recording_id.get().to_le_bytes());
    out.extend_from_slice(&first_position.to_le_bytes());
}

fn encode_raw(out: &mut Vec<u8>, record: &SinkRecord) {
    let start = out.len();
    out.extend_from_slice(&(record.payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&record.position.to_le_bytes());
    out.extend_from_slice(&record.timestamp_ns.to_le_bytes());
    out.extend_from_slice(&u32::from(record.key.is_some()).to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&record.key.unwrap_or(0).to_le_bytes());
    out.extend_from_slice(&record.payload);
    let crc = crc32c::crc32c(&out[start + 8..]);
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

fn le_u32(data: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([data[at], data[at + 1], data[at + 2], data[at + 3]])
}

fn le_i64(data: &[u8], at: usize) -> i64 {
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&data[at..at + 8]);
    i64::from_le_bytes(bytes)
}

/// The records of a raw file, with where the whole ones end (pure).
///
/// # Errors
/// A file that does not start with a raw header of this version.
pub fn parse_raw(data: &[u8]) -> Result<(RecordingId, Vec<SinkRecord>, usize), String> {
    if data.len() < RAW_FILE_HEADER {
        return Ok((RecordingId::new(-1), Vec::new(), 0));
    }
    if &data[..8] != RAW_MAGIC {
        return Err("no TERNSINK magic".into());
    }
    let version = le_u32(data, 8);
    if version != RAW_VERSION {
        return Err(format!("version {version}, this tern reads {RAW_VERSION}"));
    }
    let recording_id = RecordingId::new(le_i64(data, 16));
    let mut records = Vec::new();
    let mut at = RAW_FILE_HEADER;
    while data.len() - at >= RAW_RECORD_HEADER {
        let length = le_u32(data, at) as usize;
        if length > RAW_MAX_PAYLOAD || data.len() - at - RAW_RECORD_HEADER < length {
            break;
        }
        let end = at + RAW_RECORD_HEADER + length;
        if crc32c::crc32c(&data[at + 8..end]) != le_u32(data, at + 4) {
            break;
        }
        let has_key = le_u32(data, at + 24) & 1 == 1;
        records.push(SinkRecord {
            position: le_i64(data, at + 8),
            timestamp_ns: le_i64(data, at + 16),
            key: has_key.then(|| le_i64(data, at + 32)),
            payload: data[at + RAW_RECORD_HEADER..end].to_vec(),
        });
        at = end;
    }
    Ok((recording_id, records, at))
}

fn last_raw_record(data: &[u8], path: &Path) -> Result<Option<(u64, Resume)>, SinkError> {
    let (recording_id, records, whole) = parse_raw(data).map_err(|error| {
        SinkError::Fatal(format!(
            "{} is not a raw sink file: {error}",
            path.display()
        ))
    })?;
    Ok(records.last().map(|last| {
        (
            whole as u64,
            Resume {
                recording_id,
                position: last.position,
            },
        )
    }))
}

/// Where the data of a sink's directory ends, read only (the files are not cut, the lock is
/// not taken): the last whole record of the last file that holds one.
///
/// # Errors
/// A file cannot be read or is not a sink's.
pub fn peek(dir: &Path, format: FileFormat) -> Result<Option<Resume>, String> {
    if !dir.is_dir() {
        return Err(format!("{}: no such directory", dir.display()));
    }
    let files = FileDestination::files(dir, format)
        .map_err(|error| format!("{}: {error}", dir.display()))?;
    for path in files.iter().rev() {
        let data = std::fs::read(path).map_err(|error| format!("{}: {error}", path.display()))?;
        let last = last_record(&data, path, format).map_err(|error| error.to_string())?;
        if let Some((_, resume)) = last {
            return Ok(Some(resume));
        }
    }
    Ok(None)
}

/// Every whole record in a sink's directory, in order (for tests and tools): the torn tail of
/// the last file (an append cut by a crash, or one in progress) is left out, as opening the
/// sink would cut it.
///
/// # Errors
/// A file cannot be read or is not a sink's.
pub fn read_all(dir: &Path, format: FileFormat) -> Result<Vec<StoredRecord>, String> {
    let files = FileDestination::files(dir, format)
        .map_err(|error| format!("{}: {error}", dir.display()))?;
    let mut all = Vec::new();
    for path in files {
        let mut data = Vec::new();
        File::open(&path)
            .and_then(|mut file| file.read_to_end(&mut data))
            .map_err(|error| format!("{}: {error}", path.display()))?;
        match format {
            FileFormat::JsonLines { .. } => {
                // Only what ends with a newline is a whole line.
                let whole = data
                    .iter()
                    .rposition(|&byte| byte == b'\n')
                    .map_or(0, |end| end + 1);
                for (number, line) in data[..whole].split(|&byte| byte == b'\n').enumerate() {
                    if line.is_empty() {
                        continue;
                    }
                    all.push(parse_json_record(line).map_err(|error| {
                        format!("{} line {}: {error}", path.display(), number + 1)
                    })?);
                }
            }
            FileFormat::Raw => {
                let (recording_id, records, _) =
                    parse_raw(&data).map_err(|error| format!("{}: {error}", path.display()))?;
                all.extend(records.into_iter().map(|record| StoredRecord {
                    recording_id,
                    record,
                }));
            }
        }
    }
    Ok(all)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(recording: i64, positions: &[i64]) -> Batch {
        let mut batch = Batch::new(RecordingId::new(recording), 0);
        for &position in positions {
            let payload = format!("message at {position}").into_bytes();
            batch.payload_bytes += payload.len();
            batch.records.push(SinkRecord {
                position,
                timestamp_ns: position * 10,
                key: (position % 2 == 0).then_some(position / 2),
                payload,
            });
        }
        batch.end_position = *positions.last().unwrap_or(&0);
        batch
    }

    fn formats() -> [FileFormat; 3] {
        [
            FileFormat::JsonLines { text: false },
            FileFormat::JsonLines { text: true },
            FileFormat::Raw,
        ]
    }

    #[test]
    fn records_round_trip_and_rotate_in_every_format() {
        for format in formats() {
            let dir = tempfile::tempdir().expect("dir");
            let mut config = FileConfig::new(dir.path());
            config.format = format;
            config.max_file_bytes = 200;
            let mut sink = FileDestination::new(config.clone());
            assert_eq!(sink.open().expect("open"), None);
            let mut written = Vec::new();
            for chunk in [[64, 128, 192], [256, 320, 384], [448, 512, 576]] {
                let batch = batch(4, &chunk);
                sink.write(&batch).expect("write");
                written.extend(batch.records);
            }
            let files = FileDestination::files(dir.path(), format).expect("files");
            assert!(files.len() >= 2, "{format:?}: rotated by size: {files:?}");
            let read: Vec<_> = read_all(dir.path(), format)
                .expect("read")
                .into_iter()
                .map(|stored| stored.record)
                .collect();
            assert_eq!(read, written, "{format:?}");
            drop(sink);
            let mut again = FileDestination::new(config);
            let resume = again.open().expect("reopen");
            assert_eq!(
                resume,
                Some(Resume {
                    recording_id: RecordingId::new(4),
                    position: 576
                })
            );
        }
    }

    #[test]
    fn a_torn_last_record_is_cut_and_an_empty_last_file_removed() {
        for format in formats() {
            let dir = tempfile::tempdir().expect("dir");
            let mut config = FileConfig::new(dir.path());
            config.format = format;
            config.max_file_bytes = 1;
            let mut sink = FileDestination::new(config.clone());
            sink.open().expect("open");
            sink.write(&batch(1, &[64, 128])).expect("write");
            sink.write(&batch(1, &[192, 256])).expect("write");
            drop(sink);
            let files = FileDestination::files(dir.path(), format).expect("files");
            let last = files.last().expect("a file");
            // Tear the last record: keep all but its last 5 bytes.
            let data = std::fs::read(last).expect("read");
            std::fs::write(last, &data[..data.len() - 5]).expect("tear");
            let mut sink = FileDestination::new(config.clone());
            let resume = sink.open().expect("reopen").expect("records");
            assert_eq!(resume.position, 192, "{format:?}");
            sink.write(&batch(1, &[256])).expect("write again");
            drop(sink);
            let positions: Vec<_> = read_all(dir.path(), format)
                .expect("read")
                .iter()
                .map(|stored| stored.record.position)
                .collect();
            assert_eq!(positions, [64, 128, 192, 256], "{format:?}");
            // A new file that got no whole record is removed.
            let torn = dir
                .path()
                .join(format!("sink-{:020}.{}", 999, format.extension()));
            std::fs::write(&torn, b"{\"recor").expect("torn file");
            let mut sink = FileDestination::new(config);
            assert_eq!(sink.open().expect("reopen").map(|r| r.position), Some(256));
            assert!(!torn.exists());
        }
    }

    #[test]
    fn a_damaged_file_another_recording_or_a_second_sink_is_refused() {
        let dir = tempfile::tempdir().expect("dir");
        let config = FileConfig::new(dir.path());
        let mut sink = FileDestination::new(config.clone());
        sink.open().expect("open");
        sink.write(&batch(1, &[64])).expect("write");
        let error = sink
            .write(&batch(2, &[128]))
            .expect_err("another recording");
        assert!(
            matches!(error, SinkError::Fatal(ref text) if text.contains("holds recording 1")),
            "{error}"
        );
        let mut second = FileDestination::new(config.clone());
        let error = second.open().expect_err("locked");
        assert!(
            matches!(error, SinkError::Fatal(ref text) if text.contains("in use")),
            "{error}"
        );
        drop(sink);
        let files = FileDestination::files(dir.path(), config.format).expect("files");
        std::fs::write(&files[0], b"not json\n").expect("damage");
        let error = FileDestination::new(config.clone())
            .open()
            .expect_err("damaged");
        assert!(
            matches!(error, SinkError::Fatal(ref text) if text.contains("not a sink record")),
            "{error}"
        );
        let mut raw = config;
        raw.format = FileFormat::Raw;
        let error = FileDestination::new(raw).open().expect_err("other format");
        assert!(
            matches!(error, SinkError::Fatal(ref text) if text.contains("other format")),
            "{error}"
        );
    }

    #[test]
    fn json_payloads_are_text_only_when_asked_and_valid() {
        let record = SinkRecord {
            position: 64,
            timestamp_ns: 1,
            key: None,
            payload: b"he said \"hi\"\n".to_vec(),
        };
        let mut out = Vec::new();
        encode_json(
            &mut out,
            &mut String::new(),
            RecordingId::new(0),
            &record,
            true,
        );
        let line = std::str::from_utf8(&out).expect("utf8");
        assert!(line.contains("\"encoding\":\"utf8\""), "{line}");
        assert_eq!(
            out.iter().filter(|&&byte| byte == b'\n').count(),
            1,
            "escaped newline"
        );
        assert_eq!(
            parse_json_record(&out[..out.len() - 1])
                .expect("parse")
                .record,
            record
        );
        let binary = SinkRecord {
            payload: vec![0xff, 0, 1],
            ..record
        };
        out.clear();
        encode_json(
            &mut out,
            &mut String::new(),
            RecordingId::new(0),
            &binary,
            true,
        );
        assert!(std::str::from_utf8(&out)
            .expect("utf8")
            .contains("\"encoding\":\"base64\""));
        assert_eq!(
            parse_json_record(&out[..out.len() - 1])
                .expect("parse")
                .record,
            binary
        );
    }
}
