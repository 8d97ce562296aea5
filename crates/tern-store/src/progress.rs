//! Positions of a live recording, shared between the recorder and its readers.

use crate::descriptor::NULL_POSITION;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// What a recording has reached, updated by the recorder after each write.
#[derive(Debug)]
pub struct RecordingProgress {
    recorded: AtomicI64,
    durable: AtomicI64,
    stop: AtomicI64,
    frames: AtomicU64,
    /// Since when (epoch ns) the recording's I/O thread has had a write or sync in hand without
    /// finishing anything; 0 when it has nothing in hand. Set by the segment writer.
    io_waiting_since_ns: Arc<AtomicI64>,
    /// Where this process started writing it (its start, or where an extension continued it).
    first: i64,
}

impl RecordingProgress {
    /// A recording that starts at `start_position`.
    pub fn new(start_position: i64) -> Self {
        Self {
            recorded: AtomicI64::new(start_position),
            durable: AtomicI64::new(start_position),
            stop: AtomicI64::new(NULL_POSITION),
            frames: AtomicU64::new(0),
            io_waiting_since_ns: Arc::new(AtomicI64::new(0)),
            first: start_position,
        }
    }

    /// Position up to which frames are written to the segment files (readable by replays).
    pub fn recorded(&self) -> i64 {
        self.recorded.load(Ordering::Acquire)
    }

    /// Position up to which frames are durable under the fsync policy: the archive's acknowledgement.
    pub fn durable(&self) -> i64 {
        self.durable.load(Ordering::Acquire)
    }

    /// The stop position once the recording stopped, else [`NULL_POSITION`].
    pub fn stop_position(&self) -> i64 {
        self.stop.load(Ordering::Acquire)
    }

    /// Where this process started writing the recording (its start position, or its stop
    /// position when an extension continued it): `recorded() - first_position()` bytes were
    /// written since.
    pub fn first_position(&self) -> i64 {
        self.first
    }

    /// Data frames written.
    pub fn frames(&self) -> u64 {
        self.frames.load(Ordering::Relaxed)
    }

    /// How long the disk has had a write or sync of this recording in hand without finishing
    /// anything (a hung or very slow disk: the recorder waits, and so does the publisher once
    /// the term is full), if it has one in hand now.
    pub fn io_waiting(&self) -> Option<Duration> {
        let since = self.io_waiting_since_ns.load(Ordering::Acquire);
        (since > 0).then(|| {
            Duration::from_nanos(crate::clock::epoch_nanos().saturating_sub(since).max(0) as u64)
        })
    }

    /// The cell the segment writer keeps [`Self::io_waiting`] in.
    pub fn io_watch(&self) -> Arc<AtomicI64> {
        self.io_waiting_since_ns.clone()
    }

    pub fn update(&self, recorded: i64, durable: i64, frames: u64) {
        self.frames.store(frames, Ordering::Relaxed);
        self.recorded.store(recorded, Ordering::Release);
        self.durable.store(durable, Ordering::Release);
    }

    pub fn stopped(&self, stop_position: i64) {
        self.stop.store(stop_position, Ordering::Release);
    }
}
