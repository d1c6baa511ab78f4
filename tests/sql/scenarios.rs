//! Scenarios every SQL store must pass, shared by `tests/sqlite_store.rs` and
//! `tests/postgres_store.rs` (included with `#[path]`). Each backend supplies its stores and
//! a way to run a hand-written `UPDATE` on a key's row.

use core::future::Future;
use std::error::Error as _;
use std::sync::Arc;

use keyward::{
    ApiKey, Hasher, IssuancePolicy, IssueError, IssueRequest, KeyFormat, KeyId, KeyManager,
    KeyRecord, KeyStatus, KeyStore, ListFilter, Page, Pepper, Prefix, QuotaRefill, Remaining,
    RequestContext, StoreError, VerifyError, testing,
};
use time::Duration;

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

/// Keys as a version-1 database held them (schema version 1 had no refill columns): the
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
    revoked.metadata = keyward::Metadata::default();
    revoked.rotated_to = Some(testing::random_id());
    revoked.issued_by = Some(real.id);
    revoked.version = 12;
    (key, vec![real, disabled, revoked])
}

/// After an upgrade from version 1: every old key reads back unchanged and without a refill
/// schedule (through `get` and `list`), the real one still verifies and counts its uses, and
/// an old key can be given a schedule.
pub(crate) async fn check_upgraded_keys<S: KeyStore>(store: S, key: &ApiKey, old: &[KeyRecord]) {
    let m = manager(store);
    for record in old {
        assert_eq!((record.refill, record.refilled_at), (None, None));
        let got = m.get(&record.id).await.expect("old key readable");
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
    assert!(
        matches!(
            b.verify(old.key.expose_secret(), &ctx).await,
            Err(VerifyError::Expired)
        ),
        "b must refuse the regenerated key's old value"
    );
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
