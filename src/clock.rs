//! Where the key manager gets the time: the system clock, or a fake one in tests.

use core::cell::Cell;
use core::fmt;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use time::{Duration, OffsetDateTime};

/// A source of the current time (UTC). Nothing in keyward reads the wall clock except
/// through this trait, so expiry and rotation can be tested with [`FakeClock`].
pub trait Clock: Send + Sync + 'static {
    /// The current time.
    fn now(&self) -> OffsetDateTime;
}

/// The operating system's clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> OffsetDateTime {
        // Converting a system time into a calendar date costs about as much as reading the
        // clock; each thread keeps the date of the current second and only swaps the
        // nanoseconds in until the second changes.
        thread_local! {
            static SECOND: Cell<(u64, OffsetDateTime)> =
                const { Cell::new((u64::MAX, OffsetDateTime::UNIX_EPOCH)) };
        }
        let Ok(since_epoch) = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH) else {
            return OffsetDateTime::now_utc();
        };
        let (secs, nanos) = (since_epoch.as_secs(), since_epoch.subsec_nanos());
        SECOND.with(|cached| {
            let (second, at) = cached.get();
            if second == secs {
                if let Ok(now) = at.replace_nanosecond(nanos) {
                    return now;
                }
            }
            let now = i64::try_from(secs)
                .ok()
                .and_then(|s| OffsetDateTime::UNIX_EPOCH.checked_add(Duration::seconds(s)))
                .and_then(|t| t.replace_nanosecond(nanos).ok());
            match now {
                Some(now) => {
                    cached.set((secs, now));
                    now
                }
                None => OffsetDateTime::now_utc(),
            }
        })
    }
}

/// A clock that stands still until told to move; clones share the same time.
///
/// ```
/// use keyward::{Clock, FakeClock};
/// use time::{Duration, macros::datetime};
/// let clock = FakeClock::new(datetime!(2026-01-01 0:00 UTC));
/// clock.advance(Duration::days(1));
/// assert_eq!(clock.now(), datetime!(2026-01-02 0:00 UTC));
/// ```
#[derive(Clone)]
pub struct FakeClock {
    now: Arc<Mutex<OffsetDateTime>>,
}

impl FakeClock {
    /// A fake clock set to `now`.
    #[must_use]
    pub fn new(now: OffsetDateTime) -> Self {
        Self {
            now: Arc::new(Mutex::new(now)),
        }
    }

    /// Moves the clock forward (or back, with a negative duration).
    pub fn advance(&self, by: Duration) {
        let mut now = self
            .now
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *now = now.saturating_add(by);
    }

    /// Sets the clock.
    pub fn set(&self, to: OffsetDateTime) {
        *self
            .now
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = to;
    }
}

impl Clock for FakeClock {
    fn now(&self) -> OffsetDateTime {
        *self
            .now
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl fmt::Debug for FakeClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("FakeClock").field(&self.now()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::{Clock, SystemClock};
    use time::OffsetDateTime;

    #[test]
    fn system_clock_agrees_with_the_time_crate() {
        let clock = SystemClock;
        for _ in 0..10_000 {
            let before = OffsetDateTime::now_utc();
            let now = clock.now();
            let after = OffsetDateTime::now_utc();
            assert!(
                before <= now && now <= after,
                "{before} <= {now} <= {after}"
            );
            assert_eq!(now.offset(), time::UtcOffset::UTC);
        }
    }

    #[test]
    fn each_thread_reads_its_own_cache() {
        let before = OffsetDateTime::now_utc();
        let seen = std::thread::spawn(|| SystemClock.now())
            .join()
            .expect("thread");
        assert!(seen >= before && seen <= OffsetDateTime::now_utc());
    }
}
