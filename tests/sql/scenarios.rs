//! Scenarios every SQL store must pass, shared by `tests/sqlite_store.rs` and
//! `tests/postgres_store.rs` (included with `#[path]`). Each backend supplies its stores and
//! a way to run a hand-written `UPDATE` on a key's row.

use core::future::Future;
use std::error::Error as _;
use std::sync::Arc;

use keyward::{
    Hasher, IssuancePolicy, IssueError, IssueRequest, KeyFormat, KeyId, KeyManager, KeyStore,
    ListFilter, Page, Pepper, RequestContext, StoreError, VerifyError,
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
