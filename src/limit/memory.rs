//! [`MemoryLimiter`]: GCRA in the memory of one instance, from `governor`.

use core::fmt;
use core::future::{Future, ready};
use core::num::NonZeroU32;
use core::time::Duration;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use governor::clock::{Clock as GovernorClock, QuantaClock, QuantaInstant, Reference};
use governor::middleware::StateInformationMiddleware;
use governor::nanos::Nanos;
use governor::state::keyed::{DashMapStateStore, ShrinkableKeyedStateStore};
use governor::state::{InMemoryState, NotKeyed, StateStore};
use governor::{Quota, RateLimiter};
use hashbrown::DefaultHashBuilder;
use time::OffsetDateTime;

use super::policy::{LimitPolicy, Rate, Resolved};
use super::{Decision, LimitError, Limiter, Subject, SubjectKind, UnknownLimit};
use crate::clock::Clock;
use crate::key::id::KeyId;

/// Who is charged, as stored in a bucket's state map: the subject without its owner (an id
/// determines its owner). A key is stored by value (`KeyId` is `Copy`), so a key's decision
/// neither allocates nor touches a reference count.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Who {
    Key(KeyId),
    Owner(Arc<str>),
    Client(IpAddr),
}

impl Who {
    fn of(subject: &Subject) -> Self {
        match &subject.0 {
            SubjectKind::Key { id, .. } => Self::Key(*id),
            SubjectKind::Owner(owner) => Self::Owner(Arc::clone(owner)),
            SubjectKind::Client(addr) => Self::Client(*addr),
        }
    }
}

/// The limiter's time: the monotonic clock, or a keyward [`Clock`] (tests use
/// [`FakeClock`](crate::clock::FakeClock)), as nanoseconds since the limiter was made.
///
/// The monotonic clock is governor's `QuantaClock` (the processor's invariant time-stamp
/// counter, scaled to nanoseconds: the clock of governor's own `check_key`, the primitive
/// of BENCHMARKS.md's "Rate limits" rows, so the decision is measured against it;
/// `quanta` falls back to the OS clock where the counter is not reliable).
#[derive(Clone)]
enum TimeSource {
    Monotonic {
        clock: QuantaClock,
        origin: QuantaInstant,
    },
    Injected {
        clock: Arc<dyn Clock>,
        origin: OffsetDateTime,
    },
}

impl GovernorClock for TimeSource {
    type Instant = Nanos;

    fn now(&self) -> Nanos {
        match self {
            Self::Monotonic { clock, origin } => clock.now().duration_since(*origin),
            Self::Injected { clock, origin } => {
                let nanos = (clock.now() - *origin).whole_nanoseconds().max(0);
                Nanos::new(u64::try_from(nanos).unwrap_or(u64::MAX))
            }
        }
    }
}

/// The states of one bucket: governor's `InMemoryState` (one atomic word) per subject in
/// governor's `DashMap` store, hashed with a seeded foldhash instead of SipHash. It counts
/// the subjects it adds, so the limiter knows when a sweep is due without touching a shared
/// counter on every decision.
struct States {
    map: DashMapStateStore<Who, DefaultHashBuilder>,
    /// Subjects added since the last sweep.
    added: AtomicUsize,
    /// Sweep once `added` reaches this (`usize::MAX` while a sweep runs).
    sweep_at: AtomicUsize,
}

/// The state store handed to governor; the bucket keeps a second handle on it.
#[derive(Clone)]
struct Store(Arc<States>);

impl StateStore for Store {
    type Key = Who;

    fn measure_and_replace<T, F, E>(&self, key: &Who, f: F) -> Result<T, E>
    where
        F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
    {
        // As governor's own DashMap store: a read lock on the shard and one atomic
        // compare-and-swap for a known subject; the shard's write lock to add a new one.
        if let Some(state) = self.0.map.get(key) {
            return InMemoryState::measure_and_replace(&state, &NotKeyed::NonKey, f);
        }
        let state = self.0.map.entry(key.clone()).or_insert_with(|| {
            self.0.added.fetch_add(1, Ordering::Relaxed);
            InMemoryState::default()
        });
        InMemoryState::measure_and_replace(&state, &NotKeyed::NonKey, f)
    }
}

impl ShrinkableKeyedStateStore<Who> for Store {
    fn retain_recent(&self, drop_below: Nanos) {
        ShrinkableKeyedStateStore::retain_recent(&self.0.map, drop_below);
    }

    fn shrink_to_fit(&self) {
        ShrinkableKeyedStateStore::shrink_to_fit(&self.0.map);
    }

    fn len(&self) -> usize {
        ShrinkableKeyedStateStore::len(&self.0.map)
    }

    fn is_empty(&self) -> bool {
        ShrinkableKeyedStateStore::is_empty(&self.0.map)
    }
}

type Gcra = RateLimiter<Who, Store, TimeSource, StateInformationMiddleware>;

/// One limit at one rate: its GCRA and the states of every subject charged at that rate.
struct Bucket {
    rate: Rate,
    /// `rate.interval()`, computed once (it divides 128-bit numbers).
    interval: Duration,
    gcra: Gcra,
    states: Arc<States>,
}

/// Sweep a bucket at least this rarely (in subjects added), so a small map is not swept all
/// the time.
const MIN_SWEEP_INTERVAL: usize = 1024;

impl Bucket {
    fn new(rate: Rate, clock: &TimeSource) -> Self {
        let states = Arc::new(States {
            map: DashMapStateStore::with_hasher(DefaultHashBuilder::default()),
            added: AtomicUsize::new(0),
            sweep_at: AtomicUsize::new(MIN_SWEEP_INTERVAL),
        });
        let gcra = RateLimiter::new(quota(rate), Store(Arc::clone(&states)), clock.clone());
        Self {
            rate,
            interval: rate.interval(),
            gcra,
            states,
        }
    }

    /// Forgets every subject whose budget is full again, and releases the memory.
    fn forget_idle(&self) {
        self.gcra.retain_recent();
        self.gcra.shrink_to_fit();
    }

    /// Amortized cleanup: sweep once the subjects added since the last sweep reach the
    /// number held after it (so the cost per new subject stays constant). Two relaxed loads
    /// of words that change only when a subject is added.
    fn maybe_sweep(&self) {
        let due = self.states.sweep_at.load(Ordering::Relaxed);
        let added = self.states.added.load(Ordering::Relaxed);
        if added < due {
            return;
        }
        // One thread sweeps; the others carry on.
        if self
            .states
            .sweep_at
            .compare_exchange(due, usize::MAX, Ordering::AcqRel, Ordering::Relaxed)
            .is_err()
        {
            return;
        }
        self.forget_idle();
        self.states.added.fetch_sub(added, Ordering::Relaxed);
        let held = self.gcra.len();
        self.states
            .sweep_at
            .store(held.max(MIN_SWEEP_INTERVAL), Ordering::Release);
    }
}

/// Rate limits counted in this instance's memory, with GCRA from `governor`: one sharded
/// concurrent state map per limit and rate, holding one 8-byte atomic state per subject.
///
/// Memory stays bounded by the number of *active* subjects: a subject whose budget is full
/// again is indistinguishable from a new one and is forgotten by a sweep, which runs
/// automatically (amortized, once the number of subjects added since the last sweep reaches
/// the number tracked after it) or on demand with [`MemoryLimiter::forget_idle`].
///
/// A decision for a key allocates nothing: one foldhash lookup of the limit's name, one of
/// the key's state under a shard's read lock, one clock reading (two when denied, so the
/// retry time is counted from the answer) and one atomic compare-and-swap.
///
/// ```
/// use keyward::limit::{Decision, LimitPolicy, Limiter, MemoryLimiter, Subject};
/// # async fn demo(verified: keyward::Verified) -> Result<(), keyward::limit::LimitError> {
/// let limiter = MemoryLimiter::new(LimitPolicy::default());
/// match limiter.check(&Subject::key(&verified), "writes", 1).await? {
///     Decision::Allowed { remaining, .. } => println!("{remaining} writes left"),
///     denied => println!("retry after {:?}", denied.retry_after()),
/// }
/// # Ok(()) }
/// ```
pub struct MemoryLimiter {
    policy: LimitPolicy,
    /// Indexed by limit (as the policy numbers them): one bucket per rate the limit may
    /// have, its default first.
    buckets: Vec<Box<[Bucket]>>,
    clock: TimeSource,
}

impl MemoryLimiter {
    /// A limiter over `policy`, on the monotonic clock.
    #[must_use]
    pub fn new(policy: LimitPolicy) -> Self {
        let clock = QuantaClock::default();
        let origin = clock.now();
        Self::with_time(policy, TimeSource::Monotonic { clock, origin })
    }

    /// A limiter over `policy` on `clock` (tests use [`FakeClock`](crate::clock::FakeClock) for
    /// exact allowances). A clock that goes back in time is treated as standing still.
    #[must_use]
    pub fn with_clock(policy: LimitPolicy, clock: impl Clock) -> Self {
        let clock: Arc<dyn Clock> = Arc::new(clock);
        let origin = clock.now();
        Self::with_time(policy, TimeSource::Injected { clock, origin })
    }

    fn with_time(policy: LimitPolicy, clock: TimeSource) -> Self {
        let buckets = policy
            .rates_by_limit()
            .into_iter()
            .map(|rates| rates.into_iter().map(|r| Bucket::new(r, &clock)).collect())
            .collect();
        Self {
            policy,
            buckets,
            clock,
        }
    }

    /// The policy.
    #[must_use]
    pub fn policy(&self) -> &LimitPolicy {
        &self.policy
    }

    /// Forgets every subject whose budget is full again, and releases the memory.
    pub fn forget_idle(&self) {
        self.buckets.iter().flatten().for_each(Bucket::forget_idle);
    }

    /// How many (subject, limit) states are held now.
    #[must_use]
    pub fn tracked(&self) -> usize {
        self.buckets.iter().flatten().map(|b| b.gcra.len()).sum()
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
        let Resolved { index, rate } = self.policy.charge(subject, limit, cost)?;
        let n = NonZeroU32::new(cost).ok_or(LimitError::ZeroCost)?;
        // Every rate the policy can resolve to has its bucket, made in `with_time`; the
        // default is first.
        let bucket = self
            .buckets
            .get(index)
            .and_then(|buckets| buckets.iter().find(|b| b.rate == rate))
            .ok_or_else(|| LimitError::UnknownLimit(UnknownLimit::new(limit)))?;
        let decision = self.decide(bucket, &Who::of(subject), n)?;
        bucket.maybe_sweep();
        Ok(decision)
    }

    fn decide(&self, bucket: &Bucket, who: &Who, n: NonZeroU32) -> Result<Decision, LimitError> {
        let rate = bucket.rate;
        let (limit, cost) = (rate.limit(), n.get());
        let interval = bucket.interval;
        match bucket.gcra.check_key_n(who, n) {
            Ok(Ok(snapshot)) => {
                let remaining = snapshot.remaining_burst_capacity().min(limit);
                Ok(Decision::Allowed {
                    limit,
                    remaining,
                    reset_after: interval.saturating_mul(limit - remaining),
                })
            }
            Ok(Err(not_until)) => {
                // Denied: a second clock reading, so the wait is counted from now.
                let retry_after = not_until.wait_time_from(self.clock.now());
                Ok(Decision::Denied {
                    limit,
                    retry_after,
                    // The state is full once the request would fit and the other units
                    // have come back too.
                    reset_after: retry_after.saturating_add(interval.saturating_mul(limit - cost)),
                })
            }
            Err(_) => Err(LimitError::CostTooHigh { cost, limit }),
        }
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
    // Nothing to wait for: the decision (and the charge) is made at the call, before the
    // future is first polled, so a future created and dropped still charges the budget.
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
