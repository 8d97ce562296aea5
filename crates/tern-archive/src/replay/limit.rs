//! The limit of a bounded replay (Aeron's `startBoundedReplay`): a counter of the media driver
//! the replay never goes past.

use crate::error::{ArchiveError, Result};
use tern_transport::CounterValues;

/// A counter that bounds a replay, read by id in the driver's counters.
pub(crate) struct LimitCounter {
    reader: Box<dyn CounterValues>,
    counter_id: i32,
    registration_id: i64,
    /// The value last read while the counter was allocated.
    last: i64,
    /// The counter was freed (or its id reused): `last` is final.
    closed: bool,
}

impl LimitCounter {
    /// Bound a replay by counter `counter_id`.
    ///
    /// # Errors
    /// The counter is not allocated.
    pub(crate) fn open(reader: Box<dyn CounterValues>, counter_id: i32) -> Result<Self> {
        if !reader.is_allocated(counter_id) {
            return Err(ArchiveError::Invalid(format!(
                "replay limit counter {counter_id} is not an allocated counter"
            )));
        }
        let registration_id = reader.registration_id(counter_id)?;
        let last = reader.value(counter_id)?;
        Ok(Self {
            reader,
            counter_id,
            registration_id,
            last,
            closed: false,
        })
    }

    /// The counter's value now; once it is freed, the last value it had.
    fn value(&mut self) -> i64 {
        if self.closed {
            return self.last;
        }
        let value = self.reader.value(self.counter_id);
        let same = self.reader.is_allocated(self.counter_id)
            && self.reader.registration_id(self.counter_id).ok() == Some(self.registration_id);
        match value {
            Ok(value) if same => self.last = value,
            _ => {
                tracing::info!(
                    "replay limit counter {} freed at {}: the replay ends there",
                    self.counter_id,
                    self.last
                );
                self.closed = true;
            }
        }
        self.last
    }

    /// Bound where a replay may go now (`end`, and whether that end is final) by the counter:
    /// below `end`, the counter's value is the end, final only once the counter is freed.
    pub(crate) fn bound(&mut self, end: i64, final_end: bool) -> (i64, bool) {
        let value = self.value();
        if value >= end {
            (end, final_end)
        } else {
            (value, self.closed)
        }
    }
}
