//! Scenarios every SQL store must pass, shared by `tests/sqlite_store.rs` and
//! `tests/postgres_store.rs` (included with `#[path]`). Each backend supplies its stores and
//! a way to run a hand-written `UPDATE` on a key's row.

use core::future::Future;
use std::error::Error as _;
use std::sync::Arc;

use keyward::{
    ApiKey, Hasher, IssueRequest, KeyFormat, KeyId, KeyManager, KeyRecord, KeyStore, Pepper,
    RequestContext,
    key::Prefix,
    manager::{IssueError, Remaining, VerifyError},
    policy::IssuancePolicy,
    record::{KeyStatus, QuotaRefill},
    store::{BulkRevocation, Consumed, ListFilter, Page, StoreError},
    testing,
};
use time::{Duration, OffsetDateTime};

/// A manager over `store`; every manager built here shares the same pepper, like two
/// instances of one service.
pub(crate) fn manager<S: KeyStore>(store: S) -> KeyManager<S> {
    KeyManager::new(
        store,
        KeyFormat::new(["tak"]).expect("format"),
        Hasher::fast(Pepper::new("k1", [7u8; 32]).expect("pepper")),
    )
}

/// The whole error chain as one string.
pub(crate) fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// Keys as a version-1 database held them (schema version 1 had no refill columns, neither
/// version 1 nor 2 had the delegation parent's, and none before 4 had IP allowlists): the
/// first is the record of a real key of [`manager`]'s format and pepper, returned too, so it
/// must still verify after an upgrade; the others vary every column version 1 had.
pub(crate) fn version_1_keys() -> (ApiKey, Vec<KeyRecord>) {
    let m = manager(keyward::MemoryStore::new());
    let key = m.format().generate().expect("generate");
    let mut real = testing::record("old owner");
    real.id = key.id();
    real.prefix = Prefix::new("tak").expect("prefix");
    real.hash = m.hasher().hash(&key.as_parsed()).expect("hash");
    real.expires_at = None;
    real.remaining_uses = Some(5);

    let mut disabled = testing::record("old owner");
    disabled.status = KeyStatus::Disabled;
    disabled.last_used_at = Some(testing::epoch() + Duration::microseconds(1_500_001));
    disabled.rotated_from = Some(testing::random_id());
    disabled.remaining_uses = Some(0);
    disabled.version = 3;

    let mut revoked = testing::record("someone else");
    revoked.status = KeyStatus::Revoked;
    revoked.tenant = None;
    revoked.roles = Vec::new();
    revoked.metadata = keyward::record::Metadata::default();
    revoked.rotated_to = Some(testing::random_id());
    revoked.issued_by = Some(real.id);
    revoked.version = 12;
    let mut old = vec![real, disabled, revoked];
    // Before version 4 no key had an IP allowlist: the upgrade gives them any network.
    for record in &mut old {
        record.allowed_networks = keyward::network::Networks::any();
    }
    (key, old)
}

/// After an upgrade from version 1 or 2: every old key reads back unchanged, without a
/// refill schedule and without a delegation parent (through `get` and `list`; an old
/// `issued_by` stays as it was), the real one still verifies and counts its uses, and an old
/// key can be given a schedule.
pub(crate) async fn check_upgraded_keys<S: KeyStore>(store: S, key: &ApiKey, old: &[KeyRecord]) {
    let m = manager(store);
    assert!(
        old.iter().any(|r| r.issued_by.is_some()),
        "the fixture has an issued_by to keep"
    );
    for record in old {
        assert_eq!((record.refill, record.refilled_at), (None, None));
        assert_eq!(record.parent, None);
        let got = m.get(&record.id).await.expect("old key readable");
        assert_eq!(got.parent, None, "an old key has no delegation parent");
        assert_eq!(got.issued_by, record.issued_by, "issued_by stays history");
        assert_eq!(got, *record, "old key changed by the upgrade");
    }
    let mut listed = m
        .list(&ListFilter::All, Page::first(100))
        .await
        .expect("list");
    listed.sort_by_key(|r| r.id);
    let mut expected = old.to_vec();
    expected.sort_by_key(|r| r.id);
    assert_eq!(listed, expected, "listing after the upgrade");

    let ctx = RequestContext::new();
    let verified = m
        .verify(key.expose_secret(), &ctx)
        .await
        .expect("an old key verifies after the upgrade");
    assert_eq!(verified.record().refill, None);
    assert_eq!(
        m.consume(&verified, 1).await.expect("consume"),
        Remaining::Uses(4)
    );
    let daily = QuotaRefill::daily(2).expect("valid");
    let set = m
        .set_quota(&key.id(), None, Some(daily), &RequestContext::new())
        .await
        .expect("an old key takes a schedule");
    let got = m.get(&key.id()).await.expect("get");
    assert_eq!(
        (got.refill, got.remaining_uses, got.version),
        (Some(daily), Some(2), set.version)
    );
    // The store keeps microseconds; the system clock has more.
    let stored = got.refilled_at.expect("refill time stored");
    let set_at = set.refilled_at.expect("refill time set");
    assert!(
        (set_at - stored).abs() < Duration::microseconds(1),
        "{set_at} vs {stored}"
    );
}

/// Hand edits that leave a row undecodable, and the column each one breaks.
const CORRUPTIONS: &[(&str, &str)] = &[
    ("status = 'bogus'", "status"),
    ("status = 'ACTIVE'", "status"),
    ("hash = 'not-a-hash'", "hash"),
    ("hash = '$hmac-sha256$pid=k1$tooshort'", "hash"),
    ("scopes = '[\"Bad Scope\"]'", "scopes"),
    ("scopes = 'read write'", "scopes"),
    ("roles = '{}'", "roles"),
    ("restrictions = '[\"\"]'", "restrictions"),
    ("metadata = '{\"plan\": 1}'", "metadata"),
    ("prefix = 'not a prefix!'", "prefix"),
    ("rotated_to = 'bad id!'", "rotated_to"),
    ("version = -1", "version"),
    ("remaining_uses = -5", "remaining_uses"),
    (
        "refill_interval = 'weekly', refill_uses = 5",
        "refill_interval",
    ),
    ("refill_interval = 'daily', refill_uses = 0", "refill_uses"),
    ("refill_interval = 'daily', refill_uses = -1", "refill_uses"),
    (
        "refill_interval = 'daily', refill_uses = 5, refill_day = 3",
        "refill_interval",
    ),
    (
        "refill_interval = 'monthly', refill_uses = 5, refill_day = 32",
        "refill_day",
    ),
    (
        "refill_interval = 'monthly', refill_uses = 5, refill_day = 300",
        "refill_day",
    ),
    (
        "refill_interval = 'monthly', refill_uses = 5",
        "refill_interval",
    ),
    ("refill_uses = 5", "refill_interval"),
    ("refill_interval = 'daily'", "refill_uses"),
    ("refill_day = 1", "refill_uses"),
];

/// Each hand edit makes the row a `StoreError::Corrupt` naming the key and the column, from
/// `get` and from `list`; `verify` on that key fails closed, never authenticates and never
/// panics. `edit(id, assignment)` runs `UPDATE keyward_keys SET <assignment> WHERE id = id`.
pub(crate) async fn corrupt_rows<S, F, Fut>(store: S, edit: F)
where
    S: KeyStore,
    F: Fn(KeyId, &'static str) -> Fut,
    Fut: Future<Output = ()>,
{
    let manager = manager(store);
    let ctx = RequestContext::new();
    for &(assignment, column) in CORRUPTIONS {
        let owner = format!("owner {assignment}");
        let issued = manager
            .issue(IssueRequest::new("k", owner.clone()), &ctx)
            .await
            .expect("issue");
        let id = issued.key.id();
        // The key verifies before the edit (and is now in the verify cache).
        manager
            .verify(issued.key.expose_secret(), &ctx)
            .await
            .expect("verifies before the edit");
        edit(id, assignment).await;

        match manager.store().get(&id).await {
            Err(ref e @ StoreError::Corrupt { id: named, .. }) => {
                assert_eq!(named, id, "{assignment}: Corrupt must name the key");
                let text = chain(e);
                assert!(
                    text.contains(column),
                    "{assignment}: the cause should name column {column}: {text}"
                );
                assert!(e.source().is_some(), "{assignment}: the cause is kept");
            }
            other => panic!("{assignment}: expected Corrupt from get, got {other:?}"),
        }
        match manager
            .store()
            .list(&ListFilter::Owner(owner), Page::first(10))
            .await
        {
            Err(StoreError::Corrupt { id: named, .. }) => assert_eq!(named, id),
            other => panic!("{assignment}: expected Corrupt from list, got {other:?}"),
        }
        match manager.verify(issued.key.expose_secret(), &ctx).await {
            Err(VerifyError::Unavailable(source)) => {
                let text = chain(source.as_ref());
                assert!(text.contains(id.as_str()), "{assignment}: {text}");
            }
            other => panic!("{assignment}: verify must fail closed, got {other:?}"),
        }
    }
}

/// Two managers over one database, like two instances of a service: a revocation, a
/// disabling or a rotation done through one is seen by the other on its very next verify.
pub(crate) async fn two_managers<S: KeyStore>(one: S, two: S) {
    let (a, b) = (manager(one), manager(two));
    let ctx = RequestContext::new();

    let revoked = a
        .issue(IssueRequest::new("revoked", "u"), &ctx)
        .await
        .expect("issue");
    let secret = revoked.key.expose_secret();
    b.verify(secret, &ctx).await.expect("b sees a's new key");
    a.revoke(&revoked.key.id(), Some("test"), &ctx)
        .await
        .expect("revoke");
    assert!(
        matches!(b.verify(secret, &ctx).await, Err(VerifyError::Revoked)),
        "b must refuse a key revoked through a"
    );

    let disabled = b
        .issue(IssueRequest::new("disabled", "u"), &ctx)
        .await
        .expect("issue");
    let secret = disabled.key.expose_secret();
    a.verify(secret, &ctx).await.expect("a sees b's new key");
    b.disable(&disabled.key.id(), &ctx).await.expect("disable");
    assert!(matches!(
        a.verify(secret, &ctx).await,
        Err(VerifyError::Disabled)
    ));
    b.enable(&disabled.key.id(), &ctx).await.expect("enable");
    a.verify(secret, &ctx).await.expect("enabled again");

    // Regenerate (rotation without grace) through a: b refuses the old value at once and
    // accepts the new one.
    let old = a
        .issue(IssueRequest::new("rotated", "u"), &ctx)
        .await
        .expect("issue");
    b.verify(old.key.expose_secret(), &ctx)
        .await
        .expect("old works");
    let new = a.regenerate(&old.key.id(), &ctx).await.expect("regenerate");
    // Regeneration revokes the old key in the rotation's atomic step.
    match b.verify(old.key.expose_secret(), &ctx).await {
        Err(VerifyError::Revoked) => {}
        other => panic!("b must refuse the regenerated key's old value as revoked: {other:?}"),
    }
    b.verify(new.key.expose_secret(), &ctx)
        .await
        .expect("b accepts the new value");

    // A rotation with grace through b: a accepts both until the grace ends.
    let newer = b
        .rotate(&new.key.id(), Duration::hours(1), &ctx)
        .await
        .expect("rotate");
    a.verify(new.key.expose_secret(), &ctx)
        .await
        .expect("old value within grace");
    a.verify(newer.key.expose_secret(), &ctx)
        .await
        .expect("new value");
    let record = a.get(&new.key.id()).await.expect("get");
    assert_eq!(record.rotated_to, Some(newer.key.id()));
}

/// 50 issuers racing through the given managers' stores, with a cap of 3 live keys per
/// owner, store exactly 3 keys.
pub(crate) async fn concurrent_cap<S: KeyStore + 'static>(stores: Vec<S>) {
    let managers: Vec<_> = stores
        .into_iter()
        .map(|s| {
            Arc::new(manager(s).with_policy(IssuancePolicy::default().max_live_keys_per_owner(3)))
        })
        .collect();
    // All 50 start together, so their capped inserts overlap.
    let start = Arc::new(tokio::sync::Barrier::new(50));
    let tasks: Vec<_> = (0..50)
        .map(|i| {
            let m = Arc::clone(&managers[i % managers.len()]);
            let start = Arc::clone(&start);
            tokio::spawn(async move {
                start.wait().await;
                m.issue(
                    IssueRequest::new(format!("k{i}"), "capped"),
                    &RequestContext::new(),
                )
                .await
            })
        })
        .collect();
    let (mut issued, mut limited) = (0, 0);
    for task in tasks {
        match task.await.expect("issuer task") {
            Ok(_) => issued += 1,
            Err(IssueError::LimitReached { limit: 3 }) => limited += 1,
            Err(e) => panic!("unexpected issue error: {e} ({e:?})"),
        }
    }
    assert_eq!((issued, limited), (3, 47), "issued, limited");
    let listed = managers[0]
        .store()
        .list(&ListFilter::Owner("capped".into()), Page::first(100))
        .await
        .expect("list");
    assert_eq!(listed.len(), 3, "keys stored for the owner");
}

/// A time inside every fixture record's life (created at the epoch, expiring 90 days later).
fn fixture_now() -> OffsetDateTime {
    testing::epoch() + Duration::days(1)
}

fn expect_ok<T>(what: &str, r: Result<T, StoreError>) -> T {
    r.unwrap_or_else(|e| panic!("{what}: unexpected store error: {e} ({e:?})"))
}

/// The delegation parent is stored: a record with one reads back equal through `get` and
/// `list`, and a compare-and-set can set and clear it.
pub(crate) async fn parent_round_trips<S: KeyStore>(store: S) {
    let parent = testing::record("delegator");
    let mut child = testing::record("delegator");
    child.parent = Some(parent.id);
    child.issued_by = Some(parent.id);
    let mut other = testing::record("delegator");
    other.parent = Some(testing::random_id());
    for r in [&parent, &child, &other] {
        expect_ok("insert", store.insert(r.clone()).await);
    }
    let got = expect_ok("get", store.get(&child.id).await).expect("child stored");
    assert_eq!(
        *got, child,
        "a record with a parent round-trips through get"
    );
    assert_eq!(got.parent, Some(parent.id));

    let mut listed = expect_ok(
        "list",
        store
            .list(&ListFilter::Owner("delegator".into()), Page::first(10))
            .await,
    );
    listed.sort_by_key(|r| r.id);
    let mut expected = vec![parent.clone(), child.clone(), other.clone()];
    expected.sort_by_key(|r| r.id);
    assert_eq!(
        listed, expected,
        "records with parents round-trip through list"
    );

    // Cleared, then set again, by compare-and-set.
    let mut cleared = child.clone();
    cleared.parent = None;
    expect_ok("update", store.update(cleared.clone(), 0).await);
    let got = expect_ok("get", store.get(&child.id).await).expect("child stored");
    assert_eq!((got.parent, got.version), (None, 1));
    let mut moved = cleared;
    moved.parent = Some(other.id);
    expect_ok("update", store.update(moved, 1).await);
    let got = expect_ok("get", store.get(&child.id).await).expect("child stored");
    assert_eq!((got.parent, got.version), (Some(other.id), 2));
}

/// `revoke_matching` revokes a corrupt row with the others in one statement, since it
/// decodes nothing: three keys of tenant `acme` (one of them corrupted by hand) and one of
/// `globex`; revoking tenant `acme` reports all three, leaves `globex` alone, moves each
/// version on, and a second run revokes nothing. `edit(id, assignment)` runs
/// `UPDATE keyward_keys SET <assignment> WHERE id = id`.
pub(crate) async fn revoke_matching_revokes_a_corrupt_row<S, F, Fut>(store: S, edit: F)
where
    S: KeyStore,
    F: Fn(KeyId, String) -> Fut,
    Fut: Future<Output = ()>,
{
    let mut acme = Vec::new();
    for i in 0..3 {
        let mut r = testing::record(&format!("acme user {i}"));
        r.tenant = Some("acme".into());
        r.version = i;
        if i == 1 {
            r.status = KeyStatus::Disabled; // disabled keys are revoked too
        }
        expect_ok("insert", store.insert(r.clone()).await);
        acme.push(r);
    }
    let mut globex = testing::record("globex user");
    globex.tenant = Some("globex".into());
    expect_ok("insert", store.insert(globex.clone()).await);
    let mut already = testing::record("acme user 3");
    already.tenant = Some("acme".into());
    already.status = KeyStatus::Revoked;
    already.version = 7;
    expect_ok("insert", store.insert(already.clone()).await);

    let corrupt = acme[2].id;
    edit(corrupt, "scopes = 'not json'".to_owned()).await;
    assert!(
        matches!(store.get(&corrupt).await, Err(StoreError::Corrupt { id, .. }) if id == corrupt),
        "the hand edit makes the row corrupt"
    );

    let report = expect_ok(
        "revoke_matching",
        store
            .revoke_matching(&ListFilter::Tenant("acme".into()))
            .await,
    );
    let mut expected: Vec<KeyId> = acme.iter().map(|r| r.id).collect();
    expected.sort_unstable_by(|a, b| a.as_str().cmp(b.as_str()));
    assert_eq!(
        report,
        BulkRevocation::new(expected, Vec::new()),
        "every acme key not revoked yet, the corrupt one included, in id order"
    );

    for r in &acme[..2] {
        let got = expect_ok("get", store.get(&r.id).await).expect("still stored");
        let mut want = r.clone();
        want.status = KeyStatus::Revoked;
        want.version = r.version + 1;
        assert_eq!(
            *got, want,
            "revoked with its version moved on, nothing else changed"
        );
    }
    let got = expect_ok("get", store.get(&already.id).await).expect("still stored");
    assert_eq!(*got, already, "a key revoked before is left alone");
    let got = expect_ok("get", store.get(&globex.id).await).expect("still stored");
    assert_eq!(*got, globex, "another tenant's key is left alone");

    // The corrupt row was revoked too: repaired by hand, it reads back revoked.
    let scopes = serde_json::to_string(&acme[2].scopes).expect("scopes json");
    edit(corrupt, format!("scopes = '{scopes}'")).await;
    let got = expect_ok("get", store.get(&corrupt).await).expect("still stored");
    assert_eq!(
        (got.status, got.version),
        (KeyStatus::Revoked, acme[2].version + 1),
        "the corrupt row was revoked"
    );

    let again = expect_ok(
        "revoke_matching again",
        store
            .revoke_matching(&ListFilter::Tenant("acme".into()))
            .await,
    );
    assert_eq!(again, BulkRevocation::default(), "nothing left to revoke");

    // Other filters: by owner, then everything left.
    let report = expect_ok(
        "revoke_matching owner",
        store
            .revoke_matching(&ListFilter::Owner("globex user".into()))
            .await,
    );
    assert_eq!(report.revoked, [globex.id]);
    let report = expect_ok(
        "revoke_matching all",
        store.revoke_matching(&ListFilter::All).await,
    );
    assert_eq!(report, BulkRevocation::default());
}

/// `update_capped` keeps the owner's cap of live keys on a compare-and-set: enabling a
/// second key under a cap of 1 fails and changes nothing, succeeds once the first is
/// revoked; errors come in the order NotFound, Conflict, LimitReached; the record being
/// replaced does not count against itself; a record that does not count is never limited.
pub(crate) async fn update_capped_keeps_the_cap<S: KeyStore>(store: S) {
    let now = fixture_now();
    let first = testing::record("capped");
    let mut second = testing::record("capped");
    second.status = KeyStatus::Disabled;
    second.version = 4;
    let mut third = testing::record("capped");
    third.status = KeyStatus::Disabled;
    for r in [&first, &second, &third] {
        expect_ok("insert", store.insert(r.clone()).await);
    }

    let mut enabled = second.clone();
    enabled.status = KeyStatus::Active;
    match store.update_capped(enabled.clone(), 4, 1, now).await {
        Err(StoreError::LimitReached { limit: 1 }) => {}
        other => panic!("enabling a second key under a cap of 1: {other:?}"),
    }
    let got = expect_ok("get", store.get(&second.id).await).expect("stored");
    assert_eq!(*got, second, "nothing changed on LimitReached");

    // A record that does not count (still disabled) is not limited.
    let mut renamed = second.clone();
    renamed.name = "renamed while disabled".into();
    expect_ok(
        "update_capped of a disabled key",
        store.update_capped(renamed.clone(), 4, 1, now).await,
    );
    // The live key replacing itself does not count against itself.
    let mut first_renamed = first.clone();
    first_renamed.name = "renamed while live".into();
    expect_ok(
        "update_capped of the live key itself",
        store.update_capped(first_renamed.clone(), 0, 1, now).await,
    );

    // Revoke the first: the second can be enabled.
    let mut revoked = first_renamed;
    revoked.status = KeyStatus::Revoked;
    expect_ok("revoke", store.update(revoked, 1).await);
    let mut enabled = renamed;
    enabled.status = KeyStatus::Active;
    expect_ok(
        "enabling once the first is revoked",
        store.update_capped(enabled.clone(), 5, 1, now).await,
    );
    let got = expect_ok("get", store.get(&second.id).await).expect("stored");
    let mut want = enabled;
    want.version = 6;
    assert_eq!(*got, want, "stored with version expected + 1");

    // The owner is at its cap again. Precedence: NotFound, then Conflict, then LimitReached.
    let mut absent = testing::record("capped");
    absent.status = KeyStatus::Active;
    match store.update_capped(absent.clone(), 0, 1, now).await {
        Err(StoreError::NotFound(id)) if id == absent.id => {}
        other => panic!("absent id at the cap: expected NotFound, got {other:?}"),
    }
    assert!(expect_ok("get", store.get(&absent.id).await).is_none());
    let mut third_enabled = third.clone();
    third_enabled.status = KeyStatus::Active;
    match store.update_capped(third_enabled.clone(), 9, 1, now).await {
        Err(StoreError::Conflict(id)) if id == third.id => {}
        other => panic!("wrong version at the cap: expected Conflict, got {other:?}"),
    }
    match store.update_capped(third_enabled, 0, 1, now).await {
        Err(StoreError::LimitReached { limit: 1 }) => {}
        other => panic!("right version at the cap: expected LimitReached, got {other:?}"),
    }
    let got = expect_ok("get", store.get(&third.id).await).expect("stored");
    assert_eq!(*got, third, "nothing changed on any error");
    // A cap of 2 lets it in.
    let mut third_enabled = third.clone();
    third_enabled.status = KeyStatus::Active;
    expect_ok(
        "enabling under a cap of 2",
        store.update_capped(third_enabled, 0, 2, now).await,
    );
}

/// Two `update_capped` calls enabling two disabled keys of one owner at once, under a cap
/// of 1 with no other live key: exactly one succeeds, every round of 20. The calls go
/// through `stores` in turn (several pools over one database).
pub(crate) async fn update_capped_race<S: KeyStore + Clone + 'static>(stores: Vec<S>) {
    let now = fixture_now();
    for round in 0..20 {
        let owner = format!("racing owner {round}");
        let mut keys = Vec::new();
        for _ in 0..2 {
            let mut r = testing::record(&owner);
            r.status = KeyStatus::Disabled;
            expect_ok("insert", stores[0].insert(r.clone()).await);
            keys.push(r);
        }
        let start = Arc::new(tokio::sync::Barrier::new(2));
        let tasks: Vec<_> = keys
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let store = stores[(round + i) % stores.len()].clone();
                let start = Arc::clone(&start);
                let mut enabled = r.clone();
                enabled.status = KeyStatus::Active;
                tokio::spawn(async move {
                    start.wait().await;
                    store.update_capped(enabled, 0, 1, now).await
                })
            })
            .collect();
        let mut won = Vec::new();
        for (task, r) in tasks.into_iter().zip(&keys) {
            match task.await.expect("update_capped task") {
                Ok(()) => won.push(r.id),
                Err(StoreError::LimitReached { limit: 1 }) => {}
                Err(e) => panic!("round {round}: unexpected error {e} ({e:?})"),
            }
        }
        assert_eq!(won.len(), 1, "round {round}: exactly one enable succeeds");
        let listed = expect_ok(
            "list",
            stores[0]
                .list(&ListFilter::Owner(owner), Page::first(10))
                .await,
        );
        let live: Vec<KeyId> = listed
            .iter()
            .filter(|r| r.counts_against_cap(now))
            .map(|r| r.id)
            .collect();
        assert_eq!(live, won, "round {round}: the winner is the only live key");
    }
}

/// A consume is a write: it moves the version on, so a compare-and-set built on a read from
/// before it conflicts. A consume that takes nothing (no quota, not enough left) leaves the
/// version alone.
pub(crate) async fn consume_moves_the_version<S: KeyStore>(store: S) {
    let mut r = testing::record("consumer");
    r.remaining_uses = Some(2);
    r.version = 3;
    expect_ok("insert", store.insert(r.clone()).await);
    assert_eq!(
        expect_ok("consume", store.consume(&r.id, 1).await),
        Consumed::Remaining(1)
    );
    let got = expect_ok("get", store.get(&r.id).await).expect("stored");
    assert_eq!((got.remaining_uses, got.version), (Some(1), 4));

    let mut stale = r.clone();
    stale.name = "built on a read from before the consume".into();
    match store.update(stale, 3).await {
        Err(StoreError::Conflict(id)) if id == r.id => {}
        other => panic!("a compare-and-set from before the consume: {other:?}"),
    }
    let got = expect_ok("get", store.get(&r.id).await).expect("stored");
    assert_eq!(got.name, r.name, "the stale write changed nothing");
    let mut fresh = KeyRecord::clone(&got);
    fresh.name = "built on a fresh read".into();
    expect_ok("update", store.update(fresh, 4).await);

    // Nothing taken, no version change.
    assert_eq!(
        expect_ok("consume", store.consume(&r.id, 5).await),
        Consumed::Exhausted
    );
    let got = expect_ok("get", store.get(&r.id).await).expect("stored");
    assert_eq!((got.remaining_uses, got.version), (Some(1), 5));
    let unlimited = testing::record("consumer");
    expect_ok("insert", store.insert(unlimited.clone()).await);
    assert_eq!(
        expect_ok("consume", store.consume(&unlimited.id, 1).await),
        Consumed::Unlimited
    );
    let got = expect_ok("get", store.get(&unlimited.id).await).expect("stored");
    assert_eq!(got.version, 0);
}

/// The audit log through a journal: events of issuance, verification (counted), edits and
/// revocation land in the store's table; queries by key, owner, tenant, kind and time, in
/// pages; and (`reopen`) a fresh store over the same database still has every event, as
/// after a restart. Expiry-notice markers survive the restart too.
pub(crate) async fn audit_log_survives_a_restart<S, F, Fut>(store: S, reopen: F)
where
    S: KeyStore + keyward::audit::AuditStore + keyward::manager::NoticeStore + Clone,
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
{
    use keyward::audit::{AuditJournal, AuditQuery};
    use keyward::manager::KeyEdit;
    let journal = AuditJournal::new(1_000);
    let m = manager(store.clone()).with_audit(journal.clone());
    let ctx = RequestContext::new()
        .actor("admin@example.com")
        .client_addr("203.0.113.9".parse().expect("ip"))
        .request_id("req-1");
    let request = IssueRequest::new("ci", "alice")
        .tenant("acme")
        .scopes("read".parse().expect("scopes"))
        .expiry(keyward::policy::Expiry::After(Duration::days(2)));
    let issued = m.issue(request, &ctx).await.expect("issue");
    let other = m
        .issue(IssueRequest::new("other", "bob"), &ctx)
        .await
        .expect("issue");
    for _ in 0..5 {
        m.verify(issued.key.expose_secret(), &RequestContext::new())
            .await
            .expect("verify");
    }
    m.edit(&issued.record.id, KeyEdit::new().name("ci-2"), &ctx)
        .await
        .expect("edit");
    m.revoke(&issued.record.id, Some("test"), &ctx)
        .await
        .expect("revoke");
    let thresholds = [Duration::days(3)];
    let noticed = m
        .expiry_notices(&ListFilter::All, &thresholds, &ctx)
        .await
        .expect("notices");
    assert!(
        noticed.is_empty(),
        "a revoked key gets no notice: {noticed:?}"
    );
    let id = issued.record.id;
    let events = journal
        .query(&store, &AuditQuery::new().key(id))
        .await
        .expect("query");
    let kinds: Vec<(&str, u64)> = events.iter().map(|e| (e.kind.as_str(), e.count)).collect();
    assert_eq!(
        kinds,
        [
            ("issued", 1),
            ("verified", 5),
            ("edited", 1),
            ("revoked", 1)
        ]
    );
    assert_eq!(events[0].actor.as_deref(), Some("admin@example.com"));
    assert_eq!(
        events[0].client_addr,
        Some("203.0.113.9".parse().expect("ip"))
    );
    assert_eq!(events[0].request_id.as_deref(), Some("req-1"));
    assert_eq!(events[0].tenant.as_deref(), Some("acme"));
    assert_eq!(events[2].detail["changed"], serde_json::json!(["name"]));
    assert!(events.windows(2).all(|w| w[0].seq < w[1].seq));

    // Reopened: the same events, and the filters and paging agree.
    let again = reopen().await;
    let all = again.query(&AuditQuery::new()).await.expect("query");
    assert_eq!(all.iter().filter(|e| e.key_id == Some(id)).count(), 4);
    assert_eq!(
        again
            .query(&AuditQuery::new().owner("bob"))
            .await
            .expect("by owner")
            .iter()
            .map(|e| e.key_id)
            .collect::<Vec<_>>(),
        [Some(other.record.id)]
    );
    assert_eq!(
        again
            .query(&AuditQuery::new().tenant("acme"))
            .await
            .expect("by tenant")
            .len(),
        4
    );
    let revoked = again
        .query(&AuditQuery::new().kind("revoked"))
        .await
        .expect("by kind");
    assert_eq!(revoked.len(), 1);
    assert_eq!(revoked[0].detail["reason"], "test");
    let first = &all[0];
    let window = AuditQuery::new().between(first.at, first.at + Duration::microseconds(1));
    assert!(
        again
            .query(&window)
            .await
            .expect("by time")
            .iter()
            .all(|e| e.at == first.at)
    );
    let future =
        AuditQuery::new().between(first.at + Duration::days(1), first.at + Duration::days(2));
    assert!(again.query(&future).await.expect("by time").is_empty());
    let mut paged = Vec::new();
    let mut page = Some(AuditQuery::new().limit(2));
    while let Some(q) = page {
        let records = again.query(&q).await.expect("page");
        page = q.next(&records);
        paged.extend(records);
    }
    assert_eq!(paged, all);

    // Notices: claimed once, across instances and restarts.
    let live = m
        .issue(
            IssueRequest::new("soon", "alice")
                .expiry(keyward::policy::Expiry::After(Duration::days(1))),
            &ctx,
        )
        .await
        .expect("issue");
    let noticed = m
        .expiry_notices(&ListFilter::All, &thresholds, &ctx)
        .await
        .expect("notices");
    assert_eq!(
        noticed.iter().map(|n| n.record.id).collect::<Vec<_>>(),
        [live.record.id]
    );
    let elsewhere = manager(reopen().await);
    assert!(
        elsewhere
            .expiry_notices(&ListFilter::All, &thresholds, &ctx)
            .await
            .expect("notices")
            .is_empty()
    );
    // Retention deletes what is older.
    let purged = again
        .purge_before(OffsetDateTime::now_utc() + Duration::days(1))
        .await
        .expect("purge");
    assert!(purged >= 4, "{purged}");
    assert!(
        again
            .query(&AuditQuery::new().key(id))
            .await
            .expect("query")
            .is_empty()
    );
}
