//! What a sink writes: one [`SinkRecord`] per message of the stream, grouped into a [`Batch`].

use tern_store::RecordingId;

/// One message of the source stream, as a destination stores it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SinkRecord {
    /// Stream position at the end of the message (the next message's start): what a sink
    /// resumes from. Strictly increasing within a recording.
    pub position: i64,
    /// The message's time in nanoseconds since the epoch: read from the message by the sink's
    /// time source, or, for the `capture` source, the time the sink read it.
    pub timestamp_ns: i64,
    /// The message's key of the sink's key kind; `None` without a key kind or when the message
    /// has none.
    pub key: Option<i64>,
    /// The whole message (reassembled from its fragments).
    pub payload: Vec<u8>,
}

/// Records of one recording, in stream order, written to a destination as one unit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    /// The recording the records come from.
    pub recording_id: RecordingId,
    /// Stream position the reading of this batch began at: the previous batch's end, or the
    /// resume point (-1: the destination was empty). Every record is after it.
    pub start_position: i64,
    /// The records, in increasing position.
    pub records: Vec<SinkRecord>,
    /// Stream position up to which the source was read for this batch (at least the last
    /// record's position; further when messages after it were filtered out). A destination may
    /// store it as its resume position instead of the last record's.
    pub end_position: i64,
    /// Payload bytes in the batch.
    pub payload_bytes: usize,
}

impl Batch {
    /// An empty batch of `recording_id` read up to `position`.
    pub fn new(recording_id: RecordingId, position: i64) -> Self {
        Self {
            recording_id,
            start_position: position,
            records: Vec::new(),
            end_position: position,
            payload_bytes: 0,
        }
    }

    /// Whether it holds no record.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Number of records.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// The first record's position.
    pub fn first_position(&self) -> Option<i64> {
        self.records.first().map(|record| record.position)
    }

    /// Drops the records at or before `position` (what a destination already holds after a
    /// write that failed late).
    pub fn skip_through(&mut self, position: i64) {
        let keep = self
            .records
            .partition_point(|record| record.position <= position);
        let dropped: usize = self.records[..keep]
            .iter()
            .map(|record| record.payload.len())
            .sum();
        self.records.drain(..keep);
        self.payload_bytes -= dropped;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(position: i64, payload: &[u8]) -> SinkRecord {
        SinkRecord {
            position,
            timestamp_ns: 0,
            key: None,
            payload: payload.to_vec(),
        }
    }

    #[test]
    fn skip_through_drops_what_the_destination_holds() {
        let mut batch = Batch::new(RecordingId::new(3), 0);
        for (position, payload) in [(64, b"ab".as_slice()), (128, b"cde"), (192, b"f")] {
            batch.records.push(record(position, payload));
            batch.payload_bytes += payload.len();
        }
        batch.end_position = 256;
        batch.skip_through(100);
        assert_eq!(batch.first_position(), Some(128));
        assert_eq!(batch.payload_bytes, 4);
        batch.skip_through(192);
        assert!(batch.is_empty());
        assert_eq!(batch.payload_bytes, 0);
        assert_eq!(batch.end_position, 256);
    }
}
