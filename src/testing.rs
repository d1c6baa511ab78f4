//! Test support (feature `testing`): the [`KeyStore`] conformance suite, record fixtures,
//! and a way to build a [`Verified`] proof in downstream tests.
//!
//! Run the suite against your own store from a test:
//!
//! ```
//! # async fn demo() {
//! keyward::testing::conformance(|| async { keyward::MemoryStore::new() }).await;
//! # }
//! ```
//!
//! Every check panics with a message naming the check and what went wrong, which is how a
//! test fails.

use core::future::Future;
use std::sync::Arc;

use futures_util::future::join_all;
use time::{Duration, OffsetDateTime};

use crate::hash::StoredHash;
use crate::key_id::KeyId;
use crate::prefix::Prefix;
use crate::record::{KeyRecord, KeyStatus, Metadata, QuotaRefill};
use crate::scope::{Restrictions, ScopeSet};
use crate::store::{Consumed, KeyStore, ListFilter, Page, StoreError};
use crate::verified::Verified;

/// A fixed instant used by the fixtures (whole seconds, so every database keeps it exactly).
#[must_use]
pub fn epoch() -> OffsetDateTime {
    time::macros::datetime!(2026-01-01 00:00:00 UTC)
}

/// A fresh random key id.
///
/// # Panics
/// If the operating system has no randomness.
#[must_use]
pub fn random_id() -> KeyId {
    let format = crate::KeyFormat::new(["test"]).expect("static format is valid");
    format.generate().expect("operating system randomness").id()
}

/// A record fixture for `owner`: active, created at [`epoch`], expiring 90 days later,
/// with scopes `read tickets:write`, a metadata entry and a placeholder hash.
///
/// # Panics
/// Never for valid fixtures (the literals are checked by the crate's own tests).
#[must_use]
pub fn record(owner: &str) -> KeyRecord {
    let mut metadata = Metadata::default();
    metadata
        .insert("plan", "pro")
        .expect("fixture metadata within bounds");
    KeyRecord {
        id: random_id(),
        prefix: Prefix::new("test").expect("fixture prefix"),
        tenant: Some("acme".to_owned()),
        name: format!("{owner}'s key"),
        owner: owner.to_owned(),
        scopes: "read tickets:write"
            .parse::<ScopeSet>()
            .expect("fixture scopes"),
        roles: vec!["support".to_owned()],
        restrictions: Restrictions::default(),
        metadata,
        created_at: epoch(),
        expires_at: Some(epoch() + Duration::days(90)),
        last_used_at: None,
        status: KeyStatus::Active,
        hash: "$hmac-sha256$pid=test$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
            .parse::<StoredHash>()
            .expect("fixture hash"),
        version: 0,
        rotated_from: None,
        rotated_to: None,
        issued_by: None,
        remaining_uses: None,
        refill: None,
        refilled_at: None,
    }
}

/// A [`Verified`] proof for `record` with `scopes` as its effective scopes, for testing
/// handlers without a key manager. Only available with the `testing` feature.
#[must_use]
pub fn verified(record: KeyRecord, scopes: ScopeSet, at: OffsetDateTime) -> Verified {
    Verified::new(Arc::new(record), Some(scopes), at)
}

/// Runs every conformance check, each on a fresh store from `fresh`.
///
/// # Panics
/// When a check fails; the message names the check.
pub async fn conformance<S, F, Fut>(fresh: F)
where
    S: KeyStore,
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
{
    insert_and_get(&fresh().await).await;
    duplicate_insert(&fresh().await).await;
    compare_and_set(&fresh().await).await;
    lost_compare_and_set(&fresh().await).await;
    cap_race(&fresh().await).await;
    cap_counts_only_live_keys(&fresh().await).await;
    atomic_rotation(&fresh().await).await;
    quota_under_concurrency(&fresh().await).await;
    quota_refill_round_trip(&fresh().await).await;
    touch_last_used(&fresh().await).await;
    paging_and_filters(&fresh().await).await;
    delete(&fresh().await).await;
}

fn expect_ok<T>(check: &str, r: Result<T, StoreError>) -> T {
    match r {
        Ok(v) => v,
        Err(e) => panic!("{check}: unexpected store error: {e} ({e:?})"),
    }
}

/// A record round-trips exactly; unknown ids are absent.
///
/// # Panics
/// When the check fails.
pub async fn insert_and_get(store: &impl KeyStore) {
    let mut r = record("alice");
    r.last_used_at = Some(epoch() + Duration::seconds(5));
    r.rotated_from = Some(random_id());
    r.issued_by = Some(random_id());
    r.remaining_uses = Some(7);
    r.refill = Some(QuotaRefill::monthly(50, 31).expect("fixture refill"));
    r.refilled_at = Some(epoch() + Duration::microseconds(1_234_567));
    r.status = KeyStatus::Disabled;
    expect_ok("insert_and_get", store.insert(r.clone()).await);
    let got = expect_ok("insert_and_get", store.get(&r.id).await)
        .expect("insert_and_get: inserted record is missing");
    assert_eq!(*got, r, "insert_and_get: record changed in the round trip");
    let missing = expect_ok("insert_and_get", store.get(&random_id()).await);
    assert!(
        missing.is_none(),
        "insert_and_get: unknown id returned a record"
    );
}

/// A second insert with the same id fails with `Duplicate` and changes nothing.
///
/// # Panics
/// When the check fails.
pub async fn duplicate_insert(store: &impl KeyStore) {
    let r = record("alice");
    expect_ok("duplicate_insert", store.insert(r.clone()).await);
    let mut other = record("mallory");
    other.id = r.id;
    match store.insert(other).await {
        Err(StoreError::Duplicate(id)) => {
            assert_eq!(id, r.id, "duplicate_insert: wrong id in error")
        }
        other => panic!("duplicate_insert: expected Duplicate, got {other:?}"),
    }
    let got = expect_ok("duplicate_insert", store.get(&r.id).await)
        .expect("duplicate_insert: record vanished");
    assert_eq!(
        got.owner, "alice",
        "duplicate_insert: the duplicate overwrote the record"
    );
}

/// `update` succeeds on the current version and bumps it; a stale version conflicts; an
/// unknown id is not found.
///
/// # Panics
/// When the check fails.
pub async fn compare_and_set(store: &impl KeyStore) {
    let r = record("alice");
    expect_ok("compare_and_set", store.insert(r.clone()).await);
    let mut changed = r.clone();
    changed.status = KeyStatus::Disabled;
    expect_ok("compare_and_set", store.update(changed.clone(), 0).await);
    let got = expect_ok("compare_and_set", store.get(&r.id).await)
        .expect("compare_and_set: record vanished");
    assert_eq!(got.version, 1, "compare_and_set: version not incremented");
    assert_eq!(
        got.status,
        KeyStatus::Disabled,
        "compare_and_set: change not stored"
    );
    match store.update(changed.clone(), 0).await {
        Err(StoreError::Conflict(id)) => assert_eq!(id, r.id),
        other => panic!("compare_and_set: stale version must conflict, got {other:?}"),
    }
    let ghost = record("ghost");
    match store.update(ghost, 0).await {
        Err(StoreError::NotFound(_)) => {}
        other => panic!("compare_and_set: unknown id must be NotFound, got {other:?}"),
    }
}

/// Of many concurrent updates from the same version, exactly one wins.
///
/// # Panics
/// When the check fails.
pub async fn lost_compare_and_set(store: &impl KeyStore) {
    let r = record("alice");
    expect_ok("lost_compare_and_set", store.insert(r.clone()).await);
    let attempts = (0..8).map(|i| {
        let mut next = r.clone();
        next.name = format!("writer {i}");
        store.update(next, 0)
    });
    let results = join_all(attempts).await;
    let wins = results.iter().filter(|r| r.is_ok()).count();
    let conflicts = results
        .iter()
        .filter(|r| matches!(r, Err(StoreError::Conflict(_))))
        .count();
    assert_eq!(
        (wins, conflicts),
        (1, 7),
        "lost_compare_and_set: expected one winner, got {results:?}"
    );
    let got = expect_ok("lost_compare_and_set", store.get(&r.id).await).expect("record vanished");
    assert_eq!(
        got.version, 1,
        "lost_compare_and_set: version must be 1 after one win"
    );
}

/// 50 concurrent capped inserts for one owner with a cap of 3 store exactly 3.
///
/// # Panics
/// When the check fails.
pub async fn cap_race(store: &impl KeyStore) {
    let now = epoch();
    let inserts = (0..50).map(|_| store.insert_capped(record("carol"), 3, now));
    let results = join_all(inserts).await;
    let ok = results.iter().filter(|r| r.is_ok()).count();
    let limited = results
        .iter()
        .filter(|r| matches!(r, Err(StoreError::LimitReached { limit: 3 })))
        .count();
    assert_eq!(
        (ok, limited),
        (3, 47),
        "cap_race: expected 3 inserted and 47 refused"
    );
    let listed = expect_ok(
        "cap_race",
        store
            .list(&ListFilter::Owner("carol".into()), Page::first(100))
            .await,
    );
    assert_eq!(
        listed.len(),
        3,
        "cap_race: the store holds {} keys for the owner",
        listed.len()
    );
}

/// Expired, disabled, revoked keys and the old half of a rotation do not count against the
/// cap; other owners' keys do not either.
///
/// # Panics
/// When the check fails.
pub async fn cap_counts_only_live_keys(store: &impl KeyStore) {
    let now = epoch() + Duration::days(10);
    let mut expired = record("dave");
    expired.expires_at = Some(now);
    let mut disabled = record("dave");
    disabled.status = KeyStatus::Disabled;
    let mut revoked = record("dave");
    revoked.status = KeyStatus::Revoked;
    let mut rotated = record("dave");
    rotated.rotated_to = Some(random_id());
    for r in [expired, disabled, revoked, rotated, record("erin")] {
        expect_ok("cap_counts_only_live_keys", store.insert(r).await);
    }
    expect_ok(
        "cap_counts_only_live_keys",
        store.insert_capped(record("dave"), 1, now).await,
    );
    match store.insert_capped(record("dave"), 1, now).await {
        Err(StoreError::LimitReached { limit: 1 }) => {}
        other => {
            panic!("cap_counts_only_live_keys: second live key must hit the cap, got {other:?}")
        }
    }
    // Later, the live one has expired too: room again.
    let later = epoch() + Duration::days(91);
    expect_ok(
        "cap_counts_only_live_keys",
        store.insert_capped(record("dave"), 1, later).await,
    );
}

/// Rotation inserts the new record and updates the old one together, or does neither.
///
/// # Panics
/// When the check fails.
pub async fn atomic_rotation(store: &impl KeyStore) {
    let old = record("frank");
    expect_ok("atomic_rotation", store.insert(old.clone()).await);
    let mut new = record("frank");
    new.rotated_from = Some(old.id);
    let mut retired = old.clone();
    retired.expires_at = Some(epoch() + Duration::hours(1));
    retired.rotated_to = Some(new.id);

    // A stale version: nothing happens.
    match store.rotate(retired.clone(), 5, new.clone()).await {
        Err(StoreError::Conflict(_)) => {}
        other => panic!("atomic_rotation: stale version must conflict, got {other:?}"),
    }
    assert!(
        expect_ok("atomic_rotation", store.get(&new.id).await).is_none(),
        "atomic_rotation: a failed rotation inserted the new key"
    );
    // A new id that exists: nothing happens either.
    let squatter = record("someone");
    expect_ok("atomic_rotation", store.insert(squatter.clone()).await);
    let mut clash = new.clone();
    clash.id = squatter.id;
    match store.rotate(retired.clone(), 0, clash).await {
        Err(StoreError::Duplicate(_)) => {}
        other => panic!("atomic_rotation: duplicate new id must fail, got {other:?}"),
    }
    let unchanged = expect_ok("atomic_rotation", store.get(&old.id).await).expect("old vanished");
    assert_eq!(
        *unchanged, old,
        "atomic_rotation: a failed rotation changed the old key"
    );

    expect_ok(
        "atomic_rotation",
        store.rotate(retired.clone(), 0, new.clone()).await,
    );
    let got_old = expect_ok("atomic_rotation", store.get(&old.id).await).expect("old vanished");
    let got_new = expect_ok("atomic_rotation", store.get(&new.id).await).expect("new missing");
    assert_eq!(
        got_old.rotated_to,
        Some(new.id),
        "atomic_rotation: old key not linked to new"
    );
    assert_eq!(
        got_old.expires_at, retired.expires_at,
        "atomic_rotation: old expiry not shortened"
    );
    assert_eq!(
        got_old.version, 1,
        "atomic_rotation: old version not incremented"
    );
    assert_eq!(
        *got_new, new,
        "atomic_rotation: new record changed in the round trip"
    );
}

/// 25 concurrent uses of a quota of 10 succeed exactly 10 times.
///
/// # Panics
/// When the check fails.
pub async fn quota_under_concurrency(store: &impl KeyStore) {
    let mut r = record("grace");
    r.remaining_uses = Some(10);
    expect_ok("quota", store.insert(r.clone()).await);
    let results = join_all((0..25).map(|_| store.consume(&r.id, 1))).await;
    let taken = results
        .iter()
        .filter(|c| matches!(c, Ok(Consumed::Remaining(_))))
        .count();
    let refused = results
        .iter()
        .filter(|c| matches!(c, Ok(Consumed::Exhausted)))
        .count();
    assert_eq!(
        (taken, refused),
        (10, 15),
        "quota: expected 10 uses and 15 refusals, got {results:?}"
    );
    let got = expect_ok("quota", store.get(&r.id).await).expect("record vanished");
    assert_eq!(
        got.remaining_uses,
        Some(0),
        "quota: remaining uses not zero"
    );
    assert_eq!(
        expect_ok("quota", store.consume(&r.id, 1).await),
        Consumed::Exhausted
    );

    let unlimited = record("grace");
    expect_ok("quota", store.insert(unlimited.clone()).await);
    assert_eq!(
        expect_ok("quota", store.consume(&unlimited.id, 5).await),
        Consumed::Unlimited
    );
    assert_eq!(
        expect_ok("quota", store.consume(&random_id(), 1).await),
        Consumed::NotFound
    );

    let mut big = record("grace");
    big.remaining_uses = Some(3);
    expect_ok("quota", store.insert(big.clone()).await);
    assert_eq!(
        expect_ok("quota", store.consume(&big.id, 5).await),
        Consumed::Exhausted,
        "quota: over-cost use"
    );
    assert_eq!(
        expect_ok("quota", store.consume(&big.id, 3).await),
        Consumed::Remaining(0)
    );
}

/// A quota's refill schedule and last refill time round-trip through insert, update and
/// listing, are replaced and cleared by compare-and-set, and a refilled quota is then
/// consumed from the refilled amount.
///
/// # Panics
/// When the check fails.
pub async fn quota_refill_round_trip(store: &impl KeyStore) {
    let check = "quota_refill";
    let mut r = record("olivia");
    r.remaining_uses = Some(0);
    r.refill = Some(QuotaRefill::daily(QuotaRefill::MAX_USES).expect("fixture refill"));
    r.refilled_at = Some(epoch());
    expect_ok(check, store.insert(r.clone()).await);
    let got = expect_ok(check, store.get(&r.id).await).expect("quota_refill: record missing");
    assert_eq!(*got, r, "quota_refill: schedule changed in the round trip");

    // The refill the manager makes: uses back to the amount, refill time to now.
    let mut refilled = r.clone();
    refilled.refill = Some(QuotaRefill::monthly(3, 15).expect("fixture refill"));
    refilled.remaining_uses = Some(3);
    refilled.refilled_at = Some(epoch() + Duration::days(45) + Duration::microseconds(7));
    expect_ok(check, store.update(refilled.clone(), 0).await);
    let got = expect_ok(check, store.get(&r.id).await).expect("quota_refill: record vanished");
    refilled.version = 1;
    assert_eq!(*got, refilled, "quota_refill: refill not stored exactly");
    assert_eq!(
        expect_ok(check, store.consume(&r.id, 2).await),
        Consumed::Remaining(1),
        "quota_refill: uses are taken from the refilled amount"
    );
    let listed = expect_ok(
        check,
        store
            .list(&ListFilter::Owner("olivia".into()), Page::first(10))
            .await,
    );
    assert_eq!(listed.len(), 1, "quota_refill: listing");
    assert_eq!(
        (
            listed[0].refill,
            listed[0].refilled_at,
            listed[0].remaining_uses
        ),
        (refilled.refill, refilled.refilled_at, Some(1)),
        "quota_refill: listing reads the schedule"
    );

    // Removing the schedule clears it.
    let mut cleared = KeyRecord::clone(&listed[0]);
    cleared.refill = None;
    cleared.refilled_at = None;
    expect_ok(check, store.update(cleared.clone(), 1).await);
    let got = expect_ok(check, store.get(&r.id).await).expect("quota_refill: record vanished");
    assert_eq!(
        (got.refill, got.refilled_at, got.remaining_uses, got.version),
        (None, None, Some(1), 2),
        "quota_refill: schedule not cleared"
    );
}

/// `touch` moves `last_used_at` forward only and leaves the version alone.
///
/// # Panics
/// When the check fails.
pub async fn touch_last_used(store: &impl KeyStore) {
    let r = record("heidi");
    expect_ok("touch", store.insert(r.clone()).await);
    let t1 = epoch() + Duration::minutes(1);
    expect_ok("touch", store.touch(&r.id, t1).await);
    expect_ok("touch", store.touch(&r.id, epoch()).await);
    let got = expect_ok("touch", store.get(&r.id).await).expect("record vanished");
    assert_eq!(
        got.last_used_at,
        Some(t1),
        "touch: last_used_at must only move forward"
    );
    assert_eq!(got.version, 0, "touch: must not change the version");
    expect_ok("touch", store.touch(&random_id(), t1).await);
}

/// Listing pages through records in id order without gaps or repeats, and filters by owner
/// and tenant.
///
/// # Panics
/// When the check fails.
pub async fn paging_and_filters(store: &impl KeyStore) {
    let mut all = Vec::new();
    for i in 0..25 {
        let mut r = record(if i % 2 == 0 { "ivan" } else { "judy" });
        if i % 5 == 0 {
            r.tenant = Some("globex".to_owned());
        }
        all.push(r.id);
        expect_ok("paging", store.insert(r).await);
    }
    all.sort();
    let mut seen = Vec::new();
    let mut page = Some(Page::first(10));
    let mut sizes = Vec::new();
    while let Some(p) = page {
        let records = expect_ok("paging", store.list(&ListFilter::All, p).await);
        sizes.push(records.len());
        seen.extend(records.iter().map(|r| r.id));
        page = p.next(&records);
    }
    assert_eq!(seen, all, "paging: pages must list every id once, in order");
    assert_eq!(sizes, vec![10, 10, 5], "paging: page sizes");
    let ivan = expect_ok(
        "paging",
        store
            .list(&ListFilter::Owner("ivan".into()), Page::first(100))
            .await,
    );
    assert_eq!(ivan.len(), 13, "paging: owner filter");
    assert!(ivan.iter().all(|r| r.owner == "ivan"));
    let globex = expect_ok(
        "paging",
        store
            .list(&ListFilter::Tenant("globex".into()), Page::first(100))
            .await,
    );
    assert_eq!(globex.len(), 5, "paging: tenant filter");
}

/// Deleting removes the record; deleting again reports it absent.
///
/// # Panics
/// When the check fails.
pub async fn delete(store: &impl KeyStore) {
    let r = record("ken");
    expect_ok("delete", store.insert(r.clone()).await);
    assert!(
        expect_ok("delete", store.delete(&r.id).await),
        "delete: existing record not reported deleted"
    );
    assert!(
        !expect_ok("delete", store.delete(&r.id).await),
        "delete: second delete must report false"
    );
    assert!(
        expect_ok("delete", store.get(&r.id).await).is_none(),
        "delete: record still there"
    );
}

/// A store that can be switched off, like a database behind a cut connection: while down,
/// every operation fails with [`StoreError::Unavailable`]; clones share the switch and the
/// records. Use it to test that your handlers fail closed and recover.
///
/// ```
/// # async fn demo() {
/// use keyward::{KeyStore, testing::{FlakyStore, random_id}};
/// let store: FlakyStore = FlakyStore::default();
/// store.set_down(true);
/// assert!(store.get(&random_id()).await.is_err());
/// store.set_down(false);
/// assert!(store.get(&random_id()).await.expect("up").is_none());
/// # }
/// ```
#[derive(Debug, Clone, Default)]
pub struct FlakyStore<S = crate::store::MemoryStore> {
    inner: S,
    down: Arc<std::sync::atomic::AtomicBool>,
}

impl<S: KeyStore> FlakyStore<S> {
    /// Wraps `inner`, up.
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            down: Arc::default(),
        }
    }

    /// Switches the store off (`true`) or on again.
    pub fn set_down(&self, down: bool) {
        self.down.store(down, std::sync::atomic::Ordering::SeqCst);
    }

    /// The wrapped store (always reachable, for assertions).
    pub fn inner(&self) -> &S {
        &self.inner
    }

    fn check(&self) -> Result<(), StoreError> {
        if self.down.load(std::sync::atomic::Ordering::SeqCst) {
            Err(StoreError::unavailable(std::io::Error::new(
                std::io::ErrorKind::ConnectionRefused,
                "connection refused (FlakyStore is down)",
            )))
        } else {
            Ok(())
        }
    }
}

impl<S: KeyStore> KeyStore for FlakyStore<S> {
    async fn insert(&self, record: KeyRecord) -> Result<(), StoreError> {
        self.check()?;
        self.inner.insert(record).await
    }
    async fn insert_capped(
        &self,
        record: KeyRecord,
        max_live: usize,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        self.check()?;
        self.inner.insert_capped(record, max_live, now).await
    }
    async fn get(&self, id: &KeyId) -> Result<Option<Arc<KeyRecord>>, StoreError> {
        self.check()?;
        self.inner.get(id).await
    }
    async fn update(&self, record: KeyRecord, expected_version: u64) -> Result<(), StoreError> {
        self.check()?;
        self.inner.update(record, expected_version).await
    }
    async fn rotate(
        &self,
        old: KeyRecord,
        expected_version: u64,
        new: KeyRecord,
    ) -> Result<(), StoreError> {
        self.check()?;
        self.inner.rotate(old, expected_version, new).await
    }
    async fn list(&self, filter: &ListFilter, page: Page) -> Result<Vec<KeyRecord>, StoreError> {
        self.check()?;
        self.inner.list(filter, page).await
    }
    async fn consume(&self, id: &KeyId, cost: u64) -> Result<Consumed, StoreError> {
        self.check()?;
        self.inner.consume(id, cost).await
    }
    async fn touch(&self, id: &KeyId, at: OffsetDateTime) -> Result<(), StoreError> {
        self.check()?;
        self.inner.touch(id, at).await
    }
    async fn delete(&self, id: &KeyId) -> Result<bool, StoreError> {
        self.check()?;
        self.inner.delete(id).await
    }
}
