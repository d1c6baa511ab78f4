//! Where the key manager gets the time: the system clock, or a fake one in tests.
//!
//! ```
//! use keyward::clock::FakeClock;
//! use keyward::{Hasher, IssueRequest, KeyFormat, KeyManager, MemoryStore, Pepper, RequestContext};
//! use time::{Duration, macros::datetime};
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), keyward::Error> {
//! let clock = FakeClock::new(datetime!(2026-01-01 0:00 UTC));
//! let manager = KeyManager::new(MemoryStore::new(), KeyFormat::new(["tak"])?, Hasher::fast(Pepper::random("k1")?))
//!     .with_clock(clock.clone());
//! let ctx = RequestContext::new();
//! let issued = manager.issue(IssueRequest::new("ci", "user_1"), &ctx).await?; // 90 days by default
//! clock.advance(Duration::days(91));
//! assert!(manager.verify(issued.key.expose_secret(), &ctx).await.is_err()); // expired
//! # Ok(()) }
//! ```

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
/// (1 to 4 ms old), cheaper than the precise clock, which matters because it is read on
/// every verification; expiry, last-use and audit times need no finer resolution.
/// Elsewhere it reads [`std::time::SystemTime`].
///
/// The coarse clock is for BENCHMARKS.md, Hot path: "manager verify + authorize, memory
/// store, record hot" (target ≤ 2x raw HMAC-SHA256), where the clock is read once per
/// verification: with the precise clock that row was about a quarter slower when measured
/// for issue 19.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> OffsetDateTime {
        // No per-thread cache of the current second's date: measured for issue 19, it
        // bought nothing on that row (within the run-to-run noise, under 5%).
        unix_now()
            .and_then(|(secs, nanos)| {
                OffsetDateTime::from_unix_timestamp(i64::try_from(secs).ok()?)
                    .ok()?
                    .replace_nanosecond(nanos)
                    .ok()
            })
            .unwrap_or_else(OffsetDateTime::now_utc)
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
/// use keyward::{Clock, clock::FakeClock};
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
    fn another_thread_reads_the_same_clock() {
        let before = OffsetDateTime::now_utc();
        let seen = std::thread::spawn(|| SystemClock.now())
            .join()
            .expect("thread");
        let tick = time::Duration::milliseconds(50);
        assert!(seen >= before - tick && seen <= OffsetDateTime::now_utc());
    }
}
