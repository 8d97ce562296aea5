//! When a batch is written: full by records or bytes, or due by age (pure: takes `now`).

use crate::record::{Batch, SinkRecord};
use std::time::{Duration, Instant};
use tern_store::RecordingId;

/// How big and how old a batch may get.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchLimits {
    /// Records at most.
    pub max_records: usize,
    /// Payload bytes at most (a batch holds at least one record, whatever its size).
    pub max_bytes: usize,
    /// The oldest record waits this long at most.
    pub max_delay: Duration,
}

impl Default for BatchLimits {
    /// 10,000 records, 4 MiB, 100 ms.
    fn default() -> Self {
        Self {
            max_records: 10_000,
            max_bytes: 4 << 20,
            max_delay: Duration::from_millis(100),
        }
    }
}

/// Gathers records into a batch and says when it is to be written.
///
/// Memory is bounded by the limits: the engine writes a full batch before it reads on, so a
/// slow destination holds the reading back (the archive keeps the rest) instead of growing a
/// queue.
#[derive(Debug)]
pub struct Batcher {
    limits: BatchLimits,
    batch: Batch,
    opened_at: Option<Instant>,
}

impl Batcher {
    /// An empty batcher for `recording_id`, read up to `position`.
    pub fn new(limits: BatchLimits, recording_id: RecordingId, position: i64) -> Self {
        Self {
            limits,
            batch: Batch::new(recording_id, position),
            opened_at: None,
        }
    }

    /// Adds a record read at `now`.
    pub fn push(&mut self, record: SinkRecord, now: Instant) {
        if self.batch.records.is_empty() {
            self.opened_at = Some(now);
        }
        self.batch.payload_bytes += record.payload.len();
        self.batch.end_position = self.batch.end_position.max(record.position);
        self.batch.records.push(record);
    }

    /// Notes that the source was read up to `position` (a message filtered out).
    pub fn advance(&mut self, position: i64) {
        self.batch.end_position = self.batch.end_position.max(position);
    }

    /// Whether the batch is full: written before anything more is read.
    pub fn is_full(&self) -> bool {
        self.batch.records.len() >= self.limits.max_records
            || self.batch.payload_bytes >= self.limits.max_bytes
    }

    /// Whether the batch holds records and is full or its oldest has waited the delay.
    pub fn is_due(&self, now: Instant) -> bool {
        match self.opened_at {
            None => false,
            Some(opened) => {
                self.is_full() || now.saturating_duration_since(opened) >= self.limits.max_delay
            }
        }
    }

    /// The batch being gathered.
    pub fn batch(&self) -> &Batch {
        &self.batch
    }

    /// Takes the batch out (to write) and starts the next one where it ended.
    pub fn take(&mut self) -> Batch {
        let next = Batch::new(self.batch.recording_id, self.batch.end_position);
        self.opened_at = None;
        std::mem::replace(&mut self.batch, next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(position: i64, length: usize) -> SinkRecord {
        SinkRecord {
            position,
            timestamp_ns: 0,
            key: None,
            payload: vec![7; length],
        }
    }

    fn limits() -> BatchLimits {
        BatchLimits {
            max_records: 3,
            max_bytes: 100,
            max_delay: Duration::from_millis(10),
        }
    }

    #[test]
    fn a_batch_is_due_when_full_by_records_bytes_or_age() {
        let start = Instant::now();
        let mut batcher = Batcher::new(limits(), RecordingId::new(1), 0);
        assert!(
            !batcher.is_due(start + Duration::from_secs(1)),
            "empty is never due"
        );
        batcher.push(record(64, 10), start);
        assert!(!batcher.is_due(start + Duration::from_millis(9)));
        assert!(batcher.is_due(start + Duration::from_millis(10)), "by age");
        batcher.push(record(128, 10), start);
        batcher.push(record(192, 10), start);
        assert!(batcher.is_full(), "by records");
        let batch = batcher.take();
        assert_eq!(batch.len(), 3);
        assert_eq!(batch.end_position, 192);
        assert!(!batcher.is_due(start + Duration::from_secs(1)));
        batcher.push(record(512, 100), start);
        assert!(batcher.is_full(), "by bytes, with one record");
    }

    #[test]
    fn filtered_messages_move_the_end_not_the_records() {
        let start = Instant::now();
        let mut batcher = Batcher::new(limits(), RecordingId::new(1), 32);
        batcher.advance(96);
        assert!(batcher.batch().is_empty());
        assert!(!batcher.is_due(start + Duration::from_secs(1)));
        batcher.push(record(160, 1), start);
        batcher.advance(224);
        let batch = batcher.take();
        assert_eq!(
            (batch.first_position(), batch.end_position),
            (Some(160), 224)
        );
        assert_eq!(batcher.batch().end_position, 224);
    }
}
