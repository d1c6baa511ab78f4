//! Usage quotas that refill on a schedule, with the fake clock: a daily quota refills at
//! 00:00 UTC and not before, a monthly one on its day, a key without a schedule never
//! refills, and exactly one refill happens per period however many uses race at the
//! boundary, on the memory store and on SQLite.

use std::sync::Arc;

use keyward::{
    Hasher, IssueRequest, Issued, KeyFormat, KeyManager, KeyStore, MemoryStore, Pepper,
    RequestContext, Verified,
    clock::FakeClock,
    manager::{QuotaError, Remaining},
    record::QuotaRefill,
};
use time::macros::datetime;
use time::{Duration, OffsetDateTime};

fn manager<S: KeyStore>(store: S, clock: &FakeClock) -> KeyManager<S> {
    KeyManager::new(
        store,
        KeyFormat::new(["tak"]).expect("format"),
        Hasher::fast(Pepper::random("k1").expect("pepper")),
    )
    .with_clock(clock.clone())
}

async fn issue<S: KeyStore>(m: &KeyManager<S>, request: IssueRequest) -> Issued {
    m.issue(request, &RequestContext::new())
        .await
        .expect("issue")
}

async fn verify<S: KeyStore>(m: &KeyManager<S>, issued: &Issued) -> Verified {
    m.verify(issued.key.expose_secret(), &RequestContext::new())
        .await
        .expect("verify")
}

/// Takes one use at a time until refused; returns what each use left.
async fn drain<S: KeyStore>(m: &KeyManager<S>, key: &Verified) -> Vec<u64> {
    let mut left = Vec::new();
    loop {
        match m.consume(key, 1).await {
            Ok(Remaining::Uses(n)) => left.push(n),
            Err(QuotaError::Exhausted) => return left,
            other => panic!("unexpected {other:?}"),
        }
        assert!(left.len() <= 100, "the quota never ran out");
    }
}

fn exhausted(r: &Result<Remaining, QuotaError>) -> bool {
    matches!(r, Err(QuotaError::Exhausted))
}

#[tokio::test]
async fn a_daily_quota_refills_at_utc_midnight_and_not_before() {
    let clock = FakeClock::new(datetime!(2026-03-01 09:30 UTC));
    let m = manager(MemoryStore::new(), &clock);
    let issued = issue(
        &m,
        IssueRequest::new("free", "u").refill(QuotaRefill::daily(3).expect("valid")),
    )
    .await;
    assert_eq!(issued.record.remaining_uses, Some(3), "starts full");
    assert_eq!(issued.record.refilled_at, Some(m.now()));
    let key = verify(&m, &issued).await;
    assert_eq!(drain(&m, &key).await, [2, 1, 0], "3 uses, the 4th refused");

    clock.set(datetime!(2026-03-01 23:59:59.999_999 UTC));
    assert!(exhausted(&m.consume(&key, 1).await), "not before midnight");

    // The proof from yesterday is stale (it still says 3 uses, refilled at 9:30): the
    // refill works from it all the same.
    clock.set(datetime!(2026-03-02 00:00 UTC));
    assert_eq!(drain(&m, &key).await, [2, 1, 0], "3 again after midnight");
    clock.set(datetime!(2026-03-02 23:00 UTC));
    assert!(exhausted(&m.consume(&key, 1).await), "once per day");

    // A fresh proof, and a cost above one use.
    clock.set(datetime!(2026-03-03 08:00 UTC));
    let fresh = verify(&m, &issued).await;
    assert!(exhausted(&m.consume(&fresh, 4).await), "4 of 3");
    assert_eq!(
        m.consume(&fresh, 3).await.expect("refilled"),
        Remaining::Uses(0)
    );
    let record = m.get(&issued.key.id()).await.expect("record");
    assert_eq!(record.refilled_at, Some(datetime!(2026-03-03 08:00 UTC)));
    assert_eq!(record.remaining_uses, Some(0));
}

#[tokio::test]
async fn a_monthly_quota_refills_on_its_day() {
    let clock = FakeClock::new(datetime!(2026-01-20 12:00 UTC));
    let m = manager(MemoryStore::new(), &clock);
    let issued = issue(
        &m,
        IssueRequest::new("pro", "u").refill(QuotaRefill::monthly(3, 15).expect("valid")),
    )
    .await;
    let key = verify(&m, &issued).await;
    assert_eq!(drain(&m, &key).await, [2, 1, 0]);
    for not_yet in [
        datetime!(2026-02-01 00:00 UTC),
        datetime!(2026-02-14 23:59:59.999_999 UTC),
    ] {
        clock.set(not_yet);
        assert!(exhausted(&m.consume(&key, 1).await), "at {not_yet}");
    }
    clock.set(datetime!(2026-02-15 00:00 UTC));
    assert_eq!(drain(&m, &key).await, [2, 1, 0], "on the 15th");
    clock.set(datetime!(2026-03-14 18:00 UTC));
    assert!(exhausted(&m.consume(&key, 1).await));

    // Unused for months: one refill, to the amount (unused uses do not carry over).
    clock.set(datetime!(2026-06-30 00:00 UTC));
    assert_eq!(drain(&m, &key).await, [2, 1, 0]);
    let record = m.get(&issued.key.id()).await.expect("record");
    assert_eq!(record.refilled_at, Some(datetime!(2026-06-30 00:00 UTC)));
}

#[tokio::test]
async fn a_monthly_quota_on_the_31st_refills_on_the_last_day_of_shorter_months() {
    let clock = FakeClock::new(datetime!(2026-01-31 06:00 UTC));
    let m = manager(MemoryStore::new(), &clock);
    let issued = issue(
        &m,
        IssueRequest::new("pro", "u")
            .refill(QuotaRefill::monthly(2, 31).expect("valid"))
            .remaining_uses(1),
    )
    .await;
    let key = verify(&m, &issued).await;
    assert_eq!(drain(&m, &key).await, [0], "starts with the uses asked for");
    clock.set(datetime!(2026-02-27 23:59 UTC));
    assert!(exhausted(&m.consume(&key, 1).await));
    clock.set(datetime!(2026-02-28 00:00 UTC));
    assert_eq!(drain(&m, &key).await, [1, 0], "February 28");
    clock.set(datetime!(2026-03-30 23:59 UTC));
    assert!(exhausted(&m.consume(&key, 1).await));
    clock.set(datetime!(2026-03-31 00:00 UTC));
    assert_eq!(drain(&m, &key).await, [1, 0], "March 31");
}

#[tokio::test]
async fn a_key_without_a_schedule_never_refills() {
    let clock = FakeClock::new(datetime!(2026-03-01 09:30 UTC));
    let m = manager(MemoryStore::new(), &clock);
    let issued = issue(&m, IssueRequest::new("once", "u").remaining_uses(3)).await;
    assert_eq!(
        (issued.record.refill, issued.record.refilled_at),
        (None, None)
    );
    let key = verify(&m, &issued).await;
    assert_eq!(drain(&m, &key).await, [2, 1, 0]);
    let before = m.get(&issued.key.id()).await.expect("record");
    for days in [1, 31, 89] {
        clock.set(datetime!(2026-03-01 09:30 UTC) + Duration::days(days));
        assert!(exhausted(&m.consume(&key, 1).await), "after {days} days");
        assert!(exhausted(&m.consume(&verify(&m, &issued).await, 1).await));
    }
    let after = m.get(&issued.key.id()).await.expect("record");
    assert_eq!(after.version, before.version, "nothing was written");
    assert_eq!(after.remaining_uses, Some(0));

    let unlimited = issue(&m, IssueRequest::new("unlimited", "u")).await;
    assert_eq!(
        m.consume(&verify(&m, &unlimited).await, 1_000)
            .await
            .expect("unlimited"),
        Remaining::Unlimited
    );
}

#[tokio::test]
async fn set_quota_changes_the_plan_of_a_live_key() {
    let clock = FakeClock::new(datetime!(2026-03-01 09:30 UTC));
    let m = manager(MemoryStore::new(), &clock);
    let issued = issue(&m, IssueRequest::new("trial", "u").remaining_uses(1)).await;
    let key = verify(&m, &issued).await;
    assert_eq!(drain(&m, &key).await, [0]);
    let daily = QuotaRefill::daily(2).expect("valid");
    let record = m
        .set_quota(&issued.key.id(), None, Some(daily), &RequestContext::new())
        .await
        .expect("set");
    assert_eq!(
        (record.remaining_uses, record.refill),
        (Some(2), Some(daily))
    );
    // Uses are counted in the store, so even a proof from before the change sees them.
    assert_eq!(drain(&m, &key).await, [1, 0]);
    clock.set(datetime!(2026-03-02 00:00 UTC));
    let key = verify(&m, &issued).await;
    assert_eq!(drain(&m, &key).await, [1, 0], "the new schedule refills");
}

/// `tasks` concurrent uses of one stale proof right after a period boundary: exactly
/// `uses` succeed and the record is refilled once (one refill write, then one write per use
/// taken).
async fn one_refill_at_the_boundary<S: KeyStore + 'static>(store: S, tasks: usize) {
    const USES: u64 = 3;
    let start: OffsetDateTime = datetime!(2026-03-01 09:30 UTC);
    let clock = FakeClock::new(start);
    let m = Arc::new(manager(store, &clock));
    let issued = issue(
        &m,
        IssueRequest::new("race", "u").refill(QuotaRefill::daily(USES).expect("valid")),
    )
    .await;
    let key = verify(&m, &issued).await;
    assert_eq!(drain(&m, &key).await, [2, 1, 0]);
    let before = m.get(&issued.key.id()).await.expect("record");

    for day in 1..=3 {
        clock.set(start.replace_time(time::Time::MIDNIGHT) + Duration::days(day));
        let barrier = Arc::new(tokio::sync::Barrier::new(tasks));
        let handles: Vec<_> = (0..tasks)
            .map(|_| {
                let (m, key, barrier) = (Arc::clone(&m), key.clone(), Arc::clone(&barrier));
                tokio::spawn(async move {
                    barrier.wait().await;
                    m.consume(&key, 1).await
                })
            })
            .collect();
        let mut taken = Vec::new();
        let mut refused = 0;
        for handle in handles {
            match handle.await.expect("task") {
                Ok(Remaining::Uses(left)) => taken.push(left),
                Err(QuotaError::Exhausted) => refused += 1,
                other => panic!("day {day}: unexpected {other:?}"),
            }
        }
        taken.sort_unstable();
        assert_eq!(taken, [0, 1, 2], "day {day}: exactly one refill of 3 uses");
        assert_eq!(refused, tasks - 3, "day {day}");
        let after = m.get(&issued.key.id()).await.expect("record");
        // One refill per period, plus one write per use taken (a consume is a write).
        assert_eq!(
            after.version,
            before.version + day.unsigned_abs() * (1 + USES),
            "day {day}: one refill per period"
        );
        assert_eq!(after.refilled_at, Some(m.now()));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_refill_per_period_on_the_memory_store() {
    one_refill_at_the_boundary(MemoryStore::new(), 64).await;
}

/// A SQLite database file in a fresh temporary directory, removed on drop.
#[cfg(feature = "sqlite")]
struct TempDb(std::path::PathBuf);

#[cfg(feature = "sqlite")]
impl TempDb {
    fn new(name: &str) -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let dir = std::env::temp_dir().join(format!(
            "keyward-quota-{name}-{}-{nanos}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).expect("create temporary directory");
        Self(dir)
    }
}

#[cfg(feature = "sqlite")]
impl Drop for TempDb {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[cfg(feature = "sqlite")]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_refill_per_period_on_sqlite() {
    let dir = TempDb::new("race");
    let store = keyward::store::SqliteStore::open(dir.0.join("keys.db"))
        .await
        .expect("open");
    store.migrate().await.expect("migrate");
    one_refill_at_the_boundary(store, 32).await;
}
