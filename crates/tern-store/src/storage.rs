//! The storage backend: the file operations tern-store's writers and readers make, behind one
//! trait, so that the same record and replay code runs on the real disk, on a simulated disk that
//! tells live bytes from durable ones (a crash keeps only what was synced), and on a disk that
//! fails on purpose (a short write, `ENOSPC`, `EIO`).
//!
//! - [`Disk`]: the real file system (`pread`/`pwrite`, `fdatasync`, `fallocate`, `O_DIRECT`,
//!   `rename`, a directory's `fsync`).
//! - [`SimDisk`]: in memory. Each file has its live bytes (what a reader of the running process
//!   sees) and its durable bytes (what a power loss keeps: the live bytes as of its last sync);
//!   each directory has its live and its durable names (a created, renamed or removed name is
//!   durable once its directory is synced). [`SimDisk::crash`] is the disk a restarted process
//!   finds; [`SimDisk::freeze_after_syncs`] makes the crash land exactly at the Nth sync from now.
//! - [`FaultDisk`]: wraps another backend and fails the Nth write (short, `ENOSPC` or `EIO`), the
//!   Nth sync (`EIO`), or every write past a space budget (`ENOSPC`), optionally only for file
//!   names with a given ending.
//!
//! Errors are `std::io::Error`, as the operating system gives them; the callers add the path and
//! what they were doing ([`crate::io_error`]).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

/// How to open a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct OpenOptions {
    /// Open for writing as well as reading.
    pub write: bool,
    /// Create the file if it does not exist.
    pub create: bool,
    /// Create the file, failing (`AlreadyExists`) if it exists.
    pub create_new: bool,
    /// Ask for direct I/O (`O_DIRECT`): page-aligned buffers, offsets and lengths. A backend that
    /// cannot gives a file with [`StorageFile::is_direct`] false instead of failing.
    pub direct: bool,
}

impl OpenOptions {
    /// Read only.
    pub fn read() -> Self {
        Self::default()
    }

    /// Read and write an existing file.
    pub fn read_write() -> Self {
        Self {
            write: true,
            ..Self::default()
        }
    }

    /// Read and write a new file, which must not exist.
    pub fn create_new() -> Self {
        Self {
            write: true,
            create_new: true,
            ..Self::default()
        }
    }

    /// Read and write, creating the file if it does not exist.
    pub fn create() -> Self {
        Self {
            write: true,
            create: true,
            ..Self::default()
        }
    }

    /// The same, with direct I/O asked for.
    pub fn direct(self, direct: bool) -> Self {
        Self { direct, ..self }
    }
}

/// A hint about how a range of a file will be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Advice {
    /// Read in random order: no read-ahead.
    Random,
    /// Will be read soon: read it in the background.
    WillNeed,
}

/// An open file.
pub trait StorageFile: Send + Sync + fmt::Debug {
    /// Read at `offset`; returns the bytes read, 0 at the end of the file.
    fn read_at(&self, buffer: &mut [u8], offset: u64) -> io::Result<usize>;
    /// Write at `offset`; returns the bytes written, which may be fewer than given.
    fn write_at(&self, buffer: &[u8], offset: u64) -> io::Result<usize>;
    /// Make the file's data durable (`fdatasync`).
    fn sync_data(&self) -> io::Result<()>;
    /// Cut or extend the file to `length` bytes (zeroes past the old end).
    fn set_len(&self, length: u64) -> io::Result<()>;
    /// Reserve blocks for the first `length` bytes (`fallocate`; `set_len` where the file system
    /// cannot). Never shortens the file.
    fn allocate(&self, length: u64) -> io::Result<()>;
    /// The file's length.
    fn len(&self) -> io::Result<u64>;
    /// Whether the file is empty.
    fn is_empty(&self) -> io::Result<bool> {
        Ok(self.len()? == 0)
    }
    /// Whether the file was opened for direct I/O.
    fn is_direct(&self) -> bool {
        false
    }
    /// A read-ahead hint for `length` bytes at `offset` (0: to the end); backends may ignore it.
    fn advise(&self, _offset: u64, _length: u64, _advice: Advice) {}

    /// Write all of `buffer` at `offset`, continuing after short writes.
    ///
    /// # Errors
    /// The write fails, or writes nothing (`WriteZero`).
    fn write_all_at(&self, mut buffer: &[u8], mut offset: u64) -> io::Result<()> {
        while !buffer.is_empty() {
            match self.write_at(buffer, offset) {
                Ok(0) => return Err(io::Error::from(io::ErrorKind::WriteZero)),
                Ok(written) => {
                    buffer = &buffer[written..];
                    offset += written as u64;
                }
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => return Err(error),
            }
        }
        Ok(())
    }

    /// Read from `offset` until `buffer` is full or the file ends; returns the bytes read.
    ///
    /// # Errors
    /// The read fails.
    fn read_full_at(&self, buffer: &mut [u8], offset: u64) -> io::Result<usize> {
        let mut done = 0;
        while done < buffer.len() {
            match self.read_at(&mut buffer[done..], offset + done as u64) {
                Ok(0) => break,
                Ok(read) => done += read,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => return Err(error),
            }
        }
        Ok(done)
    }

    /// Fill `buffer` from `offset`.
    ///
    /// # Errors
    /// The read fails, or the file ends first (`UnexpectedEof`).
    fn read_exact_at(&self, buffer: &mut [u8], offset: u64) -> io::Result<()> {
        if self.read_full_at(buffer, offset)? < buffer.len() {
            return Err(io::Error::from(io::ErrorKind::UnexpectedEof));
        }
        Ok(())
    }
}

/// A file system: where tern-store's files are.
pub trait Storage: Send + Sync + fmt::Debug {
    /// Open (or create) the file at `path`.
    fn open(&self, path: &Path, options: OpenOptions) -> io::Result<Arc<dyn StorageFile>>;
    /// Rename `from` to `to`, replacing `to`.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Remove the file at `path`.
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    /// Make the names in directory `dir` durable (`fsync` of the directory).
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
    /// Create `dir` and its parents.
    fn create_dir_all(&self, dir: &Path) -> io::Result<()>;
    /// The names of the files in `dir`.
    fn list(&self, dir: &Path) -> io::Result<Vec<String>>;
    /// Whether a file (or directory) is at `path`.
    fn exists(&self, path: &Path) -> bool;
}

/// Where writers run their file jobs (writes and syncs, in order).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Executor {
    /// On a thread of the writer's own, while the caller goes on (the running archive).
    #[default]
    Thread,
    /// On the caller's thread, each job as it is handed over: one thread, deterministic (tests
    /// and simulations).
    Inline,
}

/// The storage a writer or reader uses and where its jobs run.
#[derive(Debug, Clone)]
pub struct Io {
    /// The file system.
    pub storage: Arc<dyn Storage>,
    /// Where writes and syncs run.
    pub executor: Executor,
}

impl Default for Io {
    /// The real disk, an I/O thread per writer.
    fn default() -> Self {
        Self {
            storage: disk(),
            executor: Executor::Thread,
        }
    }
}

impl Io {
    /// `storage` with every job run inline: a simulation's choice.
    pub fn inline(storage: Arc<dyn Storage>) -> Self {
        Self {
            storage,
            executor: Executor::Inline,
        }
    }
}

/// The whole of the file at `path`.
///
/// # Errors
/// It cannot be opened or read.
pub fn read_all(storage: &dyn Storage, path: &Path) -> io::Result<Vec<u8>> {
    let file = storage.open(path, OpenOptions::read())?;
    let mut bytes = vec![0u8; file.len()? as usize];
    let read = file.read_full_at(&mut bytes, 0)?;
    bytes.truncate(read);
    Ok(bytes)
}

/// Make `bytes` the whole of the file at `path` (created, or cut to them), synced.
///
/// # Errors
/// The file cannot be created, written or synced.
pub fn write_whole(storage: &dyn Storage, path: &Path, bytes: &[u8]) -> io::Result<()> {
    let file = storage.open(path, OpenOptions::create())?;
    file.set_len(0)?;
    file.write_all_at(bytes, 0)?;
    file.sync_data()
}

/// The real file system.
#[derive(Debug, Clone, Copy, Default)]
pub struct Disk;

/// The real file system, shared.
pub fn disk() -> Arc<dyn Storage> {
    Arc::new(Disk)
}

#[derive(Debug)]
struct DiskFile {
    file: std::fs::File,
    direct: bool,
}

impl StorageFile for DiskFile {
    fn read_at(&self, buffer: &mut [u8], offset: u64) -> io::Result<usize> {
        std::os::unix::fs::FileExt::read_at(&self.file, buffer, offset)
    }

    fn write_at(&self, buffer: &[u8], offset: u64) -> io::Result<usize> {
        std::os::unix::fs::FileExt::write_at(&self.file, buffer, offset)
    }

    fn sync_data(&self) -> io::Result<()> {
        self.file.sync_data()
    }

    fn set_len(&self, length: u64) -> io::Result<()> {
        self.file.set_len(length)
    }

    fn allocate(&self, length: u64) -> io::Result<()> {
        if self.file.metadata()?.len() >= length {
            return Ok(());
        }
        let fd = std::os::fd::AsRawFd::as_raw_fd(&self.file);
        // SAFETY: plain syscall on a descriptor we own.
        if unsafe { libc::fallocate(fd, 0, 0, length as libc::off_t) } == 0 {
            return Ok(());
        }
        let error = io::Error::last_os_error();
        match error.raw_os_error() {
            Some(libc::EOPNOTSUPP) => self.file.set_len(length),
            _ => Err(error),
        }
    }

    fn len(&self) -> io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }

    fn is_direct(&self) -> bool {
        self.direct
    }

    fn advise(&self, offset: u64, length: u64, advice: Advice) {
        let advice = match advice {
            Advice::Random => libc::POSIX_FADV_RANDOM,
            Advice::WillNeed => libc::POSIX_FADV_WILLNEED,
        };
        let fd = std::os::fd::AsRawFd::as_raw_fd(&self.file);
        // SAFETY: an advice call on a descriptor we own; it changes no memory of ours.
        unsafe {
            libc::posix_fadvise(fd, offset as libc::off_t, length as libc::off_t, advice);
        }
    }
}

impl Storage for Disk {
    fn open(&self, path: &Path, options: OpenOptions) -> io::Result<Arc<dyn StorageFile>> {
        use std::os::unix::fs::OpenOptionsExt;
        let open = |direct: bool, create_new: bool| {
            let mut std_options = std::fs::OpenOptions::new();
            std_options
                .read(true)
                .write(options.write)
                .create(options.create)
                .create_new(create_new);
            if direct {
                std_options.custom_flags(libc::O_DIRECT);
            }
            std_options.open(path)
        };
        let (file, direct) = match open(options.direct, options.create_new) {
            Ok(file) => (file, options.direct),
            // O_DIRECT refused (tmpfs): the file may have been created before it was, so open
            // what is there buffered.
            Err(error) if options.direct && error.raw_os_error() == Some(libc::EINVAL) => {
                (open(false, false)?, false)
            }
            Err(error) => return Err(error),
        };
        Ok(Arc::new(DiskFile { file, direct }))
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        std::fs::File::open(dir)?.sync_all()
    }

    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        std::fs::create_dir_all(dir)
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            if let Some(name) = entry?.file_name().to_str() {
                names.push(name.to_string());
            }
        }
        Ok(names)
    }

    fn exists(&self, path: &Path) -> bool {
        path.exists()
    }
}

/// An in-memory disk that knows what a crash would keep. Clones share the disk.
#[derive(Debug, Clone, Default)]
pub struct SimDisk {
    state: Arc<Mutex<SimState>>,
}

#[derive(Debug, Default, Clone)]
struct SimInode {
    live: Vec<u8>,
    durable: Vec<u8>,
}

#[derive(Debug, Default)]
struct SimState {
    inodes: BTreeMap<u64, SimInode>,
    live_names: BTreeMap<PathBuf, u64>,
    durable_names: BTreeMap<PathBuf, u64>,
    dirs: BTreeSet<PathBuf>,
    next_inode: u64,
    /// Syncs (of files and of directories) so far.
    syncs: u64,
    /// Syncs after this many no longer make anything durable.
    frozen_after: Option<u64>,
    /// The live bytes of every file when the first sync past `frozen_after` was asked for: the
    /// moment of the crash. What was written by then may be torn; what came after never was.
    at_crash: Option<BTreeMap<u64, Vec<u8>>>,
}

impl SimState {
    /// Count a sync; whether it takes effect.
    fn sync_counts(&mut self) -> bool {
        self.syncs += 1;
        let counts = self.frozen_after.is_none_or(|limit| self.syncs <= limit);
        if !counts && self.at_crash.is_none() {
            let live = self
                .inodes
                .iter()
                .map(|(inode, file)| (*inode, file.live.clone()))
                .collect();
            self.at_crash = Some(live);
        }
        counts
    }
}

fn not_found(path: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        format!("{}: no such file", path.display()),
    )
}

impl SimDisk {
    /// An empty disk.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, SimState> {
        // A test that panicked while holding it leaves nothing half-changed worth refusing.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The disk a process restarted after a power loss finds: the durable names, each with its
    /// durable bytes. This disk is left as it is (the dead process's files still write to it).
    pub fn crash(&self) -> SimDisk {
        let state = self.lock();
        let mut inodes = BTreeMap::new();
        for inode in state.durable_names.values() {
            if let Some(file) = state.inodes.get(inode) {
                inodes.insert(
                    *inode,
                    SimInode {
                        live: file.durable.clone(),
                        durable: file.durable.clone(),
                    },
                );
            }
        }
        SimDisk {
            state: Arc::new(Mutex::new(SimState {
                inodes,
                live_names: state.durable_names.clone(),
                durable_names: state.durable_names.clone(),
                dirs: state.dirs.clone(),
                next_inode: state.next_inode,
                syncs: 0,
                frozen_after: None,
                at_crash: None,
            })),
        }
    }

    /// [`crash`](Self::crash), with a torn write: of each file's bytes that were written but not
    /// synced, the first `bytes` (in file order) reached the device anyway, as the first sectors
    /// of a write can before the power goes. On a frozen disk only what was written before the
    /// crash (the first sync past the freeze) can be torn.
    pub fn crash_torn(&self, bytes: usize) -> SimDisk {
        let crashed = self.crash();
        let state = self.lock();
        let mut after = crashed.lock();
        for inode in state.durable_names.values() {
            let (Some(file), Some(kept)) = (state.inodes.get(inode), after.inodes.get_mut(inode))
            else {
                continue;
            };
            let live = state
                .at_crash
                .as_ref()
                .and_then(|at_crash| at_crash.get(inode))
                .unwrap_or(&file.live);
            let mut left = bytes;
            for (offset, byte) in live.iter().enumerate() {
                if left == 0 {
                    break;
                }
                if file.durable.get(offset) != Some(byte) {
                    if kept.live.len() <= offset {
                        kept.live.resize(offset + 1, 0);
                    }
                    kept.live[offset] = *byte;
                    left -= 1;
                }
            }
            kept.durable = kept.live.clone();
        }
        drop(after);
        crashed
    }

    /// From now on, only the next `syncs` syncs take effect: a later [`crash`](Self::crash) finds
    /// the disk as it was just after the last of them, whatever the process did since.
    pub fn freeze_after_syncs(&self, syncs: u64) {
        let mut state = self.lock();
        state.frozen_after = Some(state.syncs + syncs);
    }

    /// Syncs (of files and directories) made so far.
    pub fn syncs(&self) -> u64 {
        self.lock().syncs
    }

    /// The live bytes of the file at `path`, if there is one.
    pub fn contents(&self, path: &Path) -> Option<Vec<u8>> {
        let state = self.lock();
        let inode = state.live_names.get(path)?;
        state.inodes.get(inode).map(|file| file.live.clone())
    }
}

#[derive(Debug)]
struct SimFile {
    disk: SimDisk,
    inode: u64,
    writable: bool,
    /// Direct I/O was asked for: the writer lays out pages as it would on a real disk.
    direct: bool,
}

impl SimFile {
    fn with<T>(&self, f: impl FnOnce(&mut SimState, u64) -> T) -> T {
        let mut state = self.disk.lock();
        f(&mut state, self.inode)
    }

    fn check_writable(&self) -> io::Result<()> {
        if self.writable {
            Ok(())
        } else {
            Err(io::Error::from_raw_os_error(libc::EBADF))
        }
    }
}

impl StorageFile for SimFile {
    fn read_at(&self, buffer: &mut [u8], offset: u64) -> io::Result<usize> {
        self.with(|state, inode| {
            let live = &state.inodes[&inode].live;
            let start = (offset as usize).min(live.len());
            let length = buffer.len().min(live.len() - start);
            buffer[..length].copy_from_slice(&live[start..start + length]);
            Ok(length)
        })
    }

    fn write_at(&self, buffer: &[u8], offset: u64) -> io::Result<usize> {
        self.check_writable()?;
        self.with(|state, inode| {
            let live = &mut state.inodes.get_mut(&inode).expect("open inode").live;
            let end = offset as usize + buffer.len();
            if live.len() < end {
                live.resize(end, 0);
            }
            live[offset as usize..end].copy_from_slice(buffer);
            Ok(buffer.len())
        })
    }

    fn sync_data(&self) -> io::Result<()> {
        self.with(|state, inode| {
            if state.sync_counts() {
                let file = state.inodes.get_mut(&inode).expect("open inode");
                file.durable = file.live.clone();
            }
            Ok(())
        })
    }

    fn set_len(&self, length: u64) -> io::Result<()> {
        self.check_writable()?;
        self.with(|state, inode| {
            let file = state.inodes.get_mut(&inode).expect("open inode");
            file.live.resize(length as usize, 0);
            Ok(())
        })
    }

    fn allocate(&self, length: u64) -> io::Result<()> {
        self.check_writable()?;
        self.with(|state, inode| {
            let file = state.inodes.get_mut(&inode).expect("open inode");
            if (file.live.len() as u64) < length {
                file.live.resize(length as usize, 0);
            }
            Ok(())
        })
    }

    fn len(&self) -> io::Result<u64> {
        self.with(|state, inode| Ok(state.inodes[&inode].live.len() as u64))
    }

    fn is_direct(&self) -> bool {
        self.direct
    }
}

impl Storage for SimDisk {
    fn open(&self, path: &Path, options: OpenOptions) -> io::Result<Arc<dyn StorageFile>> {
        let mut state = self.lock();
        let existing = state.live_names.get(path).copied();
        let inode = match existing {
            Some(_) if options.create_new => {
                return Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    format!("{}: file exists", path.display()),
                ))
            }
            Some(inode) => inode,
            None if options.create || options.create_new => {
                let parent = path.parent().unwrap_or(Path::new(""));
                if !parent.as_os_str().is_empty() && !state.dirs.contains(parent) {
                    return Err(not_found(parent));
                }
                let inode = state.next_inode;
                state.next_inode += 1;
                state.inodes.insert(inode, SimInode::default());
                state.live_names.insert(path.to_path_buf(), inode);
                inode
            }
            None => return Err(not_found(path)),
        };
        Ok(Arc::new(SimFile {
            disk: self.clone(),
            inode,
            writable: options.write,
            direct: options.direct,
        }))
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut state = self.lock();
        let inode = state
            .live_names
            .remove(from)
            .ok_or_else(|| not_found(from))?;
        state.live_names.insert(to.to_path_buf(), inode);
        Ok(())
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        let mut state = self.lock();
        state
            .live_names
            .remove(path)
            .map(|_| ())
            .ok_or_else(|| not_found(path))
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let mut state = self.lock();
        if !state.dirs.contains(dir) {
            return Err(not_found(dir));
        }
        if !state.sync_counts() {
            return Ok(());
        }
        let in_dir = |path: &PathBuf| path.parent() == Some(dir);
        let live: Vec<(PathBuf, u64)> = state
            .live_names
            .iter()
            .filter(|(path, _)| in_dir(path))
            .map(|(path, inode)| (path.clone(), *inode))
            .collect();
        state.durable_names.retain(|path, _| !in_dir(path));
        state.durable_names.extend(live);
        Ok(())
    }

    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        let mut state = self.lock();
        for ancestor in dir.ancestors() {
            if !ancestor.as_os_str().is_empty() {
                state.dirs.insert(ancestor.to_path_buf());
            }
        }
        Ok(())
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let state = self.lock();
        if !state.dirs.contains(dir) {
            return Err(not_found(dir));
        }
        Ok(state
            .live_names
            .keys()
            .filter(|path| path.parent() == Some(dir))
            .filter_map(|path| path.file_name()?.to_str().map(str::to_string))
            .collect())
    }

    fn exists(&self, path: &Path) -> bool {
        let state = self.lock();
        state.live_names.contains_key(path) || state.dirs.contains(path)
    }
}

/// How a write fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteFault {
    /// Only this many bytes are written (a short write; the caller must go on or fail).
    Short(usize),
    /// `ENOSPC`, nothing written.
    NoSpace,
    /// `EIO`, nothing written.
    Io,
}

#[derive(Debug, Default)]
struct FaultPlan {
    /// Only files whose names end so are affected (`None`: all).
    suffix: Option<String>,
    writes: u64,
    syncs: u64,
    write_faults: BTreeMap<u64, WriteFault>,
    sync_faults: BTreeSet<u64>,
    /// Bytes that may still be added past files' ends before writes fail with `ENOSPC`.
    space: Option<u64>,
    /// Faults delivered so far.
    delivered: u64,
}

/// A backend that fails on purpose, wrapping another. Clones share the plan.
#[derive(Debug, Clone)]
pub struct FaultDisk {
    inner: Arc<dyn Storage>,
    plan: Arc<Mutex<FaultPlan>>,
}

impl FaultDisk {
    /// Faults on top of `inner`; none planned yet.
    pub fn new(inner: Arc<dyn Storage>) -> Self {
        Self {
            inner,
            plan: Arc::new(Mutex::new(FaultPlan::default())),
        }
    }

    fn plan(&self) -> MutexGuard<'_, FaultPlan> {
        self.plan
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Only files whose names end with `suffix` (".rec", "catalog.tern") count and fail.
    pub fn only_files_ending(self, suffix: &str) -> Self {
        self.plan().suffix = Some(suffix.to_string());
        self
    }

    /// The `nth` write from now (1: the next) fails with `fault`.
    pub fn fail_write(self, nth: u64, fault: WriteFault) -> Self {
        {
            let mut plan = self.plan();
            let at = plan.writes + nth;
            plan.write_faults.insert(at, fault);
        }
        self
    }

    /// The `nth` sync from now (1: the next) fails with `EIO`.
    pub fn fail_sync(self, nth: u64) -> Self {
        {
            let mut plan = self.plan();
            let at = plan.syncs + nth;
            plan.sync_faults.insert(at);
        }
        self
    }

    /// Files may grow by `bytes` in all from now; a write that would grow them more fails with
    /// `ENOSPC` (nothing written), as on a full disk.
    pub fn space_left(self, bytes: u64) -> Self {
        self.plan().space = Some(bytes);
        self
    }

    /// Faults delivered so far.
    pub fn delivered(&self) -> u64 {
        self.plan().delivered
    }
}

#[derive(Debug)]
struct FaultFile {
    inner: Arc<dyn StorageFile>,
    plan: Arc<Mutex<FaultPlan>>,
    counted: bool,
}

impl FaultFile {
    fn plan(&self) -> MutexGuard<'_, FaultPlan> {
        self.plan
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl StorageFile for FaultFile {
    fn read_at(&self, buffer: &mut [u8], offset: u64) -> io::Result<usize> {
        self.inner.read_at(buffer, offset)
    }

    fn write_at(&self, buffer: &[u8], offset: u64) -> io::Result<usize> {
        if !self.counted {
            return self.inner.write_at(buffer, offset);
        }
        let mut buffer = buffer;
        {
            let mut plan = self.plan();
            plan.writes += 1;
            let at = plan.writes;
            if let Some(fault) = plan.write_faults.remove(&at) {
                plan.delivered += 1;
                match fault {
                    WriteFault::Short(bytes) => buffer = &buffer[..bytes.min(buffer.len())],
                    WriteFault::NoSpace => return Err(io::Error::from_raw_os_error(libc::ENOSPC)),
                    WriteFault::Io => return Err(io::Error::from_raw_os_error(libc::EIO)),
                }
            }
            if let Some(space) = plan.space {
                let end = offset + buffer.len() as u64;
                let growth = end.saturating_sub(self.inner.len()?);
                if growth > space {
                    plan.delivered += 1;
                    return Err(io::Error::from_raw_os_error(libc::ENOSPC));
                }
                plan.space = Some(space - growth);
            }
        }
        self.inner.write_at(buffer, offset)
    }

    fn sync_data(&self) -> io::Result<()> {
        if self.counted {
            let mut plan = self.plan();
            plan.syncs += 1;
            let at = plan.syncs;
            if plan.sync_faults.remove(&at) {
                plan.delivered += 1;
                return Err(io::Error::from_raw_os_error(libc::EIO));
            }
        }
        self.inner.sync_data()
    }

    fn set_len(&self, length: u64) -> io::Result<()> {
        self.inner.set_len(length)
    }

    fn allocate(&self, length: u64) -> io::Result<()> {
        if self.counted {
            let mut plan = self.plan();
            if let Some(space) = plan.space {
                let growth = length.saturating_sub(self.inner.len()?);
                if growth > space {
                    plan.delivered += 1;
                    return Err(io::Error::from_raw_os_error(libc::ENOSPC));
                }
                plan.space = Some(space - growth);
            }
        }
        self.inner.allocate(length)
    }

    fn len(&self) -> io::Result<u64> {
        self.inner.len()
    }

    fn is_direct(&self) -> bool {
        self.inner.is_direct()
    }

    fn advise(&self, offset: u64, length: u64, advice: Advice) {
        self.inner.advise(offset, length, advice);
    }
}

impl Storage for FaultDisk {
    fn open(&self, path: &Path, options: OpenOptions) -> io::Result<Arc<dyn StorageFile>> {
        let inner = self.inner.open(path, options)?;
        let counted = match &self.plan().suffix {
            Some(suffix) => path.to_str().is_some_and(|name| name.ends_with(suffix)),
            None => true,
        };
        Ok(Arc::new(FaultFile {
            inner,
            plan: self.plan.clone(),
            counted,
        }))
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.inner.rename(from, to)
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.inner.remove_file(path)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        self.inner.sync_dir(dir)
    }

    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        self.inner.create_dir_all(dir)
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        self.inner.list(dir)
    }

    fn exists(&self, path: &Path) -> bool {
        self.inner.exists(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir() -> PathBuf {
        PathBuf::from("/archive")
    }

    fn sim() -> SimDisk {
        let disk = SimDisk::new();
        disk.create_dir_all(&dir()).expect("dir");
        disk
    }

    #[test]
    fn a_crash_keeps_synced_bytes_under_synced_names_only() {
        let disk = sim();
        let path = dir().join("0-0.rec");
        let file = disk.open(&path, OpenOptions::create_new()).expect("create");
        file.write_all_at(b"durable", 0).expect("write");
        file.sync_data().expect("sync");
        // The name is not durable yet: a crash loses the file.
        assert_eq!(disk.crash().contents(&path), None);
        disk.sync_dir(&dir()).expect("sync dir");
        file.write_all_at(b"-live", 7).expect("write");
        assert_eq!(disk.contents(&path).as_deref(), Some(&b"durable-live"[..]));
        let after = disk.crash();
        assert_eq!(after.contents(&path).as_deref(), Some(&b"durable"[..]));
        // A rename is durable with its directory's sync.
        let moved = dir().join("catalog.tern");
        disk.rename(&path, &moved).expect("rename");
        let crashed = disk.crash();
        assert!(crashed.contents(&moved).is_none() && crashed.contents(&path).is_some());
        disk.sync_dir(&dir()).expect("sync dir");
        let crashed = disk.crash();
        assert!(crashed.contents(&moved).is_some() && crashed.contents(&path).is_none());
        assert_eq!(
            crashed.list(&dir()).expect("list"),
            vec!["catalog.tern".to_string()]
        );
    }

    #[test]
    fn a_frozen_disk_crashes_at_the_nth_sync() {
        let disk = sim();
        let path = dir().join("log");
        let file = disk.open(&path, OpenOptions::create_new()).expect("create");
        disk.sync_dir(&dir()).expect("sync dir");
        disk.freeze_after_syncs(2);
        for (round, bytes) in [b"a", b"b", b"c", b"d"].iter().enumerate() {
            file.write_all_at(*bytes, round as u64).expect("write");
            file.sync_data().expect("sync");
        }
        assert_eq!(disk.contents(&path).as_deref(), Some(&b"abcd"[..]));
        assert_eq!(disk.crash().contents(&path).as_deref(), Some(&b"ab"[..]));
        assert_eq!(disk.syncs(), 5);
    }

    #[test]
    fn create_new_refuses_an_existing_file_and_open_a_missing_one() {
        let disk = sim();
        let path = dir().join("x");
        disk.open(&path, OpenOptions::create_new()).expect("create");
        let exists = disk
            .open(&path, OpenOptions::create_new())
            .expect_err("exists");
        assert_eq!(exists.kind(), io::ErrorKind::AlreadyExists);
        let missing = disk
            .open(&dir().join("y"), OpenOptions::read())
            .expect_err("missing");
        assert_eq!(missing.kind(), io::ErrorKind::NotFound);
        let read_only = disk.open(&path, OpenOptions::read()).expect("open");
        assert!(read_only.write_at(b"z", 0).is_err());
    }

    #[test]
    fn faults_hit_the_planned_write_and_sync_and_the_space_budget() {
        let base = sim();
        let faults = FaultDisk::new(Arc::new(base.clone()))
            .only_files_ending(".rec")
            .fail_write(2, WriteFault::Short(3))
            .fail_write(3, WriteFault::NoSpace)
            .fail_sync(1);
        let segment = faults
            .open(&dir().join("0-0.rec"), OpenOptions::create_new())
            .expect("create");
        let other = faults
            .open(&dir().join("catalog.tern"), OpenOptions::create_new())
            .expect("create");
        other.write_all_at(b"not counted", 0).expect("write");
        other.sync_data().expect("not counted");
        assert_eq!(segment.write_at(b"first", 0).expect("write"), 5);
        assert_eq!(segment.write_at(b"second", 5).expect("short"), 3);
        let full = segment.write_at(b"third", 8).expect_err("no space");
        assert_eq!(full.raw_os_error(), Some(libc::ENOSPC));
        let sync = segment.sync_data().expect_err("eio");
        assert_eq!(sync.raw_os_error(), Some(libc::EIO));
        segment.sync_data().expect("the next sync works");
        assert_eq!(faults.delivered(), 3);
        assert_eq!(
            base.contents(&dir().join("0-0.rec")).as_deref(),
            Some(&b"firstsec"[..])
        );

        let budget = FaultDisk::new(Arc::new(base.clone())).space_left(10);
        let file = budget
            .open(&dir().join("1-0.rec"), OpenOptions::create_new())
            .expect("create");
        file.write_all_at(&[1; 8], 0).expect("fits");
        file.write_all_at(&[2; 8], 0)
            .expect("overwrites grow nothing");
        let error = file.write_all_at(&[3; 4], 8).expect_err("past the budget");
        assert_eq!(error.raw_os_error(), Some(libc::ENOSPC));
    }

    #[test]
    fn the_real_disk_round_trips_and_falls_back_from_direct_io() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("0-0.rec");
        let file = Disk
            .open(&path, OpenOptions::create_new().direct(true))
            .expect("create");
        file.allocate(8192).expect("allocate");
        assert_eq!(file.len().expect("len"), 8192);
        let page = crate::segment::AlignedBuffer::new(4096);
        file.write_all_at(page.as_slice(), 4096).expect("write");
        file.sync_data().expect("sync");
        Disk.sync_dir(dir.path()).expect("sync dir");
        let mut back = [1u8; 16];
        Disk.open(&path, OpenOptions::read())
            .expect("open")
            .read_exact_at(&mut back, 4096)
            .expect("read");
        assert_eq!(back, [0; 16]);
        assert_eq!(Disk.list(dir.path()).expect("list"), vec!["0-0.rec"]);
        Disk.rename(&path, &dir.path().join("1-0.rec"))
            .expect("rename");
        assert!(Disk.exists(&dir.path().join("1-0.rec")));
    }
}
