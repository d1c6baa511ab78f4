//! Where the key manager gets the time: the system clock, or a fake one in tests.

use core::cell::Cell;
use core::fmt;
use std::sync::{Arc, Mutex};

use time::{Duration, OffsetDateTime};

/// A source of the current time (UTC). Nothing in keyward reads the wall clock except
/// through this trait, so expiry and rotation can be tested with [`FakeClock`].
pub trait Clock: Send + Sync + 'static {
    /// The current time.
    fn now(&self) -> OffsetDateTime;
}

/// The operating system's clock.
///
/// On Linux it reads `CLOCK_REALTIME_COARSE`: the wall clock as of the last kernel tick
/// (1 to 4 ms old), several times cheaper than the precise clock, which matters when it is
/// read on every verification; expiry, last-use and audit times need no finer resolution.
/// Elsewhere it reads [`std::time::SystemTime`].
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
        let Some((secs, nanos)) = unix_now() else {
            return OffsetDateTime::now_utc();
        };
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

/// Seconds and nanoseconds since the Unix epoch, from the coarse realtime clock.
#[cfg(any(target_os = "linux", target_os = "android"))]
fn unix_now() -> Option<(u64, u32)> {
    let now = rustix::time::clock_gettime(rustix::time::ClockId::RealtimeCoarse);
    Some((
        u64::try_from(now.tv_sec).ok()?,
        u32::try_from(now.tv_nsec).ok()?,
    ))
}

/// Seconds and nanoseconds since the Unix epoch.
#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn unix_now() -> Option<(u64, u32)> {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::SystemTime::UNIX_EPOCH)
        .ok()?;
    Some((since.as_secs(), since.subsec_nanos()))
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
        // The coarse clock lags the precise one by at most one kernel tick (1 to 10 ms
        // depending on CONFIG_HZ); allow a generous 50 ms.
        let tick = time::Duration::milliseconds(50);
        let mut previous = clock.now();
        for _ in 0..10_000 {
            let before = OffsetDateTime::now_utc();
            let now = clock.now();
            let after = OffsetDateTime::now_utc();
            assert!(
                before - tick <= now && now <= after,
                "{before} <= {now} <= {after}"
            );
            assert!(now >= previous, "{previous} then {now}");
            assert_eq!(now.offset(), time::UtcOffset::UTC);
            previous = now;
        }
    }

    #[test]
    fn each_thread_reads_its_own_cache() {
        let before = OffsetDateTime::now_utc();
        let seen = std::thread::spawn(|| SystemClock.now())
            .join()
            .expect("thread");
        let tick = time::Duration::milliseconds(50);
        assert!(seen >= before - tick && seen <= OffsetDateTime::now_utc());
    }
}
