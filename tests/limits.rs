//! Rate limits in memory, on a fake clock: exact allowances, retry times, refill,
//! independent limits, overrides, the failed-verification throttle, bounded memory and
//! concurrency.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use keyward::testing::{Fixture, epoch, random_id};
use keyward::{
    clock::FakeClock,
    limit::{
        Decision, FailureThrottle, LimitError, LimitPolicy, Limiter, MemoryLimiter, Rate, Subject,
    },
};

fn secs(s: i64) -> time::Duration {
    time::Duration::seconds(s)
}

fn limiter(policy: LimitPolicy) -> (MemoryLimiter, FakeClock) {
    let clock = FakeClock::new(epoch());
    (MemoryLimiter::with_clock(policy, clock.clone()), clock)
}

fn check(l: &MemoryLimiter, s: &Subject, limit: &str) -> Decision {
    l.check_now(s, limit, 1).expect("known limit, valid cost")
}

#[test]
fn sixty_writes_pass_the_sixty_first_waits_one_second() {
    let (l, clock) = limiter(LimitPolicy::default());
    let key = Subject::key_id(random_id());
    for i in 0..60 {
        let d = check(&l, &key, "writes");
        assert_eq!(
            d,
            Decision::Allowed {
                limit: 60,
                remaining: 59 - i,
                reset_after: Duration::from_secs(u64::from(i) + 1),
            },
            "write {i}"
        );
    }
    let denied = check(&l, &key, "writes");
    assert_eq!(
        denied,
        Decision::Denied {
            limit: 60,
            retry_after: Duration::from_secs(1),
            reset_after: Duration::from_secs(60),
        }
    );
    assert_eq!(denied.retry_after(), Some(Duration::from_secs(1)));
    assert_eq!(
        denied.headers(),
        [
            ("RateLimit-Limit", 60),
            ("RateLimit-Remaining", 0),
            ("RateLimit-Reset", 60)
        ]
    );
    // Later in the same second: still refused, with the shorter wait.
    clock.advance(time::Duration::milliseconds(400));
    assert_eq!(
        check(&l, &key, "writes").retry_after(),
        Some(Duration::from_millis(600))
    );
    // The budget returns one write per second.
    clock.advance(time::Duration::milliseconds(600));
    assert!(check(&l, &key, "writes").is_allowed());
    assert!(!check(&l, &key, "writes").is_allowed());
    // After a whole minute the whole budget is back, and no more.
    clock.advance(secs(60));
    let allowed = (0..100)
        .filter(|_| check(&l, &key, "writes").is_allowed())
        .count();
    assert_eq!(allowed, 60);
}

#[test]
fn denied_requests_cost_nothing() {
    let (l, clock) = limiter(LimitPolicy::default());
    let key = Subject::key_id(random_id());
    for _ in 0..60 {
        check(&l, &key, "writes");
    }
    for _ in 0..1000 {
        assert!(!check(&l, &key, "writes").is_allowed());
    }
    clock.advance(secs(1));
    assert!(check(&l, &key, "writes").is_allowed());
}

#[test]
fn cost_is_charged_in_units() {
    let (l, _clock) = limiter(LimitPolicy::default());
    let key = Subject::key_id(random_id());
    let d = l.check_now(&key, "writes", 50).expect("test setup");
    assert_eq!(d.remaining(), 10);
    let d = l.check_now(&key, "writes", 11).expect("test setup");
    assert_eq!(d.retry_after(), Some(Duration::from_secs(1)));
    assert_eq!(
        l.check_now(&key, "writes", 10)
            .expect("test setup")
            .remaining(),
        0
    );
}

#[test]
fn reads_and_writes_are_independent() {
    let (l, _clock) = limiter(LimitPolicy::default());
    let key = Subject::key_id(random_id());
    for _ in 0..60 {
        assert!(check(&l, &key, "writes").is_allowed());
    }
    assert!(!check(&l, &key, "writes").is_allowed());
    let reads = (0..700)
        .filter(|_| check(&l, &key, "reads").is_allowed())
        .count();
    assert_eq!(reads, 600);
    // Another key has its own budgets.
    let other = Subject::key_id(random_id());
    assert_eq!(check(&l, &other, "writes").remaining(), 59);
}

#[tokio::test]
async fn owner_and_key_overrides() {
    let f = Fixture::new();
    let special = f.verified("acme", "read tickets:write").await;
    let sibling = f.verified("acme", "read tickets:write").await;
    let stranger = f.verified("initech", "read tickets:write").await;
    let policy = LimitPolicy::default()
        .owner("acme", "writes", Rate::per_minute(600).expect("test setup"))
        .key(
            special.key_id(),
            "writes",
            Rate::per_minute(5).expect("test setup"),
        );
    let (l, _clock) = limiter(policy);
    let subject = Subject::key;
    let count = |s: &Subject| {
        (0..1000)
            .filter(|_| check(&l, s, "writes").is_allowed())
            .count()
    };
    assert_eq!(count(&subject(&special)), 5, "the key's own override wins");
    assert_eq!(count(&subject(&sibling)), 600, "the owner's override");
    assert_eq!(count(&subject(&stranger)), 60, "the default");
    // Without its owner, a key gets only key overrides and defaults.
    assert_eq!(count(&Subject::key_id(sibling.key_id())), 60);
    assert_eq!(check(&l, &subject(&stranger), "reads").limit(), 600);
}

#[tokio::test]
async fn an_owner_budget_is_shared_by_all_its_keys() {
    let (l, _clock) = limiter(LimitPolicy::default());
    let f = Fixture::new();
    let a = f.verified("acme", "read").await;
    let b = f.verified("acme", "read").await;
    let c = f.verified("initech", "read").await;
    for _ in 0..30 {
        assert!(check(&l, &Subject::owner_of(&a), "writes").is_allowed());
        assert!(check(&l, &Subject::owner_of(&b), "writes").is_allowed());
    }
    assert!(!check(&l, &Subject::owner_of(&a), "writes").is_allowed());
    assert!(!check(&l, &Subject::owner("acme"), "writes").is_allowed());
    assert!(check(&l, &Subject::owner_of(&c), "writes").is_allowed());
    // The keys' own budgets are separate from their owner's.
    assert!(check(&l, &Subject::key(&a), "writes").is_allowed());
}

#[test]
fn errors() {
    let (l, _clock) = limiter(LimitPolicy::default());
    let key = Subject::key_id(random_id());
    assert!(matches!(
        l.check_now(&key, "deletes", 1),
        Err(LimitError::UnknownLimit(unknown)) if unknown.name() == "deletes"
    ));
    assert!(matches!(
        l.check_now(&key, "writes", 0),
        Err(LimitError::ZeroCost)
    ));
    assert!(matches!(
        l.check_now(&key, "writes", 61),
        Err(LimitError::CostTooHigh {
            cost: 61,
            limit: 60
        })
    ));
    // None of these charged anything.
    assert_eq!(check(&l, &key, "writes").remaining(), 59);
}

#[test]
fn limits_with_the_same_rate_keep_separate_budgets() {
    let rate = Rate::per_minute(2).expect("test setup");
    let id = random_id();
    let policy = LimitPolicy::empty()
        .limit("a", rate)
        .limit("b", rate)
        .limit("c", Rate::per_minute(5).expect("test setup"))
        .key(id, "c", rate);
    let (l, _clock) = limiter(policy);
    let key = Subject::key_id(id);
    for name in ["a", "b", "c"] {
        let allowed = (0..10)
            .filter(|_| check(&l, &key, name).is_allowed())
            .count();
        assert_eq!(allowed, 2, "limit {name}");
    }
    // Another key gets the default of `c`, in its own budget.
    let other = Subject::key_id(random_id());
    assert_eq!(check(&l, &other, "c").remaining(), 4);
    assert_eq!(check(&l, &other, "a").remaining(), 1);
}

#[test]
fn the_monotonic_clock_gives_exact_retry_times() {
    let interval = Duration::from_secs(20 * 60);
    let l = MemoryLimiter::new(
        LimitPolicy::empty().limit("calls", Rate::per_hour(3).expect("test setup")),
    );
    let key = Subject::key_id(random_id());
    let started = std::time::Instant::now();
    for i in 0..3 {
        assert_eq!(check(&l, &key, "calls").remaining(), 2 - i);
    }
    let denied = check(&l, &key, "calls");
    let elapsed = started.elapsed();
    let retry = denied.retry_after().expect("the fourth call is denied");
    // One interval from the first call, counted from the denial: at most the interval, and
    // short of it by no more than the time the four calls took (plus 1 ms for the two
    // clocks' rounding).
    assert!(
        retry <= interval && retry + elapsed + Duration::from_millis(1) >= interval,
        "retry after {retry:?}, {elapsed:?} after the first call"
    );
}

#[tokio::test]
async fn failed_verifications_are_throttled_per_client() {
    let clock = FakeClock::new(epoch());
    let limiter = MemoryLimiter::with_clock(LimitPolicy::default(), clock.clone());
    let throttle = FailureThrottle::new(limiter).with_clock(clock.clone());
    let guesser = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 7));
    let neighbour = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 8));
    for _ in 0..10 {
        assert_eq!(throttle.blocked(guesser), None);
        assert!(
            throttle
                .record_failure(guesser)
                .await
                .expect("test setup")
                .is_allowed()
        );
    }
    // The eleventh failure is refused and blocks the client for one refill interval.
    let d = throttle.record_failure(guesser).await.expect("test setup");
    assert_eq!(d.retry_after(), Some(Duration::from_secs(6)));
    assert_eq!(throttle.blocked(guesser), Some(Duration::from_secs(6)));
    assert_eq!(throttle.blocked(neighbour), None);
    assert!(
        throttle
            .record_failure(neighbour)
            .await
            .expect("test setup")
            .is_allowed()
    );
    clock.advance(secs(5));
    assert_eq!(throttle.blocked(guesser), Some(Duration::from_secs(1)));
    clock.advance(secs(1));
    assert_eq!(throttle.blocked(guesser), None);
    // One guess per refill interval from now on.
    assert!(
        throttle
            .record_failure(guesser)
            .await
            .expect("test setup")
            .is_allowed()
    );
    assert!(
        !throttle
            .record_failure(guesser)
            .await
            .expect("test setup")
            .is_allowed()
    );
    // A key's budget is a different subject: failures never touch it.
    let key = Subject::key_id(random_id());
    assert_eq!(
        throttle
            .limiter()
            .check_now(&key, "reads", 1)
            .expect("test setup")
            .remaining(),
        599
    );
}

#[test]
fn memory_stays_bounded_as_keys_come_and_go() {
    let (l, clock) = limiter(LimitPolicy::default());
    let mut peak = 0;
    for i in 0..100_000u32 {
        let key = Subject::key_id(random_id());
        assert!(check(&l, &key, "writes").is_allowed());
        if i % 2 == 0 {
            assert!(check(&l, &key, "reads").is_allowed());
        }
        // Each key is used once, then never again: idle after one refill interval.
        clock.advance(time::Duration::milliseconds(10));
        peak = peak.max(l.tracked());
    }
    // Automatic sweeps keep the map near the number of keys active within a few seconds,
    // not the 150,000 states ever created.
    assert!(peak <= 10_000, "peak {peak} states");
    clock.advance(secs(120));
    l.forget_idle();
    assert_eq!(l.tracked(), 0);
}

#[test]
fn concurrent_decisions_admit_exactly_the_limit() {
    let policy = LimitPolicy::empty().limit("calls", Rate::per_hour(10_000).expect("test setup"));
    let (l, _clock) = limiter(policy);
    let l = Arc::new(l);
    let key = Subject::key_id(random_id());
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let (l, key) = (Arc::clone(&l), key.clone());
            std::thread::spawn(move || {
                (0..2_000)
                    .filter(|_| check(&l, &key, "calls").is_allowed())
                    .count()
            })
        })
        .collect();
    let admitted: usize = threads
        .into_iter()
        .map(|t| t.join().expect("test setup"))
        .sum();
    assert_eq!(admitted, 10_000);
}

#[tokio::test]
async fn the_trait_works_through_references_and_arcs() {
    async fn spend(l: impl Limiter, s: &Subject) -> Decision {
        l.check(s, "writes", 1).await.expect("test setup")
    }
    let (l, _clock) = limiter(LimitPolicy::default());
    let key = Subject::key_id(random_id());
    assert_eq!(spend(&l, &key).await.remaining(), 59);
    let l = Arc::new(l);
    assert_eq!(spend(Arc::clone(&l), &key).await.remaining(), 58);
    let denied = Decision::Denied {
        limit: 60,
        retry_after: Duration::from_millis(1),
        reset_after: Duration::from_secs(60),
    };
    let response =
        keyward::http::ErrorResponse::new(&denied.into_result().expect_err("an error"), "api");
    assert_eq!((response.status, response.retry_after), (429, Some(1)));
}
