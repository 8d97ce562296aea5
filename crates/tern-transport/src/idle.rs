//! Idle strategies: what a duty-cycle loop does when a cycle found no work.

use std::time::Duration;

/// Called after each duty cycle with the amount of work done.
pub trait Idle {
    /// Idle (or not) after a cycle that did `work_count` units of work.
    fn idle(&mut self, work_count: usize);
    /// Forget any backoff state, as after work was done.
    fn reset(&mut self);
}

/// Spin a little, then yield, then park for exponentially longer times up to a maximum:
/// Aeron's default. It never burns a core for long, which matters on a 2-core machine where the
/// media driver needs one.
#[derive(Debug, Clone)]
pub struct BackoffIdle {
    max_spins: u32,
    max_yields: u32,
    min_park: Duration,
    max_park: Duration,
    spins: u32,
    yields: u32,
    park: Duration,
}

impl BackoffIdle {
    /// Aeron's defaults: 10 spins, 20 yields, park from 1 us to 1 ms.
    pub fn new() -> Self {
        Self::with(10, 20, Duration::from_micros(1), Duration::from_millis(1))
    }

    /// A backoff with the given limits.
    pub fn with(max_spins: u32, max_yields: u32, min_park: Duration, max_park: Duration) -> Self {
        Self {
            max_spins,
            max_yields,
            min_park,
            max_park,
            spins: 0,
            yields: 0,
            park: min_park,
        }
    }
}

impl Default for BackoffIdle {
    fn default() -> Self {
        Self::new()
    }
}

impl Idle for BackoffIdle {
    fn idle(&mut self, work_count: usize) {
        if work_count > 0 {
            self.reset();
            return;
        }
        if self.spins < self.max_spins {
            self.spins += 1;
            std::hint::spin_loop();
        } else if self.yields < self.max_yields {
            self.yields += 1;
            std::thread::yield_now();
        } else {
            // Parked rather than asleep: a thread that hands this one work can wake it at once
            // (`Thread::unpark`); otherwise the same as a sleep.
            std::thread::park_timeout(self.park);
            self.park = (self.park * 2).min(self.max_park);
        }
    }

    fn reset(&mut self) {
        self.spins = 0;
        self.yields = 0;
        self.park = self.min_park;
    }
}

/// Sleep a fixed time whenever a cycle did no work.
#[derive(Debug, Clone)]
pub struct SleepingIdle {
    period: Duration,
}

impl SleepingIdle {
    /// Sleep `period` after each idle cycle.
    pub fn new(period: Duration) -> Self {
        Self { period }
    }
}

impl Idle for SleepingIdle {
    fn idle(&mut self, work_count: usize) {
        if work_count == 0 {
            std::thread::sleep(self.period);
        }
    }

    fn reset(&mut self) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn backoff_parks_no_longer_than_its_maximum() {
        let mut idle =
            BackoffIdle::with(1, 1, Duration::from_micros(100), Duration::from_millis(2));
        for _ in 0..10 {
            idle.idle(0);
        }
        assert_eq!(idle.park, Duration::from_millis(2));
        let started = Instant::now();
        idle.idle(0);
        assert!(started.elapsed() >= Duration::from_millis(2));
        idle.idle(1);
        assert_eq!(idle.park, Duration::from_micros(100));
        assert_eq!(idle.spins, 0);
    }
}
