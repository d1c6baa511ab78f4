//! Properties of editing live keys and of IP allowlists, over random sequences of
//! operations: a population of management keys and target keys (two tenants and
//! tenant-less ones, random scopes, resources and networks, delegated children) receives
//! random edits by random actors, and random verifications from random client addresses.
//! After every step:
//!
//! 1. an edit outside the actor's reach is answered exactly as an unknown id and changes
//!    nothing; an edit that is not refused leaves the target within the actor (scopes,
//!    resources, networks); a refused edit changes nothing;
//! 2. a key verifies from an address only when its own allowlist, every ancestor's, and
//!    (without a list of its own) its tenant's default admit it; a refusal for the network
//!    comes only after the secret matched (a wrong secret is `Invalid` wherever it comes
//!    from);
//! 3. an edit is effective on the next verification (the scopes a key verifies with are its
//!    stored scopes).

use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};

use keyward::{
    IssueRequest, Issued, KeyManager, KeyRecord, MemoryStore, RequestContext, ScopeSet,
    manager::{EditError, KeyEdit, VerifyError},
    network::Networks,
    policy::Expiry,
    scope::Restrictions,
    testing,
};
use proptest::prelude::*;
use time::Duration;

const SCOPES: [&str; 5] = [
    "read",
    "read tickets:write",
    "keys:manage read",
    "keys:manage read tickets:write",
    "*",
];
const RESOURCES: [Option<&[&str]>; 3] = [
    None,
    Some(&["company:1"]),
    Some(&["company:1", "company:2"]),
];
const NETWORKS: [Option<&[&str]>; 4] = [
    None,
    Some(&["10.0.0.0/8"]),
    Some(&["10.1.0.0/16", "2001:db8::/32"]),
    Some(&["192.0.2.0/24"]),
];
const ADDRS: [&str; 6] = [
    "10.1.2.3",
    "10.9.9.9",
    "192.0.2.1",
    "2001:db8::5",
    "::ffff:10.1.2.3",
    "198.51.100.1",
];
const TENANTS: [Option<&str>; 3] = [None, Some("acme"), Some("globex")];

fn networks(i: usize) -> Networks {
    match NETWORKS[i % NETWORKS.len()] {
        None => Networks::any(),
        Some(list) => Networks::only(list).expect("valid"),
    }
}

fn restrictions(i: usize) -> Restrictions {
    match RESOURCES[i % RESOURCES.len()] {
        None => Restrictions::unrestricted(),
        Some(list) => Restrictions::only(list.iter().copied()).expect("valid"),
    }
}

fn scopes(i: usize) -> ScopeSet {
    SCOPES[i % SCOPES.len()].parse().expect("valid")
}

#[derive(Debug, Clone)]
enum Op {
    /// The operator issues a key: tenant, scopes, resources, networks.
    Issue(usize, usize, usize, usize),
    /// A key delegates a child with these networks.
    Delegate(usize, usize),
    /// An actor edits a target: scopes, resources, networks (each maybe unchanged).
    Edit(usize, usize, Option<usize>, Option<usize>, Option<usize>),
    /// A key is presented from an address (with the right secret, or a wrong one).
    Verify(usize, usize, bool),
}

fn op() -> impl Strategy<Value = Op> {
    let pick = || any::<usize>();
    prop_oneof![
        2 => (pick(), pick(), pick(), pick()).prop_map(|(a, b, c, d)| Op::Issue(a, b, c, d)),
        1 => (pick(), pick()).prop_map(|(a, b)| Op::Delegate(a, b)),
        4 => (pick(), pick(), any::<Option<usize>>(), any::<Option<usize>>(), any::<Option<usize>>())
            .prop_map(|(a, t, s, r, n)| Op::Edit(a, t, s, r, n)),
        4 => (pick(), pick(), any::<bool>()).prop_map(|(k, a, ok)| Op::Verify(k, a, ok)),
    ]
}

struct World {
    manager: KeyManager<MemoryStore>,
    keys: Vec<Issued>,
    ctx: RequestContext,
}

impl World {
    fn new() -> Self {
        let manager = KeyManager::new(
            MemoryStore::new(),
            keyward::KeyFormat::new(["tak"]).expect("format"),
            keyward::Hasher::fast(keyward::Pepper::new("k1", [3u8; 32]).expect("pepper")),
        )
        .with_tenant_networks("globex", networks(3));
        Self {
            manager,
            keys: Vec::new(),
            ctx: RequestContext::new(),
        }
    }

    async fn record(&self, i: usize) -> KeyRecord {
        let id = self.keys[i].record.id;
        let record = self.manager.store().get_record(&id).await;
        record.expect("every key stays")
    }

    async fn step(&mut self, op: Op) -> Result<(), TestCaseError> {
        match op {
            Op::Issue(t, s, r, n) => {
                let mut request = IssueRequest::new("k", "owner")
                    .scopes(scopes(s))
                    .restrictions(restrictions(r))
                    .allowed_networks(networks(n))
                    .expiry(Expiry::After(Duration::days(30)));
                if let Some(tenant) = TENANTS[t % TENANTS.len()] {
                    request = request.tenant(tenant);
                }
                let issued = self.manager.issue(request, &self.ctx).await.expect("issue");
                self.keys.push(issued);
            }
            Op::Delegate(p, n) => {
                if self.keys.is_empty() {
                    return Ok(());
                }
                let parent = &self.keys[p % self.keys.len()];
                let from = RequestContext::new().client_addr(allowed_addr(&parent.record));
                let Ok(proof) = self.manager.verify(parent.key.expose_secret(), &from).await else {
                    return Ok(());
                };
                let acting = self.manager.acting_as(&proof);
                let request = acting.child_request("child").allowed_networks(networks(n));
                if let Ok(child) = acting.delegate(request, &self.ctx).await {
                    prop_assert!(
                        child
                            .record
                            .allowed_networks
                            .is_within(proof.allowed_networks())
                    );
                    self.keys.push(child);
                }
            }
            Op::Edit(a, t, s, r, n) => {
                if self.keys.is_empty() {
                    return Ok(());
                }
                let (ai, ti) = (a % self.keys.len(), t % self.keys.len());
                let actor = &self.keys[ai];
                let from = RequestContext::new().client_addr(allowed_addr(&actor.record));
                let Ok(proof) = self.manager.verify(actor.key.expose_secret(), &from).await else {
                    return Ok(());
                };
                let before = self.record(ti).await;
                let mut edit = KeyEdit::new();
                if let Some(s) = s {
                    edit = edit.scopes(scopes(s));
                }
                if let Some(r) = r {
                    edit = edit.restrictions(restrictions(r));
                }
                if let Some(n) = n {
                    edit = edit.allowed_networks(networks(n));
                }
                let id = before.id;
                let result = self
                    .manager
                    .acting_as(&proof)
                    .edit(&id, edit, &self.ctx)
                    .await;
                let after = self.record(ti).await;
                let in_reach = self.manager.acting_as(&proof).get(&id).await.is_ok();
                match result {
                    Ok(record) => {
                        bump(&EDITED);
                        prop_assert!(in_reach || record == before, "an edit outside reach wrote");
                        prop_assert_eq!(&record, &after);
                        prop_assert!(after.scopes.is_subset(proof.scopes()), "scopes widened");
                        prop_assert!(after.restrictions.is_within(proof.restrictions()));
                        prop_assert!(after.allowed_networks.is_within(proof.allowed_networks()));
                        // Compared by what each key is usable from: a key bound only by its
                        // tenant's default never hands out networks beyond that default.
                        prop_assert!(
                            effective(&after.allowed_networks, after.tenant.as_deref())
                                .is_within(&effective(proof.allowed_networks(), proof.tenant())),
                            "networks widened past the actor's tenant default"
                        );
                    }
                    Err(EditError::NotFound(_)) => {
                        bump(&EDIT_OUT_OF_REACH);
                        prop_assert_eq!(&after, &before, "a refused edit wrote");
                        // Unknown and out of reach answer the same.
                        let unknown = testing::random_id();
                        let e = self
                            .manager
                            .acting_as(&proof)
                            .edit(&unknown, KeyEdit::new().name("x"), &self.ctx)
                            .await;
                        prop_assert!(matches!(e, Err(EditError::NotFound(_))));
                    }
                    Err(e) => {
                        if matches!(e, EditError::Widening(_)) {
                            bump(&EDIT_WIDENING);
                        }
                        prop_assert_eq!(&after, &before, "a refused edit wrote: {}", e);
                    }
                }
            }
            Op::Verify(k, a, right) => {
                if self.keys.is_empty() {
                    return Ok(());
                }
                let ki = k % self.keys.len();
                let addr: IpAddr = ADDRS[a % ADDRS.len()].parse().expect("address");
                let ctx = RequestContext::new().client_addr(addr);
                let presented = if right {
                    self.keys[ki].key.expose_secret().to_owned()
                } else {
                    testing::same_id_wrong_secret(self.keys[ki].key.expose_secret())
                };
                let result = self.manager.verify(&presented, &ctx).await;
                if !right {
                    prop_assert!(matches!(result, Err(VerifyError::Invalid)), "{:?}", result);
                    return Ok(());
                }
                let record = self.record(ki).await;
                let mut allowed = record.allowed_networks.allows(addr);
                let mut listed = !record.allowed_networks.is_any();
                let mut next = record.parent;
                while let Some(parent) = next {
                    let p = self
                        .manager
                        .store()
                        .get_record(&parent)
                        .await
                        .expect("parent");
                    allowed &= p.allowed_networks.allows(addr);
                    listed |= !p.allowed_networks.is_any();
                    next = p.parent;
                }
                if !listed && record.tenant.as_deref() == Some("globex") {
                    allowed = networks(3).allows(addr);
                }
                match result {
                    Ok(proof) => {
                        if listed {
                            bump(&NETWORK_ADMITTED);
                        }
                        prop_assert!(allowed, "verified from {} outside its networks", addr);
                        prop_assert_eq!(proof.record().scopes.clone(), record.scopes.clone());
                    }
                    Err(VerifyError::NetworkNotAllowed) => {
                        bump(&NETWORK_REFUSED);
                        prop_assert!(!allowed, "refused from {} inside its networks", addr);
                    }
                    Err(e) => prop_assert!(false, "unexpected {e}"),
                }
            }
        }
        Ok(())
    }
}

/// What a key with `own` networks in `tenant` is usable from here: its own list, or
/// globex's default when it has none.
fn effective(own: &Networks, tenant: Option<&str>) -> Networks {
    if own.is_any() && tenant == Some("globex") {
        networks(3)
    } else {
        own.clone()
    }
}

/// An address the key's own list allows (the first of [`ADDRS`] it admits), or one that no
/// list here admits when it allows none of them.
fn allowed_addr(record: &KeyRecord) -> IpAddr {
    let fallback: IpAddr = ADDRS[5].parse().expect("address");
    ADDRS
        .iter()
        .map(|a| a.parse::<IpAddr>().expect("address"))
        .find(|a| {
            record.allowed_networks.allows(*a)
                && (record.tenant.as_deref() != Some("globex")
                    || !record.allowed_networks.is_any()
                    || networks(3).allows(*a))
        })
        .unwrap_or(fallback)
}

/// Reads a record from the memory store.
trait GetRecord {
    async fn get_record(&self, id: &keyward::KeyId) -> Option<KeyRecord>;
}

impl GetRecord for MemoryStore {
    async fn get_record(&self, id: &keyward::KeyId) -> Option<KeyRecord> {
        use keyward::KeyStore;
        self.get(id)
            .await
            .ok()
            .flatten()
            .map(|r| KeyRecord::clone(&r))
    }
}

static EDITED: AtomicUsize = AtomicUsize::new(0);
static EDIT_OUT_OF_REACH: AtomicUsize = AtomicUsize::new(0);
static EDIT_WIDENING: AtomicUsize = AtomicUsize::new(0);
static NETWORK_REFUSED: AtomicUsize = AtomicUsize::new(0);
static NETWORK_ADMITTED: AtomicUsize = AtomicUsize::new(0);

fn bump(counter: &AtomicUsize) {
    counter.fetch_add(1, Ordering::Relaxed);
}

#[test]
fn edits_never_widen_and_networks_always_hold() {
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig::with_cases(128));
    let result = runner.run(&proptest::collection::vec(op(), 1..60), |ops| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        runtime.block_on(async {
            let mut world = World::new();
            for op in ops {
                world.step(op).await?;
            }
            Ok::<(), TestCaseError>(())
        })
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    // Every outcome the properties are about happened.
    for (what, counter) in [
        ("edits applied", &EDITED),
        ("edits outside reach", &EDIT_OUT_OF_REACH),
        ("widening edits refused", &EDIT_WIDENING),
        ("verifications refused for the network", &NETWORK_REFUSED),
        ("verifications admitted by a list", &NETWORK_ADMITTED),
    ] {
        assert!(
            counter.load(Ordering::Relaxed) > 0,
            "never happened: {what}"
        );
    }
}

/// A management key bound only by its tenant's default allowlist hands out nothing beyond
/// it: issuing or editing a key to other networks is widening, a key of the tenant usable
/// from elsewhere is out of its reach, and a key it issues without a list gets the default.
#[tokio::test]
async fn a_tenant_default_bounds_what_its_keys_manage() {
    let world = World::new();
    let ctx = RequestContext::new();
    let issue = |nets: usize| {
        IssueRequest::new("k", "owner")
            .scopes(scopes(4))
            .tenant("globex")
            .allowed_networks(networks(nets))
    };
    let admin = world.manager.issue(issue(0), &ctx).await.expect("admin");
    let outside = world.manager.issue(issue(1), &ctx).await.expect("outside");
    let from = RequestContext::new().client_addr("192.0.2.1".parse().expect("address"));
    let proof = world
        .manager
        .verify(admin.key.expose_secret(), &from)
        .await
        .expect("admin verifies from its tenant's default");
    let acting = world.manager.acting_as(&proof);
    let widening = acting.issue(issue(1), &ctx).await;
    assert!(
        matches!(widening, Err(keyward::manager::IssueError::Widening(_))),
        "{widening:?}"
    );
    let bounded = acting
        .issue(issue(0), &ctx)
        .await
        .expect("within the default");
    assert_eq!(bounded.record.allowed_networks, networks(3));
    let edit = KeyEdit::new().allowed_networks(networks(1));
    assert!(matches!(
        acting.edit(&bounded.record.id, edit, &ctx).await,
        Err(EditError::Widening(_))
    ));
    assert!(matches!(
        acting.edit(&outside.record.id, KeyEdit::new(), &ctx).await,
        Err(EditError::NotFound(_))
    ));
}
