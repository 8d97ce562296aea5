//! Pacing a replay: the schedule frames keep (capture times or times inside the messages,
//! divided by the speed) and the precise waits that keep it.

use crate::error::Result;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tern_store::storage::Storage;
use tern_store::time_index::TimeIndexReader;
use tern_store::RecordingId;

/// The schedule of a paced replay: frames go out at the time they were captured, relative to the
/// first one, divided by the speed. The schedule is absolute (from the replay's first frame), so
/// a late frame does not delay the ones after it: drift does not accumulate.
pub(super) struct Pacing {
    pub(super) speed: f64,
    pub(super) index: TimeIndexReader,
    /// The next entry of the index to look at.
    pub(super) next_entry: u64,
    /// Capture time of the frames from the current position to `group_end`.
    pub(super) group_time: i64,
    /// Where frames with a later capture time begin (`i64::MAX`: not indexed yet).
    pub(super) group_end: i64,
    /// When the replay sent its first frame, and that frame's capture time.
    pub(super) origin: Option<(Instant, i64)>,
}

impl Pacing {
    pub(super) fn new(
        storage: &Arc<dyn Storage>,
        dir: &std::path::Path,
        recording_id: RecordingId,
        position: i64,
        speed: f64,
    ) -> Result<Self> {
        let index = TimeIndexReader::open_on(storage, dir, recording_id)?;
        let mut pacing = Self {
            speed,
            index,
            next_entry: 0,
            group_time: 0,
            group_end: i64::MAX,
            origin: None,
        };
        let first = pacing.index.first_after_position(position)?;
        pacing.group_time = match first {
            0 if pacing.index.is_empty() => 0,
            0 => pacing.index.entry(0)?.timestamp_ns,
            later => pacing.index.entry(later - 1)?.timestamp_ns,
        };
        pacing.next_entry = first;
        Ok(pacing)
    }

    /// When a message whose own time is `time` is due; `now` is when it is ready to go (the
    /// schedule's origin, if this is the replay's first message).
    pub(super) fn message_due(&mut self, time: i64, now: Instant) -> Instant {
        let (start, first_time) = *self.origin.get_or_insert((now, time));
        scheduled_at(start, first_time, time, self.speed)
    }

    /// Move to `position`; returns when the frames there are due and where their group ends.
    /// `now` is when they are ready to go (the origin, if they are the replay's first).
    pub(super) fn due(&mut self, position: i64, now: Instant) -> Result<(Instant, i64)> {
        if self.next_entry >= self.index.len() {
            self.index.refresh()?;
        }
        while self.next_entry < self.index.len() {
            let entry = self.index.entry(self.next_entry)?;
            if entry.position > position {
                self.group_end = entry.position;
                break;
            }
            self.group_time = entry.timestamp_ns;
            self.next_entry += 1;
            self.group_end = i64::MAX;
        }
        let (start, first_time) = *self.origin.get_or_insert((now, self.group_time));
        Ok((
            scheduled_at(start, first_time, self.group_time, self.speed),
            self.group_end,
        ))
    }
}

/// When a frame captured (or stamped) at `time` is due in a replay that sent its first frame,
/// of time `first_time`, at `start`: the time since the first divided by the speed. Absolute,
/// so a late frame does not delay the next; a time before the first is due at once.
pub(super) fn scheduled_at(start: Instant, first_time: i64, time: i64, speed: f64) -> Instant {
    let offset_ns = ((time - first_time).max(0) as f64 / speed) as u64;
    start + std::time::Duration::from_nanos(offset_ns)
}

/// Let this thread's sleeps end when asked: Linux lets a normal thread's timer fire up to 50 us
/// late (its timer slack) to batch wake-ups, which a paced replay would pass on to every
/// message. One nanosecond of slack costs nothing while the replayer is idle-sleeping anyway.
pub(super) fn precise_sleeps() {
    // SAFETY: PR_SET_TIMERSLACK takes an unsigned long and touches only this thread's setting.
    let result = unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong) };
    if result != 0 {
        tracing::debug!(
            "replayer: timer slack not set: {}",
            std::io::Error::last_os_error()
        );
    }
}

/// Wait for a paced frame's time: sleep most of the way, then yield to the exact instant (a
/// sleep overshoots by tens of microseconds). Never longer than 1 ms, so commands and other
/// replays are served meanwhile.
pub(super) fn wait_until(due: Instant) {
    const SPIN: Duration = Duration::from_micros(150);
    let now = Instant::now();
    if due <= now {
        return;
    }
    let remaining = due - now;
    if remaining > SPIN {
        std::thread::sleep((remaining - SPIN).min(Duration::from_millis(1)));
    } else {
        while Instant::now() < due {
            std::thread::yield_now();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tern_store::time_index::TimeIndexWriter;

    const MS: i64 = 1_000_000;

    /// Pacing from `position` at `speed` over a time index of recording 1: frames at 0
    /// captured at 1 s, at 64 10 ms later, at 128 30 ms after the first.
    fn pacing(position: i64, speed: f64) -> (tempfile::TempDir, Pacing) {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut writer =
            TimeIndexWriter::create(dir.path(), RecordingId::new(1), 0).expect("create");
        writer.record(1_000 * MS, 0);
        writer.record(1_010 * MS, 64);
        writer.record(1_030 * MS, 128);
        writer.flush().expect("flush");
        let pacing = Pacing::new(
            &tern_store::disk(),
            dir.path(),
            RecordingId::new(1),
            position,
            speed,
        )
        .expect("pacing");
        (dir, pacing)
    }

    #[test]
    fn capture_times_are_due_on_an_absolute_schedule_divided_by_the_speed() {
        let (_dir, mut pacing) = pacing(0, 2.0);
        let origin = Instant::now();
        assert_eq!(pacing.due(0, origin).expect("due"), (origin, 64));
        // A group ready late is still due at its own time: lateness does not carry over.
        let late = origin + Duration::from_millis(50);
        assert_eq!(
            pacing.due(64, late).expect("due"),
            (origin + Duration::from_millis(5), 128)
        );
        assert_eq!(
            pacing.due(128, late).expect("due"),
            (origin + Duration::from_millis(15), i64::MAX)
        );
    }

    #[test]
    fn a_replay_from_the_middle_starts_its_schedule_at_its_first_group() {
        let (_dir, mut pacing) = pacing(64, 1.0);
        let origin = Instant::now();
        assert_eq!(pacing.due(64, origin).expect("due"), (origin, 128));
        assert_eq!(
            pacing.due(128, origin).expect("due"),
            (origin + Duration::from_millis(20), i64::MAX)
        );
    }

    #[test]
    fn in_message_times_are_due_from_the_first_message_and_earlier_times_at_once() {
        let (_dir, mut pacing) = pacing(0, 0.5);
        let origin = Instant::now();
        assert_eq!(pacing.message_due(5_000 * MS, origin), origin);
        let later = origin + Duration::from_secs(1);
        assert_eq!(
            pacing.message_due(5_001 * MS, later),
            origin + Duration::from_millis(2)
        );
        assert_eq!(pacing.message_due(4_000 * MS, later), origin);
    }
}
