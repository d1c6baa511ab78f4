//! Authority and delegation through the public API: one regression test per finding of the
//! authority review (each failed on the code before `KeyManager::acting_as` existed), and
//! the rules of reach, delegation and rotation. Time comes from a fake clock.

use std::sync::Arc;

use keyward::{
    Hasher, IssueRequest, KeyFormat, KeyId, KeyManager, KeyRecord, KeyStore, MemoryStore, Pepper,
    RequestContext, ScopeCatalog, ScopeSet, Verified,
    clock::FakeClock,
    manager::{IssueError, LifecycleError, PermissionTable, Remaining, VerifyError},
    policy::{Expiry, IssuancePolicy},
    record::KeyStatus,
    scope::Restrictions,
    store::{BulkRevocation, Consumed, ListFilter, Page, StoreError},
};
use time::{Duration, OffsetDateTime, macros::datetime};

fn scopes(s: &str) -> ScopeSet {
    s.parse().expect("valid scopes")
}

fn only(resources: &[&str]) -> Restrictions {
    Restrictions::only(resources).expect("valid resources")
}

fn manager_over<S: KeyStore>(store: S, clock: &FakeClock) -> KeyManager<S> {
    KeyManager::new(
        store,
        KeyFormat::new(["tak"]).expect("format"),
        Hasher::fast(Pepper::new("k1", [7u8; 32]).expect("pepper")),
    )
    .with_clock(clock.clone())
    .with_policy(IssuancePolicy::default().allow_never_expiring(true))
}

struct Fixture {
    manager: KeyManager<MemoryStore>,
    store: MemoryStore,
    clock: FakeClock,
    ctx: RequestContext,
}

fn fixture() -> Fixture {
    let clock = FakeClock::new(datetime!(2026-03-01 12:00 UTC));
    let store = MemoryStore::new();
    Fixture {
        manager: manager_over(store.clone(), &clock),
        store,
        clock,
        ctx: RequestContext::new().actor("test"),
    }
}

impl Fixture {
    async fn key(&self, request: IssueRequest) -> (String, Verified) {
        let issued = self.manager.issue(request, &self.ctx).await.expect("issue");
        let secret = issued.key.expose_secret().to_owned();
        let proof = self.verify(&secret).await.expect("fresh key verifies");
        (secret, proof)
    }

    async fn verify(&self, secret: &str) -> Result<Verified, VerifyError> {
        self.manager.verify(secret, &self.ctx).await
    }

    fn now(&self) -> OffsetDateTime {
        self.manager.now()
    }
}

/// The `*` management key of the example service.
fn root() -> IssueRequest {
    IssueRequest::new("management", "admin")
        .scopes(ScopeSet::all())
        .expiry(Expiry::Never)
}

// Finding 1: a narrow `keys:manage` key reached every key, and took over the `*` key.
#[tokio::test]
async fn narrow_manager_cannot_list_or_touch_the_root_key() {
    let f = fixture();
    let (root_secret, root) = f.key(root()).await;
    let (_, narrow) = f
        .key(
            IssueRequest::new("helpdesk", "admin")
                .scopes(scopes("keys:manage"))
                .restrictions(only(&["company:42"]))
                .expiry(Expiry::After(Duration::days(1))),
        )
        .await;
    let acting = f.manager.acting_as(&narrow);
    let ctx = &f.ctx;
    let root_id = root.key_id();
    let listed = acting
        .list(&ListFilter::All, Page::default())
        .await
        .expect("list");
    assert!(
        listed.iter().all(|r| r.id != root_id),
        "the narrow key must not see the `*` key"
    );
    let unknown: KeyId = "000000000000".parse().expect("id");
    let expect_hidden = |result: Result<(), LifecycleError>, what: &str| match result {
        Err(LifecycleError::NotFound(id)) => assert_eq!(id, root_id, "{what}"),
        other => panic!("{what}: expected NotFound, got {other:?}"),
    };
    expect_hidden(
        acting.rotate(&root_id, Duration::ZERO, ctx).await.map(drop),
        "rotate",
    );
    expect_hidden(acting.disable(&root_id, ctx).await.map(drop), "disable");
    expect_hidden(acting.enable(&root_id, ctx).await.map(drop), "enable");
    expect_hidden(acting.revoke(&root_id, None, ctx).await.map(drop), "revoke");
    expect_hidden(acting.delete(&root_id, ctx).await, "delete");
    expect_hidden(
        acting.regenerate(&root_id, ctx).await.map(drop),
        "regenerate",
    );
    expect_hidden(acting.get(&root_id).await.map(drop), "get");
    // The same error, message included, as for an id that does not exist.
    let hidden = acting
        .revoke(&root_id, None, ctx)
        .await
        .expect_err("hidden");
    let missing = acting
        .revoke(&unknown, None, ctx)
        .await
        .expect_err("missing");
    assert_eq!(
        hidden.to_string().replace(root_id.as_str(), "ID"),
        missing.to_string().replace(unknown.as_str(), "ID")
    );
    // Nothing changed: the administrator still holds a working `*` key.
    let after = f.verify(&root_secret).await.expect("root key still works");
    assert_eq!(after.record().version, root.record().version);
    assert!(after.record().rotated_to.is_none());
}

#[tokio::test]
async fn reach_is_tenant_scopes_resources_and_lifetime() {
    let f = fixture();
    let (_, manager_key) = f
        .key(
            IssueRequest::new("acme-admin", "ann")
                .tenant("acme")
                .scopes(scopes("keys:manage read comments"))
                .restrictions(only(&["company:42"]))
                .expiry(Expiry::After(Duration::days(30))),
        )
        .await;
    let within = |name: &str| {
        IssueRequest::new(name, "bob")
            .tenant("acme")
            .scopes(scopes("read"))
            .restrictions(only(&["company:42/project:7"]))
            .expiry(Expiry::After(Duration::days(10)))
    };
    let (_, reachable) = f.key(within("ok")).await;
    let (_, other_tenant) = f.key(within("globex").tenant("globex")).await;
    let (_, wider_scopes) = f
        .key(within("wide").scopes(scopes("read tickets:write")))
        .await;
    let (_, wider_resources) = f
        .key(within("company:9").restrictions(only(&["company:9"])))
        .await;
    let (_, unrestricted) = f
        .key(within("unrestricted").restrictions(Restrictions::unrestricted()))
        .await;
    let (_, outlives) = f
        .key(within("long").expiry(Expiry::After(Duration::days(60))))
        .await;
    let (_, no_tenant) = f
        .key(IssueRequest::new("plain", "bob").scopes(scopes("read")))
        .await;
    let acting = f.manager.acting_as(&manager_key);
    acting.get(&reachable.key_id()).await.expect("within reach");
    for (name, key) in [
        ("other tenant", &other_tenant),
        ("wider scopes", &wider_scopes),
        ("wider resources", &wider_resources),
        ("unrestricted", &unrestricted),
        ("outlives the actor", &outlives),
        ("no tenant", &no_tenant),
    ] {
        assert!(
            matches!(
                acting.get(&key.key_id()).await,
                Err(LifecycleError::NotFound(_))
            ),
            "{name} must be out of reach"
        );
    }
    let listed: Vec<KeyId> = acting
        .list(&ListFilter::All, Page::first(1))
        .await
        .expect("list")
        .iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(listed.len(), 1, "a page of one within reach");
    let mut all = Vec::new();
    let mut page = Some(Page::first(1));
    while let Some(p) = page {
        let records = acting.list(&ListFilter::All, p).await.expect("list");
        page = p.next(&records);
        all.extend(records.into_iter().map(|r| r.id));
    }
    all.sort();
    let mut expected = vec![reachable.key_id()];
    // The actor is within its own reach.
    expected.push(manager_key.key_id());
    expected.sort();
    assert_eq!(
        all, expected,
        "paging within reach visits exactly the reachable keys"
    );

    // A tenant-less actor reaches other tenants only with `*`.
    let (_, tenantless) = f
        .key(IssueRequest::new("ops", "ops").scopes(scopes("read keys:manage comments")))
        .await;
    let acting = f.manager.acting_as(&tenantless);
    assert!(matches!(
        acting.get(&reachable.key_id()).await,
        Err(LifecycleError::NotFound(_))
    ));
    acting
        .get(&no_tenant.key_id())
        .await
        .expect("tenant-less target");
    let (_, root) = f.key(root()).await;
    f.manager
        .acting_as(&root)
        .get(&other_tenant.key_id())
        .await
        .expect("`*` reaches every tenant");
}

#[tokio::test]
async fn administrative_issuance_is_bounded_and_not_bound_for_life() {
    let f = fixture();
    let (admin_secret, admin) = f
        .key(
            IssueRequest::new("acme-admin", "ann")
                .tenant("acme")
                .scopes(scopes("keys:manage read"))
                .expiry(Expiry::After(Duration::days(5))),
        )
        .await;
    let acting = f.manager.acting_as(&admin);
    // The tenant defaults to the actor's; another is refused.
    let issued = acting
        .issue(
            IssueRequest::new("bob-read", "bob").scopes(scopes("read")),
            &f.ctx,
        )
        .await
        .expect("issue");
    assert_eq!(issued.record.tenant.as_deref(), Some("acme"));
    assert_eq!(issued.record.issued_by, Some(admin.key_id()));
    assert_eq!(issued.record.parent, None, "provenance only");
    assert_eq!(
        issued.record.expires_at,
        admin.ends_at(),
        "the default expiry ends no later than the actor"
    );
    assert!(matches!(
        acting
            .issue(IssueRequest::new("x", "bob").tenant("globex"), &f.ctx)
            .await,
        Err(IssueError::Widening(_))
    ));
    assert!(matches!(
        acting
            .issue(
                IssueRequest::new("x", "bob").scopes(scopes("tickets:write")),
                &f.ctx
            )
            .await,
        Err(IssueError::Widening(_))
    ));
    assert!(matches!(
        acting
            .issue(
                IssueRequest::new("x", "bob").expiry(Expiry::After(Duration::days(6))),
                &f.ctx
            )
            .await,
        Err(IssueError::OutlivesActor)
    ));
    assert!(matches!(
        acting
            .issue(IssueRequest::new("x", "bob").expiry(Expiry::Never), &f.ctx)
            .await,
        Err(IssueError::OutlivesActor)
    ));
    // Revoking the administrator's key does not kill what it issued.
    f.manager
        .revoke(&admin.key_id(), None, &f.ctx)
        .await
        .expect("revoke");
    assert!(f.verify(&admin_secret).await.is_err());
    f.verify(issued.key.expose_secret())
        .await
        .expect("administratively issued keys outlive their issuer's revocation");
}

// Finding 2: delegation took tenant and owner from the request, and the child was not
// bound to its parent.
#[tokio::test]
async fn delegation_inherits_tenant_and_owner_and_binds_for_life() {
    let f = fixture();
    let (_, parent) = f
        .key(
            IssueRequest::new("agent-parent", "ann")
                .tenant("acme")
                .scopes(scopes("read comments")),
        )
        .await;
    let acting = f.manager.acting_as(&parent);
    for request in [
        acting.child_request("cross-tenant").tenant("globex"),
        IssueRequest::new("other-owner", "richer-owner").scopes(scopes("read")),
    ] {
        assert!(
            matches!(
                acting.delegate(request, &f.ctx).await,
                Err(IssueError::Widening(_))
            ),
            "a child names neither another tenant nor another owner"
        );
    }
    // The old entry point is the same bounded path.
    assert!(matches!(
        f.manager
            .issue_delegated(
                &parent,
                IssueRequest::new("x", "ann").tenant("globex"),
                &f.ctx
            )
            .await,
        Err(IssueError::Widening(_))
    ));
    let child = acting
        .delegate(acting.child_request("ci").scopes(scopes("read")), &f.ctx)
        .await
        .expect("delegate");
    assert_eq!(child.record.parent, Some(parent.key_id()));
    assert_eq!(child.record.tenant.as_deref(), Some("acme"));
    assert_eq!(child.record.owner, "ann");
    let child_secret = child.key.expose_secret().to_owned();
    f.verify(&child_secret).await.expect("child works");

    // Disabling the parent refuses the child; enabling it brings the child back.
    f.manager
        .disable(&parent.key_id(), &f.ctx)
        .await
        .expect("disable");
    assert!(matches!(
        f.verify(&child_secret).await,
        Err(VerifyError::Disabled)
    ));
    f.manager
        .enable(&parent.key_id(), &f.ctx)
        .await
        .expect("enable");
    f.verify(&child_secret).await.expect("child back");
    // Revoking the parent ends the child.
    f.manager
        .revoke(&parent.key_id(), None, &f.ctx)
        .await
        .expect("revoke");
    assert!(matches!(
        f.verify(&child_secret).await,
        Err(VerifyError::Revoked)
    ));
}

#[tokio::test]
async fn bulk_revocation_by_the_parents_owner_or_tenant_reaches_children() {
    for by_tenant in [false, true] {
        let f = fixture();
        let (_, parent) = f
            .key(
                IssueRequest::new("p", "ann")
                    .tenant("acme")
                    .scopes(scopes("read")),
            )
            .await;
        let acting = f.manager.acting_as(&parent);
        let child = acting
            .delegate(acting.child_request("c"), &f.ctx)
            .await
            .expect("delegate");
        let report = if by_tenant {
            f.manager.revoke_tenant("acme", None, &f.ctx).await
        } else {
            f.manager.revoke_owner("ann", None, &f.ctx).await
        }
        .expect("bulk revoke");
        assert!(report.revoked.contains(&child.record.id));
        assert!(f.verify(child.key.expose_secret()).await.is_err());
    }
}

#[tokio::test]
async fn deleted_or_expired_ancestors_refuse_every_descendant() {
    let f = fixture();
    let (_, root_key) = f
        .key(
            IssueRequest::new("root", "ann")
                .scopes(scopes("read comments"))
                .expiry(Expiry::After(Duration::days(3))),
        )
        .await;
    let mut chain = vec![root_key];
    let mut secrets = Vec::new();
    for depth in 1..=4 {
        let parent = chain.last().expect("parent");
        let acting = f.manager.acting_as(parent);
        let child = acting
            .delegate(acting.child_request(format!("d{depth}")), &f.ctx)
            .await
            .expect("delegate");
        let secret = child.key.expose_secret().to_owned();
        chain.push(f.verify(&secret).await.expect("verifies"));
        secrets.push(secret);
    }
    // Depth limit: a fifth level is refused.
    let deepest = chain.last().expect("deepest");
    let acting = f.manager.acting_as(deepest);
    assert!(matches!(
        acting.delegate(acting.child_request("d5"), &f.ctx).await,
        Err(IssueError::TooDeep { max: 4 })
    ));
    // Deleting the middle ancestor refuses it and every key below it.
    f.manager
        .delete(&chain[2].key_id(), &f.ctx)
        .await
        .expect("delete");
    f.verify(&secrets[0]).await.expect("above the deleted key");
    assert!(matches!(
        f.verify(&secrets[1]).await,
        Err(VerifyError::Invalid)
    ));
    for secret in &secrets[2..] {
        assert!(matches!(f.verify(secret).await, Err(VerifyError::Revoked)));
    }
    // The root's expiry ends its child too.
    f.clock.advance(Duration::days(3));
    assert!(matches!(
        f.verify(&secrets[0]).await,
        Err(VerifyError::Expired)
    ));
}

// Finding 3: rotation granted a fresh lifetime and doubled the quota.
#[tokio::test]
async fn rotating_a_delegated_key_never_outlives_its_parent() {
    let f = fixture();
    let (_, parent) = f
        .key(
            IssueRequest::new("parent", "ann")
                .scopes(scopes("read"))
                .expiry(Expiry::After(Duration::days(2))),
        )
        .await;
    let parent_end = parent.ends_at().expect("parent expires");
    let acting = f.manager.acting_as(&parent);
    let child = acting
        .delegate(acting.child_request("child"), &f.ctx)
        .await
        .expect("delegate");
    let mut current = child;
    for _ in 0..30 {
        f.clock.advance(Duration::minutes(90));
        if f.now() >= parent_end {
            break;
        }
        let next = f
            .manager
            .rotate(&current.record.id, Duration::minutes(5), &f.ctx)
            .await
            .expect("rotate");
        assert!(
            next.record.expires_at.is_some_and(|at| at <= parent_end),
            "a rotated descendant ends no later than its parent"
        );
        current = next;
    }
    f.clock.set(parent_end + Duration::days(28));
    assert!(f.verify(current.key.expose_secret()).await.is_err());
    // An expired key cannot be rotated at all.
    assert!(matches!(
        f.manager
            .rotate(&current.record.id, Duration::ZERO, &f.ctx)
            .await,
        Err(LifecycleError::NotLive(_))
    ));
}

#[tokio::test]
async fn rotation_keeps_the_old_end_and_one_pool_of_uses() {
    let f = fixture();
    let (old_secret, old) = f
        .key(
            IssueRequest::new("metered", "ann")
                .scopes(scopes("read"))
                .remaining_uses(10)
                .expiry(Expiry::After(Duration::days(30))),
        )
        .await;
    f.clock.advance(Duration::days(20));
    let new = f
        .manager
        .rotate(&old.key_id(), Duration::hours(1), &f.ctx)
        .await
        .expect("rotate");
    assert_eq!(new.record.expires_at, old.record().expires_at);
    assert_eq!(new.record.remaining_uses, Some(10));
    // The stale proof of the old key and a fresh one, and the new key, share 10 uses.
    let fresh_old = f.verify(&old_secret).await.expect("old key in grace");
    let new_proof = f.verify(new.key.expose_secret()).await.expect("new key");
    let mut taken = 0;
    for proof in [&old, &fresh_old, &new_proof].into_iter().cycle().take(30) {
        match f.manager.consume(proof, 1).await {
            Ok(Remaining::Uses(_)) => taken += 1,
            Ok(Remaining::Unlimited) => panic!("the key has a quota"),
            Err(keyward::manager::QuotaError::Exhausted) => {}
            Err(e) => panic!("consume: {e}"),
        }
    }
    assert_eq!(taken, 10, "a grace period must not double the quota");
}

// Finding 4: one undecodable row stopped an incident revocation.
#[tokio::test]
async fn one_corrupt_row_does_not_stop_a_bulk_revocation() {
    let clock = FakeClock::new(datetime!(2026-03-01 12:00 UTC));
    let store = CorruptRows::default();
    let manager = manager_over(store.clone(), &clock);
    let ctx = RequestContext::new();
    let mut secrets = Vec::new();
    let mut ids = Vec::new();
    for i in 0..25 {
        let issued = manager
            .issue(
                IssueRequest::new(format!("k{i}"), format!("owner{}", i % 3)).tenant("acme"),
                &ctx,
            )
            .await
            .expect("issue");
        ids.push(issued.record.id);
        secrets.push(issued.key.expose_secret().to_owned());
    }
    let mut sorted = ids.clone();
    sorted.sort();
    let bad = sorted[7];
    store.corrupt(bad);
    let report = manager
        .revoke_tenant("acme", Some("incident"), &ctx)
        .await
        .expect("bulk revocation completes");
    assert_eq!(report.unreadable, vec![bad]);
    assert_eq!(report.revoked.len(), 24);
    for secret in &secrets {
        assert!(
            manager.verify(secret, &ctx).await.is_err(),
            "every key of the tenant is refused, the unreadable one too"
        );
    }
}

// Finding 5: a parent revoked after its proof was taken still minted keys.
#[tokio::test]
async fn a_stale_proof_cannot_issue_or_manage() {
    let f = fixture();
    let (_, parent) = f
        .key(IssueRequest::new("p", "ann").scopes(scopes("read keys:manage")))
        .await;
    let (_, target) = f
        .key(IssueRequest::new("t", "ann").scopes(scopes("read")))
        .await;
    f.manager
        .revoke(&parent.key_id(), None, &f.ctx)
        .await
        .expect("revoke");
    let acting = f.manager.acting_as(&parent);
    assert!(matches!(
        acting.delegate(acting.child_request("c"), &f.ctx).await,
        Err(IssueError::Actor(VerifyError::Revoked))
    ));
    assert!(matches!(
        acting
            .issue(IssueRequest::new("x", "ann").scopes(scopes("read")), &f.ctx)
            .await,
        Err(IssueError::Actor(_))
    ));
    assert!(matches!(
        acting.revoke(&target.key_id(), None, &f.ctx).await,
        Err(LifecycleError::Actor(_))
    ));
    f.manager
        .refresh(&target)
        .await
        .expect("the target was not touched");
}

// Finding 6: editing a role widened a delegated key past its parent.
#[tokio::test]
async fn a_role_edited_after_delegation_does_not_widen_the_child() {
    let clock = FakeClock::new(datetime!(2026-03-01 12:00 UTC));
    let store = MemoryStore::new();
    let catalog = |support: &[&str]| {
        ScopeCatalog::builder()
            .scopes(["read", "comments", "tickets:write", "billing"])
            .implies("comments", "read")
            .role("support", support.iter().copied())
            .build()
            .expect("catalog")
    };
    let before = manager_over(store.clone(), &clock).with_catalog(catalog(&["comments"]));
    let ctx = RequestContext::new();
    let parent = before
        .issue(
            IssueRequest::new("p", "ann").scopes(scopes("comments")),
            &ctx,
        )
        .await
        .expect("issue");
    let parent_proof = before
        .verify(parent.key.expose_secret(), &ctx)
        .await
        .expect("verify");
    let acting = before.acting_as(&parent_proof);
    let child = acting
        .delegate(acting.child_request("c").roles(["support"]), &ctx)
        .await
        .expect("the role fits the parent");
    // The service restarts with a wider role.
    let after = manager_over(store, &clock).with_catalog(catalog(&["comments", "billing"]));
    let child_proof = after
        .verify(child.key.expose_secret(), &ctx)
        .await
        .expect("verify");
    let parent_now = after
        .verify(parent.key.expose_secret(), &ctx)
        .await
        .expect("verify");
    assert!(
        !child_proof.allows(&"billing".parse().expect("scope")),
        "the child must not gain what its parent does not hold"
    );
    assert!(child_proof.scopes().is_subset(parent_now.scopes()));
    assert!(child_proof.allows(&"comments".parse().expect("scope")));
}

#[tokio::test]
async fn a_demoted_owner_narrows_delegated_keys_at_once() {
    let clock = FakeClock::new(datetime!(2026-03-01 12:00 UTC));
    let permissions = PermissionTable::new();
    permissions.set("ann", scopes("read comments"));
    let manager =
        manager_over(MemoryStore::new(), &clock).with_owner_permissions(permissions.clone());
    let ctx = RequestContext::new();
    let parent = manager
        .issue(
            IssueRequest::new("p", "ann").scopes(scopes("read comments")),
            &ctx,
        )
        .await
        .expect("issue");
    let proof = manager
        .verify(parent.key.expose_secret(), &ctx)
        .await
        .expect("verify");
    let acting = manager.acting_as(&proof);
    let child = acting
        .delegate(acting.child_request("c").scopes(scopes("comments")), &ctx)
        .await
        .expect("delegate");
    permissions.set("ann", scopes("read"));
    let child_proof = manager
        .verify(child.key.expose_secret(), &ctx)
        .await
        .expect("verify");
    assert!(!child_proof.allows(&"comments".parse().expect("scope")));
}

#[tokio::test]
async fn a_childs_restrictions_stay_within_its_ancestors() {
    let f = fixture();
    let (_, parent) = f
        .key(
            IssueRequest::new("p", "ann")
                .scopes(scopes("read"))
                .restrictions(only(&["company:42"])),
        )
        .await;
    let acting = f.manager.acting_as(&parent);
    assert!(matches!(
        acting
            .delegate(
                acting
                    .child_request("wide")
                    .restrictions(only(&["company:9"])),
                &f.ctx
            )
            .await,
        Err(IssueError::Widening(_))
    ));
    let inherited = acting
        .delegate(acting.child_request("inherits"), &f.ctx)
        .await
        .expect("delegate");
    assert_eq!(inherited.record.restrictions, only(&["company:42"]));
    // A record widened behind the manager's back (raw store write) is still bounded.
    let mut raw = inherited.record.clone();
    raw.restrictions = Restrictions::unrestricted();
    f.store
        .update(raw, inherited.record.version)
        .await
        .expect("raw write");
    let proof = f
        .verify(inherited.key.expose_secret())
        .await
        .expect("verify");
    assert_eq!(proof.restrictions(), &only(&["company:42"]));
    assert!(
        proof
            .authorize(
                &"read".parse().expect("scope"),
                Some(&"company:9".parse().expect("res"))
            )
            .is_err()
    );
}

#[tokio::test]
async fn a_child_never_reaches_its_ancestors() {
    let f = fixture();
    let (_, parent) = f
        .key(IssueRequest::new("p", "ann").scopes(scopes("keys:manage read")))
        .await;
    let acting = f.manager.acting_as(&parent);
    // A child with everything its parent has (same scopes, resources and end).
    let child = acting
        .delegate(
            acting
                .child_request("twin")
                .scopes(scopes("keys:manage read")),
            &f.ctx,
        )
        .await
        .expect("delegate");
    let child = f.verify(child.key.expose_secret()).await.expect("verify");
    let as_child = f.manager.acting_as(&child);
    assert!(matches!(
        as_child
            .rotate(&parent.key_id(), Duration::ZERO, &f.ctx)
            .await,
        Err(LifecycleError::NotFound(_))
    ));
    assert!(matches!(
        as_child.revoke(&parent.key_id(), None, &f.ctx).await,
        Err(LifecycleError::NotFound(_))
    ));
    // ... but its parent reaches it.
    f.manager
        .acting_as(&parent)
        .get(&child.key_id())
        .await
        .expect("a parent reaches its child");
}

#[tokio::test]
async fn children_end_with_their_parents_old_key() {
    let f = fixture();
    // Regenerate (a leak): everything minted from the old key dies with it at once.
    let (_, parent) = f
        .key(IssueRequest::new("p", "ann").scopes(scopes("read")))
        .await;
    let acting = f.manager.acting_as(&parent);
    let child = acting
        .delegate(acting.child_request("c"), &f.ctx)
        .await
        .expect("delegate");
    f.manager
        .regenerate(&parent.key_id(), &f.ctx)
        .await
        .expect("regenerate");
    assert!(matches!(
        f.verify(child.key.expose_secret()).await,
        Err(VerifyError::Revoked)
    ));
    // Rotation with a grace period: the child works until the old key's grace ends.
    let (_, parent) = f
        .key(IssueRequest::new("p2", "ann").scopes(scopes("read")))
        .await;
    let acting = f.manager.acting_as(&parent);
    let child = acting
        .delegate(acting.child_request("c2"), &f.ctx)
        .await
        .expect("delegate");
    f.manager
        .rotate(&parent.key_id(), Duration::hours(1), &f.ctx)
        .await
        .expect("rotate");
    f.verify(child.key.expose_secret())
        .await
        .expect("during the grace period");
    f.clock.advance(Duration::hours(1));
    assert!(matches!(
        f.verify(child.key.expose_secret()).await,
        Err(VerifyError::Expired)
    ));
}

// Hostile review: the old value of a rotated key could rotate its successor away.
#[tokio::test]
async fn a_retired_key_manages_nothing() {
    let f = fixture();
    let (_, old) = f
        .key(
            IssueRequest::new("m", "ann")
                .scopes(scopes("read keys:manage"))
                .expiry(Expiry::After(Duration::days(10))),
        )
        .await;
    let new = f
        .manager
        .rotate(&old.key_id(), Duration::days(30), &f.ctx)
        .await
        .expect("rotate");
    let old_now = f.manager.refresh(&old).await.expect("old key in grace");
    let acting = f.manager.acting_as(&old_now);
    assert!(matches!(
        acting.rotate(&new.record.id, Duration::ZERO, &f.ctx).await,
        Err(LifecycleError::Actor(_))
    ));
    assert!(matches!(
        acting.delegate(acting.child_request("c"), &f.ctx).await,
        Err(IssueError::Actor(_))
    ));
    f.verify(new.key.expose_secret())
        .await
        .expect("the successor is untouched");
}

// Hostile review: a key could lift its own quota, or give a child more than it has.
#[tokio::test]
async fn quotas_stay_within_the_acting_key() {
    let f = fixture();
    let (_, metered) = f
        .key(
            IssueRequest::new("m", "ann")
                .scopes(scopes("read keys:manage"))
                .remaining_uses(3),
        )
        .await;
    let acting = f.manager.acting_as(&metered);
    assert!(matches!(
        acting
            .set_quota(&metered.key_id(), None, None, &f.ctx)
            .await,
        Err(keyward::manager::QuotaError::NotFound(_))
    ));
    let child = acting
        .delegate(acting.child_request("c"), &f.ctx)
        .await
        .expect("delegate");
    assert_eq!(
        child.record.remaining_uses,
        Some(3),
        "a child of a metered key gets at most its uses"
    );
    assert!(matches!(
        acting
            .delegate(acting.child_request("more").remaining_uses(4), &f.ctx)
            .await,
        Err(IssueError::Widening(_))
    ));
    assert!(matches!(
        acting.set_quota(&child.record.id, None, None, &f.ctx).await,
        Err(keyward::manager::QuotaError::Widening)
    ));
}

#[tokio::test]
async fn a_proof_from_before_a_rotation_draws_on_the_new_pool() {
    let f = fixture();
    let (_, old) = f.key(IssueRequest::new("u", "ann")).await;
    let new = f
        .manager
        .rotate(&old.key_id(), Duration::days(1), &f.ctx)
        .await
        .expect("rotate");
    f.manager
        .set_quota(&new.record.id, Some(1), None, &f.ctx)
        .await
        .expect("quota on the new key");
    assert_eq!(
        f.manager.consume(&old, 1).await.expect("one use"),
        Remaining::Uses(0)
    );
    assert!(matches!(
        f.manager.consume(&old, 1).await,
        Err(keyward::manager::QuotaError::Exhausted)
    ));
}

// Finding 7: enable ignored the per-owner cap.
#[tokio::test]
async fn enable_counts_against_the_cap() {
    let clock = FakeClock::new(datetime!(2026-03-01 12:00 UTC));
    let manager = manager_over(MemoryStore::new(), &clock)
        .with_policy(IssuancePolicy::default().max_live_keys_per_owner(1));
    let ctx = RequestContext::new();
    let first = manager
        .issue(IssueRequest::new("a", "ann"), &ctx)
        .await
        .expect("issue");
    manager
        .disable(&first.record.id, &ctx)
        .await
        .expect("disable");
    manager
        .issue(IssueRequest::new("b", "ann"), &ctx)
        .await
        .expect("the cap has room again");
    assert!(matches!(
        manager.enable(&first.record.id, &ctx).await,
        Err(LifecycleError::LimitReached { limit: 1 })
    ));
    assert!(matches!(
        manager.verify(first.key.expose_secret(), &ctx).await,
        Err(VerifyError::Disabled)
    ));
}

// Finding 8: consume did not change the version, so a compare-and-set wrote old uses back.
#[tokio::test]
async fn a_consume_conflicts_with_an_older_read() {
    let f = fixture();
    let (_, key) = f.key(IssueRequest::new("q", "ann").remaining_uses(5)).await;
    let before: KeyRecord = KeyRecord::clone(
        &f.store
            .get(&key.key_id())
            .await
            .expect("get")
            .expect("exists"),
    );
    f.manager.consume(&key, 2).await.expect("consume");
    let mut stale = before.clone();
    stale.name = "renamed".into();
    assert!(matches!(
        f.store.update(stale, before.version).await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(
        f.store.consume(&key.key_id(), 0).await.expect("consume"),
        Consumed::Remaining(3)
    );
}

// Finding 9: regenerate ended the old key by a timestamp, which a lagging clock ignored.
#[tokio::test]
async fn regenerate_ends_the_old_key_on_every_clock() {
    let f = fixture();
    let (old_secret, old) = f.key(IssueRequest::new("r", "ann")).await;
    f.manager
        .regenerate(&old.key_id(), &f.ctx)
        .await
        .expect("regenerate");
    let lagging = FakeClock::new(f.now() - Duration::minutes(5));
    let other_instance = manager_over(f.store.clone(), &lagging);
    assert!(matches!(
        other_instance.verify(&old_secret, &f.ctx).await,
        Err(VerifyError::Revoked)
    ));
    let retired = f
        .store
        .get(&old.key_id())
        .await
        .expect("get")
        .expect("kept");
    assert_eq!(retired.status, KeyStatus::Revoked);
}

#[tokio::test]
async fn acting_enable_and_quota_respect_reach() {
    let f = fixture();
    let (_, narrow) = f
        .key(
            IssueRequest::new("n", "ann")
                .scopes(scopes("keys:manage read"))
                .restrictions(only(&["company:42"]))
                .expiry(Expiry::After(Duration::days(1))),
        )
        .await;
    let (_, wide) = f
        .key(IssueRequest::new("w", "bob").scopes(scopes("read tickets:write")))
        .await;
    f.manager
        .disable(&wide.key_id(), &f.ctx)
        .await
        .expect("disable");
    let acting = f.manager.acting_as(&narrow);
    assert!(matches!(
        acting.enable(&wide.key_id(), &f.ctx).await,
        Err(LifecycleError::NotFound(_))
    ));
    assert!(matches!(
        acting
            .set_quota(&wide.key_id(), Some(1), None, &f.ctx)
            .await,
        Err(keyward::manager::QuotaError::NotFound(_))
    ));
    let report: BulkRevocation = acting
        .revoke_owner("bob", None, &f.ctx)
        .await
        .expect("bounded bulk revocation");
    assert!(
        report.revoked.is_empty(),
        "nothing of bob's is within reach"
    );
    let record = f.manager.get(&wide.key_id()).await.expect("get");
    assert_eq!(record.status, KeyStatus::Disabled);
}

/// A memory store in which chosen rows fail to decode, like a hand-edited database row:
/// `get` and `list` report them as [`StoreError::Corrupt`]; `revoke_matching` is the
/// trait's default implementation.
#[derive(Clone, Default)]
struct CorruptRows {
    inner: MemoryStore,
    bad: Arc<std::sync::Mutex<Vec<KeyId>>>,
}

impl CorruptRows {
    fn corrupt(&self, id: KeyId) {
        self.bad.lock().expect("lock").push(id);
    }

    fn is_bad(&self, id: &KeyId) -> bool {
        self.bad.lock().expect("lock").contains(id)
    }

    fn error(id: KeyId) -> StoreError {
        StoreError::corrupt(id, "column scopes does not decode")
    }
}

impl KeyStore for CorruptRows {
    async fn insert(&self, record: KeyRecord) -> Result<(), StoreError> {
        self.inner.insert(record).await
    }
    async fn insert_capped(
        &self,
        record: KeyRecord,
        max_live: usize,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        self.inner.insert_capped(record, max_live, now).await
    }
    async fn get(&self, id: &KeyId) -> Result<Option<Arc<KeyRecord>>, StoreError> {
        if self.is_bad(id) {
            return Err(Self::error(*id));
        }
        self.inner.get(id).await
    }
    async fn update(&self, record: KeyRecord, expected_version: u64) -> Result<(), StoreError> {
        self.inner.update(record, expected_version).await
    }
    async fn update_capped(
        &self,
        record: KeyRecord,
        expected_version: u64,
        max_live: usize,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        self.inner
            .update_capped(record, expected_version, max_live, now)
            .await
    }
    async fn rotate(
        &self,
        old: KeyRecord,
        expected_version: u64,
        new: KeyRecord,
    ) -> Result<(), StoreError> {
        self.inner.rotate(old, expected_version, new).await
    }
    async fn list(&self, filter: &ListFilter, page: Page) -> Result<Vec<KeyRecord>, StoreError> {
        let records = self.inner.list(filter, page).await?;
        match records.iter().find(|r| self.is_bad(&r.id)) {
            Some(bad) => Err(Self::error(bad.id)),
            None => Ok(records),
        }
    }
    async fn consume(&self, id: &KeyId, cost: u64) -> Result<Consumed, StoreError> {
        self.inner.consume(id, cost).await
    }
    async fn touch(&self, id: &KeyId, at: OffsetDateTime) -> Result<(), StoreError> {
        self.inner.touch(id, at).await
    }
    async fn delete(&self, id: &KeyId) -> Result<bool, StoreError> {
        self.inner.delete(id).await
    }
}

// Found by tests/authority_model.rs: the old half of a rotation counted against nothing and
// kept working after its successor was revoked, so an owner could hold more live keys than
// the cap (and a revoked new key left the old value working for the whole grace period).
#[tokio::test]
async fn a_key_in_grace_dies_with_its_successor() {
    let clock = FakeClock::new(datetime!(2026-03-01 12:00 UTC));
    let manager = manager_over(MemoryStore::new(), &clock)
        .with_policy(IssuancePolicy::default().max_live_keys_per_owner(1));
    let ctx = RequestContext::new();
    let old = manager
        .issue(IssueRequest::new("k", "ann"), &ctx)
        .await
        .expect("issue");
    let new = manager
        .rotate(&old.record.id, Duration::days(30), &ctx)
        .await
        .expect("rotate");
    manager
        .verify(old.key.expose_secret(), &ctx)
        .await
        .expect("old key in grace");
    manager
        .revoke(&new.record.id, None, &ctx)
        .await
        .expect("revoke the new key");
    assert!(matches!(
        manager.verify(old.key.expose_secret(), &ctx).await,
        Err(VerifyError::Revoked)
    ));
    // The cap has room again, and the old key does not come back beside the new one.
    let another = manager
        .issue(IssueRequest::new("k2", "ann"), &ctx)
        .await
        .expect("issue under the cap");
    manager
        .verify(another.key.expose_secret(), &ctx)
        .await
        .expect("verifies");
    assert!(manager.verify(old.key.expose_secret(), &ctx).await.is_err());
}

// Found by tests/authority_model.rs: a delegated key escaped its lineage through
// administrative issuance (or by rotating a key outside its parent's lineage).
#[tokio::test]
async fn nothing_a_delegated_key_makes_outlives_its_parent() {
    let f = fixture();
    let (_, parent) = f
        .key(IssueRequest::new("p", "alice").scopes(scopes("read keys:manage")))
        .await;
    let (_, sibling_root) = f
        .key(IssueRequest::new("other", "bob").scopes(scopes("read")))
        .await;
    let acting = f.manager.acting_as(&parent);
    let child = acting
        .delegate(
            acting
                .child_request("agent")
                .scopes(scopes("read keys:manage")),
            &f.ctx,
        )
        .await
        .expect("delegate");
    let child = f.verify(child.key.expose_secret()).await.expect("verify");
    let as_child = f.manager.acting_as(&child);
    let escaped = as_child
        .issue(
            IssueRequest::new("escaped", "alice").scopes(scopes("read keys:manage")),
            &f.ctx,
        )
        .await
        .expect("administrative issuance by a delegated key");
    assert_eq!(
        escaped.record.parent,
        Some(parent.key_id()),
        "filed below the actor's parent"
    );
    // A key outside the parent's lineage is out of the child's reach, so it cannot be
    // rotated into a key the parent's revocation does not end.
    assert!(matches!(
        as_child
            .rotate(&sibling_root.key_id(), Duration::ZERO, &f.ctx)
            .await,
        Err(LifecycleError::NotFound(_))
    ));
    // Keys below the parent stay manageable by the child.
    as_child
        .get(&escaped.record.id)
        .await
        .expect("within the parent's lineage");
    f.manager
        .revoke(&parent.key_id(), None, &f.ctx)
        .await
        .expect("revoke parent");
    assert!(matches!(
        f.verify(escaped.key.expose_secret()).await,
        Err(VerifyError::Revoked)
    ));
}
