//! [`MemoryLimiter`]: GCRA in the memory of one instance, from `governor`.

use core::fmt;
use core::future::{Future, ready};
use core::num::NonZeroU32;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use governor::clock::Clock as GovernorClock;
use governor::middleware::StateInformationMiddleware;
use governor::nanos::Nanos;
use governor::state::keyed::DashMapStateStore;
use governor::{Quota, RateLimiter};
use time::OffsetDateTime;

use super::policy::{LimitPolicy, Rate};
use super::{Decision, LimitError, Limiter, Subject, SubjectKind};
use crate::clock::Clock;
use crate::key_id::KeyId;

/// Who is charged, as stored in the state map: the limit's index and the subject without
/// its owner (an id determines its owner).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Slot {
    limit: u32,
    who: Who,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Who {
    Key(KeyId),
    Owner(Arc<str>),
    Client(IpAddr),
}

/// The limiter's time: the monotonic clock, or a keyward [`Clock`] (tests use
/// [`FakeClock`](crate::FakeClock)), as nanoseconds since the limiter was made.
#[derive(Clone)]
enum TimeSource {
    Monotonic(std::time::Instant),
    Injected {
        clock: Arc<dyn Clock>,
        origin: OffsetDateTime,
    },
}

impl GovernorClock for TimeSource {
    type Instant = Nanos;

    fn now(&self) -> Nanos {
        match self {
            Self::Monotonic(origin) => Nanos::from(origin.elapsed()),
            Self::Injected { clock, origin } => {
                let nanos = (clock.now() - *origin).whole_nanoseconds().max(0);
                Nanos::from(u64::try_from(nanos).unwrap_or(u64::MAX))
            }
        }
    }
}

type Gcra = RateLimiter<Slot, DashMapStateStore<Slot>, TimeSource, StateInformationMiddleware>;

/// Rate limits counted in this instance's memory, with GCRA from `governor`: one lock-free
/// keyed state map per distinct rate in the policy, holding one 8-byte state per subject.
///
/// Memory stays bounded by the number of *active* subjects: a subject whose budget is full
/// again is indistinguishable from a new one and is forgotten by a sweep, which runs
/// automatically (amortized, once the number of decisions since the last sweep reaches the
/// number of subjects tracked) or on demand with [`MemoryLimiter::forget_idle`].
///
/// ```
/// use keyward::{Decision, LimitPolicy, Limiter, MemoryLimiter, Subject};
/// # async fn demo(verified: keyward::Verified) -> Result<(), keyward::LimitError> {
/// let limiter = MemoryLimiter::new(LimitPolicy::default());
/// match limiter.check(&Subject::key(&verified), "writes", 1).await? {
///     Decision::Allowed { remaining, .. } => println!("{remaining} writes left"),
///     denied => println!("retry after {:?}", denied.retry_after()),
/// }
/// # Ok(()) }
/// ```
pub struct MemoryLimiter {
    policy: Arc<LimitPolicy>,
    /// One per distinct rate, in the order of `rates`.
    gcras: Vec<(Rate, Gcra)>,
    clock: TimeSource,
    decisions: AtomicU64,
    next_sweep: AtomicU64,
}

/// Sweep at least this rarely (in decisions), so a small map is not swept all the time.
const MIN_SWEEP_INTERVAL: u64 = 4096;

impl MemoryLimiter {
    /// A limiter over `policy`, on the monotonic clock.
    #[must_use]
    pub fn new(policy: LimitPolicy) -> Self {
        Self::with_time(policy, TimeSource::Monotonic(std::time::Instant::now()))
    }

    /// A limiter over `policy` on `clock` (tests use [`FakeClock`](crate::FakeClock) for
    /// exact allowances). A clock that goes back in time is treated as standing still.
    #[must_use]
    pub fn with_clock(policy: LimitPolicy, clock: impl Clock) -> Self {
        let clock: Arc<dyn Clock> = Arc::new(clock);
        let origin = clock.now();
        Self::with_time(policy, TimeSource::Injected { clock, origin })
    }

    fn with_time(policy: LimitPolicy, clock: TimeSource) -> Self {
        let gcras = policy
            .rates()
            .into_iter()
            .map(|rate| {
                let gcra: Gcra = RateLimiter::<_, _, _, StateInformationMiddleware>::new(
                    quota(rate),
                    DashMapStateStore::default(),
                    clock.clone(),
                );
                (rate, gcra)
            })
            .collect();
        Self {
            policy: Arc::new(policy),
            gcras,
            clock,
            decisions: AtomicU64::new(0),
            next_sweep: AtomicU64::new(MIN_SWEEP_INTERVAL),
        }
    }

    /// The policy.
    #[must_use]
    pub fn policy(&self) -> &LimitPolicy {
        &self.policy
    }

    /// Forgets every subject whose budget is full again, and releases the memory.
    pub fn forget_idle(&self) {
        for (_, gcra) in &self.gcras {
            gcra.retain_recent();
            gcra.shrink_to_fit();
        }
    }

    /// How many (subject, limit) states are held now.
    #[must_use]
    pub fn tracked(&self) -> usize {
        self.gcras.iter().map(|(_, g)| g.len()).sum()
    }

    /// The decision, synchronously (the [`Limiter`] future is this, ready at once).
    ///
    /// # Errors
    /// As for [`Limiter::check`] (never [`LimitError::Unavailable`]).
    pub fn check_now(
        &self,
        subject: &Subject,
        limit: &str,
        cost: u32,
    ) -> Result<Decision, LimitError> {
        let resolved = self
            .policy
            .resolve(subject, limit)
            .ok_or_else(|| LimitError::UnknownLimit(limit.to_owned()))?;
        let rate = resolved.rate;
        let n = NonZeroU32::new(cost).ok_or(LimitError::ZeroCost)?;
        if cost > rate.limit() {
            return Err(LimitError::CostTooHigh {
                cost,
                limit: rate.limit(),
            });
        }
        let Some((_, gcra)) = self.gcras.iter().find(|(r, _)| *r == rate) else {
            // Every rate of the policy has its map, made in `with_time`.
            return Err(LimitError::UnknownLimit(limit.to_owned()));
        };
        let slot = Slot {
            limit: u32::try_from(resolved.index).unwrap_or(u32::MAX),
            who: match &subject.0 {
                SubjectKind::Key { id, .. } => Who::Key(*id),
                SubjectKind::Owner(owner) => Who::Owner(Arc::clone(owner)),
                SubjectKind::Client(addr) => Who::Client(*addr),
            },
        };
        let interval = rate.interval();
        let decision = match gcra.check_key_n(&slot, n) {
            Ok(Ok(snapshot)) => {
                let remaining = snapshot.remaining_burst_capacity();
                Decision::Allowed {
                    limit: rate.limit(),
                    remaining,
                    reset_after: interval
                        .saturating_mul(rate.limit() - remaining.min(rate.limit())),
                }
            }
            Ok(Err(not_until)) => {
                let retry_after = not_until.wait_time_from(self.clock.now());
                Decision::Denied {
                    limit: rate.limit(),
                    retry_after,
                    // The state is full once the request would fit and the other units
                    // have come back too.
                    reset_after: retry_after
                        .saturating_add(interval.saturating_mul(rate.limit() - cost)),
                }
            }
            Err(_) => {
                return Err(LimitError::CostTooHigh {
                    cost,
                    limit: rate.limit(),
                });
            }
        };
        self.maybe_sweep();
        Ok(decision)
    }

    /// Amortized cleanup: sweep once the decisions since the last sweep reach the number
    /// of states held after it (so the cost per decision stays constant).
    fn maybe_sweep(&self) {
        let n = self.decisions.fetch_add(1, Ordering::Relaxed);
        let due = self.next_sweep.load(Ordering::Relaxed);
        if n < due {
            return;
        }
        // One thread sweeps; the others carry on.
        if self
            .next_sweep
            .compare_exchange(due, u64::MAX, Ordering::AcqRel, Ordering::Relaxed)
            .is_err()
        {
            return;
        }
        self.forget_idle();
        let held = u64::try_from(self.tracked()).unwrap_or(u64::MAX);
        self.next_sweep.store(
            n.saturating_add(held.max(MIN_SWEEP_INTERVAL)),
            Ordering::Release,
        );
    }
}

fn quota(rate: Rate) -> Quota {
    // `Rate` guarantees a limit of at least 1 and an interval of at least 1 µs.
    let burst = NonZeroU32::new(rate.limit()).unwrap_or(NonZeroU32::MIN);
    Quota::with_period(rate.interval())
        .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
        .allow_burst(burst)
}

impl Limiter for MemoryLimiter {
    fn check(
        &self,
        subject: &Subject,
        limit: &str,
        cost: u32,
    ) -> impl Future<Output = Result<Decision, LimitError>> + Send {
        ready(self.check_now(subject, limit, cost))
    }
}

impl fmt::Debug for MemoryLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryLimiter")
            .field("policy", &self.policy)
            .field("tracked", &self.tracked())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use core::time::Duration;

    use super::*;
    use crate::clock::FakeClock;

    impl MemoryLimiter {
        fn elapsed(&self) -> Duration {
            Duration::from(self.clock.now())
        }
    }

    #[test]
    fn injected_clock_drives_time() {
        let clock = FakeClock::new(OffsetDateTime::UNIX_EPOCH);
        let limiter = MemoryLimiter::with_clock(LimitPolicy::default(), clock.clone());
        clock.advance(time::Duration::milliseconds(1500));
        assert_eq!(limiter.elapsed(), Duration::from_millis(1500));
        clock.advance(time::Duration::seconds(-10));
        assert_eq!(limiter.elapsed(), Duration::ZERO);
    }
}
