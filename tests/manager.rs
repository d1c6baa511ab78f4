//! The key manager through its public API: issuance, verification, authorization, the
//! lifecycle, policy, delegation, owner bounds, audit. Time comes from a fake clock.

use std::sync::Arc;

use keyward::{
    Hasher, IssueRequest, KeyFormat, KeyManager, MemoryStore, Pepper, RequestContext, Scope,
    ScopeSet,
    audit::{AuditKind, AuditLog, FailureReason},
    clock::FakeClock,
    manager::{IssueError, LifecycleError, PermissionTable, VerifyError},
    policy::{Expiry, ExpiryPreset, IssuancePolicy},
    record::KeyStatus,
    store::ListFilter,
};
use time::{Duration, macros::datetime};

fn scopes(s: &str) -> ScopeSet {
    s.parse().expect("valid scopes")
}

fn scope(s: &str) -> Scope {
    s.parse().expect("valid scope")
}

struct Fixture {
    manager: KeyManager<MemoryStore>,
    clock: FakeClock,
    audit: AuditLog,
    ctx: RequestContext,
}

fn fixture_with(policy: IssuancePolicy) -> Fixture {
    let clock = FakeClock::new(datetime!(2026-03-01 12:00 UTC));
    let audit = AuditLog::new();
    let manager = KeyManager::new(
        MemoryStore::new(),
        KeyFormat::new(["tak", "tak_test"]).expect("format"),
        Hasher::fast(Pepper::new("k1", [7u8; 32]).expect("pepper")),
    )
    .with_clock(clock.clone())
    .with_audit(audit.clone())
    .with_policy(policy);
    Fixture {
        manager,
        clock,
        audit,
        ctx: RequestContext::new().actor("admin"),
    }
}

fn fixture() -> Fixture {
    fixture_with(IssuancePolicy::default())
}

#[tokio::test]
async fn issue_verify_authorize() {
    let f = fixture();
    let issued = f
        .manager
        .issue(
            IssueRequest::new("ci", "user_1")
                .tenant("acme")
                .scopes(scopes("read tickets:write")),
            &f.ctx,
        )
        .await
        .expect("issue");
    assert!(issued.key.expose_secret().starts_with("tak_"));
    assert_eq!(
        issued.record.expires_at,
        Some(f.clock.now_for_test() + Duration::days(90))
    );
    let verified = f
        .manager
        .verify(issued.key.expose_secret(), &f.ctx)
        .await
        .expect("verify");
    assert_eq!(verified.key_id(), issued.key.id());
    assert_eq!(verified.owner(), "user_1");
    assert_eq!(verified.tenant(), Some("acme"));
    assert!(verified.authorize(&scope("read"), None).is_ok());
    let denied = verified
        .authorize(&scope("billing:read"), None)
        .expect_err("must be denied");
    assert!(denied.to_string().contains("billing:read"), "{denied}");
}

trait NowForTest {
    fn now_for_test(&self) -> time::OffsetDateTime;
}
impl NowForTest for FakeClock {
    fn now_for_test(&self) -> time::OffsetDateTime {
        keyward::Clock::now(self)
    }
}

#[tokio::test]
async fn test_prefix_is_chosen_per_key() {
    let f = fixture();
    let issued = f
        .manager
        .issue(IssueRequest::new("t", "u").prefix("tak_test"), &f.ctx)
        .await
        .expect("issue");
    assert!(issued.key.expose_secret().starts_with("tak_test_"));
    assert_eq!(issued.record.prefix.as_str(), "tak_test");
    f.manager
        .verify(issued.key.expose_secret(), &f.ctx)
        .await
        .expect("verify");
    let err = f
        .manager
        .issue(IssueRequest::new("t", "u").prefix("nope"), &f.ctx)
        .await
        .expect_err("unknown");
    assert!(matches!(err, IssueError::InvalidRequest(_)), "{err:?}");
}

#[tokio::test]
async fn unknown_id_and_wrong_secret_are_indistinguishable() {
    let f = fixture();
    let issued = f
        .manager
        .issue(IssueRequest::new("ci", "u"), &f.ctx)
        .await
        .expect("issue");
    let wrong = keyward::testing::same_id_wrong_secret(issued.key.expose_secret());
    let unknown = f.manager.format().generate().expect("generate");
    let e1 = f
        .manager
        .verify(&wrong, &f.ctx)
        .await
        .expect_err("wrong secret");
    let e2 = f
        .manager
        .verify(unknown.expose_secret(), &f.ctx)
        .await
        .expect_err("unknown id");
    assert!(matches!(e1, VerifyError::Invalid), "{e1:?}");
    assert!(matches!(e2, VerifyError::Invalid), "{e2:?}");
    assert_eq!(e1.to_string(), e2.to_string());
    let e3 = f
        .manager
        .verify("tak_garbage", &f.ctx)
        .await
        .expect_err("malformed");
    assert!(matches!(e3, VerifyError::Malformed(_)), "{e3:?}");
}

#[tokio::test]
async fn status_is_revealed_only_after_the_secret_verified() {
    let f = fixture();
    let issued = f
        .manager
        .issue(IssueRequest::new("ci", "u"), &f.ctx)
        .await
        .expect("issue");
    let id = issued.key.id();
    f.manager.revoke(&id, None, &f.ctx).await.expect("revoke");
    let wrong = keyward::testing::same_id_wrong_secret(issued.key.expose_secret());
    assert!(matches!(
        f.manager.verify(&wrong, &f.ctx).await,
        Err(VerifyError::Invalid)
    ));
    assert!(matches!(
        f.manager.verify(issued.key.expose_secret(), &f.ctx).await,
        Err(VerifyError::Revoked)
    ));
}

#[tokio::test]
async fn disable_enable_keeps_the_same_value_and_revoke_is_final() {
    let f = fixture();
    let issued = f
        .manager
        .issue(IssueRequest::new("ci", "u"), &f.ctx)
        .await
        .expect("issue");
    let (id, key) = (issued.key.id(), issued.key.expose_secret());
    let disabled = f.manager.disable(&id, &f.ctx).await.expect("disable");
    assert_eq!(disabled.status, KeyStatus::Disabled);
    assert!(matches!(
        f.manager.verify(key, &f.ctx).await,
        Err(VerifyError::Disabled)
    ));
    f.manager.enable(&id, &f.ctx).await.expect("enable");
    f.manager
        .verify(key, &f.ctx)
        .await
        .expect("same value works again");
    f.manager
        .revoke(&id, Some("compromised"), &f.ctx)
        .await
        .expect("revoke");
    assert!(matches!(
        f.manager.verify(key, &f.ctx).await,
        Err(VerifyError::Revoked)
    ));
    assert!(matches!(
        f.manager.enable(&id, &f.ctx).await,
        Err(LifecycleError::Revoked(_))
    ));
    assert!(matches!(
        f.manager.disable(&id, &f.ctx).await,
        Err(LifecycleError::Revoked(_))
    ));
    // Revoking again is harmless.
    f.manager
        .revoke(&id, None, &f.ctx)
        .await
        .expect("idempotent revoke");
}

#[tokio::test]
async fn delete_makes_the_key_unknown() {
    let f = fixture();
    let issued = f
        .manager
        .issue(IssueRequest::new("ci", "u"), &f.ctx)
        .await
        .expect("issue");
    f.manager
        .delete(&issued.key.id(), &f.ctx)
        .await
        .expect("delete");
    assert!(matches!(
        f.manager.verify(issued.key.expose_secret(), &f.ctx).await,
        Err(VerifyError::Invalid)
    ));
    assert!(matches!(
        f.manager.delete(&issued.key.id(), &f.ctx).await,
        Err(LifecycleError::NotFound(_))
    ));
}

#[tokio::test]
async fn expiry_default_presets_maximum_and_never() {
    let f = fixture();
    let issued = f
        .manager
        .issue(IssueRequest::new("ci", "u"), &f.ctx)
        .await
        .expect("issue");
    f.clock.advance(Duration::days(90) - Duration::seconds(1));
    f.manager
        .verify(issued.key.expose_secret(), &f.ctx)
        .await
        .expect("valid until the last second");
    f.clock.advance(Duration::seconds(1));
    assert!(matches!(
        f.manager.verify(issued.key.expose_secret(), &f.ctx).await,
        Err(VerifyError::Expired)
    ));

    let now = f.clock.now_for_test();
    for (preset, days) in [
        (ExpiryPreset::Days30, 30),
        (ExpiryPreset::Days90, 90),
        (ExpiryPreset::Days180, 180),
    ] {
        let r = f
            .manager
            .issue(
                IssueRequest::new("p", "u").expiry(Expiry::Preset(preset)),
                &f.ctx,
            )
            .await;
        assert_eq!(
            r.expect("preset").record.expires_at,
            Some(now + Duration::days(days))
        );
    }
    // Calendar months from the same instant: what the preset says, within the policy.
    for preset in [
        ExpiryPreset::Months1,
        ExpiryPreset::Months3,
        ExpiryPreset::Months6,
    ] {
        let r = f
            .manager
            .issue(
                IssueRequest::new("p", "u").expiry(Expiry::Preset(preset)),
                &f.ctx,
            )
            .await;
        assert_eq!(r.expect("preset").record.expires_at, preset.end(now));
    }
    let too_long = f.manager.issue(
        IssueRequest::new("p", "u").expiry(Expiry::After(Duration::days(400))),
        &f.ctx,
    );
    assert!(matches!(
        too_long.await,
        Err(IssueError::Policy(keyward::policy::PolicyError::TooLong {
            max_days: 365
        }))
    ));
    let never = f
        .manager
        .issue(IssueRequest::new("p", "u").expiry(Expiry::Never), &f.ctx)
        .await;
    assert!(matches!(
        never,
        Err(IssueError::Policy(
            keyward::policy::PolicyError::NeverExpiringNotAllowed
        ))
    ));
    let past = f.manager.issue(
        IssueRequest::new("p", "u").expiry(Expiry::At(now - Duration::days(1))),
        &f.ctx,
    );
    assert!(matches!(
        past.await,
        Err(IssueError::Policy(
            keyward::policy::PolicyError::NotInFuture
        ))
    ));

    let lenient = fixture_with(
        IssuancePolicy::default()
            .allow_never_expiring(true)
            .max_ttl(None),
    );
    let forever = lenient
        .manager
        .issue(
            IssueRequest::new("p", "u").expiry(Expiry::Never),
            &lenient.ctx,
        )
        .await;
    let forever = forever.expect("never-expiring allowed");
    assert_eq!(forever.record.expires_at, None);
    lenient.clock.advance(Duration::days(3650));
    lenient
        .manager
        .verify(forever.key.expose_secret(), &lenient.ctx)
        .await
        .expect("still valid");
}

#[tokio::test]
async fn cap_on_live_keys_per_owner() {
    let f = fixture_with(IssuancePolicy::default().max_live_keys_per_owner(3));
    let mut ids = Vec::new();
    for i in 0..3 {
        ids.push(
            f.manager
                .issue(IssueRequest::new(format!("k{i}"), "owner"), &f.ctx)
                .await
                .expect("under cap")
                .key
                .id(),
        );
    }
    let fourth = f
        .manager
        .issue(IssueRequest::new("k3", "owner"), &f.ctx)
        .await;
    assert!(
        matches!(fourth, Err(IssueError::LimitReached { limit: 3 })),
        "{fourth:?}"
    );
    f.manager
        .issue(IssueRequest::new("other", "someone-else"), &f.ctx)
        .await
        .expect("other owners unaffected");
    f.manager
        .revoke(&ids[0], None, &f.ctx)
        .await
        .expect("revoke");
    f.manager
        .issue(IssueRequest::new("k3", "owner"), &f.ctx)
        .await
        .expect("room after revocation");
    let refused = f
        .audit
        .events()
        .into_iter()
        .filter(|e| matches!(e.kind, AuditKind::RefusedByPolicy { .. }))
        .count();
    assert_eq!(refused, 1);
}

#[test]
fn fifty_concurrent_issuers_with_a_cap_of_three_produce_three_keys() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let f = fixture_with(IssuancePolicy::default().max_live_keys_per_owner(3));
        let manager = Arc::new(f.manager);
        let tasks: Vec<_> = (0..50)
            .map(|i| {
                let manager = Arc::clone(&manager);
                tokio::spawn(async move {
                    manager
                        .issue(
                            IssueRequest::new(format!("k{i}"), "racer"),
                            &RequestContext::new(),
                        )
                        .await
                })
            })
            .collect();
        let mut ok = 0;
        let mut limited = 0;
        for t in tasks {
            match t.await.expect("task") {
                Ok(_) => ok += 1,
                Err(IssueError::LimitReached { limit: 3 }) => limited += 1,
                Err(e) => panic!("unexpected {e:?}"),
            }
        }
        assert_eq!((ok, limited), (3, 47));
        assert_eq!(manager.store().len(), 3);
    });
}

struct PlanGate;
impl keyward::manager::IssueHook for PlanGate {
    fn check<'a>(
        &'a self,
        request: &'a IssueRequest,
    ) -> keyward::manager::BoxFuture<'a, Result<(), keyward::manager::HookRefusal>> {
        let allowed = request.metadata.get("plan") == Some("pro");
        Box::pin(async move {
            if allowed {
                Ok(())
            } else {
                Err(keyward::manager::HookRefusal::new(
                    "API keys need the Pro plan",
                ))
            }
        })
    }
}

#[tokio::test]
async fn issuance_hook_can_refuse_with_a_reason() {
    let f = fixture();
    let manager = f.manager.with_issue_hook(PlanGate);
    let err = manager
        .issue(IssueRequest::new("k", "free-user"), &f.ctx)
        .await
        .expect_err("gated");
    assert_eq!(err.to_string(), "refused: API keys need the Pro plan");
    let mut meta = keyward::record::Metadata::default();
    meta.insert("plan", "pro").expect("meta");
    manager
        .issue(IssueRequest::new("k", "pro-user").metadata(meta), &f.ctx)
        .await
        .expect("pro plan");
    let events = f.audit.events();
    assert!(events.iter().any(
        |e| matches!(&e.kind, AuditKind::RefusedByPolicy { reason } if reason.contains("Pro plan"))
    ));
}

#[tokio::test]
async fn delegation_never_widens() {
    let f = fixture();
    let parent = f
        .manager
        .issue(
            IssueRequest::new("parent", "u")
                .scopes(scopes("read comments"))
                .expiry(Expiry::After(Duration::days(10))),
            &f.ctx,
        )
        .await
        .expect("parent");
    let proof = f
        .manager
        .verify(parent.key.expose_secret(), &f.ctx)
        .await
        .expect("verify parent");
    let child = f
        .manager
        .issue_delegated(
            &proof,
            IssueRequest::new("child", "u").scopes(scopes("read")),
            &f.ctx,
        )
        .await
        .expect("narrower child");
    assert_eq!(child.record.issued_by, Some(parent.key.id()));
    assert_eq!(
        child.record.expires_at, parent.record.expires_at,
        "child expiry capped by the parent's"
    );
    let wider = f
        .manager
        .issue_delegated(
            &proof,
            IssueRequest::new("c2", "u").scopes(scopes("read tickets:write")),
            &f.ctx,
        )
        .await;
    match wider {
        Err(IssueError::Widening(what)) => {
            assert!(what.to_string().contains("tickets:write"), "{what}");
        }
        other => panic!("expected widening refusal, got {other:?}"),
    }
}

#[tokio::test]
async fn key_is_bounded_by_its_owners_current_permissions() {
    let f = fixture();
    let table = PermissionTable::new();
    table.set("owner", scopes("read tickets:write"));
    let manager = f.manager.with_owner_permissions(table.clone());
    let issued = manager
        .issue(
            IssueRequest::new("k", "owner").scopes(scopes("read tickets:write")),
            &f.ctx,
        )
        .await
        .expect("issue");
    let before = manager
        .verify(issued.key.expose_secret(), &f.ctx)
        .await
        .expect("verify");
    assert!(before.allows(&scope("tickets:write")));
    table.set("owner", scopes("read")); // demoted
    let after = manager
        .verify(issued.key.expose_secret(), &f.ctx)
        .await
        .expect("verify");
    assert!(after.allows(&scope("read")));
    assert!(
        !after.allows(&scope("tickets:write")),
        "the key must shrink with its owner"
    );
    table.remove("owner");
    let gone = manager
        .verify(issued.key.expose_secret(), &f.ctx)
        .await
        .expect("verify");
    assert!(!gone.allows(&scope("read")));
}

struct BrokenPermissions;
impl keyward::manager::OwnerPermissions for BrokenPermissions {
    fn permissions<'a>(
        &'a self,
        _owner: &'a str,
        _tenant: Option<&'a str>,
    ) -> keyward::manager::BoxFuture<'a, Result<ScopeSet, Box<dyn std::error::Error + Send + Sync>>>
    {
        Box::pin(async { Err("directory service down".into()) })
    }
}

#[tokio::test]
async fn failing_owner_permissions_fail_closed() {
    let f = fixture();
    let manager = f.manager.with_owner_permissions(BrokenPermissions);
    let issued = manager
        .issue(IssueRequest::new("k", "owner"), &f.ctx)
        .await
        .expect("issue");
    let err = manager
        .verify(issued.key.expose_secret(), &f.ctx)
        .await
        .expect_err("fail closed");
    assert!(matches!(err, VerifyError::Unavailable(_)), "{err:?}");
}

#[tokio::test]
async fn rotation_with_overlap_then_regenerate() {
    let f = fixture_with(IssuancePolicy::default().max_live_keys_per_owner(1));
    let mut meta = keyward::record::Metadata::default();
    meta.insert("team", "infra").expect("meta");
    let old = f
        .manager
        .issue(
            IssueRequest::new("deploy", "owner")
                .tenant("acme")
                .scopes(scopes("read comments"))
                .metadata(meta),
            &f.ctx,
        )
        .await
        .expect("issue");
    f.clock.advance(Duration::days(10));
    let new = f
        .manager
        .rotate(&old.key.id(), Duration::hours(1), &f.ctx)
        .await
        .expect("rotate");
    for (a, b) in [
        (&new.record.name, &old.record.name),
        (&new.record.owner, &old.record.owner),
    ] {
        assert_eq!(a, b);
    }
    assert_eq!(new.record.tenant, old.record.tenant);
    assert_eq!(new.record.scopes, old.record.scopes);
    assert_eq!(new.record.restrictions, old.record.restrictions);
    assert_eq!(new.record.metadata, old.record.metadata);
    assert_eq!(new.record.rotated_from, Some(old.key.id()));
    assert_eq!(
        new.record.expires_at, old.record.expires_at,
        "rotation never grants: the new key ends when the old one would have"
    );
    // Both work during the overlap, and the pair counts once against the cap of 1.
    f.manager
        .verify(old.key.expose_secret(), &f.ctx)
        .await
        .expect("old key in overlap");
    f.manager
        .verify(new.key.expose_secret(), &f.ctx)
        .await
        .expect("new key");
    assert!(matches!(
        f.manager
            .issue(IssueRequest::new("extra", "owner"), &f.ctx)
            .await,
        Err(IssueError::LimitReached { limit: 1 })
    ));
    assert!(matches!(
        f.manager
            .rotate(&old.key.id(), Duration::hours(1), &f.ctx)
            .await,
        Err(LifecycleError::AlreadyRotated(_))
    ));
    f.clock.advance(Duration::hours(1));
    assert!(matches!(
        f.manager.verify(old.key.expose_secret(), &f.ctx).await,
        Err(VerifyError::Expired)
    ));
    f.manager
        .verify(new.key.expose_secret(), &f.ctx)
        .await
        .expect("new key after overlap");

    // Regenerate: the previous value fails on the very next request, by a status change.
    let newer = f
        .manager
        .regenerate(&new.key.id(), &f.ctx)
        .await
        .expect("regenerate");
    assert!(matches!(
        f.manager.verify(new.key.expose_secret(), &f.ctx).await,
        Err(VerifyError::Revoked)
    ));
    f.manager
        .verify(newer.key.expose_secret(), &f.ctx)
        .await
        .expect("regenerated key");
    assert!(matches!(
        f.manager
            .rotate(&new.key.id(), Duration::hours(-1), &f.ctx)
            .await,
        Err(LifecycleError::NegativeGrace)
    ));
}

#[tokio::test]
async fn bulk_revocation_per_owner_and_tenant() {
    let f = fixture();
    let mut keys = Vec::new();
    for (owner, tenant) in [
        ("ann", "acme"),
        ("ann", "acme"),
        ("bob", "acme"),
        ("cid", "globex"),
    ] {
        keys.push(
            f.manager
                .issue(IssueRequest::new("k", owner).tenant(tenant), &f.ctx)
                .await
                .expect("issue"),
        );
    }
    let revoked = f
        .manager
        .revoke_owner("ann", Some("offboarded"), &f.ctx)
        .await
        .expect("revoke owner");
    assert_eq!(revoked.revoked.len(), 2);
    assert!(revoked.unreadable.is_empty());
    assert!(matches!(
        f.manager.verify(keys[0].key.expose_secret(), &f.ctx).await,
        Err(VerifyError::Revoked)
    ));
    f.manager
        .verify(keys[2].key.expose_secret(), &f.ctx)
        .await
        .expect("bob unaffected");
    let revoked = f
        .manager
        .revoke_tenant("acme", Some("incident"), &f.ctx)
        .await
        .expect("revoke tenant");
    assert_eq!(
        revoked.revoked,
        vec![keys[2].key.id()],
        "only keys not yet revoked are reported"
    );
    assert!(matches!(
        f.manager.verify(keys[2].key.expose_secret(), &f.ctx).await,
        Err(VerifyError::Revoked)
    ));
    f.manager
        .verify(keys[3].key.expose_secret(), &f.ctx)
        .await
        .expect("other tenant unaffected");
}

#[tokio::test]
async fn last_used_is_throttled() {
    let f = fixture();
    let issued = f
        .manager
        .issue(IssueRequest::new("k", "u"), &f.ctx)
        .await
        .expect("issue");
    let id = issued.key.id();
    assert_eq!(f.manager.get(&id).await.expect("get").last_used_at, None);
    let t0 = f.clock.now_for_test();
    f.manager
        .verify(issued.key.expose_secret(), &f.ctx)
        .await
        .expect("verify");
    assert_eq!(
        f.manager.get(&id).await.expect("get").last_used_at,
        Some(t0)
    );
    f.clock.advance(Duration::seconds(30));
    f.manager
        .verify(issued.key.expose_secret(), &f.ctx)
        .await
        .expect("verify");
    assert_eq!(
        f.manager.get(&id).await.expect("get").last_used_at,
        Some(t0),
        "no write within a minute"
    );
    f.clock.advance(Duration::seconds(31));
    f.manager
        .verify(issued.key.expose_secret(), &f.ctx)
        .await
        .expect("verify");
    assert_eq!(
        f.manager.get(&id).await.expect("get").last_used_at,
        Some(t0 + Duration::seconds(61))
    );
}

#[tokio::test]
async fn hashes_on_a_retiring_pepper_are_upgraded_on_verify() {
    let store = MemoryStore::new();
    let format = KeyFormat::new(["tak"]).expect("format");
    let old_pepper = || Pepper::new("k0", [1u8; 32]).expect("pepper");
    let before = KeyManager::new(store.clone(), format.clone(), Hasher::fast(old_pepper()));
    let ctx = RequestContext::new();
    let issued = before
        .issue(IssueRequest::new("k", "u"), &ctx)
        .await
        .expect("issue");
    let audit = AuditLog::new();
    let hasher = Hasher::fast(Pepper::new("k1", [2u8; 32]).expect("pepper"))
        .accept_pepper(old_pepper())
        .expect("accept");
    let after = KeyManager::new(store.clone(), format, hasher).with_audit(audit.clone());
    after
        .verify(issued.key.expose_secret(), &ctx)
        .await
        .expect("old pepper still accepted");
    let record = after.get(&issued.key.id()).await.expect("get");
    assert_eq!(
        record.hash.pepper_id().map(keyward::hash::PepperId::as_str),
        Some("k1")
    );
    assert!(audit.events().iter().any(|e| e.kind == AuditKind::Rehashed));
    after
        .verify(issued.key.expose_secret(), &ctx)
        .await
        .expect("verifies with the new hash");
}

#[tokio::test]
async fn list_expiring_soonest_first() {
    let f = fixture();
    let mut ids = Vec::new();
    for days in [60, 7, 3, 200] {
        let r =
            IssueRequest::new(format!("{days}d"), "u").expiry(Expiry::After(Duration::days(days)));
        ids.push(f.manager.issue(r, &f.ctx).await.expect("issue").key.id());
    }
    let soon = f
        .manager
        .list_expiring(&ListFilter::Owner("u".into()), Duration::days(14))
        .await
        .expect("list");
    let names: Vec<&str> = soon.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, vec!["3d", "7d"]);
}

#[tokio::test]
async fn audit_events_cover_the_lifecycle_with_context() {
    let f = fixture();
    let ctx = RequestContext::new()
        .actor("admin")
        .client_addr("203.0.113.9".parse().expect("ip"))
        .request_id("r1");
    let issued = f
        .manager
        .issue(IssueRequest::new("k", "u").tenant("acme"), &ctx)
        .await
        .expect("issue");
    let id = issued.key.id();
    f.manager
        .verify(issued.key.expose_secret(), &ctx)
        .await
        .expect("verify");
    let _ = f
        .manager
        .verify(
            &keyward::testing::same_id_wrong_secret(issued.key.expose_secret()),
            &ctx,
        )
        .await;
    f.manager.disable(&id, &ctx).await.expect("disable");
    f.manager.enable(&id, &ctx).await.expect("enable");
    let rotated = f
        .manager
        .rotate(&id, Duration::ZERO, &ctx)
        .await
        .expect("rotate");
    f.manager
        .revoke(&rotated.key.id(), Some("leaked"), &ctx)
        .await
        .expect("revoke");
    f.manager
        .delete(&rotated.key.id(), &ctx)
        .await
        .expect("delete");
    let events = f.audit.events();
    let names: Vec<&str> = events.iter().map(|e| e.kind.name()).collect();
    assert_eq!(
        names,
        [
            "issued",
            "verified",
            "verify_failed",
            "disabled",
            "enabled",
            "rotated",
            "revoked",
            "deleted"
        ]
    );
    for e in &events {
        assert_eq!(e.context, ctx);
        assert!(e.key_id.is_some());
    }
    assert_eq!(events[0].owner.as_deref(), Some("u"));
    assert_eq!(events[0].tenant.as_deref(), Some("acme"));
    assert!(matches!(
        events[2].kind,
        AuditKind::VerifyFailed {
            reason: FailureReason::Invalid
        }
    ));
    assert_eq!(
        events[2].owner, None,
        "a failed secret must not reveal the key's owner"
    );
    assert!(matches!(&events[6].kind, AuditKind::Revoked { reason: Some(r) } if r == "leaked"));
}
