//! Time, as tern reads it: wall-clock nanoseconds for what is stored (the catalog, the time
//! index) and a monotonic instant for deadlines and pacing, behind one [`Clock`] so that a
//! simulation decides what time it is.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Nanoseconds since the Unix epoch (0 if the system clock is before it).
pub fn epoch_nanos() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_nanos() as i64)
        .unwrap_or(0)
}

/// A source of time.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// The monotonic now.
    fn now(&self) -> Instant;
    /// Wall-clock nanoseconds since the Unix epoch.
    fn epoch_nanos(&self) -> i64;
    /// Wait until `due` (a simulated clock moves to it at once).
    fn sleep_until(&self, due: Instant);
}

/// The system's clocks.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }

    fn epoch_nanos(&self) -> i64 {
        epoch_nanos()
    }

    fn sleep_until(&self, due: Instant) {
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        }
    }
}

/// The system's clocks, shared.
pub fn system_clock() -> Arc<dyn Clock> {
    Arc::new(SystemClock)
}

/// A clock that moves only when told (or slept on). Clones share the time.
#[derive(Debug, Clone)]
pub struct SimClock {
    origin: Instant,
    epoch_origin_ns: i64,
    elapsed_ns: Arc<AtomicU64>,
}

impl SimClock {
    /// A clock at `epoch_ns` wall-clock nanoseconds.
    pub fn new(epoch_ns: i64) -> Self {
        Self {
            origin: Instant::now(),
            epoch_origin_ns: epoch_ns,
            elapsed_ns: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Move the time on by `by`.
    pub fn advance(&self, by: Duration) {
        self.elapsed_ns
            .fetch_add(by.as_nanos() as u64, Ordering::AcqRel);
    }

    /// Time since the clock was made.
    pub fn elapsed(&self) -> Duration {
        Duration::from_nanos(self.elapsed_ns.load(Ordering::Acquire))
    }
}

impl Clock for SimClock {
    fn now(&self) -> Instant {
        self.origin + self.elapsed()
    }

    fn epoch_nanos(&self) -> i64 {
        self.epoch_origin_ns + self.elapsed().as_nanos() as i64
    }

    fn sleep_until(&self, due: Instant) {
        let now = self.now();
        if due > now {
            self.advance(due - now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_simulated_clock_moves_when_told_or_slept_on_and_never_back() {
        let clock = SimClock::new(1_000);
        let start = clock.now();
        assert_eq!(clock.now(), start);
        clock.advance(Duration::from_millis(5));
        assert_eq!(clock.now() - start, Duration::from_millis(5));
        assert_eq!(clock.epoch_nanos(), 1_000 + 5_000_000);
        clock.sleep_until(start + Duration::from_millis(2));
        assert_eq!(clock.elapsed(), Duration::from_millis(5), "no going back");
        clock.sleep_until(start + Duration::from_secs(1));
        assert_eq!(clock.elapsed(), Duration::from_secs(1));
    }
}
