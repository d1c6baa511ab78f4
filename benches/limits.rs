//! One rate-limit decision: in memory (target at most 100 ns) beside the raw governor keyed
//! limiter it is built on, measured in the same run; and the Redis round trip on loopback
//! (feature `redis`, skipped with a note when `KEYWARD_TEST_REDIS_URL` is absent).
//!
//! `cargo bench --features redis --bench limits`

use std::hint::black_box;
use std::num::NonZeroU32;

use criterion::{Criterion, criterion_group, criterion_main};
use keyward::{
    KeyId,
    limit::{LimitPolicy, MemoryLimiter, Rate, Subject},
};

fn ids(n: usize) -> Vec<KeyId> {
    let format = keyward::KeyFormat::new(["bench"]).expect("static format");
    (0..n)
        .map(|_| format.generate().expect("randomness").id())
        .collect()
}

fn memory(c: &mut Criterion) {
    // A budget that never runs out during the run, so every decision takes the allow path.
    let policy = LimitPolicy::default().limit("reads", Rate::per_second(1_000_000).expect("rate"));
    let limiter = MemoryLimiter::new(policy);
    let subjects: Vec<Subject> = ids(1024).into_iter().map(Subject::key_id).collect();
    let mut i = 0;
    c.bench_function("memory limiter: check (1,024 keys)", |b| {
        b.iter(|| {
            i = (i + 1) & 1023;
            black_box(limiter.check_now(black_box(&subjects[i]), "reads", 1))
        });
    });

    // The deny path: the budget is spent, so every decision computes the exact retry time
    // (from a second clock reading).
    let spent =
        MemoryLimiter::new(LimitPolicy::empty().limit("writes", Rate::per_hour(1).expect("rate")));
    let subject = &subjects[0];
    assert!(
        spent
            .check_now(subject, "writes", 1)
            .expect("known limit")
            .is_allowed()
    );
    c.bench_function("memory limiter: check, denied (1 key)", |b| {
        b.iter(|| black_box(spent.check_now(black_box(subject), "writes", 1)));
    });

    // The primitive the limiter is built on: governor's keyed GCRA, `check_key` on the same
    // key type (a `KeyId` by value) in governor's DashMap store with the same seeded foldhash
    // and the same clock (governor's `QuantaClock`), so the ratio is the cost of the limit's
    // name, the policy, cost `n`, the decision's numbers and the sweep.
    let quota = governor::Quota::per_second(NonZeroU32::new(1_000_000).expect("nonzero"));
    let same = governor::RateLimiter::dashmap_with_clock_and_hasher(
        quota,
        governor::clock::QuantaClock::default(),
        hashbrown::DefaultHashBuilder::default(),
    );
    let keys = ids(1024);
    let mut j = 0;
    c.bench_function(
        "raw governor keyed check_key, same key, hasher and clock (1,024 keys)",
        |b| {
            b.iter(|| {
                j = (j + 1) & 1023;
                black_box(same.check_key(black_box(&keys[j])).is_ok())
            });
        },
    );

    // governor's default keyed limiter: SipHash, and its default clock (`QuantaClock` with
    // the `quanta` feature keyward enables).
    let raw = governor::RateLimiter::keyed(quota);
    let mut j = 0;
    c.bench_function("raw governor keyed check_key (1,024 keys)", |b| {
        b.iter(|| {
            j = (j + 1) & 1023;
            black_box(raw.check_key(black_box(&keys[j])).is_ok())
        });
    });
}

#[cfg(feature = "redis")]
fn redis(c: &mut Criterion) {
    use keyward::limit::{Limiter, RedisLimiter};
    let Ok(url) = std::env::var("KEYWARD_TEST_REDIS_URL") else {
        println!("note: KEYWARD_TEST_REDIS_URL is not set; skipping the Redis round trip");
        return;
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let policy = LimitPolicy::empty().limit("reads", Rate::per_second(1_000_000).expect("rate"));
    let limiter = runtime.block_on(async {
        RedisLimiter::connect(&url, policy)
            .expect("redis url")
            .with_key_prefix("keyward-bench:")
    });
    let subject = Subject::key_id(ids(1)[0]);
    c.bench_function("redis limiter: check (loopback round trip)", |b| {
        b.iter(|| black_box(runtime.block_on(limiter.check(&subject, "reads", 1))));
    });
    assert!(!limiter.is_degraded(), "redis answered every decision");
}

#[cfg(not(feature = "redis"))]
fn redis(_: &mut Criterion) {
    println!("note: built without feature `redis`; skipping the Redis round trip");
}

criterion_group!(benches, memory, redis);
criterion_main!(benches);
