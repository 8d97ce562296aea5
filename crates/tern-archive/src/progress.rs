//! Positions of a live recording, shared between the recorder and its readers.

use crate::descriptor::NULL_POSITION;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

/// What a recording has reached, updated by the recorder after each write.
#[derive(Debug)]
pub struct RecordingProgress {
    recorded: AtomicI64,
    durable: AtomicI64,
    stop: AtomicI64,
    frames: AtomicU64,
}

impl RecordingProgress {
    /// A recording that starts at `start_position`.
    pub fn new(start_position: i64) -> Self {
        Self {
            recorded: AtomicI64::new(start_position),
            durable: AtomicI64::new(start_position),
            stop: AtomicI64::new(NULL_POSITION),
            frames: AtomicU64::new(0),
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

    /// Data frames written.
    pub fn frames(&self) -> u64 {
        self.frames.load(Ordering::Relaxed)
    }

    pub(crate) fn update(&self, recorded: i64, durable: i64, frames: u64) {
        self.frames.store(frames, Ordering::Relaxed);
        self.recorded.store(recorded, Ordering::Release);
        self.durable.store(durable, Ordering::Release);
    }

    pub(crate) fn stopped(&self, stop_position: i64) {
        self.stop.store(stop_position, Ordering::Release);
    }
}
