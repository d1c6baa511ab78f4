//! A model-based test of authority: random sequences of issuance (by the operator, and
//! administrative issuance by a key), nested delegation, rotation with and without grace,
//! regeneration, disable, enable, revoke, delete, owner-permission changes, role edits,
//! clock advances and records written outside the manager (imports), across two tenants
//! (`acme`, `globex`) and tenant-less keys, acting through bounded handles
//! ([`KeyManager::acting_as`]), stale ones included. After every step every key ever issued
//! is verified against the real library and these invariants are checked:
//!
//! 1. a verifying key's effective scopes and restrictions lie within every ancestor's
//!    *current* effective ones, its own and its owner's permissions (and a new key lies
//!    within the key that made it);
//! 2. no key verifies past an ancestor's end (revoked, disabled, expired or deleted), nor
//!    past its own; rotation never extends an end; a key in a rotation's grace period works
//!    only while every successor does; nothing a delegated key makes (issues or delegates)
//!    or obtains (by rotating or regenerating) verifies once that key's parent no longer
//!    does; and every key verifies, or fails with the error, exactly as the rules compute
//!    from the store;
//! 3. an acting operation changes nothing outside the actor's reach, computed here from a
//!    snapshot of the store by the rules documented on [`keyward::manager::Acting`] (tenant, scopes,
//!    resources, lifetime, never the actor's own ancestors, and for a delegated actor only
//!    keys below its parent), and nothing but its target; the library's answer (`NotFound`
//!    outside reach) must agree with that computation; a key retired by a rotation (in its
//!    grace period) manages nothing;
//! 4. no owner has more live keys than the cap (records that count against it), nor more
//!    keys that verify than the cap (a rotation's old and new key counted once);
//! 5. a key seen revoked or deleted never verifies again, and revocation is final.
//!
//! Lineage is by the exact key: a delegated key's ancestors are the records its `parent`
//! links name (a rotated parent's old key, not its successor); administrative issuance by a
//! delegated key files the new key below the actor's own parent.
//!
//! The model also keeps what it believes of each key (status, expiry) and compares it with
//! the store after every step. A failure names the invariant and the step, and lists the
//! steps so far; failing sequences shrink by deleting steps. Coverage counters make the
//! test fail when a scenario the invariants are about never happened in the run; plain
//! tests at the end pin each of these scenarios down deterministically.
//!
//! `PROPTEST_CASES` (default 100) and `AUTHORITY_MODEL_STEPS` (default 100) size the run;
//! `PROPTEST_RNG_SEED` replays one (the seed is printed).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use keyward::{
    Clock, Hasher, IssueRequest, Issued, KeyFormat, KeyId, KeyManager, KeyRecord, KeyStore,
    MemoryStore, Pepper, RequestContext, ScopeCatalog, ScopeSet, Verified,
    clock::FakeClock,
    key::Prefix,
    manager::{
        DEFAULT_MAX_DELEGATION_DEPTH, IssueError, LifecycleError, OwnerPermissions,
        PermissionTable, VerifyError,
    },
    policy::{Expiry, IssuancePolicy},
    record::{KeyStatus, Metadata},
    scope::Restrictions,
    store::{ListFilter, Page},
};
use proptest::prelude::*;
use proptest::strategy::{NewTree, ValueTree};
use proptest::test_runner::{Config, RngSeed, TestCaseError, TestError, TestRunner};
use time::{Duration, OffsetDateTime, macros::datetime};

/// Live keys per owner.
const CAP: usize = 4;
/// Deepest delegation (a root key's child is 1 deep).
const MAX_DEPTH: usize = DEFAULT_MAX_DELEGATION_DEPTH;
/// Successors checked from a key in a rotation's grace period before the chain is refused.
const MAX_SUCCESSORS: usize = 16;
const DEFAULT_CASES: u32 = 100;
const DEFAULT_STEPS: usize = 100;
/// Runs at least this long must reach every coverage scenario.
const MIN_STEPS_FOR_COVERAGE: usize = 10_000;
const START: OffsetDateTime = datetime!(2026-03-01 12:00 UTC);

// ---------------------------------------------------------------------------------------
// Coverage: scenarios the run must reach, and a few figures for the report.

/// Steps executed (shrinking included).
static STEPS: AtomicUsize = AtomicUsize::new(0);
/// A delegation three deep: a great-grandchild (or deeper) of a root key was minted.
static DEEP_DELEGATION: AtomicUsize = AtomicUsize::new(0);
/// An old key verified while its rotation successor existed.
static GRACE_OVERLAP: AtomicUsize = AtomicUsize::new(0);
/// The catalog (a role) changed while a delegated key verified.
static ROLE_EDIT_OVER_CHILD: AtomicUsize = AtomicUsize::new(0);
/// An enable refused with `LimitReached`.
static ENABLE_AT_CAP: AtomicUsize = AtomicUsize::new(0);
/// An action on an existing key refused as `NotFound` because it was outside reach.
static REACH_REFUSED: AtomicUsize = AtomicUsize::new(0);
/// The step at which the last failing case failed (for the report).
static FAILED_AT: AtomicUsize = AtomicUsize::new(0);
/// Verifications made by the sweeps.
static VERIFICATIONS: AtomicUsize = AtomicUsize::new(0);
/// Acting operations that succeeded.
static ACTED: AtomicUsize = AtomicUsize::new(0);
/// Acting operations refused because the handle's key no longer verified.
static STALE_REFUSED: AtomicUsize = AtomicUsize::new(0);
/// Sweeps in which a key in its grace period (active, unexpired) was checked while a
/// successor of it had ended: it must not verify.
static GRACE_AFTER_SUCCESSOR_ENDED: AtomicUsize = AtomicUsize::new(0);
/// Sweeps in which a key made or obtained by a delegated key was checked while that key's
/// parent no longer verified: it must not verify.
static MADE_AFTER_PARENT_ENDED: AtomicUsize = AtomicUsize::new(0);
/// Acting operations refused because the acting key was retired by a rotation.
static RETIRED_REFUSED: AtomicUsize = AtomicUsize::new(0);
/// Acting operations of a delegated key refused (`NotFound`) only because the target is not
/// below the actor's parent.
static OUTSIDE_PARENT_REFUSED: AtomicUsize = AtomicUsize::new(0);

fn bump(counter: &AtomicUsize) {
    counter.fetch_add(1, Ordering::Relaxed);
}

fn read(counter: &AtomicUsize) -> usize {
    counter.load(Ordering::Relaxed)
}

// ---------------------------------------------------------------------------------------
// The world: owners, catalogs (one per role edit), managers over one store.

/// An owner, with what the operator issues for it at bootstrap.
struct Profile {
    name: &'static str,
    tenant: Option<&'static str>,
    scopes: &'static str,
    resources: &'static [&'static str],
}

const PROFILES: [Profile; 6] = [
    Profile {
        name: "root",
        tenant: None,
        scopes: "*",
        resources: &[],
    },
    Profile {
        name: "ops",
        tenant: None,
        scopes: "keys:manage read tickets:*",
        resources: &["company:1"],
    },
    Profile {
        name: "alice",
        tenant: Some("acme"),
        scopes: "keys:manage read write tickets:* billing:read",
        resources: &[],
    },
    Profile {
        name: "bob",
        tenant: Some("acme"),
        scopes: "read tickets:write",
        resources: &["company:1/project:1", "company:2"],
    },
    Profile {
        name: "gina",
        tenant: Some("globex"),
        scopes: "*",
        resources: &[],
    },
    Profile {
        name: "hank",
        tenant: Some("globex"),
        scopes: "read billing:read",
        resources: &["company:2"],
    },
];

/// Scopes a request may ask for (some wider than most actors: refused as widening).
const SCOPE_MENU: [&str; 9] = [
    "read",
    "tickets:read",
    "tickets:write",
    "tickets:*",
    "billing:read",
    "read write",
    "keys:manage read",
    "*",
    "",
];

/// Owner permissions the application may set.
const PERMISSION_MENU: [&str; 5] = [
    "*",
    "read tickets:*",
    "read",
    "keys:manage read write tickets:write billing:read",
    "tickets:read",
];

/// Resources a request may be limited to.
const RESOURCE_MENU: [&[&str]; 4] = [
    &["company:1"],
    &["company:1/project:1"],
    &["company:2"],
    &["company:1/project:2", "company:2/project:1"],
];

/// The catalogs a service restarts with: each edit changes the roles (and the last one an
/// implication too).
const CATALOGS: usize = 3;

fn catalog(variant: usize) -> ScopeCatalog {
    let builder = ScopeCatalog::builder()
        .implies("tickets:write", "tickets:read")
        .implies("write", "read");
    let builder = match variant {
        0 => builder
            .role("support", ["tickets:write", "read"])
            .role("viewer", ["read"]),
        1 => builder
            .role("support", ["tickets:*", "billing:read"])
            .role("viewer", ["read", "tickets:read"]),
        _ => builder
            .implies("tickets:read", "read")
            .role("support", ["read"])
            .role("viewer", ["billing:read", "keys:manage"]),
    };
    builder.build().expect("static catalog")
}

fn scope_set(s: &str) -> ScopeSet {
    s.parse().expect("static scopes")
}

fn only(resources: &[&str]) -> Restrictions {
    Restrictions::only(resources).expect("static resources")
}

/// A manager over the shared store, clock and permission table. Every manager gets the
/// same pepper, so each accepts the keys the others issued.
fn manager(
    store: &MemoryStore,
    clock: &FakeClock,
    permissions: &PermissionTable,
    catalog: ScopeCatalog,
    cap: usize,
) -> KeyManager<MemoryStore> {
    KeyManager::new(
        store.clone(),
        KeyFormat::new(["tak"]).expect("format"),
        Hasher::fast(Pepper::new("k1", [7u8; 32]).expect("pepper")),
    )
    .with_clock(clock.clone())
    .with_catalog(catalog)
    .with_policy(IssuancePolicy::default().max_live_keys_per_owner(cap))
    .with_owner_permissions(permissions.clone())
}

// ---------------------------------------------------------------------------------------
// Operations.

/// Which key acts, picked modulo a list of candidates (so that a shrunk pick stays valid).
#[derive(Debug, Clone, Copy)]
enum Actor {
    /// Among the keys that verify now.
    Live(u8),
    /// Among the deepest delegated keys that verify now (any live key when none does).
    Deepest(u8),
    /// Among the keys that no longer verify but whose old proof the caller still holds.
    Stale(u8),
}

/// Which key is acted on, picked modulo a list of candidates.
#[derive(Debug, Clone, Copy)]
enum Target {
    /// Among the keys of the actor's tenant that were not deleted.
    Near(u8),
    /// Among every key ever issued, deleted ones included.
    Any(u8),
    /// Among the actor itself, its ancestors and its descendants.
    Lineage(u8),
    /// Among the disabled keys of the actor's tenant (of any tenant when there are none).
    Disabled(u8),
}

#[derive(Debug, Clone, Copy)]
enum Scopes {
    /// The actor's effective scopes.
    Actor,
    /// Some of the actor's effective scopes (bit `i % 8` keeps entry `i`).
    Part(u8),
    /// From [`SCOPE_MENU`], whatever the actor holds.
    Menu(u8),
}

#[derive(Debug, Clone, Copy)]
enum Roles {
    None,
    Support,
    Viewer,
}

#[derive(Debug, Clone, Copy)]
enum Resources {
    /// Unrestricted (a request so made inherits the actor's restrictions).
    Inherit,
    Menu(u8),
    Nothing,
}

#[derive(Debug, Clone, Copy)]
enum Lifetime {
    Default,
    Hours(u16),
    /// Exactly the actor's end.
    ActorEnd,
    /// Longer than the policy allows.
    TooLong,
}

#[derive(Debug, Clone, Copy)]
enum TenantName {
    /// None named: the actor's tenant.
    Unnamed,
    /// The owner's own tenant, named.
    OwnersOwn,
    /// A tenant other than the owner's.
    Other,
}

/// Whom an administrative issuance is for.
#[derive(Debug, Clone, Copy)]
enum Owner {
    /// The actor's own owner (and tenant).
    Actors,
    /// One of [`PROFILES`].
    Of(u8),
}

#[derive(Debug, Clone, Copy)]
struct Request {
    scopes: Scopes,
    roles: Roles,
    resources: Resources,
    lifetime: Lifetime,
}

/// One step. Owners, menu entries and catalogs are picked modulo their count.
#[derive(Debug, Clone)]
enum Op {
    /// The operator issues the owner's bootstrap key.
    OperatorIssue {
        owner: u8,
    },
    /// Administrative issuance through a key.
    Issue {
        actor: Actor,
        owner: Owner,
        tenant: TenantName,
        request: Request,
    },
    /// Delegation: a child of the actor.
    Delegate {
        actor: Actor,
        request: Request,
    },
    /// Rotation with `grace_hours` of overlap (0: none, the old key is revoked).
    Rotate {
        actor: Actor,
        target: Target,
        grace_hours: u8,
    },
    Regenerate {
        actor: Actor,
        target: Target,
    },
    Disable {
        actor: Actor,
        target: Target,
    },
    Enable {
        actor: Actor,
        target: Target,
    },
    Revoke {
        actor: Actor,
        target: Target,
    },
    Delete {
        actor: Actor,
        target: Target,
    },
    SetPermissions {
        owner: u8,
        scopes: u8,
    },
    RemovePermissions {
        owner: u8,
    },
    /// A record written outside the manager (a migration, another service): a child of
    /// `parent` (picked as an actor is, so often one of the deepest keys or a dead one) for
    /// `owner`, with scopes, restrictions and an end of its own, possibly wider than its
    /// parent's, or deeper than delegation may go.
    Import {
        parent: Actor,
        owner: u8,
        scopes: u8,
        resources: Resources,
        days: u16,
    },
    /// The service restarts with another catalog (a role edit).
    EditRoles {
        catalog: u8,
    },
    Advance {
        hours: u16,
    },
}

/// An actor: a live key, or with weight `deepest` (against 10) a deepest delegated one.
fn actor(deepest: u32) -> impl Strategy<Value = Actor> {
    prop_oneof![
        9 => any::<u8>().prop_map(Actor::Live),
        deepest => any::<u8>().prop_map(Actor::Deepest),
        1 => any::<u8>().prop_map(Actor::Stale),
    ]
}

/// A target: with weight `disabled` (against 10) a disabled key.
fn target(disabled: u32) -> impl Strategy<Value = Target> {
    prop_oneof![
        5 => any::<u8>().prop_map(Target::Near),
        2 => any::<u8>().prop_map(Target::Any),
        3 => any::<u8>().prop_map(Target::Lineage),
        disabled => any::<u8>().prop_map(Target::Disabled),
    ]
}

fn owner() -> impl Strategy<Value = Owner> {
    prop_oneof![1 => Just(Owner::Actors), 1 => any::<u8>().prop_map(Owner::Of)]
}

fn resources() -> impl Strategy<Value = Resources> {
    prop_oneof![
        4 => Just(Resources::Inherit),
        2 => any::<u8>().prop_map(Resources::Menu),
        1 => Just(Resources::Nothing),
    ]
}

fn request() -> impl Strategy<Value = Request> {
    let scopes = prop_oneof![
        3 => Just(Scopes::Actor),
        3 => any::<u8>().prop_map(Scopes::Part),
        2 => any::<u8>().prop_map(Scopes::Menu),
    ];
    let roles = prop_oneof![
        4 => Just(Roles::None),
        1 => Just(Roles::Support),
        1 => Just(Roles::Viewer),
    ];
    let resources = resources();
    let lifetime = prop_oneof![
        5 => Just(Lifetime::Default),
        2 => (1u16..=24 * 120).prop_map(Lifetime::Hours),
        1 => Just(Lifetime::ActorEnd),
        1 => Just(Lifetime::TooLong),
    ];
    (scopes, roles, resources, lifetime).prop_map(|(scopes, roles, resources, lifetime)| Request {
        scopes,
        roles,
        resources,
        lifetime,
    })
}

fn op() -> impl Strategy<Value = Op> {
    let tenant = prop_oneof![
        3 => Just(TenantName::Unnamed),
        2 => Just(TenantName::OwnersOwn),
        1 => Just(TenantName::Other),
    ];
    let grace = prop_oneof![1 => Just(0u8), 4 => 1u8..=48];
    let hours = prop_oneof![4 => 1u16..=72, 1 => 24u16 * 7..=24 * 40];
    prop_oneof![
        4 => any::<u8>().prop_map(|owner| Op::OperatorIssue { owner }),
        10 => (actor(1), owner(), tenant, request()).prop_map(|(actor, owner, tenant, request)| {
            Op::Issue { actor, owner, tenant, request }
        }),
        14 => (actor(6), request()).prop_map(|(actor, request)| Op::Delegate { actor, request }),
        6 => (actor(1), target(1), grace).prop_map(|(actor, target, grace_hours)| Op::Rotate {
            actor,
            target,
            grace_hours,
        }),
        3 => (actor(1), target(1)).prop_map(|(actor, target)| Op::Regenerate { actor, target }),
        7 => (actor(1), target(1)).prop_map(|(actor, target)| Op::Disable { actor, target }),
        8 => (actor(1), target(12)).prop_map(|(actor, target)| Op::Enable { actor, target }),
        4 => (actor(1), target(1)).prop_map(|(actor, target)| Op::Revoke { actor, target }),
        3 => (actor(1), target(1)).prop_map(|(actor, target)| Op::Delete { actor, target }),
        2 => (any::<u8>(), any::<u8>()).prop_map(|(owner, scopes)| Op::SetPermissions { owner, scopes }),
        1 => any::<u8>().prop_map(|owner| Op::RemovePermissions { owner }),
        2 => (actor(6), any::<u8>(), any::<u8>(), resources(), 1u16..=300).prop_map(
            |(parent, owner, scopes, resources, days)| Op::Import {
                parent,
                owner,
                scopes,
                resources,
                days,
            }
        ),
        3 => any::<u8>().prop_map(|catalog| Op::EditRoles { catalog }),
        5 => hours.prop_map(|hours| Op::Advance { hours }),
    ]
}

/// `steps` operations. A failing sequence shrinks by deleting steps: each in turn, kept
/// deleted while the failure remains, in passes until a pass deletes nothing. (A
/// `prop::collection::vec` of a fixed size cannot delete, and simplifying one step of a
/// sequence changes which keys every later step picks, so deletion is what shrinks.)
#[derive(Debug)]
struct Sequence {
    steps: usize,
}

struct SequenceTree {
    ops: Vec<Op>,
    included: Vec<bool>,
    /// The next step to try deleting.
    next: usize,
    /// The step deleted by the last `simplify`, until `complicate` puts it back.
    last: Option<usize>,
    /// Whether this pass deleted a step for good.
    progress: bool,
}

impl Strategy for Sequence {
    type Tree = SequenceTree;
    type Value = Vec<Op>;

    fn new_tree(&self, runner: &mut TestRunner) -> NewTree<Self> {
        let op = op();
        let ops = (0..self.steps)
            .map(|_| op.new_tree(runner).map(|tree| tree.current()))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(SequenceTree {
            included: vec![true; ops.len()],
            ops,
            next: 0,
            last: None,
            progress: false,
        })
    }
}

impl ValueTree for SequenceTree {
    type Value = Vec<Op>;

    fn current(&self) -> Vec<Op> {
        (self.ops.iter().zip(&self.included))
            .filter(|(_, included)| **included)
            .map(|(op, _)| op.clone())
            .collect()
    }

    fn simplify(&mut self) -> bool {
        // Called again without `complicate`: the last deletion kept the failure.
        if self.last.take().is_some() {
            self.progress = true;
        }
        loop {
            if self.next == self.ops.len() {
                if !self.progress {
                    return false;
                }
                self.next = 0;
                self.progress = false;
            }
            let ix = self.next;
            self.next += 1;
            if self.included[ix] {
                self.included[ix] = false;
                self.last = Some(ix);
                return true;
            }
        }
    }

    fn complicate(&mut self) -> bool {
        match self.last.take() {
            Some(ix) => {
                self.included[ix] = true;
                true
            }
            None => false,
        }
    }
}

fn profile(owner: u8) -> &'static Profile {
    &PROFILES[usize::from(owner) % PROFILES.len()]
}

impl Scopes {
    fn pick(self, actor: &ScopeSet) -> ScopeSet {
        match self {
            Self::Actor => actor.clone(),
            Self::Part(mask) => ScopeSet::from_scopes(
                actor
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| mask & (1 << (i % 8)) != 0)
                    .map(|(_, s)| s.clone()),
            )
            .expect("a part of a valid set"),
            Self::Menu(i) => scope_set(SCOPE_MENU[usize::from(i) % SCOPE_MENU.len()]),
        }
    }
}

impl Roles {
    fn names(self) -> Vec<&'static str> {
        match self {
            Self::None => Vec::new(),
            Self::Support => vec!["support"],
            Self::Viewer => vec!["viewer"],
        }
    }
}

impl Resources {
    fn pick(self) -> Restrictions {
        match self {
            Self::Inherit => Restrictions::unrestricted(),
            Self::Menu(i) => only(RESOURCE_MENU[usize::from(i) % RESOURCE_MENU.len()]),
            Self::Nothing => Restrictions::nothing(),
        }
    }
}

impl Lifetime {
    fn pick(self, actor_end: Option<OffsetDateTime>) -> Expiry {
        match self {
            Self::Default => Expiry::Default,
            Self::Hours(h) => Expiry::After(Duration::hours(h.into())),
            Self::ActorEnd => actor_end.map_or(Expiry::Default, Expiry::At),
            Self::TooLong => Expiry::After(Duration::days(400)),
        }
    }
}

// ---------------------------------------------------------------------------------------
// The rules of reach and lineage, computed here from a snapshot of the store.

type Records = BTreeMap<KeyId, KeyRecord>;

/// The ancestors of `record`, nearest first: the records its `parent` links name (a
/// rotated ancestor's old key, not its successor); `None` when the chain is broken (an
/// ancestor missing, too deep, or looping).
fn lineage<'a>(record: &KeyRecord, records: &'a Records) -> Option<Vec<&'a KeyRecord>> {
    let mut out: Vec<&KeyRecord> = Vec::new();
    let mut next = record.parent;
    while let Some(id) = next {
        if out.len() >= MAX_DEPTH {
            return None;
        }
        let ancestor = records.get(&id)?;
        if ancestor.id == record.id || out.iter().any(|a| a.id == ancestor.id) {
            return None;
        }
        next = ancestor.parent;
        out.push(ancestor);
    }
    Some(out)
}

/// How a verification ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Verifies,
    Invalid,
    Disabled,
    Revoked,
    Expired,
    /// Malformed or unavailable: never expected here.
    Other,
}

impl Outcome {
    fn of(result: &Result<Verified, VerifyError>) -> Self {
        match result {
            Ok(_) => Self::Verifies,
            Err(VerifyError::Invalid) => Self::Invalid,
            Err(VerifyError::Disabled) => Self::Disabled,
            Err(VerifyError::Revoked) => Self::Revoked,
            Err(VerifyError::Expired) => Self::Expired,
            Err(_) => Self::Other,
        }
    }

    /// A record's own state at `now`.
    fn own(r: &KeyRecord, now: OffsetDateTime) -> Self {
        match r.status {
            KeyStatus::Revoked => Self::Revoked,
            KeyStatus::Disabled => Self::Disabled,
            KeyStatus::Active if r.is_expired(now) => Self::Expired,
            KeyStatus::Active => Self::Verifies,
        }
    }
}

/// How verifying key `id` must end at `now`, by the rules: unknown ids are invalid; then
/// the key's own status and expiry; then, for a key in a rotation's grace period, every
/// successor's (a missing one, or a chain longer than [`MAX_SUCCESSORS`], as revoked); then
/// its parent must work by these same rules, up to [`MAX_DEPTH`] ancestors (a missing
/// ancestor or a deeper chain as revoked). A parent retired by a rotation works only while
/// its successors do, so its children end with it.
fn expected_outcome(id: &KeyId, records: &Records, now: OffsetDateTime) -> Outcome {
    match records.get(id) {
        None => Outcome::Invalid,
        Some(r) => works(r, records, now, 0),
    }
}

/// Whether `r` (`depth` ancestors above the key verified) works at `now`.
fn works(r: &KeyRecord, records: &Records, now: OffsetDateTime, depth: usize) -> Outcome {
    let own = Outcome::own(r, now);
    if own != Outcome::Verifies {
        return own;
    }
    let mut next = r.rotated_to;
    let mut hops = 0;
    while let Some(id) = next {
        hops += 1;
        if hops > MAX_SUCCESSORS {
            return Outcome::Revoked;
        }
        let Some(successor) = records.get(&id) else {
            return Outcome::Revoked;
        };
        let theirs = Outcome::own(successor, now);
        if theirs != Outcome::Verifies {
            return theirs;
        }
        next = successor.rotated_to;
    }
    match r.parent {
        None => Outcome::Verifies,
        Some(_) if depth == MAX_DEPTH => Outcome::Revoked,
        Some(p) => records
            .get(&p)
            .map_or(Outcome::Revoked, |a| works(a, records, now, depth + 1)),
    }
}

/// The last successor of `r` (itself when it was never rotated); `None` when one is
/// missing or the chain is longer than [`MAX_SUCCESSORS`].
fn successor_head<'a>(r: &'a KeyRecord, records: &'a Records) -> Option<&'a KeyRecord> {
    let mut head = r;
    for _ in 0..=MAX_SUCCESSORS {
        match head.rotated_to {
            None => return Some(head),
            Some(to) => head = records.get(&to)?,
        }
    }
    None
}

fn earlier(a: Option<OffsetDateTime>, b: Option<OffsetDateTime>) -> Option<OffsetDateTime> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, None) => a,
        (None, b) => b,
    }
}

/// Whether `a` is a later end than `b` (`None`: never).
fn later(a: Option<OffsetDateTime>, b: Option<OffsetDateTime>) -> bool {
    match (a, b) {
        (None, Some(_)) => true,
        (Some(a), Some(b)) => a > b,
        _ => false,
    }
}

/// A record's effective scopes, restrictions and end given its lineage (its own fields
/// when the lineage is broken), without liveness or the owner bound.
struct Bounds {
    scopes: ScopeSet,
    restrictions: Restrictions,
    ends_at: Option<OffsetDateTime>,
}

fn bounds(record: &KeyRecord, records: &Records, catalog: &ScopeCatalog) -> Bounds {
    let mut b = Bounds {
        scopes: catalog.resolve(&record.scopes, &record.roles),
        restrictions: record.restrictions.clone(),
        ends_at: record.expires_at,
    };
    if record.parent.is_some()
        && let Some(ancestors) = lineage(record, records)
    {
        for a in ancestors {
            b.scopes = b.scopes.intersection(&catalog.resolve(&a.scopes, &a.roles));
            b.restrictions = b.restrictions.intersection(&a.restrictions);
            b.ends_at = earlier(b.ends_at, a.expires_at);
        }
    }
    b
}

/// What bounds an actor's reach besides its own verification: the keys it never reaches
/// however much it holds (its parent as recorded and every ancestor: a child never manages
/// the keys its authority comes from), and for a delegated actor its parent, below which
/// every key it reaches must lie.
struct ActorLineage {
    excluded: BTreeSet<KeyId>,
    parent: Option<KeyId>,
}

impl ActorLineage {
    /// `None` when the actor's lineage is broken.
    fn of(actor: &KeyRecord, records: &Records) -> Option<Self> {
        let ancestors = lineage(actor, records)?;
        let mut excluded: BTreeSet<KeyId> = actor.parent.into_iter().collect();
        excluded.extend(ancestors.iter().map(|a| a.id));
        Some(Self {
            excluded,
            parent: ancestors.first().map(|a| a.id),
        })
    }

    /// Whether `record` lies below the actor's parent (always, for a root actor): the
    /// parent is among its ancestors, and its lineage is not broken.
    fn below_parent(&self, record: &KeyRecord, records: &Records) -> bool {
        self.parent.is_none_or(|parent| {
            lineage(record, records)
                .is_some_and(|ancestors| ancestors.iter().any(|a| a.id == parent))
        })
    }
}

/// Whether `actor` (as verified now, with its lineage `own`) reaches `record`, but for
/// [`ActorLineage::below_parent`]: not an ancestor of the actor, same tenant (a tenant-less
/// actor reaches tenant-less keys, and every key only with `*`), effective scopes and
/// restrictions within the actor's, and an end no later than the actor's.
fn reaches_but_parent(
    actor: &Verified,
    own: &ActorLineage,
    record: &KeyRecord,
    records: &Records,
    catalog: &ScopeCatalog,
) -> bool {
    if own.excluded.contains(&record.id) {
        return false;
    }
    let tenant_ok = match actor.tenant() {
        Some(tenant) => record.tenant.as_deref() == Some(tenant),
        None => record.tenant.is_none() || actor.scopes().is_all(),
    };
    if !tenant_ok {
        return false;
    }
    let b = bounds(record, records, catalog);
    let lifetime_ok = actor
        .ends_at()
        .is_none_or(|end| b.ends_at.is_some_and(|at| at <= end));
    lifetime_ok
        && b.scopes.is_subset(actor.scopes())
        && b.restrictions.is_within(actor.restrictions())
}

/// Whether `actor` reaches `record`: every rule of [`reaches_but_parent`], and for a
/// delegated actor, `record` below its parent.
fn reaches(
    actor: &Verified,
    own: &ActorLineage,
    record: &KeyRecord,
    records: &Records,
    catalog: &ScopeCatalog,
) -> bool {
    own.below_parent(record, records) && reaches_but_parent(actor, own, record, records, catalog)
}

/// Equal except for `last_used_at` (which verification writes).
fn same(a: &KeyRecord, b: &KeyRecord) -> bool {
    let mut a = a.clone();
    a.last_used_at = b.last_used_at;
    a == *b
}

fn brief(r: &KeyRecord) -> String {
    format!(
        "status {}, expires {:?}, rotated_to {:?}, version {}, scopes [{}], roles {:?}, restrictions {:?}",
        r.status, r.expires_at, r.rotated_to, r.version, r.scopes, r.roles, r.restrictions
    )
}

// ---------------------------------------------------------------------------------------
// The model.

/// What the test believes of a key's record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Believed {
    Active,
    Disabled,
    Revoked,
    Deleted,
}

impl Believed {
    fn status(self) -> Option<KeyStatus> {
        match self {
            Self::Active => Some(KeyStatus::Active),
            Self::Disabled => Some(KeyStatus::Disabled),
            Self::Revoked => Some(KeyStatus::Revoked),
            Self::Deleted => None,
        }
    }
}

/// A key the test issued (or got from a rotation).
struct Key {
    label: String,
    secret: String,
    id: KeyId,
    owner: String,
    tenant: Option<String>,
    parent: Option<KeyId>,
    believed: Believed,
    believed_expiry: Option<OffsetDateTime>,
    /// The last successful verification: a handle the caller may still hold.
    proof: Option<Verified>,
    /// Whether it verified in the last sweep.
    verifies: bool,
    /// When a delegated key made (issued or delegated) or obtained (rotated or regenerated)
    /// this key: that key's parent as recorded, which this key must not outlive.
    made_under: Option<KeyId>,
    seen_revoked: bool,
    seen_deleted: bool,
}

/// An invariant that broke, and how.
#[derive(Debug)]
struct Broken {
    invariant: &'static str,
    detail: String,
}

fn broken(invariant: &'static str, detail: impl Into<String>) -> Broken {
    Broken {
        invariant,
        detail: detail.into(),
    }
}

fn ensure(
    ok: bool,
    invariant: &'static str,
    detail: impl FnOnce() -> String,
) -> Result<(), Broken> {
    if ok {
        Ok(())
    } else {
        Err(broken(invariant, detail()))
    }
}

/// A key's description, written only when a failure message needs it.
struct Label<'a>(&'a World, usize);

impl std::fmt::Display for Label<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0.describe(self.1))
    }
}

/// A lifecycle operation through a handle.
#[derive(Debug, Clone, Copy)]
enum Action {
    Rotate(Duration),
    Regenerate,
    Disable,
    Enable,
    Revoke,
    Delete,
}

impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Rotate(grace) if grace.is_zero() => f.write_str("rotate (no grace)"),
            Self::Rotate(grace) => write!(f, "rotate (grace {}h)", grace.whole_hours()),
            Self::Regenerate => f.write_str("regenerate"),
            Self::Disable => f.write_str("disable"),
            Self::Enable => f.write_str("enable"),
            Self::Revoke => f.write_str("revoke"),
            Self::Delete => f.write_str("delete"),
        }
    }
}

fn show_expiry(expiry: Expiry) -> String {
    match expiry {
        Expiry::After(d) => format!("after {}h", d.whole_hours()),
        Expiry::At(at) => format!("at {at}"),
        other => format!("{other:?}"),
    }
}

/// The library under test (managers over one store, one per catalog) and the model of it.
struct World {
    clock: FakeClock,
    permissions: PermissionTable,
    catalogs: Vec<ScopeCatalog>,
    managers: Vec<KeyManager<MemoryStore>>,
    current: usize,
    ctx: RequestContext,
    keys: Vec<Key>,
    by_id: BTreeMap<KeyId, usize>,
    /// The store as the last sweep saw it.
    previous: Records,
    /// What happened, one line per step.
    trace: Vec<String>,
}

impl World {
    fn new() -> Self {
        Self::with_cap(CAP)
    }

    fn with_cap(cap: usize) -> Self {
        let clock = FakeClock::new(START);
        let store = MemoryStore::new();
        let permissions = PermissionTable::new();
        for p in &PROFILES {
            permissions.set(p.name, ScopeSet::all());
        }
        let catalogs: Vec<ScopeCatalog> = (0..CATALOGS).map(catalog).collect();
        let managers = catalogs
            .iter()
            .map(|c| manager(&store, &clock, &permissions, c.clone(), cap))
            .collect();
        Self {
            clock,
            permissions,
            catalogs,
            managers,
            current: 0,
            ctx: RequestContext::new().actor("model"),
            keys: Vec::new(),
            by_id: BTreeMap::new(),
            previous: Records::new(),
            trace: Vec::new(),
        }
    }

    fn manager(&self) -> &KeyManager<MemoryStore> {
        &self.managers[self.current]
    }

    fn catalog(&self) -> &ScopeCatalog {
        &self.catalogs[self.current]
    }

    async fn snapshot(&self) -> Records {
        let store = self.manager().store();
        let mut out = Records::new();
        let mut page = Some(Page::first(Page::MAX_LIMIT));
        while let Some(p) = page {
            let records = store
                .list(&ListFilter::All, p)
                .await
                .expect("the memory store lists");
            page = p.next(&records);
            out.extend(records.into_iter().map(|r| (r.id, r)));
        }
        out
    }

    fn label(&self, id: &KeyId) -> String {
        self.by_id
            .get(id)
            .map_or_else(|| format!("unknown {id}"), |&i| self.keys[i].label.clone())
    }

    fn describe(&self, i: usize) -> String {
        let k = &self.keys[i];
        let parent = k
            .parent
            .map(|p| format!(", child of {}", self.label(&p)))
            .unwrap_or_default();
        format!(
            "{}({}/{}{parent})",
            k.label,
            k.tenant.as_deref().unwrap_or("-"),
            k.owner
        )
    }

    /// Record `r`, its successors and its ancestors (each with theirs) as the store holds
    /// them, one per line, for a failure message.
    fn chain(&self, r: &KeyRecord, records: &Records) -> String {
        let mut out = String::new();
        let mut next = Some(r.id);
        for _ in 0..=MAX_DEPTH + 1 {
            let Some(id) = next else {
                break;
            };
            let Some(mut k) = records.get(&id) else {
                let _ = write!(out, "\n    {}: deleted", self.label(&id));
                break;
            };
            next = k.parent;
            for _ in 0..=MAX_SUCCESSORS {
                let parent = k.parent.map_or_else(|| "-".to_owned(), |p| self.label(&p));
                let _ = write!(
                    out,
                    "\n    {}: {}, parent {parent}",
                    self.label(&k.id),
                    brief(k)
                );
                match k.rotated_to.map(|to| (to, records.get(&to))) {
                    None => break,
                    Some((to, None)) => {
                        let _ = write!(out, "\n    {}: deleted", self.label(&to));
                        break;
                    }
                    Some((_, Some(successor))) => k = successor,
                }
            }
        }
        out
    }

    fn add_key(&mut self, issued: &Issued) -> usize {
        self.add_record(issued.key.expose_secret(), &issued.record)
    }

    fn add_record(&mut self, secret: &str, r: &KeyRecord) -> usize {
        let i = self.keys.len();
        self.keys.push(Key {
            label: format!("k{i}"),
            secret: secret.to_owned(),
            id: r.id,
            owner: r.owner.clone(),
            tenant: r.tenant.clone(),
            parent: r.parent,
            believed: Believed::Active,
            believed_expiry: r.expires_at,
            proof: None,
            verifies: false,
            made_under: None,
            seen_revoked: false,
            seen_deleted: false,
        });
        self.by_id.insert(r.id, i);
        i
    }

    /// The operator issues the bootstrap keys of a root, an acme admin and a globex admin.
    async fn bootstrap(&mut self) -> Result<(), Broken> {
        for owner in [0, 2, 4] {
            self.operator_issue(owner).await?;
        }
        self.sweep().await
    }

    /// How deep key `i` is (as of the last sweep; `None` once its lineage is broken).
    fn depth(&self, i: usize) -> Option<usize> {
        let record = self.previous.get(&self.keys[i].id)?;
        lineage(record, &self.previous).map(|a| a.len())
    }

    fn pick_actor(&self, actor: Actor) -> Option<usize> {
        let live = || (0..self.keys.len()).filter(|&i| self.keys[i].verifies);
        let candidates: Vec<usize> = match actor {
            Actor::Live(_) => live().collect(),
            Actor::Deepest(_) => {
                let deepest = live().filter_map(|i| self.depth(i)).max().unwrap_or(0);
                live().filter(|&i| self.depth(i) == Some(deepest)).collect()
            }
            Actor::Stale(_) => (0..self.keys.len())
                .filter(|&i| self.keys[i].proof.is_some() && !self.keys[i].verifies)
                .collect(),
        };
        let (Actor::Live(pick) | Actor::Deepest(pick) | Actor::Stale(pick)) = actor;
        (!candidates.is_empty()).then(|| candidates[usize::from(pick) % candidates.len()])
    }

    fn pick_target(&self, actor: usize, target: Target) -> usize {
        let tenant = &self.keys[actor].tenant;
        let near = |i: usize| self.keys[i].tenant == *tenant && !self.keys[i].seen_deleted;
        let all = 0..self.keys.len();
        let (candidates, pick): (Vec<usize>, u8) = match target {
            Target::Near(pick) => (all.filter(|&i| near(i)).collect(), pick),
            Target::Any(pick) => (all.collect(), pick),
            Target::Lineage(pick) => {
                let id = self.keys[actor].id;
                let mut family: BTreeSet<KeyId> = self
                    .previous
                    .get(&id)
                    .and_then(|r| ActorLineage::of(r, &self.previous))
                    .map(|own| own.excluded)
                    .unwrap_or_default();
                family.insert(id);
                for r in self.previous.values() {
                    let ancestors = lineage(r, &self.previous).unwrap_or_default();
                    if r.parent == Some(id) || ancestors.iter().any(|a| a.id == id) {
                        family.insert(r.id);
                    }
                }
                // In issue order: ids are random, and a pick must not depend on them.
                let mut family: Vec<usize> = family
                    .iter()
                    .filter_map(|id| self.by_id.get(id).copied())
                    .collect();
                family.sort_unstable();
                (family, pick)
            }
            Target::Disabled(pick) => {
                let disabled = |i: usize| self.keys[i].believed == Believed::Disabled;
                let ours: Vec<usize> = all.clone().filter(|&i| disabled(i) && near(i)).collect();
                if ours.is_empty() {
                    (all.filter(|&i| disabled(i)).collect(), pick)
                } else {
                    (ours, pick)
                }
            }
        };
        if candidates.is_empty() {
            return actor;
        }
        candidates[usize::from(pick) % candidates.len()]
    }

    /// Checks that every record of `before` is in `after` unchanged, except `target`.
    fn unchanged(
        &self,
        before: &Records,
        after: &Records,
        target: Option<KeyId>,
        reach: &BTreeSet<KeyId>,
    ) -> Result<(), Broken> {
        for (id, old) in before {
            if Some(*id) == target {
                continue;
            }
            let invariant = if reach.contains(id) {
                "3 (nothing but the target changes)"
            } else {
                "3 (nothing outside the actor's reach changes)"
            };
            match after.get(id) {
                None => return Err(broken(invariant, format!("{} was deleted", self.label(id)))),
                Some(new) if !same(old, new) => {
                    return Err(broken(
                        invariant,
                        format!(
                            "{} changed: {} -> {}",
                            self.label(id),
                            brief(old),
                            brief(new)
                        ),
                    ));
                }
                Some(_) => {}
            }
        }
        Ok(())
    }

    /// Checks that the operation added exactly `expected` (or nothing).
    fn added(
        &self,
        before: &Records,
        after: &Records,
        expected: Option<KeyId>,
    ) -> Result<(), Broken> {
        let new: Vec<KeyId> = after
            .keys()
            .filter(|id| !before.contains_key(id))
            .copied()
            .collect();
        ensure(
            new == expected.into_iter().collect::<Vec<_>>(),
            "3 (only the operation's key is added)",
            || format!("new records {new:?}, expected {expected:?}"),
        )
    }

    async fn step(&mut self, op: &Op) -> Result<String, Broken> {
        match *op {
            Op::OperatorIssue { owner } => self.operator_issue(owner).await,
            Op::Issue {
                actor,
                owner,
                tenant,
                request,
            } => self.issue(actor, Some((owner, tenant)), request).await,
            Op::Delegate { actor, request } => self.issue(actor, None, request).await,
            Op::Rotate {
                actor,
                target,
                grace_hours,
            } => {
                let grace = Duration::hours(grace_hours.into());
                self.lifecycle(actor, target, Action::Rotate(grace)).await
            }
            Op::Regenerate { actor, target } => {
                self.lifecycle(actor, target, Action::Regenerate).await
            }
            Op::Disable { actor, target } => self.lifecycle(actor, target, Action::Disable).await,
            Op::Enable { actor, target } => self.lifecycle(actor, target, Action::Enable).await,
            Op::Revoke { actor, target } => self.lifecycle(actor, target, Action::Revoke).await,
            Op::Delete { actor, target } => self.lifecycle(actor, target, Action::Delete).await,
            Op::SetPermissions { owner, scopes } => {
                let p = profile(owner);
                let menu = PERMISSION_MENU[usize::from(scopes) % PERMISSION_MENU.len()];
                self.permissions.set(p.name, scope_set(menu));
                Ok(format!("permissions of {} := [{menu}]", p.name))
            }
            Op::RemovePermissions { owner } => {
                let p = profile(owner);
                self.permissions.remove(p.name);
                Ok(format!("permissions of {} removed", p.name))
            }
            Op::Import {
                parent,
                owner,
                scopes,
                resources,
                days,
            } => self.import(parent, owner, scopes, resources, days).await,
            Op::EditRoles { catalog } => {
                let next = usize::from(catalog) % CATALOGS;
                let children = self
                    .keys
                    .iter()
                    .filter(|k| k.verifies && k.parent.is_some())
                    .count();
                if next != self.current && children > 0 {
                    bump(&ROLE_EDIT_OVER_CHILD);
                }
                let was = self.current;
                self.current = next;
                Ok(format!(
                    "role edit: catalog {was} -> {next} ({children} delegated keys verifying)"
                ))
            }
            Op::Advance { hours } => {
                self.clock.advance(Duration::hours(hours.into()));
                Ok(format!("clock +{hours}h"))
            }
        }
    }

    /// Writes a delegated record straight into the store, as a migration would.
    async fn import(
        &mut self,
        parent: Actor,
        owner: u8,
        scopes: u8,
        resources: Resources,
        days: u16,
    ) -> Result<String, Broken> {
        let Some(pi) = self.pick_actor(parent) else {
            return Ok("import: no parent".to_owned());
        };
        let p = profile(owner);
        let manager = self.manager();
        let now = self.clock.now();
        let key = manager.format().generate().expect("randomness");
        let hash = manager.hasher().hash(&key.as_parsed()).expect("hash");
        let record = KeyRecord {
            id: key.id(),
            prefix: Prefix::new("tak").expect("prefix"),
            tenant: p.tenant.map(str::to_owned),
            name: format!("k{}", self.keys.len()),
            owner: p.name.to_owned(),
            scopes: scope_set(SCOPE_MENU[usize::from(scopes) % SCOPE_MENU.len()]),
            roles: Vec::new(),
            restrictions: resources.pick(),
            allowed_networks: keyward::network::Networks::any(),
            metadata: Metadata::default(),
            created_at: now,
            expires_at: Some(now + Duration::days(days.into())),
            last_used_at: None,
            status: KeyStatus::Active,
            hash,
            version: 0,
            rotated_from: None,
            rotated_to: None,
            issued_by: None,
            parent: Some(self.keys[pi].id),
            remaining_uses: None,
            refill: None,
            refilled_at: None,
        };
        let before = self.snapshot().await;
        let stored = manager
            .store()
            .insert_capped(record.clone(), CAP, now)
            .await;
        let after = self.snapshot().await;
        self.unchanged(&before, &after, None, &BTreeSet::new())?;
        self.added(&before, &after, stored.is_ok().then_some(record.id))?;
        let parent = self.describe(pi);
        if let Err(e) = stored {
            return Ok(format!("import under {parent}: {e}"));
        }
        let i = self.add_record(key.expose_secret(), &record);
        Ok(format!(
            "import {} under {parent}: scopes [{}], restrictions {:?}, expires {:?}",
            self.describe(i),
            record.scopes,
            record.restrictions,
            record.expires_at
        ))
    }

    async fn operator_issue(&mut self, owner: u8) -> Result<String, Broken> {
        let p = profile(owner);
        let name = format!("k{}", self.keys.len());
        let mut request = IssueRequest::new(name, p.name).scopes(scope_set(p.scopes));
        if !p.resources.is_empty() {
            request = request.restrictions(only(p.resources));
        }
        if let Some(tenant) = p.tenant {
            request = request.tenant(tenant);
        }
        let before = self.snapshot().await;
        let result = self.manager().issue(request, &self.ctx).await;
        let after = self.snapshot().await;
        self.unchanged(&before, &after, None, &BTreeSet::new())?;
        self.added(&before, &after, result.as_ref().ok().map(|i| i.record.id))?;
        Ok(match result {
            Ok(issued) => {
                let i = self.add_key(&issued);
                format!("operator issues {}", self.describe(i))
            }
            Err(e) => format!("operator issue for {}: {e}", p.name),
        })
    }

    /// Administrative issuance (`admin`: owner and tenant naming) or delegation.
    async fn issue(
        &mut self,
        actor: Actor,
        admin: Option<(Owner, TenantName)>,
        spec: Request,
    ) -> Result<String, Broken> {
        let what = if admin.is_some() { "issue" } else { "delegate" };
        let Some(ai) = self.pick_actor(actor) else {
            return Ok(format!("{what}: no actor"));
        };
        let proof = self.keys[ai].proof.clone().expect("an actor has a proof");
        let manager = self.manager();
        let fresh = manager.verify(&self.keys[ai].secret, &self.ctx).await.ok();
        let before = self.snapshot().await;
        let basis = fresh.as_ref().unwrap_or(&proof);
        let acting = manager.acting_as(&proof);
        let name = format!("k{}", self.keys.len());
        let mut request = match admin {
            Some((owner, tenant)) => {
                let (owner, owners_tenant) = match owner {
                    Owner::Actors => (basis.owner(), basis.tenant()),
                    Owner::Of(i) => (profile(i).name, profile(i).tenant),
                };
                let request = IssueRequest::new(name, owner);
                match (tenant, owners_tenant) {
                    (TenantName::Unnamed, _) | (TenantName::OwnersOwn, None) => request,
                    (TenantName::OwnersOwn, Some(t)) => request.tenant(t),
                    (TenantName::Other, Some("acme")) => request.tenant("globex"),
                    (TenantName::Other, _) => request.tenant("acme"),
                }
            }
            None => acting.child_request(name),
        };
        request = request
            .scopes(spec.scopes.pick(basis.scopes()))
            .roles(spec.roles.names())
            .restrictions(spec.resources.pick())
            .expiry(spec.lifetime.pick(basis.ends_at()));
        let asked = format!(
            "scopes [{}] roles {:?} restrictions {:?} expiry {} tenant {:?} owner {}",
            request.scopes,
            request.roles,
            request.restrictions,
            show_expiry(request.expiry),
            request.tenant,
            request.owner
        );
        let result = if admin.is_some() {
            acting.issue(request, &self.ctx).await
        } else {
            acting.delegate(request, &self.ctx).await
        };
        let after = self.snapshot().await;
        let actor_label = self.describe(ai);

        // The answer.
        let retired = fresh
            .as_ref()
            .is_some_and(|f| f.record().rotated_to.is_some());
        if fresh.is_none() {
            ensure(
                matches!(result, Err(IssueError::Actor(_))),
                "3 (a handle whose key no longer verifies issues nothing)",
                || format!("{what} by stale {actor_label}: {result:?}"),
            )?;
            bump(&STALE_REFUSED);
        } else if retired {
            ensure(
                matches!(result, Err(IssueError::Actor(_))),
                "3 (a key retired by a rotation manages nothing)",
                || format!("{what} by retired {actor_label}: {result:?}"),
            )?;
            bump(&RETIRED_REFUSED);
        }
        self.unchanged(&before, &after, None, &BTreeSet::new())?;
        self.added(&before, &after, result.as_ref().ok().map(|i| i.record.id))?;
        let actor_record = before.get(&self.keys[ai].id);
        let actor_depth = actor_record
            .and_then(|r| lineage(r, &before))
            .map(|a| a.len());
        if let Err(IssueError::TooDeep { .. }) = &result {
            ensure(
                actor_depth.is_some_and(|d| d + 1 > MAX_DEPTH),
                "delegation depth",
                || format!("{actor_label} (depth {actor_depth:?}) refused as too deep"),
            )?;
        }
        let issued = match result {
            Ok(issued) => issued,
            Err(e) => return Ok(format!("{what} by {actor_label} {asked}: {e}")),
        };
        bump(&ACTED);
        let f = fresh
            .as_ref()
            .expect("checked above: a stale actor issues nothing");
        let new = after.get(&issued.record.id).expect("checked above: added");
        let catalog = self.catalog();
        let resolved = catalog.resolve(&new.scopes, &new.roles);
        ensure(
            resolved.is_subset(f.scopes()),
            "1 (a new key within its issuer's scopes)",
            || {
                format!(
                    "{actor_label} with [{}] made a key with [{resolved}]",
                    f.scopes()
                )
            },
        )?;
        ensure(
            new.restrictions.is_within(f.restrictions()),
            "1 (a new key within its issuer's restrictions)",
            || {
                format!(
                    "{actor_label} with {:?} made a key with {:?}",
                    f.restrictions(),
                    new.restrictions
                )
            },
        )?;
        ensure(
            !later(new.expires_at, f.ends_at()),
            "2 (a new key does not outlive its issuer)",
            || {
                format!(
                    "{actor_label} ends {:?}, new key {:?}",
                    f.ends_at(),
                    new.expires_at
                )
            },
        )?;
        let depth;
        if admin.is_some() {
            ensure(
                new.parent == f.parent() && new.issued_by == Some(f.key_id()),
                "2 (administrative issuance files the new key below the actor's parent, if any)",
                || {
                    format!(
                        "{actor_label} (parent {:?}) made parent {:?}, issued_by {:?}",
                        f.parent(),
                        new.parent,
                        new.issued_by
                    )
                },
            )?;
            let tenant_ok = match f.tenant() {
                Some(t) => new.tenant.as_deref() == Some(t),
                None => new.tenant.is_none() || f.scopes().is_all(),
            };
            ensure(
                tenant_ok,
                "3 (a new key within its issuer's tenant)",
                || format!("{actor_label} made a key of tenant {:?}", new.tenant),
            )?;
            let Some(d) = lineage(new, &after).map(|a| a.len()) else {
                return Err(broken(
                    "2 (no issuance below a broken lineage)",
                    format!("{actor_label} issued {}", brief(new)),
                ));
            };
            depth = d;
        } else {
            ensure(
                new.parent == Some(f.key_id())
                    && new.owner == f.owner()
                    && new.tenant.as_deref() == f.tenant(),
                "1 (a child has its parent's owner and tenant)",
                || format!("child {} of {actor_label}", brief(new)),
            )?;
            let Some(d) = actor_depth else {
                return Err(broken(
                    "2 (no delegation from a broken lineage)",
                    format!("{actor_label} delegated"),
                ));
            };
            depth = d + 1;
            ensure(depth <= MAX_DEPTH, "delegation depth", || {
                format!("{actor_label} minted a child {depth} deep")
            })?;
            if depth >= 3 {
                bump(&DEEP_DELEGATION);
            }
        }
        let made_under = f.parent();
        let i = self.add_key(&issued);
        self.keys[i].made_under = made_under;
        Ok(format!(
            "{what} by {actor_label} {asked}: {} (depth {depth})",
            self.describe(i)
        ))
    }

    async fn lifecycle(
        &mut self,
        actor: Actor,
        target: Target,
        action: Action,
    ) -> Result<String, Broken> {
        let Some(ai) = self.pick_actor(actor) else {
            return Ok(format!("{action}: no actor"));
        };
        let ti = self.pick_target(ai, target);
        let proof = self.keys[ai].proof.clone().expect("an actor has a proof");
        let target_id = self.keys[ti].id;
        let manager = self.manager();
        let fresh = manager.verify(&self.keys[ai].secret, &self.ctx).await.ok();
        let before = self.snapshot().await;
        let now = self.clock.now();
        let own = before
            .get(&self.keys[ai].id)
            .and_then(|r| ActorLineage::of(r, &before));
        let retired = fresh
            .as_ref()
            .is_some_and(|f| f.record().rotated_to.is_some());
        let reach: BTreeSet<KeyId> = match (&fresh, &own) {
            (Some(f), Some(own)) if !retired => before
                .values()
                .filter(|r| reaches(f, own, r, &before, self.catalog()))
                .map(|r| r.id)
                .collect(),
            // A key that does not verify (or whose lineage is broken), or that a rotation
            // retired, reaches nothing.
            _ => BTreeSet::new(),
        };
        // Whether the target is out of reach only for not lying below the actor's parent.
        let only_outside_parent = match (&fresh, &own, before.get(&target_id)) {
            (Some(f), Some(own), Some(t)) if !retired => {
                !own.below_parent(t, &before)
                    && reaches_but_parent(f, own, t, &before, self.catalog())
            }
            _ => false,
        };
        let acting = manager.acting_as(&proof);
        let ctx = &self.ctx;
        let result: Result<Option<Issued>, LifecycleError> = match action {
            Action::Rotate(grace) => acting.rotate(&target_id, grace, ctx).await.map(Some),
            Action::Regenerate => acting.regenerate(&target_id, ctx).await.map(Some),
            Action::Disable => acting.disable(&target_id, ctx).await.map(|_| None),
            Action::Enable => acting.enable(&target_id, ctx).await.map(|_| None),
            Action::Revoke => acting.revoke(&target_id, None, ctx).await.map(|_| None),
            Action::Delete => acting.delete(&target_id, ctx).await.map(|()| None),
        };
        let after = self.snapshot().await;
        let exists = before.contains_key(&target_id);
        let in_reach = reach.contains(&target_id);
        let line = format!(
            "{action} by {}{} on {} ({}): {}",
            if fresh.is_none() {
                "stale "
            } else if retired {
                "retired "
            } else {
                ""
            },
            self.describe(ai),
            self.describe(ti),
            if !exists {
                "deleted"
            } else if in_reach {
                "within reach"
            } else {
                "outside reach"
            },
            match &result {
                Ok(Some(issued)) => format!("ok, new key {}", issued.record.id),
                Ok(None) => "ok".to_owned(),
                Err(e) => e.to_string(),
            }
        );

        // The answer, against the reach computed here.
        let refused_as_unknown = matches!(result, Err(LifecycleError::NotFound(_)));
        if fresh.is_none() {
            ensure(
                matches!(result, Err(LifecycleError::Actor(_))),
                "3 (a handle whose key no longer verifies changes nothing)",
                || line.clone(),
            )?;
            bump(&STALE_REFUSED);
        } else if retired {
            ensure(
                matches!(result, Err(LifecycleError::Actor(_))),
                "3 (a key retired by a rotation manages nothing)",
                || line.clone(),
            )?;
            bump(&RETIRED_REFUSED);
        } else if !exists {
            ensure(
                refused_as_unknown,
                "an unknown id is refused as unknown",
                || line.clone(),
            )?;
        } else if !in_reach {
            ensure(
                refused_as_unknown,
                "3 (a key outside reach is refused as unknown)",
                || line.clone(),
            )?;
            bump(&REACH_REFUSED);
            if only_outside_parent {
                bump(&OUTSIDE_PARENT_REFUSED);
            }
        } else {
            ensure(
                !refused_as_unknown && !matches!(result, Err(LifecycleError::Actor(_))),
                "reach (the library refused a key this model computes within reach)",
                || {
                    let f = fresh.as_ref().expect("checked: the actor verifies");
                    let t = &before[&target_id];
                    let b = bounds(t, &before, self.catalog());
                    format!(
                        "{line}\n  actor: tenant {:?}, scopes [{}], restrictions {:?}, ends {:?}\n  \
                         target: {}\n  target bounds: scopes [{}], restrictions {:?}, ends {:?}",
                        f.tenant(),
                        f.scopes(),
                        f.restrictions(),
                        f.ends_at(),
                        brief(t),
                        b.scopes,
                        b.restrictions,
                        b.ends_at
                    )
                },
            )?;
        }
        let may_change = (result.is_ok() && in_reach).then_some(target_id);
        self.unchanged(&before, &after, may_change, &reach)?;
        let new_key = result
            .as_ref()
            .ok()
            .and_then(|i| i.as_ref().map(|i| i.record.id));
        self.added(&before, &after, new_key)?;
        if let Err(LifecycleError::LimitReached { .. }) = &result
            && matches!(action, Action::Enable)
        {
            bump(&ENABLE_AT_CAP);
            let owner = &self.keys[ti].owner;
            let others = before
                .values()
                .filter(|r| r.owner == *owner && r.id != target_id && r.counts_against_cap(now))
                .count();
            ensure(
                others >= CAP,
                "4 (an enable is refused only at the cap)",
                || format!("{line}: the owner has {others} other live keys"),
            )?;
        }
        let result = match result {
            Ok(r) => r,
            Err(_) => return Ok(line),
        };
        bump(&ACTED);
        let old = before.get(&target_id).expect("acted on an existing key");
        let current = after.get(&target_id);
        let status = current.map(|r| r.status);
        match action {
            Action::Disable => {
                ensure(
                    status == Some(KeyStatus::Disabled),
                    "disable disables",
                    || line.clone(),
                )?;
                self.keys[ti].believed = Believed::Disabled;
            }
            Action::Enable => {
                ensure(status == Some(KeyStatus::Active), "enable enables", || {
                    line.clone()
                })?;
                self.keys[ti].believed = Believed::Active;
            }
            Action::Revoke => {
                ensure(status == Some(KeyStatus::Revoked), "revoke revokes", || {
                    line.clone()
                })?;
                self.keys[ti].believed = Believed::Revoked;
            }
            Action::Delete => {
                ensure(current.is_none(), "delete deletes", || line.clone())?;
                self.keys[ti].believed = Believed::Deleted;
            }
            Action::Rotate(_) | Action::Regenerate => {
                let grace = match action {
                    Action::Rotate(grace) => grace,
                    _ => Duration::ZERO,
                };
                let issued = result.expect("a rotation returns the new key");
                let new = after.get(&issued.record.id).expect("checked above: added");
                let retired = current.expect("a rotation keeps the old record");
                let f = fresh.as_ref().expect("a stale actor rotates nothing");
                ensure(
                    retired.rotated_to == Some(new.id) && new.rotated_from == Some(old.id),
                    "rotation links old and new",
                    || format!("{line}: old {}, new {}", brief(retired), brief(new)),
                )?;
                ensure(
                    (
                        &new.owner,
                        &new.tenant,
                        new.parent,
                        &new.scopes,
                        &new.roles,
                        &new.restrictions,
                    ) == (
                        &old.owner,
                        &old.tenant,
                        old.parent,
                        &old.scopes,
                        &old.roles,
                        &old.restrictions,
                    ) && new.status == KeyStatus::Active,
                    "1 (rotation copies the authorization fields)",
                    || format!("{line}: old {}, new {}", brief(old), brief(new)),
                )?;
                let lineage_end = bounds(old, &before, self.catalog()).ends_at;
                ensure(
                    !later(new.expires_at, lineage_end) && !later(new.expires_at, f.ends_at()),
                    "2 (rotation never extends: the new key ends no later than the old one, its lineage and the actor)",
                    || {
                        format!(
                            "{line}: new ends {:?}, old lineage {lineage_end:?}, actor {:?}",
                            new.expires_at,
                            f.ends_at()
                        )
                    },
                )?;
                if grace.is_zero() {
                    ensure(
                        retired.status == KeyStatus::Revoked,
                        "5 (a rotation without grace revokes the old key)",
                        || format!("{line}: old {}", brief(retired)),
                    )?;
                    self.keys[ti].believed = Believed::Revoked;
                } else {
                    let end = now + grace;
                    let expected = Some(old.expires_at.map_or(end, |at| at.min(end)));
                    ensure(
                        retired.expires_at == expected && retired.status == old.status,
                        "2 (during grace the old key ends at the earlier of its end and now + grace)",
                        || {
                            format!(
                                "{line}: old {}, expected expiry {expected:?}",
                                brief(retired)
                            )
                        },
                    )?;
                    self.keys[ti].believed_expiry = expected;
                }
                let made_under = f.parent();
                let i = self.add_key(&issued);
                self.keys[i].made_under = made_under;
                return Ok(format!("{line} = {}", self.describe(i)));
            }
        }
        Ok(line)
    }

    /// Verifies every key ever issued and checks the invariants against the store.
    async fn sweep(&mut self) -> Result<(), Broken> {
        let now = self.clock.now();
        let records = self.snapshot().await;
        let mut results: Vec<Option<Verified>> = Vec::with_capacity(self.keys.len());
        let mut outcomes: Vec<Outcome> = Vec::with_capacity(self.keys.len());
        for key in &self.keys {
            let result = self.manager().verify(&key.secret, &self.ctx).await;
            outcomes.push(Outcome::of(&result));
            results.push(match result {
                Ok(v) => Some(v),
                Err(VerifyError::Unavailable(e)) => {
                    return Err(broken("the memory store answers", e.to_string()));
                }
                Err(_) => None,
            });
        }
        VERIFICATIONS.fetch_add(self.keys.len(), Ordering::Relaxed);
        let catalog = self.catalog();

        for (i, key) in self.keys.iter().enumerate() {
            let v = results[i].as_ref();
            let name = Label(self, i);
            let Some(r) = records.get(&key.id) else {
                ensure(
                    key.believed == Believed::Deleted,
                    "model (a record vanished without a delete)",
                    || format!("{name} believed {:?}", key.believed),
                )?;
                ensure(v.is_none(), "5 (a deleted key never verifies)", || {
                    name.to_string()
                })?;
                continue;
            };
            ensure(
                key.believed != Believed::Deleted && !key.seen_deleted,
                "5 (a deleted key stays deleted)",
                || format!("{name} is back: {}", brief(r)),
            )?;
            ensure(
                key.believed.status() == Some(r.status) && key.believed_expiry == r.expires_at,
                "model (status and expiry as the test believes them)",
                || {
                    format!(
                        "{name}: believed {:?} expiring {:?}, store {}",
                        key.believed,
                        key.believed_expiry,
                        brief(r)
                    )
                },
            )?;
            let Some(v) = v else {
                continue;
            };
            ensure(
                r.status != KeyStatus::Revoked,
                "5 (a revoked key never verifies)",
                || format!("{name}: {}", brief(r)),
            )?;
            ensure(
                !key.seen_revoked,
                "5 (a key seen revoked never verifies again)",
                || format!("{name}: {}", brief(r)),
            )?;
            ensure(
                r.status == KeyStatus::Active && !r.is_expired(now),
                "2 (a disabled or expired key does not verify)",
                || format!("{name}: {}", brief(r)),
            )?;
            ensure(
                v.key_id() == key.id,
                "verify returns the presented key",
                || name.to_string(),
            )?;
            let own = catalog.resolve(&r.scopes, &r.roles);
            ensure(
                v.scopes().is_subset(&own),
                "1 (within its own scopes)",
                || format!("{name}: [{}] beyond its own [{own}]", v.scopes()),
            )?;
            let permitted = self
                .permissions
                .permissions(&r.owner, r.tenant.as_deref())
                .await
                .map_err(|e| broken("the permission table answers", e.to_string()))?;
            let permitted = catalog.expand(&permitted);
            ensure(
                v.scopes().is_subset(&permitted),
                "1 (within its owner's permissions)",
                || format!("{name}: [{}] beyond the owner's [{permitted}]", v.scopes()),
            )?;
            ensure(
                v.restrictions().is_within(&r.restrictions),
                "1 (within its own restrictions)",
                || format!("{name}: {:?} beyond {:?}", v.restrictions(), r.restrictions),
            )?;
            ensure(
                !later(v.ends_at(), r.expires_at) && v.ends_at().is_none_or(|end| now < end),
                "2 (verifies only before its end)",
                || {
                    format!(
                        "{name}: ends {:?}, record {}, now {now}",
                        v.ends_at(),
                        brief(r)
                    )
                },
            )?;
            if r.rotated_to.is_some_and(|n| records.contains_key(&n)) {
                bump(&GRACE_OVERLAP);
            }
            if r.parent.is_none() {
                continue;
            }
            let Some(ancestors) = lineage(r, &records) else {
                return Err(broken(
                    "2 (a key whose lineage is broken does not verify)",
                    format!("{name} verifies"),
                ));
            };
            for a in ancestors {
                let Some(&j) = self.by_id.get(&a.id) else {
                    return Err(broken(
                        "model (every record was issued here)",
                        format!("{}", a.id),
                    ));
                };
                let ancestor = Label(self, j);
                let Some(av) = results[j].as_ref() else {
                    return Err(broken(
                        "2 (none verifies past an ancestor's end)",
                        format!(
                            "{name} verifies while its ancestor {ancestor} does not: {}, now {now}",
                            brief(a)
                        ),
                    ));
                };
                ensure(
                    v.scopes().is_subset(av.scopes()),
                    "1 (within every ancestor's current effective scopes)",
                    || {
                        format!(
                            "{name} has [{}], ancestor {ancestor} [{}]",
                            v.scopes(),
                            av.scopes()
                        )
                    },
                )?;
                ensure(
                    v.restrictions().is_within(av.restrictions()),
                    "1 (within every ancestor's current effective restrictions)",
                    || {
                        format!(
                            "{name} has {:?}, ancestor {ancestor} {:?}",
                            v.restrictions(),
                            av.restrictions()
                        )
                    },
                )?;
                ensure(
                    !later(v.ends_at(), a.expires_at) && !later(v.ends_at(), av.ends_at()),
                    "2 (ends no later than any ancestor)",
                    || {
                        format!(
                            "{name} ends {:?}, ancestor {ancestor} {:?}",
                            v.ends_at(),
                            av.ends_at()
                        )
                    },
                )?;
            }
        }

        for id in records.keys() {
            ensure(
                self.by_id.contains_key(id),
                "model (every record was issued here)",
                || format!("unknown record {id}"),
            )?;
        }
        let mut live: HashMap<&str, usize> = HashMap::new();
        for r in records.values().filter(|r| r.counts_against_cap(now)) {
            *live.entry(r.owner.as_str()).or_default() += 1;
        }
        for (owner, n) in live {
            ensure(n <= CAP, "4 (live keys per owner within the cap)", || {
                format!("{owner} has {n} live keys, cap {CAP}")
            })?;
        }
        // Every key verifies, or fails as the rules compute it from the store.
        for (i, key) in self.keys.iter().enumerate() {
            let expected = expected_outcome(&key.id, &records, now);
            ensure(
                outcomes[i] == expected,
                "2 (verification as the rules compute it)",
                || {
                    let chain = records
                        .get(&key.id)
                        .map_or_else(String::new, |r| self.chain(r, &records));
                    format!(
                        "{}: library {:?}, rules {expected:?}, now {now}{chain}",
                        Label(self, i),
                        outcomes[i]
                    )
                },
            )?;
        }
        // A key in a rotation's grace period works only while every successor does.
        let mut grace_after_successor_ended = false;
        for (i, key) in self.keys.iter().enumerate() {
            let Some(r) = records.get(&key.id) else {
                continue;
            };
            if r.rotated_to.is_none() || !r.is_live(now) {
                continue;
            }
            let head = successor_head(r, &records);
            let head_verifies =
                head.is_some_and(|h| self.by_id.get(&h.id).is_some_and(|&j| results[j].is_some()));
            if !head_verifies {
                grace_after_successor_ended = true;
            }
            ensure(
                results[i].is_none() || head_verifies,
                "2 (a key in its grace period works only while its successor does)",
                || {
                    format!(
                        "{} verifies, its rotation's current key {} does not{}",
                        Label(self, i),
                        head.map_or_else(|| "(missing)".to_owned(), |h| self.label(&h.id)),
                        self.chain(r, &records)
                    )
                },
            )?;
        }
        if grace_after_successor_ended {
            bump(&GRACE_AFTER_SUCCESSOR_ENDED);
        }
        // Keys that verify per owner, a rotation's old and new key counted once (through the
        // new key: with the rule above, an old key verifies only beside its successor).
        let mut verifying: HashMap<&str, usize> = HashMap::new();
        for (key, v) in self.keys.iter().zip(&results) {
            let current = records.get(&key.id).is_some_and(|r| r.rotated_to.is_none());
            if v.is_some() && current {
                *verifying.entry(key.owner.as_str()).or_default() += 1;
            }
        }
        for (owner, n) in verifying {
            ensure(
                n <= CAP,
                "4 (keys that verify per owner within the cap, a rotation's pair once)",
                || format!("{owner} has {n} keys that verify, cap {CAP}"),
            )?;
        }
        // Nothing a delegated key made or obtained outlives that key's parent.
        let mut made_after_parent_ended = false;
        for (i, key) in self.keys.iter().enumerate() {
            let Some(parent) = key.made_under else {
                continue;
            };
            let parent_verifies = self
                .by_id
                .get(&parent)
                .is_some_and(|&j| results[j].is_some());
            if parent_verifies {
                continue;
            }
            if records.contains_key(&key.id) {
                made_after_parent_ended = true;
            }
            ensure(
                results[i].is_none(),
                "2 (nothing a delegated key makes or obtains outlives that key's parent)",
                || {
                    format!(
                        "{} verifies, made under {} which does not ({})",
                        Label(self, i),
                        self.label(&parent),
                        records
                            .get(&parent)
                            .map_or_else(|| "deleted".to_owned(), brief)
                    )
                },
            )?;
        }
        if made_after_parent_ended {
            bump(&MADE_AFTER_PARENT_ENDED);
        }
        for (id, p) in &self.previous {
            let Some(c) = records.get(id) else {
                continue;
            };
            let name = self.label(id);
            ensure(
                p.status != KeyStatus::Revoked || c.status == KeyStatus::Revoked,
                "5 (revocation is final)",
                || format!("{name}: {} -> {}", brief(p), brief(c)),
            )?;
            ensure(
                !later(c.expires_at, p.expires_at),
                "2 (an end never moves later)",
                || format!("{name}: {} -> {}", brief(p), brief(c)),
            )?;
            ensure(
                (
                    &c.owner,
                    &c.tenant,
                    c.parent,
                    &c.scopes,
                    &c.roles,
                    &c.restrictions,
                    c.created_at,
                    c.rotated_from,
                ) == (
                    &p.owner,
                    &p.tenant,
                    p.parent,
                    &p.scopes,
                    &p.roles,
                    &p.restrictions,
                    p.created_at,
                    p.rotated_from,
                ),
                "1 (authorization fields never change)",
                || format!("{name}: {} -> {}", brief(p), brief(c)),
            )?;
            ensure(
                p.rotated_to.is_none() || c.rotated_to == p.rotated_to,
                "rotation is final",
                || format!("{name}: {} -> {}", brief(p), brief(c)),
            )?;
        }

        for (key, v) in self.keys.iter_mut().zip(results) {
            match records.get(&key.id) {
                None => key.seen_deleted = true,
                Some(r) if r.status == KeyStatus::Revoked => key.seen_revoked = true,
                Some(_) => {}
            }
            key.verifies = v.is_some();
            if v.is_some() {
                key.proof = v;
            }
        }
        self.previous = records;
        Ok(())
    }
}

/// Runs one sequence, checking the invariants after the bootstrap and after every step.
async fn run_case(ops: &[Op]) -> Result<(), TestCaseError> {
    let mut world = World::new();
    let fail = |world: &World, n: usize, at: String, b: Broken| {
        FAILED_AT.store(n, Ordering::Relaxed);
        TestCaseError::fail(format!(
            "invariant {} broke at {at}: {}\nsteps so far:\n{}",
            b.invariant,
            b.detail,
            world.trace.join("\n")
        ))
    };
    if let Err(b) = world.bootstrap().await {
        return Err(fail(&world, 0, "bootstrap".to_owned(), b));
    }
    for (n, op) in ops.iter().enumerate() {
        STEPS.fetch_add(1, Ordering::Relaxed);
        let line = match world.step(op).await {
            Ok(line) => line,
            Err(b) => return Err(fail(&world, n, format!("step {n} ({op:?})"), b)),
        };
        world.trace.push(format!("{n:>3}: {line}"));
        if let Err(b) = world.sweep().await {
            let at = format!("step {n} ({op:?}), in the sweep after it");
            return Err(fail(&world, n, at, b));
        }
    }
    Ok(())
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v} is not a valid value")),
        Err(_) => default,
    }
}

#[test]
fn random_operation_sequences_keep_the_authority_invariants() {
    let cases: u32 = env_or("PROPTEST_CASES", DEFAULT_CASES);
    let steps: usize = env_or("AUTHORITY_MODEL_STEPS", DEFAULT_STEPS);
    let seed: u64 = env_or(
        "PROPTEST_RNG_SEED",
        std::collections::hash_map::RandomState::new().hash_one(Instant::now()),
    );
    let config = Config {
        cases,
        failure_persistence: None,
        rng_seed: RngSeed::Fixed(seed),
        ..Config::default()
    };
    let mut runner = TestRunner::new(config);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("tokio runtime");
    let started = Instant::now();
    let result = runner.run(&Sequence { steps }, |ops| runtime.block_on(run_case(&ops)));
    let elapsed = started.elapsed();
    let figures = [
        ("steps", read(&STEPS)),
        ("verifications", read(&VERIFICATIONS)),
        ("acting operations that succeeded", read(&ACTED)),
        ("stale handles refused", read(&STALE_REFUSED)),
    ];
    let required = [
        ("delegations three deep", read(&DEEP_DELEGATION)),
        ("old key verified during grace", read(&GRACE_OVERLAP)),
        (
            "role edits over a delegated key",
            read(&ROLE_EDIT_OVER_CHILD),
        ),
        ("enables refused at the cap", read(&ENABLE_AT_CAP)),
        ("actions refused for reach", read(&REACH_REFUSED)),
        (
            "actions refused for a target not below the actor's parent",
            read(&OUTSIDE_PARENT_REFUSED),
        ),
        (
            "acting operations refused for a retired actor",
            read(&RETIRED_REFUSED),
        ),
        (
            "sweeps with a key in grace after its successor ended",
            read(&GRACE_AFTER_SUCCESSOR_ENDED),
        ),
        (
            "sweeps with a key made under a delegated key's parent that ended",
            read(&MADE_AFTER_PARENT_ENDED),
        ),
    ];
    eprintln!(
        "authority model: seed {seed}, {cases} cases x {steps} steps in {:.1} s",
        elapsed.as_secs_f64()
    );
    for (name, value) in figures.iter().chain(&required) {
        eprintln!("  {name}: {value}");
    }
    match result {
        Ok(()) => {}
        Err(TestError::Fail(reason, ops)) => {
            // The last failing run is the minimal one: what came after its failing step
            // did not run.
            let upto = read(&FAILED_AT).min(ops.len().saturating_sub(1));
            let ops = &ops[..=upto];
            panic!("{reason}\nminimal sequence (seed {seed}): {ops:#?}");
        }
        Err(e) => panic!("seed {seed}: {e}"),
    }
    let planned = usize::try_from(cases).expect("u32 fits") * steps;
    assert!(read(&STEPS) >= planned, "every case ran all its steps");
    // A smaller run (to replay a seed, or a quick look) is not expected to reach them all.
    if planned < MIN_STEPS_FOR_COVERAGE {
        eprintln!("  coverage not checked: {planned} steps < {MIN_STEPS_FOR_COVERAGE}");
        return;
    }
    for (name, value) in required {
        assert!(
            value > 0,
            "coverage: no {name} in the whole run (seed {seed})"
        );
    }
}

// ---------------------------------------------------------------------------------------
// Each coverage scenario, deterministically.

async fn verify(
    manager: &KeyManager<MemoryStore>,
    issued: &Issued,
) -> Result<Verified, VerifyError> {
    manager
        .verify(issued.key.expose_secret(), &RequestContext::new())
        .await
}

async fn record(manager: &KeyManager<MemoryStore>, issued: &Issued) -> KeyRecord {
    manager.get(&issued.record.id).await.expect("record")
}

#[tokio::test]
async fn a_great_grandchild_stays_within_every_ancestor_and_dies_with_any() {
    // A larger cap than the model's: five generations of one owner.
    let w = World::with_cap(8);
    let m = &w.managers[0];
    let ctx = RequestContext::new();
    let root = m
        .issue(
            IssueRequest::new("root", "root")
                .scopes(scope_set("read write tickets:*"))
                .restrictions(only(&["company:1"])),
            &ctx,
        )
        .await
        .expect("root");
    let root_v = verify(m, &root).await.expect("root verifies");
    let acting = m.acting_as(&root_v);
    let child = acting
        .delegate(
            acting
                .child_request("child")
                .scopes(scope_set("read tickets:*")),
            &ctx,
        )
        .await
        .expect("child");
    let child_v = verify(m, &child).await.expect("child verifies");
    let acting = m.acting_as(&child_v);
    let grand = acting
        .delegate(
            acting
                .child_request("grand")
                .scopes(scope_set("read tickets:write"))
                .restrictions(only(&["company:1/project:1"])),
            &ctx,
        )
        .await
        .expect("grandchild");
    let grand_v = verify(m, &grand).await.expect("grandchild verifies");
    let acting = m.acting_as(&grand_v);
    let great = acting
        .delegate(
            acting
                .child_request("great")
                .scopes(scope_set("tickets:write")),
            &ctx,
        )
        .await
        .expect("great-grandchild");
    let great_v = verify(m, &great).await.expect("great-grandchild verifies");
    assert_eq!(great_v.parent(), Some(grand.record.id));
    assert_eq!(great_v.owner(), "root");
    for ancestor in [&root_v, &child_v, &grand_v] {
        assert!(great_v.scopes().is_subset(ancestor.scopes()));
        assert!(great_v.restrictions().is_within(ancestor.restrictions()));
    }
    assert_eq!(great_v.restrictions(), &only(&["company:1/project:1"]));

    // Nothing wider than the parent, and no deeper than the limit.
    let acting = m.acting_as(&great_v);
    let wider = acting
        .delegate(
            acting.child_request("wider").scopes(scope_set("read")),
            &ctx,
        )
        .await;
    assert!(matches!(wider, Err(IssueError::Widening(_))), "{wider:?}");
    let fourth = acting
        .delegate(
            acting
                .child_request("fourth")
                .scopes(scope_set("tickets:write")),
            &ctx,
        )
        .await
        .expect("four deep is allowed");
    let fourth_v = verify(m, &fourth).await.expect("fourth verifies");
    let acting = m.acting_as(&fourth_v);
    let fifth = acting.delegate(acting.child_request("fifth"), &ctx).await;
    assert!(
        matches!(fifth, Err(IssueError::TooDeep { max: 4 })),
        "{fifth:?}"
    );

    // A disabled grandparent stops the great-grandchild until it is enabled again.
    m.disable(&child.record.id, &ctx).await.expect("disable");
    assert!(matches!(
        verify(m, &great).await,
        Err(VerifyError::Disabled)
    ));
    assert!(verify(m, &root).await.is_ok());
    m.enable(&child.record.id, &ctx).await.expect("enable");
    assert!(verify(m, &great).await.is_ok());
    // Revoking the grandparent ends every descendant for good.
    m.revoke(&child.record.id, None, &ctx)
        .await
        .expect("revoke");
    for key in [&child, &grand, &great, &fourth] {
        assert!(matches!(verify(m, key).await, Err(VerifyError::Revoked)));
    }
    assert!(verify(m, &root).await.is_ok());
    // An ancestor's expiry ends the lineage too.
    let child2 = m
        .acting_as(&root_v)
        .delegate(
            m.acting_as(&root_v)
                .child_request("short")
                .scopes(scope_set("read"))
                .expiry(Expiry::After(Duration::hours(1))),
            &ctx,
        )
        .await
        .expect("short-lived child");
    let child2_v = verify(m, &child2).await.expect("verifies");
    let grand2 = m
        .acting_as(&child2_v)
        .delegate(m.acting_as(&child2_v).child_request("grand2"), &ctx)
        .await
        .expect("grandchild of the short-lived child");
    assert_eq!(grand2.record.expires_at, child2.record.expires_at);
    w.clock.advance(Duration::hours(2));
    assert!(matches!(
        verify(m, &grand2).await,
        Err(VerifyError::Expired)
    ));
}

#[tokio::test]
async fn the_old_key_verifies_during_grace_beside_its_successor_and_manages_nothing() {
    let w = World::new();
    let m = &w.managers[0];
    let ctx = RequestContext::new();
    let root = m
        .issue(
            IssueRequest::new("root", "root").scopes(scope_set("keys:manage read write")),
            &ctx,
        )
        .await
        .expect("root");
    let root_v = verify(m, &root).await.expect("root verifies");
    let acting = m.acting_as(&root_v);
    let child = acting
        .delegate(
            acting.child_request("child").scopes(scope_set("read")),
            &ctx,
        )
        .await
        .expect("child");

    let successor = acting
        .rotate(&root.record.id, Duration::hours(2), &ctx)
        .await
        .expect("rotate with grace");
    assert!(!later(successor.record.expires_at, root.record.expires_at));
    // During grace both keys verify; the child stays bound to the old key, and ends with it.
    let old = verify(m, &root)
        .await
        .expect("the old key verifies during grace");
    assert_eq!(old.record().rotated_to, Some(successor.record.id));
    let new_v = verify(m, &successor).await.expect("the successor verifies");
    let child_v = verify(m, &child).await.expect("the child verifies");
    assert_eq!(child_v.ends_at(), Some(START + Duration::hours(2)));
    assert_eq!(
        record(m, &root).await.expires_at,
        Some(START + Duration::hours(2))
    );
    // The old key manages nothing, not even its successor or a child of its own.
    let acting = m.acting_as(&old);
    let refused = acting.revoke(&successor.record.id, None, &ctx).await;
    assert!(
        matches!(refused, Err(LifecycleError::Actor(_))),
        "{refused:?}"
    );
    let refused = acting.delegate(acting.child_request("late"), &ctx).await;
    assert!(matches!(refused, Err(IssueError::Actor(_))), "{refused:?}");
    assert!(verify(m, &successor).await.is_ok());

    // The old key works only while its successor does.
    m.disable(&successor.record.id, &ctx)
        .await
        .expect("disable");
    assert!(matches!(verify(m, &root).await, Err(VerifyError::Disabled)));
    m.enable(&successor.record.id, &ctx).await.expect("enable");
    assert!(verify(m, &root).await.is_ok());
    // ... and every successor: the new key rotated in turn, with a shorter grace.
    w.clock.advance(Duration::minutes(30));
    let third = m
        .acting_as(&new_v)
        .rotate(&successor.record.id, Duration::minutes(30), &ctx)
        .await
        .expect("rotate the successor");
    assert!(verify(m, &root).await.is_ok());
    w.clock.advance(Duration::minutes(45));
    assert!(matches!(
        verify(m, &successor).await,
        Err(VerifyError::Expired)
    ));
    assert!(
        matches!(verify(m, &root).await, Err(VerifyError::Expired)),
        "its own grace has not ended, its successor's has"
    );
    assert!(verify(m, &third).await.is_ok());

    // After the old key's grace the child ends with it; the current key works on.
    w.clock.advance(Duration::hours(1));
    assert!(matches!(verify(m, &child).await, Err(VerifyError::Expired)));
    assert!(verify(m, &third).await.is_ok());
}

// Found by this model: a key in a rotation's grace period stops working when its successor
// is revoked, but the keys delegated from it (bound to the old key) kept working until its
// grace period ended.
#[tokio::test]
async fn a_child_of_a_key_in_grace_ends_when_the_successor_does() {
    let w = World::new();
    let m = &w.managers[0];
    let ctx = RequestContext::new();
    let parent = m
        .issue(
            IssueRequest::new("parent", "alice")
                .tenant("acme")
                .scopes(scope_set("read")),
            &ctx,
        )
        .await
        .expect("parent");
    let parent_v = verify(m, &parent).await.expect("parent verifies");
    let acting = m.acting_as(&parent_v);
    let child = acting
        .delegate(
            acting.child_request("child").scopes(scope_set("read")),
            &ctx,
        )
        .await
        .expect("child");
    let successor = m
        .rotate(&parent.record.id, Duration::hours(24), &ctx)
        .await
        .expect("rotate with grace");
    assert!(verify(m, &child).await.is_ok());
    m.revoke(&successor.record.id, None, &ctx)
        .await
        .expect("revoke the successor");
    assert!(matches!(
        verify(m, &parent).await,
        Err(VerifyError::Revoked)
    ));
    let after = verify(m, &child).await;
    assert!(
        matches!(after, Err(VerifyError::Revoked)),
        "the child outlives its parent: {after:?}"
    );
}

#[tokio::test]
async fn a_delegated_key_reaches_only_below_its_parent_and_issues_there() {
    let w = World::new();
    let m = &w.managers[0];
    let ctx = RequestContext::new();
    let admin = m
        .issue(
            IssueRequest::new("admin", "alice")
                .tenant("acme")
                .scopes(scope_set("keys:manage read tickets:*")),
            &ctx,
        )
        .await
        .expect("admin");
    let other = m
        .issue(
            IssueRequest::new("other", "bob")
                .tenant("acme")
                .scopes(scope_set("read")),
            &ctx,
        )
        .await
        .expect("another root key of the tenant");
    let admin_v = verify(m, &admin).await.expect("admin verifies");
    let acting = m.acting_as(&admin_v);
    let agent = acting
        .delegate(
            acting
                .child_request("agent")
                .scopes(scope_set("keys:manage read tickets:*")),
            &ctx,
        )
        .await
        .expect("agent");
    let agent_v = verify(m, &agent).await.expect("agent verifies");
    let as_agent = m.acting_as(&agent_v);

    // Administrative issuance by the agent files the new key below the agent's parent.
    let made = as_agent
        .issue(
            IssueRequest::new("made", "bob").scopes(scope_set("read")),
            &ctx,
        )
        .await
        .expect("administrative issuance by a delegated key");
    assert_eq!(made.record.parent, Some(admin.record.id));
    assert_eq!(made.record.issued_by, Some(agent.record.id));
    // The agent reaches itself and what lies below its parent; not a key beside it.
    assert!(as_agent.get(&agent.record.id).await.is_ok());
    assert!(as_agent.get(&made.record.id).await.is_ok());
    let refused = as_agent.get(&other.record.id).await;
    assert!(
        matches!(refused, Err(LifecycleError::NotFound(_))),
        "{refused:?}"
    );
    assert!(acting.get(&other.record.id).await.is_ok(), "the admin does");
    // What it obtains by rotation stays below the parent too.
    let rotated = as_agent
        .rotate(&made.record.id, Duration::ZERO, &ctx)
        .await
        .expect("rotate");
    assert_eq!(rotated.record.parent, Some(admin.record.id));
    // Revoking the agent leaves it (it is not the agent's child); ending the parent ends it.
    m.revoke(&agent.record.id, None, &ctx)
        .await
        .expect("revoke the agent");
    assert!(verify(m, &rotated).await.is_ok());
    m.disable(&admin.record.id, &ctx).await.expect("disable");
    assert!(matches!(
        verify(m, &rotated).await,
        Err(VerifyError::Disabled)
    ));
    assert!(verify(m, &other).await.is_ok());
}

#[tokio::test]
async fn a_role_edit_after_delegation_never_lifts_the_child_above_its_parent() {
    let w = World::new();
    let (before_edit, widened, narrowed) = (&w.managers[0], &w.managers[1], &w.managers[2]);
    let ctx = RequestContext::new();
    let parent = before_edit
        .issue(
            IssueRequest::new("parent", "alice")
                .tenant("acme")
                .scopes(scope_set("tickets:write read")),
            &ctx,
        )
        .await
        .expect("parent");
    let parent_v = verify(before_edit, &parent).await.expect("parent verifies");
    let acting = before_edit.acting_as(&parent_v);
    // `support` is `tickets:write read` in the first catalog: within the parent.
    let child = acting
        .delegate(acting.child_request("agent").roles(["support"]), &ctx)
        .await
        .expect("child with a role");
    let child_v = verify(before_edit, &child).await.expect("child verifies");
    assert!(child_v.allows(&"tickets:write".parse().expect("scope")));

    // The edit widens `support` to `tickets:* billing:read`: the child's own resolution
    // grows, its effective scopes stay within the parent's.
    let own = w.catalogs[1].resolve(&child.record.scopes, &child.record.roles);
    assert!(own.allows(&"billing:read".parse().expect("scope")));
    let parent_v = verify(widened, &parent).await.expect("parent verifies");
    let child_v = verify(widened, &child).await.expect("child verifies");
    assert!(
        child_v.scopes().is_subset(parent_v.scopes()),
        "{} within {}",
        child_v.scopes(),
        parent_v.scopes()
    );
    assert!(!child_v.allows(&"billing:read".parse().expect("scope")));
    assert!(!child_v.allows(&"tickets:close".parse().expect("scope")));
    assert!(child_v.allows(&"tickets:write".parse().expect("scope")));
    // The parent still reaches the child, whose effective scopes are within its own.
    assert!(
        widened
            .acting_as(&parent_v)
            .get(&child.record.id)
            .await
            .is_ok()
    );

    // The next edit narrows `support` to `read`: the child shrinks at once.
    let child_v = verify(narrowed, &child).await.expect("child verifies");
    assert!(!child_v.allows(&"tickets:write".parse().expect("scope")));
    assert!(child_v.allows(&"read".parse().expect("scope")));
}

#[tokio::test]
async fn an_enable_at_the_cap_is_refused_and_changes_nothing() {
    let w = World::new();
    let m = &w.managers[0];
    let ctx = RequestContext::new();
    let request = || {
        IssueRequest::new("k", "bob")
            .tenant("acme")
            .scopes(scope_set("read"))
    };
    let mut keys = Vec::new();
    for _ in 0..CAP {
        keys.push(m.issue(request(), &ctx).await.expect("within the cap"));
    }
    assert!(matches!(
        m.issue(request(), &ctx).await,
        Err(IssueError::LimitReached { limit: CAP })
    ));
    m.disable(&keys[0].record.id, &ctx).await.expect("disable");
    keys.push(
        m.issue(request(), &ctx)
            .await
            .expect("the disabled key freed a slot"),
    );
    let first = &keys[0];
    let disabled = record(m, first).await;

    // Through the operator and through a key of the owner alike.
    let enabled = m.enable(&first.record.id, &ctx).await;
    assert!(
        matches!(enabled, Err(LifecycleError::LimitReached { limit: CAP })),
        "{enabled:?}"
    );
    let actor = verify(m, &keys[1]).await.expect("actor verifies");
    let enabled = m.acting_as(&actor).enable(&first.record.id, &ctx).await;
    assert!(
        matches!(enabled, Err(LifecycleError::LimitReached { limit: CAP })),
        "{enabled:?}"
    );
    assert_eq!(record(m, first).await, disabled);
    assert!(matches!(verify(m, first).await, Err(VerifyError::Disabled)));

    // Once a slot is free, it is enabled.
    m.revoke(&keys[CAP].record.id, None, &ctx)
        .await
        .expect("revoke");
    m.acting_as(&actor)
        .enable(&first.record.id, &ctx)
        .await
        .expect("enable below the cap");
    assert!(verify(m, first).await.is_ok());
}

#[tokio::test]
async fn actions_outside_reach_are_refused_as_unknown_and_change_nothing() {
    let w = World::new();
    let m = &w.managers[0];
    let ctx = RequestContext::new();
    let c = &ctx;
    let issue = move |owner: &str, tenant: Option<&str>, scopes: &str, expiry: Expiry| {
        let mut request = IssueRequest::new("k", owner)
            .scopes(scope_set(scopes))
            .expiry(expiry);
        if let Some(t) = tenant {
            request = request.tenant(t);
        }
        m.issue(request, c)
    };
    let admin = issue(
        "alice",
        Some("acme"),
        "keys:manage read tickets:*",
        Expiry::Default,
    )
    .await
    .expect("admin");
    let narrow = issue("bob", Some("acme"), "read", Expiry::Default)
        .await
        .expect("narrow");
    let wider = issue("bob", Some("acme"), "read billing:read", Expiry::Default)
        .await
        .expect("wider");
    let longer = issue(
        "bob",
        Some("acme"),
        "read",
        Expiry::After(Duration::days(200)),
    )
    .await
    .expect("longer");
    let restricted_admin = m
        .issue(
            IssueRequest::new("k", "alice")
                .tenant("acme")
                .scopes(scope_set("keys:manage read tickets:*"))
                .restrictions(only(&["company:1"])),
            &ctx,
        )
        .await
        .expect("restricted admin");
    let other_tenant = issue("gina", Some("globex"), "read", Expiry::Default)
        .await
        .expect("globex");
    let ops = issue("ops", None, "keys:manage read tickets:*", Expiry::Default)
        .await
        .expect("tenant-less, not *");
    let root = issue("root", None, "*", Expiry::Default)
        .await
        .expect("root");

    let admin_v = verify(m, &admin).await.expect("admin verifies");
    let restricted_v = verify(m, &restricted_admin).await.expect("verifies");
    let ops_v = verify(m, &ops).await.expect("ops verifies");
    let root_v = verify(m, &root).await.expect("root verifies");

    let refused = [
        (&admin_v, &other_tenant, "another tenant"),
        (&admin_v, &wider, "wider scopes"),
        (&admin_v, &longer, "a later end"),
        (&restricted_v, &narrow, "wider resources"),
        (
            &ops_v,
            &narrow,
            "a tenant key, for a tenant-less actor without *",
        ),
    ];
    for (actor, target, why) in refused {
        let before = record(m, target).await;
        let acting = m.acting_as(actor);
        let id = &target.record.id;
        assert!(
            matches!(
                acting.revoke(id, None, &ctx).await,
                Err(LifecycleError::NotFound(_))
            ),
            "revoke: {why}"
        );
        assert!(
            matches!(
                acting.disable(id, &ctx).await,
                Err(LifecycleError::NotFound(_))
            ),
            "disable: {why}"
        );
        assert!(
            matches!(
                acting.delete(id, &ctx).await,
                Err(LifecycleError::NotFound(_))
            ),
            "delete: {why}"
        );
        assert!(
            matches!(
                acting.rotate(id, Duration::hours(1), &ctx).await,
                Err(LifecycleError::NotFound(_))
            ),
            "rotate: {why}"
        );
        assert!(
            matches!(acting.get(id).await, Err(LifecycleError::NotFound(_))),
            "get: {why}"
        );
        assert!(same(&before, &record(m, target).await), "{why}: unchanged");
        assert!(verify(m, target).await.is_ok(), "{why}: still verifies");
    }
    // Within reach it works, and `*` without a tenant reaches every tenant.
    m.acting_as(&admin_v)
        .disable(&narrow.record.id, &ctx)
        .await
        .expect("the admin reaches a narrower key of its tenant");
    m.acting_as(&root_v)
        .disable(&other_tenant.record.id, &ctx)
        .await
        .expect("root reaches every tenant");
    // A child holding everything its parent holds still never reaches the parent (nor,
    // after a rotation, the parent's successor), while the parent reaches the child.
    let acting = m.acting_as(&root_v);
    let child = acting
        .delegate(acting.child_request("agent").scopes(scope_set("*")), &ctx)
        .await
        .expect("child");
    let child_v = verify(m, &child).await.expect("child verifies");
    assert_eq!(child_v.scopes(), root_v.scopes());
    assert_eq!(child_v.ends_at(), root_v.ends_at());
    let refused = m
        .acting_as(&child_v)
        .rotate(&root.record.id, Duration::ZERO, &ctx)
        .await;
    assert!(
        matches!(refused, Err(LifecycleError::NotFound(_))),
        "{refused:?}"
    );
    let successor = m
        .acting_as(&root_v)
        .rotate(&root.record.id, Duration::hours(1), &ctx)
        .await
        .expect("the parent rotates itself");
    for id in [&root.record.id, &successor.record.id] {
        let refused = m.acting_as(&child_v).revoke(id, None, &ctx).await;
        assert!(
            matches!(refused, Err(LifecycleError::NotFound(_))),
            "{refused:?}"
        );
    }
    // The successor reaches the child (the old key, retired, manages nothing).
    let successor_v = verify(m, &successor).await.expect("successor verifies");
    let reached = m.acting_as(&successor_v).get(&child.record.id).await;
    assert!(reached.is_ok(), "{reached:?}");
    let retired = m.acting_as(&root_v).get(&child.record.id).await;
    assert!(
        matches!(retired, Err(LifecycleError::Actor(_))),
        "{retired:?}"
    );
    assert!(verify(m, &child).await.is_ok());
    // A deleted key is answered as unknown too.
    m.delete(&wider.record.id, &ctx).await.expect("delete");
    let deleted = m
        .acting_as(&successor_v)
        .revoke(&wider.record.id, None, &ctx)
        .await;
    assert!(
        matches!(deleted, Err(LifecycleError::NotFound(_))),
        "{deleted:?}"
    );
    // A handle whose key was revoked since changes nothing.
    m.revoke(&admin.record.id, None, &ctx)
        .await
        .expect("revoke the admin");
    let before = record(m, &narrow).await;
    let stale = m
        .acting_as(&admin_v)
        .revoke(&narrow.record.id, None, &ctx)
        .await;
    assert!(
        matches!(stale, Err(LifecycleError::Actor(VerifyError::Revoked))),
        "{stale:?}"
    );
    assert!(same(&before, &record(m, &narrow).await));
}

/// Writes a child of `parent` straight into the store (as a migration would), with scopes,
/// restrictions, owner and tenant of its own; returns its secret.
async fn import_child(
    m: &KeyManager<MemoryStore>,
    parent: KeyId,
    owner: &str,
    tenant: Option<&str>,
    scopes: &str,
    restrictions: Restrictions,
) -> String {
    let key = m.format().generate().expect("randomness");
    let mut r = m.get(&parent).await.expect("parent");
    r.id = key.id();
    r.hash = m.hasher().hash(&key.as_parsed()).expect("hash");
    r.owner = owner.to_owned();
    r.tenant = tenant.map(str::to_owned);
    r.scopes = scope_set(scopes);
    r.roles = Vec::new();
    r.restrictions = restrictions;
    r.expires_at = Some(START + Duration::days(300));
    r.status = KeyStatus::Active;
    r.version = 0;
    (r.rotated_from, r.rotated_to, r.issued_by) = (None, None, None);
    r.parent = Some(parent);
    m.store().insert(r).await.expect("insert");
    key.expose_secret().to_owned()
}

#[tokio::test]
async fn records_written_outside_the_manager_stay_within_their_lineage() {
    let w = World::with_cap(8);
    let m = &w.managers[0];
    let ctx = RequestContext::new();
    let root = m
        .issue(
            IssueRequest::new("root", "alice")
                .tenant("acme")
                .scopes(scope_set("read tickets:write"))
                .restrictions(only(&["company:1"])),
            &ctx,
        )
        .await
        .expect("root");
    // Wider in scopes, resources and lifetime, of another owner and tenant: bounded by the
    // parent in each, and by the parent's owner's permissions too.
    let wide = import_child(
        m,
        root.record.id,
        "gina",
        Some("globex"),
        "* read billing:read",
        Restrictions::unrestricted(),
    )
    .await;
    let v = m.verify(&wide, &ctx).await.expect("the import verifies");
    let root_v = verify(m, &root).await.expect("root verifies");
    assert!(v.scopes().is_subset(root_v.scopes()), "{}", v.scopes());
    assert!(!v.allows(&"billing:read".parse().expect("scope")));
    assert_eq!(v.restrictions(), &only(&["company:1"]));
    assert_eq!(v.ends_at(), root.record.expires_at);
    w.permissions.set("alice", scope_set("read"));
    let v = m.verify(&wide, &ctx).await.expect("the import verifies");
    assert!(
        !v.allows(&"tickets:write".parse().expect("scope")),
        "{}",
        v.scopes()
    );
    w.permissions.set("alice", ScopeSet::all());

    // Deeper than delegation may go: refused at verification.
    let mut parent = root.record.id;
    let mut secrets = Vec::new();
    for _ in 0..=MAX_DEPTH {
        let secret = import_child(
            m,
            parent,
            "alice",
            Some("acme"),
            "read",
            Restrictions::unrestricted(),
        )
        .await;
        parent = m.format().parse(&secret).expect("parses").key_id();
        secrets.push(secret);
    }
    for (depth, secret) in secrets.iter().enumerate().map(|(i, s)| (i + 1, s)) {
        let verified = m.verify(secret, &ctx).await;
        if depth <= MAX_DEPTH {
            assert!(verified.is_ok(), "depth {depth}: {verified:?}");
        } else {
            assert!(
                matches!(verified, Err(VerifyError::Revoked)),
                "depth {depth}: {verified:?}"
            );
        }
    }
}
