//! Caps on live keys per tenant (`IssuancePolicy::max_live_keys_per_tenant`, overrides per
//! tenant): over random sequences of issue, enable, disable and revoke by several owners
//! of several tenants, every outcome is the one a model of the caps predicts and no
//! tenant or owner ever holds more live keys than its cap; a store that does not keep
//! tenant caps fails closed.

use std::collections::HashMap;
use std::sync::Arc;

use keyward::manager::{IssueError, LifecycleError};
use keyward::policy::IssuancePolicy;
use keyward::record::KeyStatus;
use keyward::store::{BulkRevocation, Consumed, ListFilter, Page, StoreError};
use keyward::{
    Hasher, IssueRequest, KeyFormat, KeyId, KeyManager, KeyRecord, KeyStore, MemoryStore, Pepper,
    RequestContext,
};
use proptest::prelude::*;
use time::OffsetDateTime;

const TENANTS: [&str; 3] = ["t0", "t1", "t2"];
const OWNER_CAP: usize = 3;

/// t0 has its own cap of 3, every other tenant 2.
fn tenant_cap(tenant: &str) -> usize {
    if tenant == "t0" { 3 } else { 2 }
}

fn policy() -> IssuancePolicy {
    IssuancePolicy::default()
        .max_live_keys_per_owner(OWNER_CAP)
        .max_live_keys_per_tenant(2)
        .tenant_max_live_keys("t0", 3)
}

fn manager<S: KeyStore>(store: S) -> KeyManager<S> {
    KeyManager::new(
        store,
        KeyFormat::new(["tak"]).expect("format"),
        Hasher::fast(Pepper::new("k1", [7u8; 32]).expect("pepper")),
    )
    .with_policy(policy())
}

#[derive(Debug, Clone)]
enum Op {
    /// Issue a key for owner `.0` in tenant `.1` (`None`: no tenant).
    Issue(usize, Option<usize>),
    /// Disable, enable or revoke the n-th key issued so far (modulo their number).
    Disable(usize),
    Enable(usize),
    Revoke(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0..4usize, prop::option::weighted(0.8, 0..TENANTS.len())).prop_map(|(o, t)| Op::Issue(o, t)),
        1 => any::<usize>().prop_map(Op::Disable),
        2 => any::<usize>().prop_map(Op::Enable),
        1 => any::<usize>().prop_map(Op::Revoke),
    ]
}

/// What the model knows of one key.
struct Modelled {
    id: KeyId,
    owner: String,
    tenant: Option<&'static str>,
    status: KeyStatus,
}

/// Live keys of every owner and tenant, by the model.
fn live(keys: &[Modelled]) -> (HashMap<&str, usize>, HashMap<&str, usize>) {
    let mut owners = HashMap::new();
    let mut tenants = HashMap::new();
    for k in keys.iter().filter(|k| k.status == KeyStatus::Active) {
        *owners.entry(k.owner.as_str()).or_default() += 1;
        if let Some(t) = k.tenant {
            *tenants.entry(t).or_default() += 1;
        }
    }
    (owners, tenants)
}

/// Whether the model lets one more live key of `owner` in `tenant` in.
fn admits(keys: &[Modelled], owner: &str, tenant: Option<&str>) -> Result<(), &'static str> {
    let (owners, tenants) = live(keys);
    if owners.get(owner).copied().unwrap_or(0) >= OWNER_CAP {
        return Err("owner");
    }
    if let Some(t) = tenant
        && tenants.get(t).copied().unwrap_or(0) >= tenant_cap(t)
    {
        return Err("tenant");
    }
    Ok(())
}

async fn run(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let manager = manager(MemoryStore::new());
    let ctx = RequestContext::new();
    let mut keys: Vec<Modelled> = Vec::new();
    for op in ops {
        match op {
            Op::Issue(o, t) => {
                let owner = format!("owner-{o}");
                let tenant = t.map(|t| TENANTS[t]);
                let mut request = IssueRequest::new("k", owner.clone());
                if let Some(t) = tenant {
                    request = request.tenant(t);
                }
                let expected = admits(&keys, &owner, tenant);
                match (manager.issue(request, &ctx).await, expected) {
                    (Ok(issued), Ok(())) => keys.push(Modelled {
                        id: issued.record.id,
                        owner,
                        tenant,
                        status: KeyStatus::Active,
                    }),
                    (Err(IssueError::LimitReached { limit }), Err("owner")) => {
                        prop_assert_eq!(limit, OWNER_CAP);
                    }
                    (Err(IssueError::TenantLimitReached { limit }), Err("tenant")) => {
                        prop_assert_eq!(Some(limit), tenant.map(tenant_cap));
                    }
                    (got, want) => {
                        return Err(TestCaseError::fail(format!(
                            "issue for {owner} in {tenant:?}: got {got:?}, the model says {want:?}"
                        )));
                    }
                }
            }
            Op::Disable(n) | Op::Enable(n) | Op::Revoke(n) if keys.is_empty() => {
                let _ = n;
            }
            Op::Disable(n) => {
                let k = n % keys.len();
                let result = manager.disable(&keys[k].id, &ctx).await;
                if keys[k].status == KeyStatus::Revoked {
                    prop_assert!(matches!(result, Err(LifecycleError::Revoked(_))));
                } else {
                    prop_assert!(result.is_ok(), "disable: {:?}", result);
                    keys[k].status = KeyStatus::Disabled;
                }
            }
            Op::Enable(n) => {
                let k = n % keys.len();
                let result = manager.enable(&keys[k].id, &ctx).await;
                match keys[k].status {
                    KeyStatus::Revoked => {
                        prop_assert!(matches!(result, Err(LifecycleError::Revoked(_))));
                    }
                    KeyStatus::Active => prop_assert!(result.is_ok(), "enable: {:?}", result),
                    _ => {
                        let (owner, tenant) = (keys[k].owner.clone(), keys[k].tenant);
                        match (result, admits(&keys, &owner, tenant)) {
                            (Ok(_), Ok(())) => keys[k].status = KeyStatus::Active,
                            (Err(LifecycleError::LimitReached { .. }), Err("owner"))
                            | (Err(LifecycleError::TenantLimitReached { .. }), Err("tenant")) => {}
                            (got, want) => {
                                return Err(TestCaseError::fail(format!(
                                    "enable: got {got:?}, the model says {want:?}"
                                )));
                            }
                        }
                    }
                }
            }
            Op::Revoke(n) => {
                let k = n % keys.len();
                let result = manager.revoke(&keys[k].id, None, &ctx).await;
                prop_assert!(result.is_ok(), "revoke: {:?}", result);
                keys[k].status = KeyStatus::Revoked;
            }
        }
        // The store agrees with the model, and no cap is ever exceeded.
        let stored = manager
            .store()
            .list(&ListFilter::All, Page::first(Page::MAX_LIMIT))
            .await
            .expect("list");
        let mut tenants: HashMap<String, usize> = HashMap::new();
        let mut owners: HashMap<String, usize> = HashMap::new();
        for r in stored.iter().filter(|r| r.status == KeyStatus::Active) {
            *owners.entry(r.owner.clone()).or_default() += 1;
            if let Some(t) = &r.tenant {
                *tenants.entry(t.clone()).or_default() += 1;
            }
        }
        for (t, n) in &tenants {
            prop_assert!(*n <= tenant_cap(t), "tenant {} holds {} live keys", t, n);
        }
        for (o, n) in &owners {
            prop_assert!(*n <= OWNER_CAP, "owner {} holds {} live keys", o, n);
        }
        prop_assert_eq!(stored.len(), keys.len());
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn tenant_and_owner_caps_hold_over_any_sequence(ops in prop::collection::vec(op(), 1..40)) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        rt.block_on(run(ops))?;
    }
}

/// A store that implements only the required methods (as one written before tenant caps
/// existed): the trait's default `insert_within` and `update_within`.
#[derive(Clone, Default)]
struct Minimal(MemoryStore);

impl KeyStore for Minimal {
    async fn insert(&self, record: KeyRecord) -> Result<(), StoreError> {
        self.0.insert(record).await
    }
    async fn insert_capped(
        &self,
        record: KeyRecord,
        max_live: usize,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        self.0.insert_capped(record, max_live, now).await
    }
    async fn get(&self, id: &KeyId) -> Result<Option<Arc<KeyRecord>>, StoreError> {
        self.0.get(id).await
    }
    async fn update(&self, record: KeyRecord, expected_version: u64) -> Result<(), StoreError> {
        self.0.update(record, expected_version).await
    }
    async fn rotate(
        &self,
        old: KeyRecord,
        expected_version: u64,
        new: KeyRecord,
    ) -> Result<(), StoreError> {
        self.0.rotate(old, expected_version, new).await
    }
    async fn list(&self, filter: &ListFilter, page: Page) -> Result<Vec<KeyRecord>, StoreError> {
        self.0.list(filter, page).await
    }
    async fn update_capped(
        &self,
        record: KeyRecord,
        expected_version: u64,
        max_live: usize,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        self.0
            .update_capped(record, expected_version, max_live, now)
            .await
    }
    async fn revoke_matching(&self, filter: &ListFilter) -> Result<BulkRevocation, StoreError> {
        self.0.revoke_matching(filter).await
    }
    async fn consume(&self, id: &KeyId, cost: u64) -> Result<Consumed, StoreError> {
        self.0.consume(id, cost).await
    }
    async fn touch(&self, id: &KeyId, at: OffsetDateTime) -> Result<(), StoreError> {
        self.0.touch(id, at).await
    }
    async fn delete(&self, id: &KeyId) -> Result<bool, StoreError> {
        self.0.delete(id).await
    }
}

#[tokio::test]
async fn a_store_without_tenant_caps_fails_closed() {
    let manager = manager(Minimal::default());
    let ctx = RequestContext::new();
    // Without a tenant only the owner's cap applies, which every store keeps.
    let plain = manager
        .issue(IssueRequest::new("k", "alice"), &ctx)
        .await
        .expect("no tenant: the owner's cap only");
    for _ in 0..OWNER_CAP - 1 {
        manager
            .issue(IssueRequest::new("k", "alice"), &ctx)
            .await
            .expect("within the owner's cap");
    }
    assert!(matches!(
        manager.issue(IssueRequest::new("k", "alice"), &ctx).await,
        Err(IssueError::LimitReached { limit: OWNER_CAP })
    ));
    // With a tenant the store cannot keep the cap: refused, nothing written.
    let refused = manager
        .issue(IssueRequest::new("k", "bob").tenant("t1"), &ctx)
        .await;
    match refused {
        Err(IssueError::Store(StoreError::Unsupported { what })) => {
            assert!(what.contains("tenant"), "{what}");
        }
        other => panic!("expected the store's Unsupported, got {other:?}"),
    }
    let stored = manager
        .store()
        .list(&ListFilter::Owner("bob".into()), Page::first(10))
        .await
        .expect("list");
    assert!(stored.is_empty(), "a refused issue wrote a key");
    let _ = plain;
}
