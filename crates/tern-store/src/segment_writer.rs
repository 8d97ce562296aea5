//! Writes one recording's frames into its segment files.
//!
//! Frames are copied from the image into a page-aligned buffer and stamped with their CRC32C.
//! A full (or flushed) buffer goes to the recording's I/O thread, which writes it with `O_DIRECT`
//! where the file system allows it, while the recorder fills the next buffer: copying and
//! checksumming overlap the disk write, which on its own took two thirds of the time. Full pages
//! leave the buffer; the last, partial page is written padded with zeroes and carried to the next
//! buffer, to be written again with more frames. Writes and syncs run in order on one thread, so
//! a page rewritten later always lands after its earlier version.
//!
//! Direct writes bypass the page cache, whose first-touch cost made buffered writes vary from
//! 0.44 to 1.9 GB/s on the machines tern is measured on, while direct writes held 1.4-2.2 GB/s.
//! Where `O_DIRECT` is refused (tmpfs), the same code writes buffered.
//!
//! Files are reached through a [`Storage`] and jobs run where an [`Io`]'s executor says: on the
//! writer's I/O thread (the default), or inline on the caller's thread, which with a
//! [`crate::SimDisk`] makes a recording's writes and syncs a deterministic sequence.

use crate::error::{io_error, Result, StoreError};
use crate::frame::{stamp_checksums, stamp_checksums_visiting, FrameHeader, HEADER_LENGTH};
use crate::ids::RecordingId;
use crate::indexer::IndexJob;
use crate::key::KeyKind;
use crate::key_index::KeyCollector;
use crate::segment::{page_floor, segment_base, segment_file_name, AlignedBuffer, PAGE};
use crate::storage::{Executor, Io, OpenOptions, Storage, StorageFile};
use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;

/// How segment files are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WriteMode {
    /// `O_DIRECT` where supported, buffered otherwise.
    #[default]
    Direct,
    /// Through the page cache.
    Buffered,
}

/// Where a recording's segments are, and their geometry.
#[derive(Debug, Clone)]
pub struct SegmentGeometry {
    /// The archive directory.
    pub dir: PathBuf,
    /// The recording.
    pub recording_id: RecordingId,
    /// The recording's start position.
    pub start_position: i64,
    /// The stream's term length.
    pub term_length: i64,
    /// The segment file length.
    pub segment_length: i64,
}

impl SegmentGeometry {
    /// The base position of the segment holding `position`.
    pub fn base_of(&self, position: i64) -> i64 {
        segment_base(
            self.start_position,
            position,
            self.term_length,
            self.segment_length,
        )
    }

    /// The path of the segment starting at `base`.
    pub fn path_of(&self, base: i64) -> PathBuf {
        self.dir.join(segment_file_name(self.recording_id, base))
    }
}

struct SegmentFile {
    file: Arc<dyn StorageFile>,
    /// Where it is (its directory is synced through it).
    storage: Arc<dyn Storage>,
    path: PathBuf,
    base: i64,
    direct: bool,
    /// Whether the directory entry of this new file was synced (done with its first sync).
    entry_synced: AtomicBool,
}

/// Buffers a writer cycles through: one being filled, the others being written.
const BUFFERS: usize = 3;

enum Job {
    /// Write `buffer[start..end]` at file offset `offset + start`; the stream reaches `position`.
    Write {
        segment: Arc<SegmentFile>,
        offset: u64,
        buffer: AlignedBuffer,
        start: usize,
        end: usize,
        position: i64,
    },
    /// `fdatasync` the segment; everything written to it before reaches `position`. Then the
    /// companion file (the recording's time index), whose failure is logged, not fatal.
    Sync {
        segment: Arc<SegmentFile>,
        position: i64,
        companion: Option<Arc<(PathBuf, Arc<dyn StorageFile>)>>,
    },
}

enum Done {
    Written {
        buffer: AlignedBuffer,
        position: i64,
    },
    Synced {
        position: i64,
        /// How long the sync took.
        seconds: f64,
    },
    Failed(StoreError),
}

/// Runs a writer's jobs in order, on whichever thread the executor gives it.
#[derive(Default)]
struct JobRunner {
    failed: bool,
}

impl JobRunner {
    /// Run `job`; what finished, or nothing after a failure (the data past it would leave a gap,
    /// so nothing more is written or synced).
    fn run(&mut self, job: Job) -> Option<Done> {
        if self.failed {
            return None;
        }
        let outcome = match job {
            Job::Write {
                segment,
                offset,
                buffer,
                start,
                end,
                position,
            } => match segment
                .file
                .write_all_at(&buffer.as_slice()[start..end], offset + start as u64)
            {
                Ok(()) => Done::Written { buffer, position },
                Err(error) => Done::Failed(io_error(&segment.path, "write segment")(error)),
            },
            Job::Sync {
                segment,
                position,
                companion,
            } => {
                let started = std::time::Instant::now();
                match sync_segment(&segment) {
                    Ok(()) => {
                        let seconds = started.elapsed().as_secs_f64();
                        if let Some(companion) = companion {
                            if let Err(error) = companion.1.sync_data() {
                                tracing::warn!("{}: sync: {error}", companion.0.display());
                            }
                        }
                        Done::Synced { position, seconds }
                    }
                    Err(error) => Done::Failed(error),
                }
            }
        };
        self.failed = matches!(outcome, Done::Failed(_));
        Some(outcome)
    }
}

fn run_jobs(jobs: Receiver<Job>, done: Sender<Done>) {
    let mut runner = JobRunner::default();
    for job in jobs {
        if let Some(outcome) = runner.run(job) {
            if done.send(outcome).is_err() {
                return;
            }
        }
    }
}

/// Where a writer's jobs run.
enum IoQueue {
    /// On the writer's own I/O thread.
    Thread {
        jobs: Option<Sender<Job>>,
        done: Receiver<Done>,
        worker: Option<JoinHandle<()>>,
    },
    /// On the caller's thread, as each is handed over (deterministic: a simulation's choice).
    Inline {
        runner: JobRunner,
        done: VecDeque<Done>,
    },
}

/// Sync a segment's data, and the first time also its directory entry: a new file must survive a
/// power loss along with what was written to it.
fn sync_segment(segment: &SegmentFile) -> Result<()> {
    segment
        .file
        .sync_data()
        .map_err(io_error(&segment.path, "sync segment"))?;
    if !segment.entry_synced.load(Ordering::Relaxed) {
        if let Some(dir) = segment.path.parent() {
            segment
                .storage
                .sync_dir(dir)
                .map_err(io_error(dir, "sync directory"))?;
        }
        segment.entry_synced.store(true, Ordering::Relaxed);
    }
    Ok(())
}

fn open_segment(
    storage: &Arc<dyn Storage>,
    path: &Path,
    base: i64,
    mode: WriteMode,
    preallocate: bool,
    length: i64,
    create: bool,
) -> Result<SegmentFile> {
    // A new file only (unless an extension reopens its recording's segment): a file of the same
    // name is left from another catalog (or a bug), and writing over it would mix stale frames
    // into this recording. Direct I/O where the file system allows it (not tmpfs).
    let options = if create {
        OpenOptions::create_new()
    } else {
        OpenOptions::read_write()
    };
    let file = storage
        .open(path, options.direct(mode == WriteMode::Direct))
        .map_err(io_error(path, "create segment"))?;
    if preallocate {
        if let Err(error) = file.allocate(length as u64) {
            // A file this writer just created goes again, so that nothing is left of a segment
            // that could not be made (on a full disk) and a later try starts afresh.
            if create {
                if let Err(removed) = storage.remove_file(path) {
                    tracing::warn!(
                        "{}: remove after a failed preallocation: {removed}",
                        path.display()
                    );
                }
            }
            return Err(io_error(path, "preallocate segment")(error));
        }
    }
    Ok(SegmentFile {
        direct: file.is_direct(),
        file,
        storage: storage.clone(),
        path: path.to_path_buf(),
        base,
        entry_synced: AtomicBool::new(false),
    })
}

/// Told the seconds each sync of a segment writer took.
pub type SyncObserver = Box<dyn Fn(f64) + Send>;

/// The writer of one recording's segments.
pub struct SegmentWriter {
    geometry: SegmentGeometry,
    mode: WriteMode,
    preallocate: bool,
    segment: Arc<SegmentFile>,
    /// The buffer being filled.
    buffer: AlignedBuffer,
    /// Free buffers.
    spare: Vec<AlignedBuffer>,
    /// Stream position of `buffer[0]`, page aligned relative to the segment base.
    buffer_position: i64,
    /// Valid bytes in the buffer.
    buffer_length: usize,
    /// Bytes at the start of the buffer already handed to the I/O thread (buffered mode writes
    /// only what is new).
    submitted_length: usize,
    /// Position up to which writes are handed to the I/O thread.
    submitted: i64,
    /// Position up to which writes completed.
    flushed: i64,
    /// Position up to which a sync was asked for.
    sync_requested: i64,
    /// Position up to which frames are synced to the device.
    synced: i64,
    writes_in_flight: usize,
    syncs_in_flight: usize,
    /// Data frames appended so far.
    frames: u64,
    io: IoQueue,
    /// Where the files are.
    storage: Arc<dyn Storage>,
    broken: bool,
    /// The segment is full and synced; the next one is created with the next frame.
    roll_pending: bool,
    /// A file synced by the I/O thread after each segment sync (the time index), so it is as
    /// durable as the frames under the fsync policy without a sync on the recorder's thread.
    companion: Option<Arc<(PathBuf, Arc<dyn StorageFile>)>>,
    /// Since when (epoch ns) a write or sync has been in the I/O thread's hands with nothing
    /// finished; 0 when none is. Read by other threads ([`crate::RecordingProgress::io_waiting`]).
    io_waiting_since: Arc<std::sync::atomic::AtomicI64>,
    /// The keys of the current segment's messages, for its key index.
    keys: Option<KeyIndexing>,
    /// Where the time each sync took goes (the archive's `fsync_seconds`).
    sync_latency: Option<SyncObserver>,
}

/// A writer's notes of its messages' keys and where they go when a segment is finished.
struct KeyIndexing {
    collector: KeyCollector,
    jobs: SyncSender<IndexJob>,
    /// Lists the indexer is done with, for the next segments' notes.
    recycled: Receiver<Vec<(i64, u32)>>,
    recycle: Sender<Vec<(i64, u32)>>,
    /// The recording, for a check of its finished segments from their files.
    descriptor: crate::descriptor::RecordingDescriptor,
    /// Where the last finished segment whose notes were dropped (the indexer was behind) ends:
    /// once the indexer has room and the files are written that far, it indexes the recording's
    /// unindexed finished segments from their files.
    unindexed: Option<i64>,
}

impl SegmentWriter {
    /// A writer for a new recording whose first frame will be at `geometry.start_position`.
    /// `buffer_length` is the size of each write (at least 64 KiB + a page).
    ///
    /// # Errors
    /// The first segment file cannot be created.
    pub fn new(
        geometry: SegmentGeometry,
        mode: WriteMode,
        preallocate: bool,
        buffer_length: usize,
    ) -> Result<Self> {
        Self::new_on(&Io::default(), geometry, mode, preallocate, buffer_length)
    }

    /// [`Self::new`] on the storage and executor of `io`.
    ///
    /// # Errors
    /// The first segment file cannot be created.
    pub fn new_on(
        io: &Io,
        geometry: SegmentGeometry,
        mode: WriteMode,
        preallocate: bool,
        buffer_length: usize,
    ) -> Result<Self> {
        let start = geometry.start_position;
        let base = geometry.base_of(start);
        let segment = open_segment(
            &io.storage,
            &geometry.path_of(base),
            base,
            mode,
            preallocate,
            geometry.segment_length,
            true,
        )?;
        Self::starting_at(
            io,
            geometry,
            start,
            segment,
            mode,
            preallocate,
            buffer_length,
        )
    }

    /// A writer that extends a stopped recording from `position`, its stop position: the segment
    /// holding it is opened as it is (created if missing), and the frames of its last partial
    /// page are read back into the buffer, so the first direct write rewrites them unchanged.
    /// Nothing may follow `position` in the files (see `operations::cut_files`).
    ///
    /// # Errors
    /// The segment cannot be opened, created or read.
    pub fn resume(
        geometry: SegmentGeometry,
        position: i64,
        mode: WriteMode,
        preallocate: bool,
        buffer_length: usize,
    ) -> Result<Self> {
        Self::resume_on(
            &Io::default(),
            geometry,
            position,
            mode,
            preallocate,
            buffer_length,
        )
    }

    /// [`Self::resume`] on the storage and executor of `io`.
    ///
    /// # Errors
    /// The segment cannot be opened, created or read.
    pub fn resume_on(
        io: &Io,
        geometry: SegmentGeometry,
        position: i64,
        mode: WriteMode,
        preallocate: bool,
        buffer_length: usize,
    ) -> Result<Self> {
        let base = geometry.base_of(position);
        let path = geometry.path_of(base);
        let exists = io.storage.exists(&path);
        let segment = open_segment(
            &io.storage,
            &path,
            base,
            mode,
            preallocate,
            geometry.segment_length,
            !exists,
        )?;
        let mut writer = Self::starting_at(
            io,
            geometry,
            position,
            segment,
            mode,
            preallocate,
            buffer_length,
        )?;
        if exists && writer.buffer_length > 0 {
            let page = (writer.buffer_position - base) as u64;
            let length = writer.buffer_length;
            io.storage
                .open(&path, OpenOptions::read())
                .and_then(|file| {
                    file.read_exact_at(&mut writer.buffer.as_mut_slice()[..length], page)
                })
                .map_err(io_error(&path, "read segment to extend"))?;
        }
        Ok(writer)
    }

    fn starting_at(
        io: &Io,
        geometry: SegmentGeometry,
        start: i64,
        segment: SegmentFile,
        mode: WriteMode,
        preallocate: bool,
        buffer_length: usize,
    ) -> Result<Self> {
        let base = segment.base;
        let buffer_position = base + page_floor(start - base);
        let buffer_length = buffer_length.max(64 * 1024 + PAGE);
        let queue = match io.executor {
            Executor::Thread => {
                let (jobs, job_queue) = mpsc::channel();
                let (done_sender, done) = mpsc::channel();
                let worker = std::thread::Builder::new()
                    .name(format!("tern-io-{}", geometry.recording_id))
                    .spawn(move || run_jobs(job_queue, done_sender))
                    .map_err(io_error(&geometry.dir, "start the segment I/O thread"))?;
                IoQueue::Thread {
                    jobs: Some(jobs),
                    done,
                    worker: Some(worker),
                }
            }
            Executor::Inline => IoQueue::Inline {
                runner: JobRunner::default(),
                done: VecDeque::new(),
            },
        };
        Ok(Self {
            buffer: AlignedBuffer::new(buffer_length),
            spare: (1..BUFFERS)
                .map(|_| AlignedBuffer::new(buffer_length))
                .collect(),
            geometry,
            mode,
            preallocate,
            segment: Arc::new(segment),
            buffer_position,
            buffer_length: (start - buffer_position) as usize,
            submitted_length: (start - buffer_position) as usize,
            submitted: start,
            flushed: start,
            sync_requested: start,
            synced: start,
            writes_in_flight: 0,
            syncs_in_flight: 0,
            frames: 0,
            io: queue,
            storage: io.storage.clone(),
            broken: false,
            roll_pending: false,
            companion: None,
            io_waiting_since: Arc::new(std::sync::atomic::AtomicI64::new(0)),
            keys: None,
            sync_latency: None,
        })
    }

    /// Note the keys of `kinds` of every message appended from now on, and hand each finished
    /// segment's notes to the indexer (`jobs`), which writes its key index files.
    /// Keep the time since the I/O thread last finished something, while it has work in hand,
    /// in `watch` (a recording's [`crate::RecordingProgress`]).
    pub fn watch_io(&mut self, watch: Arc<std::sync::atomic::AtomicI64>) {
        watch.store(
            self.io_waiting_since.load(Ordering::Acquire),
            Ordering::Release,
        );
        self.io_waiting_since = watch;
    }

    /// Sync `file` (named `path`) on the I/O thread after every segment sync from now on.
    pub fn sync_with(&mut self, path: PathBuf, file: Arc<dyn StorageFile>) {
        self.companion = Some(Arc::new((path, file)));
    }

    /// `descriptor` is the recording's (active) descriptor: segments the indexer had no room for
    /// are indexed from their files once it has.
    pub fn index_keys(
        &mut self,
        kinds: &[KeyKind],
        jobs: SyncSender<IndexJob>,
        descriptor: &crate::descriptor::RecordingDescriptor,
    ) {
        if kinds.is_empty() {
            return;
        }
        let (recycle, recycled) = mpsc::channel();
        self.keys = Some(KeyIndexing {
            collector: KeyCollector::new(kinds, self.segment.base),
            jobs,
            recycled,
            recycle,
            descriptor: descriptor.clone(),
            unindexed: None,
        });
    }

    /// Tell `observer` the seconds each sync takes (a metrics histogram, say).
    pub fn measure_syncs(&mut self, observer: SyncObserver) {
        self.sync_latency = Some(observer);
    }

    /// Hand the current segment's key notes to the indexer: its data ends at `end`. The next
    /// segment's notes start at `next_base`. Never waits unless `wait`: when the indexer is
    /// behind, the segment is left unindexed (a filtered replay scans it; the next start of the
    /// archive or `tern verify` rebuilds its index).
    fn hand_off_keys(&mut self, end: i64, next_base: i64, wait: bool) {
        let recording_id = self.geometry.recording_id;
        // What the I/O thread has written: a check from the files reads no further.
        let flushed = self.flushed;
        let Some(keys) = self.keys.as_mut() else {
            return;
        };
        let recycled = &keys.recycled;
        let next = keys.collector.next(next_base, || recycled.try_recv().ok());
        let collector = std::mem::replace(&mut keys.collector, next);
        let base = collector.base();
        let job = IndexJob::Segment {
            recording_id,
            end_position: end,
            collector,
            // The last segment's lists are not needed again.
            recycle: (!wait).then(|| keys.recycle.clone()),
        };
        let sent = if wait {
            keys.jobs.send(job).map_err(|_| "the indexer stopped")
        } else {
            keys.jobs.try_send(job).map_err(|error| match error {
                TrySendError::Full(_) => "the indexer is behind",
                TrySendError::Disconnected(_) => "the indexer stopped",
            })
        };
        match sent {
            Err(why) => {
                keys.unindexed = Some(end);
                tracing::warn!(
                    "recording {recording_id}: segment at {base} not indexed now ({why}); it is indexed from its file once the indexer catches up (a filtered replay scans it meanwhile)"
                );
            }
            Ok(())
                if keys
                    .unindexed
                    .is_some_and(|missed| missed <= end.min(flushed)) =>
            {
                // The indexer had room for this one, and the files hold the segments it missed:
                // have it index those from their files.
                let check = IndexJob::CheckActive {
                    descriptor: keys.descriptor.clone(),
                    end_position: end.min(flushed),
                };
                let queued = if wait {
                    keys.jobs.send(check).is_ok()
                } else {
                    keys.jobs.try_send(check).is_ok()
                };
                if queued {
                    keys.unindexed = None;
                }
            }
            Ok(()) => {}
        }
    }

    /// The recording stopped at `stop` (everything written and synced): index its last segment.
    pub fn finish_keys(&mut self, stop: i64) {
        if !self.roll_pending {
            self.hand_off_keys(stop, stop, true);
        }
        self.keys = None;
    }

    /// The position after the last frame appended.
    pub fn position(&self) -> i64 {
        self.buffer_position + self.buffer_length as i64
    }

    /// The position up to which frames are written to the file (writes completed).
    pub fn flushed_position(&self) -> i64 {
        self.flushed
    }

    /// The position up to which frames are synced to the device.
    pub fn synced_position(&self) -> i64 {
        self.synced
    }

    /// Data frames appended.
    pub fn frames(&self) -> u64 {
        self.frames
    }

    /// Whether segments are written with `O_DIRECT`.
    pub fn is_direct(&self) -> bool {
        self.segment.direct
    }

    fn segment_end(&self) -> i64 {
        let base = if self.roll_pending {
            self.buffer_position
        } else {
            self.segment.base
        };
        base + self.geometry.segment_length
    }

    /// How many bytes the next block may have: what the buffer holds and what the segment has left.
    pub fn space(&self) -> usize {
        let buffer_space = self.buffer.len() - self.buffer_length;
        let segment_space = (self.segment_end() - self.position()).max(0) as usize;
        buffer_space.min(segment_space)
    }

    /// Free space left in the buffer, whatever the segment has left.
    pub fn buffer_space(&self) -> usize {
        self.buffer.len() - self.buffer_length
    }

    /// Append a block of whole frames that starts at stream `position` (the writer's position).
    /// Returns the number of data frames in it. The block may be longer than [`Self::space`] only
    /// when it is a lone padding frame.
    ///
    /// # Errors
    /// An earlier write failed (a full disk, say); frames before [`Self::flushed_position`] are
    /// intact.
    pub fn append(&mut self, block: &[u8], position: i64) -> Result<usize> {
        assert_eq!(position, self.position(), "blocks must be contiguous");
        if block.is_empty() {
            return Ok(0);
        }
        self.check()?;
        if self.roll_pending {
            self.open_next_segment()?;
        }
        if block.len() > self.space() {
            self.flush()?;
        }
        let frames = if block.len() <= self.space() {
            let start = self.buffer_length;
            let end = start + block.len();
            let buffer = self.buffer.as_mut_slice();
            buffer[start..end].copy_from_slice(block);
            self.buffer_length = end;
            match self.keys.as_mut() {
                // The keys of the messages, noted in the pass that stamps the checksums.
                Some(keys) => {
                    let collector = &mut keys.collector;
                    stamp_checksums_visiting(&mut buffer[start..end], |offset, header, frame| {
                        if header.flags & crate::frame::BEGIN_FLAG != 0 {
                            collector.note(
                                header,
                                &frame[HEADER_LENGTH..],
                                position + offset as i64,
                            );
                        }
                    })
                }
                None => stamp_checksums(&mut buffer[start..end]),
            }
        } else {
            // A padding frame longer than the buffer: its body carries nothing, write zeroes.
            let header = FrameHeader::decode(block);
            assert!(
                header.is_padding() && header.aligned_length() == block.len(),
                "only a padding frame may exceed the buffer"
            );
            let mut stamped = [0u8; HEADER_LENGTH];
            stamped.copy_from_slice(&block[..HEADER_LENGTH]);
            stamp_checksums(&mut stamped);
            let start = self.buffer_length;
            self.buffer.as_mut_slice()[start..start + HEADER_LENGTH].copy_from_slice(&stamped);
            self.buffer_length += HEADER_LENGTH;
            let mut remaining = block.len() - HEADER_LENGTH;
            while remaining > 0 {
                if self.space() == 0 {
                    self.flush()?;
                }
                let chunk = remaining.min(self.space());
                let start = self.buffer_length;
                self.buffer.as_mut_slice()[start..start + chunk].fill(0);
                self.buffer_length += chunk;
                remaining -= chunk;
            }
            0
        };
        self.frames += frames as u64;
        if self.position() == self.segment_end() {
            self.flush()?;
        }
        Ok(frames)
    }

    fn check(&self) -> Result<()> {
        if self.broken {
            return Err(StoreError::Io {
                path: self.segment.path.clone(),
                operation: "write segment",
                source: std::io::Error::other(
                    "an earlier write or sync failed; the recording stops",
                ),
            });
        }
        Ok(())
    }

    fn on_done(&mut self, done: Done) -> Result<()> {
        // Something finished: the disk moves. Nothing left in hand: it waits for nothing.
        let left = (self.writes_in_flight + self.syncs_in_flight).saturating_sub(1);
        self.io_waiting_since.store(
            if left == 0 {
                0
            } else {
                crate::clock::epoch_nanos()
            },
            Ordering::Release,
        );
        match done {
            Done::Written { buffer, position } => {
                self.writes_in_flight -= 1;
                self.flushed = self.flushed.max(position);
                self.spare.push(buffer);
                Ok(())
            }
            Done::Synced { position, seconds } => {
                self.syncs_in_flight -= 1;
                if let Some(observe) = &self.sync_latency {
                    observe(seconds);
                }
                self.synced = self.synced.max(position);
                Ok(())
            }
            Done::Failed(error) => {
                self.broken = true;
                Err(error)
            }
        }
    }

    /// Take in what the I/O thread finished: advances [`Self::flushed_position`] and
    /// [`Self::synced_position`]. Returns whether anything finished.
    ///
    /// # Errors
    /// A write or sync failed.
    pub fn poll(&mut self) -> Result<bool> {
        let mut any = false;
        while let Some(done) = match &mut self.io {
            IoQueue::Thread { done, .. } => done.try_recv().ok(),
            IoQueue::Inline { done, .. } => done.pop_front(),
        } {
            self.on_done(done)?;
            any = true;
        }
        Ok(any)
    }

    fn wait_one(&mut self) -> Result<()> {
        let done = match &mut self.io {
            IoQueue::Thread { done, .. } => done.recv().ok(),
            IoQueue::Inline { done, .. } => done.pop_front(),
        };
        match done {
            Some(done) => self.on_done(done),
            None => {
                self.broken = true;
                self.check()
            }
        }
    }

    fn send(&mut self, job: Job) -> Result<()> {
        if self.writes_in_flight + self.syncs_in_flight == 0 {
            self.io_waiting_since
                .store(crate::clock::epoch_nanos(), Ordering::Release);
        }
        let sent = match &mut self.io {
            IoQueue::Thread { jobs, .. } => {
                jobs.as_ref().is_some_and(|jobs| jobs.send(job).is_ok())
            }
            IoQueue::Inline { runner, done } => {
                done.extend(runner.run(job));
                true
            }
        };
        if !sent {
            self.broken = true;
        }
        self.check()
    }

    /// Hand what the buffer holds to the I/O thread; roll to the next segment when this one is
    /// full. Waits only when every buffer is already being written. Returns whether anything was
    /// handed over.
    ///
    /// # Errors
    /// A write failed; [`Self::flushed_position`] still tells what is intact.
    pub fn flush(&mut self) -> Result<bool> {
        self.check()?;
        let position = self.position();
        if position == self.submitted {
            return Ok(false);
        }
        while self.spare.is_empty() {
            self.wait_one()?;
        }
        let mut next = self.spare.pop().expect("a spare buffer");
        let full_pages = self.buffer_length / PAGE * PAGE;
        let tail = self.buffer_length - full_pages;
        let (start, end) = if self.segment.direct {
            let padded = self.buffer_length.div_ceil(PAGE) * PAGE;
            self.buffer.as_mut_slice()[self.buffer_length..padded].fill(0);
            (0, padded)
        } else {
            (self.submitted_length, self.buffer_length)
        };
        // The partial last page goes on in the next buffer.
        next.as_mut_slice()[..tail]
            .copy_from_slice(&self.buffer.as_slice()[full_pages..self.buffer_length]);
        let buffer = std::mem::replace(&mut self.buffer, next);
        let offset = (self.buffer_position - self.segment.base) as u64;
        self.send(Job::Write {
            segment: self.segment.clone(),
            offset,
            buffer,
            start,
            end,
            position,
        })?;
        self.writes_in_flight += 1;
        self.submitted = position;
        self.buffer_position += full_pages as i64;
        self.buffer_length = tail;
        self.submitted_length = tail;
        self.roll_if_full()?;
        Ok(true)
    }

    /// When the segment is full: sync it, and move the buffer to the next segment, whose file is
    /// created only when a frame comes for it (so stopping on a full disk does not need a file
    /// that cannot be created).
    fn roll_if_full(&mut self) -> Result<()> {
        if self.roll_pending || self.position() < self.segment_end() {
            return Ok(());
        }
        // A full segment is always synced, so recovery can trust every segment but the last.
        self.request_sync()?;
        let end = self.segment_end();
        self.hand_off_keys(end, end, false);
        self.buffer_position = self.segment_end();
        self.buffer_length = 0;
        self.submitted_length = 0;
        self.roll_pending = true;
        Ok(())
    }

    fn open_next_segment(&mut self) -> Result<()> {
        let next = self.buffer_position;
        let segment = open_segment(
            &self.storage,
            &self.geometry.path_of(next),
            next,
            self.mode,
            self.preallocate,
            self.geometry.segment_length,
            true,
        )?;
        self.segment = Arc::new(segment);
        self.roll_pending = false;
        Ok(())
    }

    /// Ask the I/O thread to sync what was handed to it; [`Self::synced_position`] advances when
    /// it is done (see [`Self::poll`]).
    ///
    /// # Errors
    /// The I/O thread is gone after a failure.
    pub fn request_sync(&mut self) -> Result<()> {
        if self.submitted <= self.sync_requested {
            return Ok(());
        }
        self.send(Job::Sync {
            segment: self.segment.clone(),
            position: self.submitted,
            companion: self.companion.clone(),
        })?;
        self.syncs_in_flight += 1;
        self.sync_requested = self.submitted;
        Ok(())
    }

    /// Hand over what is buffered, sync it, and wait until all of it is written and synced.
    ///
    /// # Errors
    /// A write or `fdatasync` failed: the data past [`Self::synced_position`] may not be durable.
    pub fn sync(&mut self) -> Result<()> {
        self.flush()?;
        self.request_sync()?;
        while self.writes_in_flight > 0 || self.syncs_in_flight > 0 {
            self.wait_one()?;
        }
        Ok(())
    }
}

/// Zero a segment file from `offset` to its end, keeping its length (and its blocks when it was
/// preallocated): cut it at `offset`, grow it back, sync. A file that ends less than a frame
/// alignment before `offset` (a crash inside the last frame's padding) grows to it. A missing
/// file is left missing. What a
/// truncate does to the segment it cuts, and what a writer needs before it resumes at `offset`
/// over a torn tail.
///
/// # Errors
/// The file cannot be opened, changed or synced.
pub fn erase_segment_from(
    storage: &Arc<dyn Storage>,
    path: &Path,
    offset: u64,
    segment_length: u64,
) -> Result<()> {
    let file = match storage.open(path, OpenOptions::read_write()) {
        Ok(file) => file,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(error) => return Err(io_error(path, "open segment to erase")(error)),
    };
    let length = file.len().map_err(io_error(path, "stat segment"))?;
    if length < offset && offset - length < crate::frame::FRAME_ALIGNMENT as u64 {
        // A crash cut the file inside the last frame's alignment padding (zeroes never
        // written): give the file those zeroes, so that a writer resuming at `offset` reads
        // the page it continues.
        file.set_len(offset)
            .map_err(io_error(path, "erase segment"))?;
        return file.sync_data().map_err(io_error(path, "sync segment"));
    }
    if length <= offset {
        return Ok(());
    }
    file.set_len(offset)
        .map_err(io_error(path, "erase segment"))?;
    if length >= segment_length {
        // It was preallocated: give it its blocks back, reading as zeroes (a plain length
        // where the file system cannot allocate).
        file.allocate(segment_length)
            .map_err(io_error(path, "size segment"))?;
    }
    file.sync_data().map_err(io_error(path, "sync segment"))
}

impl Drop for SegmentWriter {
    fn drop(&mut self) {
        if let IoQueue::Thread { jobs, worker, .. } = &mut self.io {
            *jobs = None;
            if let Some(worker) = worker.take() {
                let _ = worker.join();
            }
        }
    }
}

impl std::fmt::Debug for SegmentWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SegmentWriter")
            .field("recording_id", &self.geometry.recording_id)
            .field("position", &self.position())
            .field("flushed", &self.flushed)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::{term_of, TYPE_DATA};
    use crate::key::KeyKind;

    const TERM: i64 = 64 * 1024;

    /// One term of 1 KiB data frames from `position` (a term start), each with its position as
    /// its reserved value.
    fn term_of_frames(position: i64) -> Vec<u8> {
        let mut block = vec![0u8; TERM as usize];
        for (index, frame) in block.chunks_exact_mut(1024).enumerate() {
            let at = position + index as i64 * 1024;
            let (term_id, term_offset) = term_of(at, 0, TERM as i32);
            FrameHeader {
                frame_length: 1024,
                flags: 0xC0,
                frame_type: TYPE_DATA,
                term_offset,
                session_id: 0,
                stream_id: 1,
                term_id,
                reserved_value: at,
            }
            .encode(frame);
        }
        block
    }

    #[test]
    fn a_segment_the_indexer_had_no_room_for_is_indexed_from_its_file_once_it_has() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut descriptor = crate::descriptor::sample(RecordingId::new(0));
        descriptor.start_position = 0;
        descriptor.stop_position = crate::descriptor::NULL_POSITION;
        descriptor.initial_term_id = 0;
        descriptor.term_length = TERM as i32;
        descriptor.segment_length = TERM as i32;
        descriptor.stream_id = 1;
        let geometry = SegmentGeometry {
            dir: dir.path().to_path_buf(),
            recording_id: RecordingId::new(0),
            start_position: 0,
            term_length: TERM,
            segment_length: TERM,
        };
        let mut writer =
            SegmentWriter::new(geometry, WriteMode::Buffered, false, 2 * TERM as usize)
                .expect("writer");
        let (jobs, queue) = mpsc::sync_channel(2);
        jobs.try_send(IndexJob::Check {
            recordings: Vec::new(),
        })
        .expect("a job ahead");
        writer.index_keys(&[KeyKind::Reserved], jobs, &descriptor);
        // Segment 0 takes the queue's last place; segment 1 finds it full: its notes are dropped.
        writer.append(&term_of_frames(0), 0).expect("segment 0");
        writer
            .append(&term_of_frames(TERM), TERM)
            .expect("segment 1");
        writer.sync().expect("written");
        let drained: Vec<IndexJob> = queue.try_iter().collect();
        assert_eq!(drained.len(), 2, "segment 1 was not queued");
        // The indexer has room again: segment 2's notes go, then a check of the missed one.
        writer
            .append(&term_of_frames(2 * TERM), 2 * TERM)
            .expect("segment 2");
        let jobs: Vec<IndexJob> = queue.try_iter().collect();
        assert!(
            matches!(jobs.first(), Some(IndexJob::Segment { collector, .. }) if collector.base() == 2 * TERM),
            "segment 2's notes"
        );
        match jobs.get(1) {
            Some(IndexJob::CheckActive {
                descriptor: checked,
                end_position,
            }) => {
                assert_eq!(checked.recording_id, RecordingId::new(0));
                assert!(
                    *end_position >= 2 * TERM,
                    "covers segment 1: {end_position}"
                );
                // The indexer's work on it: segment 1's index file written from the file.
                let checks = crate::indexer::check_recording(
                    dir.path(),
                    checked,
                    *end_position,
                    Some(&[KeyKind::Reserved]),
                    crate::indexer::CheckMode::Repair,
                )
                .expect("check");
                assert!(
                    checks
                        .iter()
                        .any(|check| check.rebuilt && check.segment_base == TERM),
                    "{checks:?}"
                );
            }
            _ => panic!("a check of the missed segment follows"),
        }
    }

    #[test]
    fn a_writer_resumes_over_a_file_a_crash_cut_inside_the_last_frames_padding() {
        let dir = tempfile::tempdir().expect("temp dir");
        let geometry = SegmentGeometry {
            dir: dir.path().to_path_buf(),
            recording_id: RecordingId::new(0),
            start_position: 0,
            term_length: TERM,
            segment_length: TERM,
        };
        let path = geometry.path_of(0);
        // Two frames of 1 KiB, then a third of 1000 bytes whose 24 bytes of padding never got
        // written: the file ends at 3048 where the frame (aligned) ends at 3072.
        let mut bytes = term_of_frames(0)[..3072].to_vec();
        let mut header = FrameHeader::decode(&bytes[2048..]);
        header.frame_length = 1000;
        header.encode(&mut bytes[2048..]);
        stamp_checksums(&mut bytes);
        std::fs::write(&path, &bytes[..3048]).expect("segment");
        let storage = crate::storage::disk();
        erase_segment_from(&storage, &path, 3072, TERM as u64).expect("erase");
        assert_eq!(std::fs::metadata(&path).expect("stat").len(), 3072);
        let mut writer = SegmentWriter::resume(geometry, 3072, WriteMode::Buffered, false, 8192)
            .expect("a writer resumes at the frame's aligned end");
        let next = term_of_frames(0)[3072..4096].to_vec();
        writer.append(&next, 3072).expect("append");
        writer.sync().expect("sync");
        let on_disk = std::fs::read(&path).expect("read");
        assert_eq!(&on_disk[..3048], &bytes[..3048]);
        assert!(on_disk[3048..3072].iter().all(|byte| *byte == 0));
        // Further back than a frame's padding is not a crash inside padding: left alone.
        std::fs::write(&path, &bytes[..2048]).expect("segment");
        erase_segment_from(&storage, &path, 3072, TERM as u64).expect("erase");
        assert_eq!(std::fs::metadata(&path).expect("stat").len(), 2048);
    }

    #[test]
    fn the_time_a_write_is_in_the_disks_hands_is_watched_until_it_finishes() {
        let dir = tempfile::tempdir().expect("temp dir");
        let geometry = SegmentGeometry {
            dir: dir.path().to_path_buf(),
            recording_id: RecordingId::new(0),
            start_position: 0,
            term_length: TERM,
            segment_length: 4 * TERM,
        };
        let mut writer =
            SegmentWriter::new(geometry, WriteMode::Buffered, false, 2 * TERM as usize)
                .expect("writer");
        let progress = crate::RecordingProgress::new(0);
        writer.watch_io(progress.io_watch());
        assert_eq!(progress.io_waiting(), None, "nothing in hand");
        writer.append(&term_of_frames(0), 0).expect("append");
        writer.flush().expect("flush");
        // Handed to the I/O thread; until the writer takes in that it finished, it is in hand.
        std::thread::sleep(std::time::Duration::from_millis(20));
        let waiting = progress.io_waiting().expect("a write in hand");
        assert!(
            waiting >= std::time::Duration::from_millis(15),
            "{waiting:?}"
        );
        writer.sync().expect("sync");
        assert_eq!(progress.io_waiting(), None, "all finished");
    }
}
