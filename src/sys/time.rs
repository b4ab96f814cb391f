//! Absolute deadlines on `CLOCK_MONOTONIC`, the clock every timed wait in the crate is measured on.

use std::time::{Duration, Instant};

/// A point in time on `CLOCK_MONOTONIC`, the same clock in every process of the machine.
///
/// Timed waits take a deadline rather than a duration so that a wait that is interrupted and
/// restarted (a signal, a spurious wake) never waits longer in total than asked.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Deadline {
    nanos: u64,
}

impl Deadline {
    /// The current time.
    pub(crate) fn now() -> Self {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `ts` is a valid, writable timespec and CLOCK_MONOTONIC is always available on
        // Linux, so the call cannot fail or write out of bounds.
        unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
        Self {
            nanos: ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64,
        }
    }

    /// `timeout` from now; saturates instead of overflowing for absurd durations.
    pub(crate) fn after(timeout: Duration) -> Self {
        let add = u64::try_from(timeout.as_nanos()).unwrap_or(u64::MAX);
        Self {
            nanos: Self::now().nanos.saturating_add(add),
        }
    }

    /// The point on `CLOCK_MONOTONIC` that `at` names. `Instant` is measured on the same
    /// clock on Linux, but its representation is private, so the distance from now is carried
    /// over: a past instant gives a deadline that has passed, a far one saturates.
    ///
    /// The `Instant` is read first: the deadline is then never earlier than `at` (by the time
    /// between the two reads at most later), so a wait until it never ends before `at`.
    pub(crate) fn at(at: Instant) -> Self {
        let instant_now = Instant::now();
        let now = Self::now();
        let nanos = match at.checked_duration_since(instant_now) {
            Some(ahead) => now
                .nanos
                .saturating_add(u64::try_from(ahead.as_nanos()).unwrap_or(u64::MAX)),
            None => {
                let behind = instant_now.duration_since(at);
                now.nanos
                    .saturating_sub(u64::try_from(behind.as_nanos()).unwrap_or(u64::MAX))
            }
        };
        Self { nanos }
    }

    /// Time left until the deadline, zero when it has passed.
    pub(crate) fn remaining(self) -> Duration {
        Duration::from_nanos(self.nanos.saturating_sub(Self::now().nanos))
    }

    /// Whether the deadline has passed.
    pub(crate) fn has_passed(self) -> bool {
        Self::now() >= self
    }

    /// The deadline as an absolute `timespec`, for `FUTEX_WAIT_BITSET`.
    pub(crate) fn as_timespec(self) -> rustix::thread::futex::Timespec {
        rustix::thread::futex::Timespec {
            tv_sec: (self.nanos / 1_000_000_000) as i64,
            tv_nsec: (self.nanos % 1_000_000_000) as i64,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_carries_an_instant_over() {
        let past = Deadline::at(Instant::now() - Duration::from_millis(5));
        assert!(past.has_passed());
        let future = Deadline::at(Instant::now() + Duration::from_secs(10));
        assert!(!future.has_passed());
        let left = future.remaining();
        assert!(left > Duration::from_secs(9) && left <= Duration::from_secs(10));
        let far = Deadline::at(Instant::now() + Duration::from_secs(1 << 40));
        assert!(far > future);
    }
}
