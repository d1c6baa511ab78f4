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
use crate::store::{BulkRevocation, Consumed, KeyStore, ListFilter, Page, StoreError};
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
        parent: None,
        remaining_uses: None,
        refill: None,
        refilled_at: None,
    }
}

/// A [`Verified`] proof for `record` with `scopes` as its effective scopes, for testing
/// handlers without a key manager. Only available with the `testing` feature.
#[must_use]
pub fn verified(record: KeyRecord, scopes: ScopeSet, at: OffsetDateTime) -> Verified {
    let ends_at = record.expires_at;
    Verified::new(Arc::new(record), Some(scopes), None, ends_at, at)
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
    consume_is_a_write(&fresh().await).await;
    capped_update(&fresh().await).await;
    bulk_revocation(&fresh().await).await;
    lineage_round_trip(&fresh().await).await;
}

/// `consume` increments the version: a compare-and-set built on a read taken before the
/// consume conflicts, so it cannot write the old `remaining_uses` back.
///
/// # Panics
/// When the check fails.
pub async fn consume_is_a_write(store: &impl KeyStore) {
    let check = "consume_is_a_write";
    let mut r = record("quinn");
    r.remaining_uses = Some(5);
    expect_ok(check, store.insert(r.clone()).await);
    let before = expect_ok(check, store.get(&r.id).await).expect("consume_is_a_write: missing");
    assert_eq!(
        expect_ok(check, store.consume(&r.id, 2).await),
        Consumed::Remaining(3)
    );
    let mut stale = KeyRecord::clone(&before);
    stale.name = "renamed".into();
    assert!(
        matches!(
            store.update(stale, before.version).await,
            Err(StoreError::Conflict(_))
        ),
        "consume_is_a_write: an update built on a read before the consume must conflict"
    );
    let after = expect_ok(check, store.get(&r.id).await).expect("consume_is_a_write: missing");
    assert_eq!(
        after.remaining_uses,
        Some(3),
        "consume_is_a_write: uses lost"
    );
    assert_eq!(
        after.version,
        before.version + 1,
        "consume_is_a_write: version"
    );
    // An exhausted consume takes nothing and writes nothing.
    assert_eq!(
        expect_ok(check, store.consume(&r.id, 10).await),
        Consumed::Exhausted
    );
    let same = expect_ok(check, store.get(&r.id).await).expect("consume_is_a_write: missing");
    assert_eq!(
        same.version, after.version,
        "consume_is_a_write: a refused consume wrote"
    );
}

/// `update_capped`: compare-and-set that keeps the owner's cap; `NotFound`, then
/// `Conflict`, then `LimitReached`; nothing changes on an error; two enables racing under
/// a cap of 1 never both succeed.
///
/// # Panics
/// When the check fails.
pub async fn capped_update(store: &impl KeyStore) {
    let check = "capped_update";
    let now = epoch() + Duration::days(1);
    let live = record("rita");
    let mut off = record("rita");
    off.status = KeyStatus::Disabled;
    expect_ok(check, store.insert(live.clone()).await);
    expect_ok(check, store.insert(off.clone()).await);
    let mut on = off.clone();
    on.status = KeyStatus::Active;
    assert!(
        matches!(
            store.update_capped(record("rita"), 0, 1, now).await,
            Err(StoreError::NotFound(_))
        ),
        "capped_update: unknown id must be NotFound"
    );
    assert!(
        matches!(
            store.update_capped(on.clone(), 7, 1, now).await,
            Err(StoreError::Conflict(_))
        ),
        "capped_update: a stale version must be Conflict before the cap is counted"
    );
    assert!(
        matches!(
            store.update_capped(on.clone(), 0, 1, now).await,
            Err(StoreError::LimitReached { limit: 1 })
        ),
        "capped_update: enabling a second live key under a cap of 1 must be refused"
    );
    let unchanged = expect_ok(check, store.get(&off.id).await).expect("capped_update: missing");
    assert_eq!(
        *unchanged, off,
        "capped_update: a refused update changed the record"
    );
    // A record that does not count (still disabled) is written whatever the count.
    let mut renamed = off.clone();
    renamed.name = "renamed".into();
    expect_ok(check, store.update_capped(renamed, 0, 1, now).await);
    // The key itself is not counted against its own cap.
    let mut live_renamed = live.clone();
    live_renamed.name = "still one".into();
    expect_ok(check, store.update_capped(live_renamed, 0, 1, now).await);
    let mut revoked = KeyRecord::clone(
        &expect_ok(check, store.get(&live.id).await).expect("capped_update: missing"),
    );
    revoked.status = KeyStatus::Revoked;
    expect_ok(check, store.update(revoked, 1).await);
    expect_ok(check, store.update_capped(on, 1, 1, now).await);
    let got = expect_ok(check, store.get(&off.id).await).expect("capped_update: missing");
    assert_eq!(
        (got.status, got.version),
        (KeyStatus::Active, 2),
        "capped_update: enable not stored"
    );

    // Two disabled keys of one owner enabled at once under a cap of 1: one wins.
    for round in 0..20 {
        let owner = format!("race-{round}");
        let mut a = record(&owner);
        a.status = KeyStatus::Disabled;
        let mut b = record(&owner);
        b.status = KeyStatus::Disabled;
        expect_ok(check, store.insert(a.clone()).await);
        expect_ok(check, store.insert(b.clone()).await);
        a.status = KeyStatus::Active;
        b.status = KeyStatus::Active;
        let results = join_all([
            store.update_capped(a, 0, 1, now),
            store.update_capped(b, 0, 1, now),
        ])
        .await;
        let won = results.iter().filter(|r| r.is_ok()).count();
        assert_eq!(
            won, 1,
            "capped_update: round {round}: {won} enables won under a cap of 1"
        );
        for result in results {
            if let Err(e) = result {
                assert!(
                    matches!(e, StoreError::LimitReached { limit: 1 }),
                    "capped_update: the loser must be LimitReached, got {e:?}"
                );
            }
        }
    }
}

/// `revoke_matching` revokes every unrevoked record of the filter, increments their
/// versions, reports them, and touches nothing else; a second call revokes nothing.
///
/// # Panics
/// When the check fails.
pub async fn bulk_revocation(store: &impl KeyStore) {
    let check = "bulk_revocation";
    let mut ids = Vec::new();
    for i in 0..5 {
        let mut r = record(&format!("sam-{}", i % 2));
        r.tenant = Some("bulk-acme".into());
        if i == 4 {
            r.status = KeyStatus::Revoked;
        }
        expect_ok(check, store.insert(r.clone()).await);
        ids.push(r.id);
    }
    let mut other = record("sam-0");
    other.tenant = Some("bulk-globex".into());
    expect_ok(check, store.insert(other.clone()).await);

    let report = expect_ok(
        check,
        store
            .revoke_matching(&ListFilter::Tenant("bulk-acme".into()))
            .await,
    );
    let mut expected: Vec<KeyId> = ids[..4].to_vec();
    expected.sort_by(|a, b| a.as_str().cmp(b.as_str()));
    let mut revoked = report.revoked.clone();
    revoked.sort_by(|a, b| a.as_str().cmp(b.as_str()));
    assert_eq!(revoked, expected, "bulk_revocation: wrong keys reported");
    assert!(report.unreadable.is_empty(), "bulk_revocation: unreadable");
    for id in &ids[..4] {
        let got = expect_ok(check, store.get(id).await).expect("bulk_revocation: missing");
        assert_eq!(
            (got.status, got.version),
            (KeyStatus::Revoked, 1),
            "bulk_revocation: key not revoked by a write"
        );
    }
    let untouched = expect_ok(check, store.get(&other.id).await).expect("bulk_revocation: gone");
    assert_eq!(
        *untouched, other,
        "bulk_revocation: another tenant's key changed"
    );
    let again = expect_ok(
        check,
        store
            .revoke_matching(&ListFilter::Tenant("bulk-acme".into()))
            .await,
    );
    assert!(again.revoked.is_empty(), "bulk_revocation: revoked twice");
    let by_owner = expect_ok(
        check,
        store
            .revoke_matching(&ListFilter::Owner("sam-0".into()))
            .await,
    );
    assert_eq!(
        by_owner.revoked,
        vec![other.id],
        "bulk_revocation: by owner"
    );
}

/// The delegation parent and the provenance survive every write.
///
/// # Panics
/// When the check fails.
pub async fn lineage_round_trip(store: &impl KeyStore) {
    let check = "lineage_round_trip";
    let parent = record("tara");
    let mut child = record("tara");
    child.parent = Some(parent.id);
    child.issued_by = Some(parent.id);
    expect_ok(check, store.insert(parent.clone()).await);
    expect_ok(check, store.insert(child.clone()).await);
    let got = expect_ok(check, store.get(&child.id).await).expect("lineage_round_trip: missing");
    assert_eq!(*got, child, "lineage_round_trip: parent not stored");
    let mut edited = child.clone();
    edited.name = "edited".into();
    expect_ok(check, store.update(edited, 0).await);
    let listed = expect_ok(
        check,
        store
            .list(&ListFilter::Owner("tara".into()), Page::first(10))
            .await,
    );
    let listed = listed
        .iter()
        .find(|r| r.id == child.id)
        .expect("lineage_round_trip: child not listed");
    assert_eq!(
        listed.parent,
        Some(parent.id),
        "lineage_round_trip: parent lost by an update"
    );
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
    assert_eq!(
        listed[0].version, 2,
        "quota_refill: a consume is a write (version)"
    );

    // Removing the schedule clears it.
    let mut cleared = KeyRecord::clone(&listed[0]);
    cleared.refill = None;
    cleared.refilled_at = None;
    expect_ok(check, store.update(cleared.clone(), 2).await);
    let got = expect_ok(check, store.get(&r.id).await).expect("quota_refill: record vanished");
    assert_eq!(
        (got.refill, got.refilled_at, got.remaining_uses, got.version),
        (None, None, Some(1), 3),
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
    async fn update_capped(
        &self,
        record: KeyRecord,
        expected_version: u64,
        max_live: usize,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        self.check()?;
        self.inner
            .update_capped(record, expected_version, max_live, now)
            .await
    }
    async fn revoke_matching(&self, filter: &ListFilter) -> Result<BulkRevocation, StoreError> {
        self.check()?;
        self.inner.revoke_matching(filter).await
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
