//! Test support (feature `testing`): the [`KeyStore`] conformance suite, record fixtures,
//! and a [`Fixture`] that issues and verifies real keys for downstream tests.
//!
//! # The conformance suite
//! Each rule of the [`KeyStore`] contract has one public check function here, listed in
//! [`Rule`]. Run them against your store in one of two ways:
//!
//! - [`conformance_tests!`](crate::conformance_tests) expands, in your test crate, into one
//!   `#[test]` per rule, each on a fresh store and on a runtime of its own, so every broken
//!   rule is reported on its own:
//!
//!   ```
//!   async fn fresh_store() -> keyward::MemoryStore {
//!       keyward::MemoryStore::new()
//!   }
//!
//!   keyward::conformance_tests!(fresh_store);
//!   # fn main() {}
//!   ```
//! - [`conformance`] runs every rule in one async test, which stops at the first failure:
//!
//!   ```
//!   #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
//!   async fn my_store_passes_the_conformance_suite() {
//!       keyward::testing::conformance(|| async { keyward::MemoryStore::new() }).await;
//!   }
//!   # fn main() {}
//!   ```
//!
//! Every check panics with a message naming the check and what went wrong, which is how a
//! test fails.
//!
//! ## What your store must implement
//! [`KeyStore`] + [`Clone`] + `'static`. The concurrency rules (the cap race, racing
//! compare-and-sets, racing capped updates, quota under concurrency) hand a clone of the
//! store to each of many spawned tasks, so clones must share the same records, as a
//! connection pool or an [`Arc`] does. The shipped stores are all like that; a store that is
//! not `Clone` keeps its state behind an `Arc` and derives `Clone`.
//!
//! ## Runtime
//! The concurrency rules race on tasks spawned on the current tokio runtime, which must be
//! a multi-thread runtime (they panic otherwise: on one thread, a store whose count and
//! write are not atomic would pass, since nothing runs between them unless it awaits).
//! Each race starts its tasks together behind a [`tokio::sync::Barrier`] and is repeated 20
//! rounds. [`conformance_tests!`](crate::conformance_tests) builds a multi-thread runtime
//! with 2 worker threads for each test; call [`conformance`] from one
//! (`#[tokio::test(flavor = "multi_thread", worker_threads = 2)]`).

use core::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use futures_util::FutureExt;
use time::{Duration, OffsetDateTime};

use crate::RequestContext;
use crate::hash::StoredHash;
use crate::key::id::KeyId;
use crate::key::prefix::Prefix;
use crate::record::{KeyRecord, KeyStatus, Metadata, QuotaRefill};
use crate::scope::{Restrictions, ScopeSet};
use crate::store::{BulkRevocation, Consumed, KeyStore, ListFilter, LiveCaps, Page, StoreError};
use crate::verified::Verified;
use crate::{Hasher, IssueRequest, KeyFormat, KeyManager, MemoryStore, Pepper, clock::FakeClock};

/// How many times each concurrency rule repeats its race.
pub const RACE_ROUNDS: usize = 20;

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
        // Not the default, so a store that drops the column fails the round trip.
        allowed_networks: crate::network::Networks::only(["203.0.113.0/24", "2001:db8::/32"])
            .expect("fixture networks"),
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

/// A key manager over a [`MemoryStore`] on a [`FakeClock`] at [`epoch`], for tests that
/// need real keys and real [`Verified`] proofs: the only way to get a proof is to issue a
/// key and verify it, here as in production.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let fixture = keyward::testing::Fixture::new();
/// let proof = fixture.verified("alice", "read").await;
/// assert_eq!(proof.owner(), "alice");
/// assert!(proof.authorize(&"read".parse().expect("scope"), None).is_ok());
/// # }
/// ```
#[derive(Debug)]
pub struct Fixture {
    manager: KeyManager<MemoryStore>,
    clock: FakeClock,
    ctx: RequestContext,
}

impl Fixture {
    /// A fresh manager: keys with prefix `test`, a random pepper, an empty store, the
    /// clock at [`epoch`].
    ///
    /// # Panics
    /// If the operating system has no randomness.
    #[must_use]
    pub fn new() -> Self {
        let clock = FakeClock::new(epoch());
        let manager = KeyManager::new(
            MemoryStore::new(),
            KeyFormat::new(["test"]).expect("static format is valid"),
            Hasher::fast(Pepper::random("test").expect("operating system randomness")),
        )
        .with_clock(clock.clone());
        Self {
            manager,
            clock,
            ctx: RequestContext::new(),
        }
    }

    /// The manager.
    #[must_use]
    pub fn manager(&self) -> &KeyManager<MemoryStore> {
        &self.manager
    }

    /// The manager's clock.
    #[must_use]
    pub fn clock(&self) -> &FakeClock {
        &self.clock
    }

    /// Issues a key to `owner` with `scopes` (space-separated) and verifies it: the proof a
    /// request carrying that key gets.
    ///
    /// # Panics
    /// When `scopes` does not parse or the key does not issue or verify.
    pub async fn verified(&self, owner: &str, scopes: &str) -> Verified {
        let scopes = scopes.parse::<ScopeSet>().expect("fixture scopes");
        let request = IssueRequest::new(format!("{owner}'s key"), owner).scopes(scopes);
        let issued = self
            .manager
            .issue(request, &self.ctx)
            .await
            .expect("fixture key issues");
        self.manager
            .verify(issued.key.expose_secret(), &self.ctx)
            .await
            .expect("fixture key verifies")
    }
}

impl Default for Fixture {
    fn default() -> Self {
        Self::new()
    }
}

/// A proof for `record` with `scopes`, built without verifying a key: for this crate's own
/// unit tests only (a stale or hand-made proof), compiled into no other build. Tests outside
/// the crate get proofs from [`Fixture::verified`].
#[cfg(test)]
pub(crate) fn verified(record: KeyRecord, scopes: ScopeSet, at: OffsetDateTime) -> Verified {
    let ends_at = record.expires_at;
    Verified::new(Arc::new(record), Some(scopes), None, None, ends_at, at)
}

/// A well-formed key with the same id and prefix as `key` and a different secret, with a
/// valid checksum: it passes parsing and the lookup by id and fails at the hash check.
///
/// # Panics
/// When `key` is not a well-formed key.
#[must_use]
pub fn same_id_wrong_secret(key: &str) -> String {
    // The body is base62, so the last `_` ends the prefix.
    let (prefix, tail) = key.rsplit_once('_').expect("a key has a prefix");
    let body = &tail[..tail.len() - crate::key::CHECKSUM_LEN];
    let mut changed: Vec<u8> = body.as_bytes().to_vec();
    let last = changed.len() - 1;
    changed[last] = if changed[last] == b'A' { b'B' } else { b'A' };
    let checksum = crate::key::checksum(&changed);
    format!(
        "{prefix}_{}{}",
        String::from_utf8(changed).expect("ascii"),
        String::from_utf8(checksum.to_vec()).expect("ascii")
    )
}

/// One rule of the [`KeyStore`] contract, checked by the function of this module with the
/// same name (see [`Rule::name`]).
///
/// [`conformance`] runs them all; [`conformance_tests!`](crate::conformance_tests) makes one
/// `#[test]` of each; [`run_rule`] runs one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Rule {
    /// [`insert_and_get`].
    InsertAndGet,
    /// [`duplicate_insert`].
    DuplicateInsert,
    /// [`compare_and_set`].
    CompareAndSet,
    /// [`lost_compare_and_set`] (a race).
    LostCompareAndSet,
    /// [`update_stores_as_given`].
    UpdateStoresAsGiven,
    /// [`cap_race`] (a race).
    CapRace,
    /// [`cap_counts_only_live_keys`].
    CapCountsOnlyLiveKeys,
    /// [`capped_insert_duplicates`].
    CappedInsertDuplicates,
    /// [`atomic_rotation`].
    AtomicRotation,
    /// [`rotation_error_order`].
    RotationErrorOrder,
    /// [`quota_under_concurrency`] (a race).
    QuotaUnderConcurrency,
    /// [`quota_refill_round_trip`].
    QuotaRefillRoundTrip,
    /// [`consume_is_a_write`].
    ConsumeIsAWrite,
    /// [`touch_last_used`].
    TouchLastUsed,
    /// [`paging_and_filters`].
    PagingAndFilters,
    /// [`paging_under_every_filter`].
    PagingUnderEveryFilter,
    /// [`ordering_across_id_lengths`].
    OrderingAcrossIdLengths,
    /// [`delete`].
    Delete,
    /// [`capped_update`] (with a race).
    CappedUpdate,
    /// [`bulk_revocation`].
    BulkRevocation,
    /// [`lineage_round_trip`].
    LineageRoundTrip,
    /// [`tenant_caps`].
    TenantCaps,
    /// [`tenant_cap_race`] (a race).
    TenantCapRace,
}

impl Rule {
    /// Every rule, in the order [`conformance`] runs them.
    pub const ALL: &'static [Rule] = &[
        Rule::InsertAndGet,
        Rule::DuplicateInsert,
        Rule::CompareAndSet,
        Rule::LostCompareAndSet,
        Rule::UpdateStoresAsGiven,
        Rule::CapRace,
        Rule::CapCountsOnlyLiveKeys,
        Rule::CappedInsertDuplicates,
        Rule::AtomicRotation,
        Rule::RotationErrorOrder,
        Rule::QuotaUnderConcurrency,
        Rule::QuotaRefillRoundTrip,
        Rule::ConsumeIsAWrite,
        Rule::TouchLastUsed,
        Rule::PagingAndFilters,
        Rule::PagingUnderEveryFilter,
        Rule::OrderingAcrossIdLengths,
        Rule::Delete,
        Rule::CappedUpdate,
        Rule::BulkRevocation,
        Rule::LineageRoundTrip,
        Rule::TenantCaps,
        Rule::TenantCapRace,
    ];

    /// The name of the rule's check function (and of its test made by
    /// [`conformance_tests!`](crate::conformance_tests)).
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Rule::InsertAndGet => "insert_and_get",
            Rule::DuplicateInsert => "duplicate_insert",
            Rule::CompareAndSet => "compare_and_set",
            Rule::LostCompareAndSet => "lost_compare_and_set",
            Rule::UpdateStoresAsGiven => "update_stores_as_given",
            Rule::CapRace => "cap_race",
            Rule::CapCountsOnlyLiveKeys => "cap_counts_only_live_keys",
            Rule::CappedInsertDuplicates => "capped_insert_duplicates",
            Rule::AtomicRotation => "atomic_rotation",
            Rule::RotationErrorOrder => "rotation_error_order",
            Rule::QuotaUnderConcurrency => "quota_under_concurrency",
            Rule::QuotaRefillRoundTrip => "quota_refill_round_trip",
            Rule::ConsumeIsAWrite => "consume_is_a_write",
            Rule::TouchLastUsed => "touch_last_used",
            Rule::PagingAndFilters => "paging_and_filters",
            Rule::PagingUnderEveryFilter => "paging_under_every_filter",
            Rule::OrderingAcrossIdLengths => "ordering_across_id_lengths",
            Rule::Delete => "delete",
            Rule::CappedUpdate => "capped_update",
            Rule::BulkRevocation => "bulk_revocation",
            Rule::LineageRoundTrip => "lineage_round_trip",
            Rule::TenantCaps => "tenant_caps",
            Rule::TenantCapRace => "tenant_cap_race",
        }
    }

    /// Runs this rule's check against `store`, which should be fresh (empty).
    ///
    /// # Panics
    /// When the check fails, and for a concurrency rule when not called on a multi-thread
    /// tokio runtime.
    pub async fn check<S: KeyStore + Clone + 'static>(self, store: &S) {
        match self {
            Rule::InsertAndGet => insert_and_get(store).await,
            Rule::DuplicateInsert => duplicate_insert(store).await,
            Rule::CompareAndSet => compare_and_set(store).await,
            Rule::LostCompareAndSet => lost_compare_and_set(store).await,
            Rule::UpdateStoresAsGiven => update_stores_as_given(store).await,
            Rule::CapRace => cap_race(store).await,
            Rule::CapCountsOnlyLiveKeys => cap_counts_only_live_keys(store).await,
            Rule::CappedInsertDuplicates => capped_insert_duplicates(store).await,
            Rule::AtomicRotation => atomic_rotation(store).await,
            Rule::RotationErrorOrder => rotation_error_order(store).await,
            Rule::QuotaUnderConcurrency => quota_under_concurrency(store).await,
            Rule::QuotaRefillRoundTrip => quota_refill_round_trip(store).await,
            Rule::ConsumeIsAWrite => consume_is_a_write(store).await,
            Rule::TouchLastUsed => touch_last_used(store).await,
            Rule::PagingAndFilters => paging_and_filters(store).await,
            Rule::PagingUnderEveryFilter => paging_under_every_filter(store).await,
            Rule::OrderingAcrossIdLengths => ordering_across_id_lengths(store).await,
            Rule::Delete => delete(store).await,
            Rule::CappedUpdate => capped_update(store).await,
            Rule::BulkRevocation => bulk_revocation(store).await,
            Rule::LineageRoundTrip => lineage_round_trip(store).await,
            Rule::TenantCaps => tenant_caps(store).await,
            Rule::TenantCapRace => tenant_cap_race(store).await,
        }
    }
}

impl core::fmt::Display for Rule {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.name())
    }
}

/// Runs every conformance check, each on a fresh store from `fresh`, stopping at the first
/// that fails. Call it on a multi-thread tokio runtime (see [the module](self) for what the
/// store must implement); [`conformance_tests!`](crate::conformance_tests) reports each
/// rule as a test of its own instead.
///
/// # Panics
/// When a check fails; the message names the check.
pub async fn conformance<S, F, Fut>(fresh: F)
where
    S: KeyStore + Clone + 'static,
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
{
    for rule in Rule::ALL {
        rule.check(&fresh().await).await;
    }
}

/// Runs one rule on a store from `fresh`, then hands the store to `teardown` (also when the
/// check fails), on a new multi-thread tokio runtime with 2 worker threads (every driver
/// compiled in enabled). This is the body of each test [`conformance_tests!`](crate::conformance_tests)
/// makes; pass [`no_teardown`] when there is nothing to clean up.
///
/// # Panics
/// When the check fails (after `teardown` ran), or when the runtime cannot be built.
pub fn run_rule<S, F, Fut, T, TFut>(rule: Rule, fresh: F, teardown: T)
where
    S: KeyStore + Clone + 'static,
    F: FnOnce() -> Fut,
    Fut: Future<Output = S>,
    T: FnOnce(S) -> TFut,
    TFut: Future<Output = ()>,
{
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("conformance: cannot build a tokio runtime");
    runtime.block_on(async {
        let store = fresh().await;
        let outcome = AssertUnwindSafe(rule.check(&store)).catch_unwind().await;
        teardown(store).await;
        if let Err(panic) = outcome {
            std::panic::resume_unwind(panic);
        }
    });
}

/// A teardown that does nothing (the store is dropped): what
/// [`conformance_tests!`](crate::conformance_tests) uses when given none.
pub async fn no_teardown<S>(store: S) {
    drop(store);
}

/// Expands into one `#[test]` per conformance [`Rule`], named after the rule's check
/// function (`cap_race`, `paging_under_every_filter`, …), so that each broken rule of the
/// [`KeyStore`](crate::KeyStore) contract fails on its own.
///
/// The first argument is a function (or closure) taking nothing and returning a future of a
/// fresh, empty store; it is called once per test. The optional second argument is a
/// teardown: a function taking the store and returning a future, run after the check,
/// whether it passed or not (drop a database schema, delete a file). Each test runs on a
/// tokio runtime of its own (multi-thread, 2 worker threads), so no `#[tokio::test]` is
/// needed. The store must be [`KeyStore`](crate::KeyStore) + `Clone` + `'static` (see
/// [`testing`](crate::testing)).
///
/// Each generated test calls [`testing::run_rule`](crate::testing::run_rule) with its
/// [`Rule`](crate::testing::Rule), which calls the rule's public check function: the
/// checks' code lives in the crate, not in the expansion. Invoke it inside a module of its
/// own when its test names could clash with yours.
///
/// ```
/// use keyward::MemoryStore;
///
/// async fn fresh_store() -> MemoryStore {
///     MemoryStore::new()
/// }
///
/// mod conformance {
///     keyward::conformance_tests!(super::fresh_store);
/// }
///
/// // With a teardown, and a closure for the store:
/// mod with_teardown {
///     async fn forget(store: keyward::MemoryStore) {
///         assert!(store.len() < 1_000_000);
///     }
///     keyward::conformance_tests!(|| async { keyward::MemoryStore::new() }, forget);
/// }
/// # fn main() {}
/// ```
#[macro_export]
#[cfg_attr(docsrs, doc(cfg(feature = "testing")))]
macro_rules! conformance_tests {
    ($fresh:expr $(,)?) => {
        $crate::conformance_tests!($fresh, $crate::testing::no_teardown);
    };
    // One `#[test]` per (test name, `Rule` variant) pair.
    (@tests ($fresh:expr) ($teardown:expr) $($name:ident $rule:ident,)*) => {
        $(
            #[test]
            fn $name() {
                $crate::testing::run_rule($crate::testing::Rule::$rule, $fresh, $teardown);
            }
        )*
    };
    ($fresh:expr, $teardown:expr $(,)?) => {
        $crate::conformance_tests! {
            @tests ($fresh) ($teardown)
            insert_and_get InsertAndGet,
            duplicate_insert DuplicateInsert,
            compare_and_set CompareAndSet,
            lost_compare_and_set LostCompareAndSet,
            update_stores_as_given UpdateStoresAsGiven,
            cap_race CapRace,
            cap_counts_only_live_keys CapCountsOnlyLiveKeys,
            capped_insert_duplicates CappedInsertDuplicates,
            atomic_rotation AtomicRotation,
            rotation_error_order RotationErrorOrder,
            quota_under_concurrency QuotaUnderConcurrency,
            quota_refill_round_trip QuotaRefillRoundTrip,
            consume_is_a_write ConsumeIsAWrite,
            touch_last_used TouchLastUsed,
            paging_and_filters PagingAndFilters,
            paging_under_every_filter PagingUnderEveryFilter,
            ordering_across_id_lengths OrderingAcrossIdLengths,
            delete Delete,
            capped_update CappedUpdate,
            bulk_revocation BulkRevocation,
            lineage_round_trip LineageRoundTrip,
            tenant_caps TenantCaps,
            tenant_cap_race TenantCapRace,
        }
    };
}

/// The current runtime's handle, for spawning a race.
///
/// # Panics
/// When there is no tokio runtime, or it runs on one thread.
fn multi_thread(check: &str) -> tokio::runtime::Handle {
    let hint = "run the conformance suite with keyward::conformance_tests!, or call it from \
                #[tokio::test(flavor = \"multi_thread\", worker_threads = 2)]";
    let Ok(handle) = tokio::runtime::Handle::try_current() else {
        panic!("{check}: races run on spawned tasks of a tokio runtime and there is none: {hint}");
    };
    assert!(
        handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread,
        "{check}: races run on spawned tasks of a multi-thread runtime, not a current-thread \
         one (where a count and a write with no .await between them never interleave): {hint}"
    );
    handle
}

/// Spawns `tasks` tasks on the current multi-thread runtime, each running `op` on a clone of
/// the store and its index once all are ready (a barrier releases them together), and
/// returns their results in index order. A task that panics panics the caller with its
/// message.
async fn race<S, T, Fut>(
    check: &str,
    store: &S,
    tasks: usize,
    op: impl Fn(S, usize) -> Fut,
) -> Vec<T>
where
    S: KeyStore + Clone + 'static,
    Fut: Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let handle = multi_thread(check);
    let barrier = Arc::new(tokio::sync::Barrier::new(tasks));
    let spawned: Vec<_> = (0..tasks)
        .map(|i| {
            let work = op(store.clone(), i);
            let barrier = Arc::clone(&barrier);
            handle.spawn(async move {
                barrier.wait().await;
                work.await
            })
        })
        .collect();
    let mut results = Vec::with_capacity(tasks);
    for task in spawned {
        match task.await {
            Ok(result) => results.push(result),
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(e) => panic!("{check}: a racing task did not finish: {e}"),
        }
    }
    results
}

/// The ids of `records`, in the order given.
fn ids(records: &[KeyRecord]) -> Vec<KeyId> {
    records.iter().map(|r| r.id).collect()
}

/// `ids` sorted by their bytes: the order every listing must follow.
fn byte_order(mut ids: Vec<KeyId>) -> Vec<KeyId> {
    ids.sort_by(|a, b| a.as_str().cmp(b.as_str()));
    ids
}

/// Every record of `filter`, page by page of `limit`, checking each page on the way: at most
/// `limit` records, all matching, all after `page.after` and in byte order. Panics when the
/// listing does not end (a store that ignores `page.after` repeats its first page forever).
async fn list_all(
    check: &str,
    store: &impl KeyStore,
    filter: &ListFilter,
    limit: usize,
) -> Vec<KeyId> {
    let mut seen: Vec<KeyId> = Vec::new();
    let mut page = Some(Page::first(limit));
    let mut pages = 0;
    while let Some(p) = page {
        pages += 1;
        assert!(
            pages <= 1000,
            "{check}: listing {filter:?} by pages of {limit} never ends: is page.after ignored?"
        );
        let records = expect_ok(check, store.list(filter, p).await);
        assert!(
            records.len() <= limit,
            "{check}: {filter:?}: a page of {limit} returned {} records",
            records.len()
        );
        let mut previous = p.after;
        for r in &records {
            assert!(
                filter.matches(r),
                "{check}: listing {filter:?} returned {} (owner {:?}, tenant {:?})",
                r.id,
                r.owner,
                r.tenant
            );
            if let Some(previous) = previous {
                assert!(
                    previous.as_str() < r.id.as_str(),
                    "{check}: listing {filter:?} after {:?}: {} comes after {previous}, not in \
                     byte order after page.after",
                    p.after.map(|id| id.to_string()),
                    r.id
                );
            }
            previous = Some(r.id);
        }
        seen.extend(ids(&records));
        page = p.next(&records);
    }
    seen
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
/// `Conflict`, then `LimitReached`; nothing changes on an error; two enables racing on
/// spawned tasks under a cap of 1 never both succeed ([`RACE_ROUNDS`] rounds).
///
/// # Panics
/// When the check fails, or not on a multi-thread tokio runtime.
pub async fn capped_update<S: KeyStore + Clone + 'static>(store: &S) {
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

    // Two disabled keys of one owner enabled at once, on spawned tasks, under a cap of 1:
    // one wins.
    for round in 0..RACE_ROUNDS {
        let owner = format!("race-{round}");
        let pair = stored_disabled(check, store, [record(&owner), record(&owner)]).await;
        let results = race(check, store, 2, |store, i| {
            let r = pair[i].clone();
            async move { store.update_capped(r, 0, 1, now).await }
        })
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

/// Stores `pair` disabled and returns it enabled (version 0), ready for two enables to race.
async fn stored_disabled<S: KeyStore>(
    check: &str,
    store: &S,
    mut pair: [KeyRecord; 2],
) -> [KeyRecord; 2] {
    for r in &mut pair {
        r.status = KeyStatus::Disabled;
        expect_ok(check, store.insert(r.clone()).await);
        r.status = KeyStatus::Active;
    }
    pair
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

/// Listing pages through records in byte order of their ids without gaps or repeats, and
/// filters by owner and tenant.
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
    all.sort_by(|a, b| a.as_str().cmp(b.as_str()));
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

/// Of many compare-and-sets racing from the same version on spawned tasks, exactly one
/// wins and the others conflict; repeated [`RACE_ROUNDS`] rounds.
///
/// # Panics
/// When the check fails, or not on a multi-thread tokio runtime.
pub async fn lost_compare_and_set<S: KeyStore + Clone + 'static>(store: &S) {
    let check = "lost_compare_and_set";
    for round in 0..RACE_ROUNDS {
        let r = record("alice");
        expect_ok(check, store.insert(r.clone()).await);
        let results = race(check, store, 8, |store, i| {
            let mut next = r.clone();
            next.name = format!("writer {i}");
            async move { store.update(next, 0).await }
        })
        .await;
        let wins: Vec<usize> = (0..results.len()).filter(|&i| results[i].is_ok()).collect();
        let conflicts = results
            .iter()
            .filter(|r| matches!(r, Err(StoreError::Conflict(_))))
            .count();
        assert_eq!(
            (wins.len(), conflicts),
            (1, 7),
            "{check}: round {round}: expected one winner and 7 conflicts, got {results:?}"
        );
        let got = expect_ok(check, store.get(&r.id).await).expect("record vanished");
        assert_eq!(
            (got.version, got.name.clone()),
            (1, format!("writer {}", wins[0])),
            "{check}: round {round}: the stored record is not the winner's, at version 1"
        );
    }
}

/// Capped inserts for one owner racing on spawned tasks (16 of them, a cap of 3) store
/// exactly 3, the others are refused with `LimitReached`; repeated [`RACE_ROUNDS`] rounds.
///
/// # Panics
/// When the check fails, or not on a multi-thread tokio runtime.
pub async fn cap_race<S: KeyStore + Clone + 'static>(store: &S) {
    let check = "cap_race";
    let now = epoch();
    for round in 0..RACE_ROUNDS {
        let owner = format!("carol-{round}");
        let results = race(check, store, 16, |store, _| {
            let r = record(&owner);
            async move { store.insert_capped(r, 3, now).await }
        })
        .await;
        let refused =
            |r: &Result<(), StoreError>| matches!(r, Err(StoreError::LimitReached { limit: 3 }));
        three_of_sixteen(
            check,
            round,
            store,
            &results,
            refused,
            ListFilter::Owner(owner),
        )
        .await;
    }
}

/// Checks a race of 16 capped inserts under a cap of 3: 3 succeeded, 13 were `refused`,
/// and the store holds 3 records under `filter`.
async fn three_of_sixteen<S: KeyStore>(
    check: &str,
    round: usize,
    store: &S,
    results: &[Result<(), StoreError>],
    refused: impl Fn(&Result<(), StoreError>) -> bool,
    filter: ListFilter,
) {
    let ok = results.iter().filter(|r| r.is_ok()).count();
    let limited = results.iter().filter(|r| refused(r)).count();
    assert_eq!(
        (ok, limited),
        (3, 13),
        "{check}: round {round}: expected 3 inserted and 13 refused, got {results:?}"
    );
    let listed = expect_ok(check, store.list(&filter, Page::first(100)).await);
    assert_eq!(
        listed.len(),
        3,
        "{check}: round {round}: the store holds {} keys under {filter:?} with a cap of 3",
        listed.len()
    );
}

/// A record of `owner` in `tenant`.
fn in_tenant(owner: &str, tenant: Option<&str>) -> KeyRecord {
    let mut r = record(owner);
    r.tenant = tenant.map(str::to_owned);
    r
}

/// Whether `store` keeps caps per tenant: `false` when it answers a tenant-capped insert
/// with [`StoreError::Unsupported`] (the default [`KeyStore::insert_within`]), after
/// checking that it wrote nothing then (it fails closed).
async fn keeps_tenant_caps<S: KeyStore>(check: &str, store: &S) -> bool {
    let probe = in_tenant("probe", Some("probe-tenant"));
    let id = probe.id;
    match store
        .insert_within(probe, LiveCaps::none().tenant(1), epoch())
        .await
    {
        Ok(()) => {
            expect_ok(check, store.delete(&id).await);
            true
        }
        Err(StoreError::Unsupported { .. }) => {
            assert!(
                expect_ok(check, store.get(&id).await).is_none(),
                "{check}: an unsupported tenant-capped insert wrote its record"
            );
            eprintln!(
                "{check}: SKIPPED: the store does not keep caps per tenant \
                 (KeyStore::insert_within answers Unsupported, and writes nothing)"
            );
            false
        }
        Err(e) => panic!("{check}: unexpected store error: {e} ({e:?})"),
    }
}

/// `insert_within` and `update_within` keep a tenant's cap over every owner of the tenant:
/// a full tenant refuses with `TenantLimitReached` and writes nothing; other tenants and
/// records without a tenant are not held by it; only keys that count against the cap are
/// counted; the owner's cap is answered first, a duplicate id before either; an update of a
/// live key in a full tenant passes (it does not count against itself), enabling a disabled
/// one does not. A store that answers `Unsupported` (the trait's default) passes when it
/// writes nothing.
///
/// # Panics
/// When the check fails.
pub async fn tenant_caps<S: KeyStore>(store: &S) {
    let check = "tenant_caps";
    if !keeps_tenant_caps(check, store).await {
        return;
    }
    let now = epoch();
    let caps = LiveCaps::none().tenant(2);
    let first = in_tenant("tina", Some("t1"));
    expect_ok(check, store.insert_within(first.clone(), caps, now).await);
    expect_ok(
        check,
        store
            .insert_within(in_tenant("tom", Some("t1")), caps, now)
            .await,
    );
    let third = in_tenant("tess", Some("t1"));
    assert!(
        matches!(
            store.insert_within(third.clone(), caps, now).await,
            Err(StoreError::TenantLimitReached { limit: 2 })
        ),
        "{check}: a third key in a tenant capped at 2 must be TenantLimitReached"
    );
    assert!(
        expect_ok(check, store.get(&third.id).await).is_none(),
        "{check}: a refused insert wrote its record"
    );
    // The same id again: Duplicate before any cap.
    assert!(
        matches!(
            store.insert_within(first.clone(), caps, now).await,
            Err(StoreError::Duplicate(_))
        ),
        "{check}: an existing id must be Duplicate before TenantLimitReached"
    );
    // The owner's cap is answered first when both are reached.
    assert!(
        matches!(
            store
                .insert_within(in_tenant("tina", Some("t1")), caps.owner(1), now)
                .await,
            Err(StoreError::LimitReached { limit: 1 })
        ),
        "{check}: with both caps reached the owner's (LimitReached) comes first"
    );
    // Another tenant, and a record without one, are not held by t1's cap.
    for other in [Some("t2"), None] {
        expect_ok(
            check,
            store
                .insert_within(in_tenant("tess", other), caps, now)
                .await,
        );
    }
    // A key that does not count (expired, disabled) frees its place.
    let mut expired = in_tenant("eve", Some("t3"));
    expired.expires_at = Some(now - Duration::seconds(1));
    expect_ok(check, store.insert(expired).await);
    let mut disabled = in_tenant("dan", Some("t3"));
    disabled.status = KeyStatus::Disabled;
    expect_ok(check, store.insert(disabled.clone()).await);
    let t3 = LiveCaps::none().tenant(1);
    let live = in_tenant("liv", Some("t3"));
    expect_ok(check, store.insert_within(live.clone(), t3, now).await);
    // Enabling the disabled key would make two: refused, nothing changed.
    let mut enabled = disabled.clone();
    enabled.status = KeyStatus::Active;
    assert!(
        matches!(
            store.update_within(enabled.clone(), 0, t3, now).await,
            Err(StoreError::TenantLimitReached { limit: 1 })
        ),
        "{check}: enabling a key in a full tenant must be TenantLimitReached"
    );
    let stored = expect_ok(check, store.get(&disabled.id).await).expect("inserted");
    assert_eq!(
        (stored.status, stored.version),
        (KeyStatus::Disabled, 0),
        "{check}: a refused update changed the record"
    );
    // Renaming the live key in its full tenant passes: it does not count against itself.
    let mut renamed = live.clone();
    renamed.name = "renamed".to_owned();
    expect_ok(check, store.update_within(renamed, 0, t3, now).await);
    // Errors of the compare-and-set come first.
    assert!(
        matches!(
            store.update_within(enabled, 7, t3, now).await,
            Err(StoreError::Conflict(_))
        ),
        "{check}: a wrong version must be Conflict before TenantLimitReached"
    );
}

/// Tenant-capped inserts by 16 different owners of one tenant racing on spawned tasks (a
/// cap of 3) store exactly 3, the others are refused with `TenantLimitReached`; then two
/// disabled keys of different owners of one tenant enabled at once (`update_within`) under
/// a cap of 1: one wins. Each repeated [`RACE_ROUNDS`] rounds. Skipped (passes) for a store
/// that answers `Unsupported`.
///
/// # Panics
/// When the check fails, or not on a multi-thread tokio runtime.
pub async fn tenant_cap_race<S: KeyStore + Clone + 'static>(store: &S) {
    let check = "tenant_cap_race";
    if !keeps_tenant_caps(check, store).await {
        return;
    }
    let now = epoch();
    for round in 0..RACE_ROUNDS {
        let tenant = format!("tenant-{round}");
        let results = race(check, store, 16, |store, i| {
            let r = in_tenant(&format!("owner-{i}"), Some(&tenant));
            async move {
                store
                    .insert_within(r, LiveCaps::none().tenant(3), now)
                    .await
            }
        })
        .await;
        let refused = |r: &Result<(), StoreError>| {
            matches!(r, Err(StoreError::TenantLimitReached { limit: 3 }))
        };
        three_of_sixteen(
            check,
            round,
            store,
            &results,
            refused,
            ListFilter::Tenant(tenant),
        )
        .await;
    }
    for round in 0..RACE_ROUNDS {
        let tenant = format!("enable-{round}");
        let records = [
            in_tenant("owner-a", Some(&tenant)),
            in_tenant("owner-b", Some(&tenant)),
        ];
        let pair = stored_disabled(check, store, records).await;
        let results = race(check, store, 2, |store, i| {
            let r = pair[i].clone();
            async move {
                store
                    .update_within(r, 0, LiveCaps::none().tenant(1), now)
                    .await
            }
        })
        .await;
        let won = results.iter().filter(|r| r.is_ok()).count();
        assert_eq!(
            won, 1,
            "{check}: round {round}: {won} enables won under a tenant cap of 1 ({results:?})"
        );
        assert!(
            results
                .iter()
                .all(|r| matches!(r, Ok(()) | Err(StoreError::TenantLimitReached { limit: 1 }))),
            "{check}: the loser must be TenantLimitReached, got {results:?}"
        );
    }
}

/// 25 uses of a quota of 10 racing on spawned tasks succeed exactly 10 times, each
/// remaining count answered once; repeated [`RACE_ROUNDS`] rounds. Then: a key without a
/// quota is unlimited, an unknown one not found, and a use costing more than is left takes
/// nothing.
///
/// # Panics
/// When the check fails, or not on a multi-thread tokio runtime.
pub async fn quota_under_concurrency<S: KeyStore + Clone + 'static>(store: &S) {
    let check = "quota_under_concurrency";
    for round in 0..RACE_ROUNDS {
        let mut r = record("grace");
        r.remaining_uses = Some(10);
        expect_ok(check, store.insert(r.clone()).await);
        let id = r.id;
        let results = race(check, store, 25, |store, _| async move {
            store.consume(&id, 1).await
        })
        .await;
        let mut remaining: Vec<u64> = results
            .iter()
            .filter_map(|c| match c {
                Ok(Consumed::Remaining(n)) => Some(*n),
                _ => None,
            })
            .collect();
        let refused = results
            .iter()
            .filter(|c| matches!(c, Ok(Consumed::Exhausted)))
            .count();
        remaining.sort_unstable();
        assert_eq!(
            (remaining.len(), refused),
            (10, 15),
            "{check}: round {round}: expected 10 uses and 15 refusals, got {results:?}"
        );
        assert_eq!(
            remaining,
            (0..10).collect::<Vec<u64>>(),
            "{check}: round {round}: each remaining count must be answered once"
        );
        let got = expect_ok(check, store.get(&r.id).await).expect("record vanished");
        assert_eq!(
            got.remaining_uses,
            Some(0),
            "{check}: round {round}: remaining uses not zero"
        );
        assert_eq!(
            expect_ok(check, store.consume(&r.id, 1).await),
            Consumed::Exhausted
        );
    }

    let unlimited = record("grace");
    expect_ok(check, store.insert(unlimited.clone()).await);
    assert_eq!(
        expect_ok(check, store.consume(&unlimited.id, 5).await),
        Consumed::Unlimited
    );
    assert_eq!(
        expect_ok(check, store.consume(&random_id(), 1).await),
        Consumed::NotFound
    );

    let mut big = record("grace");
    big.remaining_uses = Some(3);
    expect_ok(check, store.insert(big.clone()).await);
    assert_eq!(
        expect_ok(check, store.consume(&big.id, 5).await),
        Consumed::Exhausted,
        "{check}: over-cost use"
    );
    assert_eq!(
        expect_ok(check, store.consume(&big.id, 3).await),
        Consumed::Remaining(0)
    );
}

/// `touch` moves `last_used_at` forward only and never changes the version (a
/// compare-and-set from the version read before still wins); on an unknown id it is
/// `Ok(())` and creates nothing.
///
/// # Panics
/// When the check fails.
pub async fn touch_last_used(store: &impl KeyStore) {
    let check = "touch_last_used";
    let r = record("heidi");
    expect_ok(check, store.insert(r.clone()).await);
    let t1 = epoch() + Duration::minutes(1);
    expect_ok(check, store.touch(&r.id, t1).await);
    let got = expect_ok(check, store.get(&r.id).await).expect("record vanished");
    assert_eq!(
        (got.last_used_at, got.version),
        (Some(t1), 0),
        "{check}: a touch must set last_used_at and leave the version"
    );
    expect_ok(check, store.touch(&r.id, epoch()).await);
    let got = expect_ok(check, store.get(&r.id).await).expect("record vanished");
    assert_eq!(
        got.last_used_at,
        Some(t1),
        "{check}: last_used_at must only move forward"
    );
    assert_eq!(got.version, 0, "{check}: must not change the version");
    let mut renamed = KeyRecord::clone(&got);
    renamed.name = "renamed after use".into();
    expect_ok(check, store.update(renamed, 0).await);

    let unknown = random_id();
    match store.touch(&unknown, t1).await {
        Ok(()) => {}
        Err(e) => panic!("{check}: a touch of an unknown id must be Ok(()), got {e:?}"),
    }
    assert!(
        expect_ok(check, store.get(&unknown).await).is_none(),
        "{check}: a touch of an unknown id created a record"
    );

    // Many at once: each moves forward only, the latest of repeated ids wins, unknown ids
    // are skipped, no version moves.
    let (a, b) = (record("heidi"), record("heidi"));
    expect_ok(check, store.insert(a.clone()).await);
    expect_ok(check, store.insert(b.clone()).await);
    let t2 = t1 + Duration::minutes(1);
    expect_ok(check, store.touch(&b.id, t2).await);
    let touches = [
        (a.id, t1),
        (unknown, t2),
        (b.id, t1),
        (a.id, t2),
        (a.id, epoch()),
    ];
    match store.touch_many(&touches).await {
        Ok(()) => {}
        Err(e) => panic!("{check}: touch_many must succeed, got {e:?}"),
    }
    expect_ok(check, store.touch_many(&[]).await);
    for (id, want) in [(a.id, t2), (b.id, t2)] {
        let got = expect_ok(check, store.get(&id).await).expect("record vanished");
        assert_eq!(
            (got.last_used_at, got.version),
            (Some(want), 0),
            "{check}: touch_many must move last_used_at forward to the latest time only"
        );
    }
    assert!(
        expect_ok(check, store.get(&unknown).await).is_none(),
        "{check}: touch_many of an unknown id created a record"
    );
}

/// `update` stores the record as given: `last_used_at` even when older than the stored one
/// (or cleared), an owner and a tenant change (listings and the owner's cap follow it), a
/// tenant removed; the version written is `expected_version + 1` whatever the record says.
///
/// # Panics
/// When the check fails.
pub async fn update_stores_as_given(store: &impl KeyStore) {
    let check = "update_stores_as_given";
    let now = epoch() + Duration::days(1);
    let mut r = record("wendy");
    r.tenant = Some("update-old-tenant".into());
    r.last_used_at = Some(epoch() + Duration::hours(5));
    expect_ok(check, store.insert(r.clone()).await);

    let mut older = r.clone();
    older.last_used_at = Some(epoch() + Duration::hours(1));
    older.version = 42;
    expect_ok(check, store.update(older.clone(), 0).await);
    older.version = 1;
    let got = expect_ok(check, store.get(&r.id).await).expect("update_stores_as_given: missing");
    assert_eq!(
        got.last_used_at, older.last_used_at,
        "{check}: an older last_used_at must be stored as given"
    );
    assert_eq!(
        *got, older,
        "{check}: the record must be stored as given, at expected_version + 1"
    );

    let mut moved = older.clone();
    moved.owner = "xavier".into();
    moved.tenant = Some("update-new-tenant".into());
    moved.last_used_at = None;
    expect_ok(check, store.update(moved.clone(), 1).await);
    moved.version = 2;
    let got = expect_ok(check, store.get(&r.id).await).expect("update_stores_as_given: missing");
    assert_eq!(
        *got, moved,
        "{check}: an owner and tenant change (and a cleared last_used_at) must be stored"
    );
    for (filter, expected) in [
        (ListFilter::Owner("xavier".into()), vec![r.id]),
        (ListFilter::Owner("wendy".into()), vec![]),
        (ListFilter::Tenant("update-new-tenant".into()), vec![r.id]),
        (ListFilter::Tenant("update-old-tenant".into()), vec![]),
    ] {
        let listed = expect_ok(check, store.list(&filter, Page::first(10)).await);
        assert_eq!(
            ids(&listed),
            expected,
            "{check}: listing {filter:?} after the owner and tenant changed"
        );
    }
    // The owner's cap follows the key to its new owner.
    match store.insert_capped(record("xavier"), 1, now).await {
        Err(StoreError::LimitReached { limit: 1 }) => {}
        other => panic!(
            "{check}: the moved key must count against its new owner's cap of 1, got {other:?}"
        ),
    }
    expect_ok(check, store.insert_capped(record("wendy"), 1, now).await);

    let mut untenanted = moved.clone();
    untenanted.tenant = None;
    expect_ok(check, store.update(untenanted.clone(), 2).await);
    let listed = expect_ok(
        check,
        store
            .list(
                &ListFilter::Tenant("update-new-tenant".into()),
                Page::first(10),
            )
            .await,
    );
    assert!(
        listed.is_empty(),
        "{check}: a key whose tenant was removed is still listed under it"
    );
    let got = expect_ok(check, store.get(&r.id).await).expect("update_stores_as_given: missing");
    assert_eq!(got.tenant, None, "{check}: tenant not removed");
}

/// `insert_capped` answers `Duplicate` before `LimitReached` and never overwrites an
/// existing record: a duplicate id (with another owner, or the same owner and another name)
/// is refused and changes nothing, whether the cap would allow the insert or not.
///
/// # Panics
/// When the check fails.
pub async fn capped_insert_duplicates(store: &impl KeyStore) {
    let check = "capped_insert_duplicates";
    let now = epoch() + Duration::days(1);
    let first = record("uma");
    expect_ok(check, store.insert_capped(first.clone(), 3, now).await);
    let mut stranger = record("victor");
    stranger.id = first.id;
    stranger.name = "victor's key, same id".into();
    let mut renamed = first.clone();
    renamed.name = "overwritten".into();
    renamed.scopes = "admin".parse::<ScopeSet>().expect("fixture scopes");

    let expect_duplicate = |what: &str, result: Result<(), StoreError>| match result {
        Err(StoreError::Duplicate(id)) => assert_eq!(id, first.id, "{check}: {what}: wrong id"),
        other => panic!("{check}: {what}: expected Duplicate, got {other:?}"),
    };
    expect_duplicate(
        "another owner's record with an existing id, under the cap",
        store.insert_capped(stranger.clone(), 3, now).await,
    );
    expect_duplicate(
        "a record with an existing id, its owner under the cap",
        store.insert_capped(renamed.clone(), 3, now).await,
    );
    let unchanged = expect_ok(check, store.get(&first.id).await).expect("record vanished");
    assert_eq!(
        *unchanged, first,
        "{check}: a duplicate overwrote the record"
    );

    // The owner at the cap: a duplicate is still a duplicate, not a cap refusal.
    expect_ok(check, store.insert_capped(record("uma"), 3, now).await);
    expect_ok(check, store.insert_capped(record("uma"), 3, now).await);
    expect_duplicate(
        "a record with an existing id, its owner at the cap",
        store.insert_capped(renamed.clone(), 3, now).await,
    );
    expect_duplicate(
        "another owner's record with an existing id, under a cap of 0",
        store.insert_capped(stranger.clone(), 0, now).await,
    );
    expect_duplicate(
        "a record with an existing id, under a cap of 0",
        store.insert_capped(renamed, 0, now).await,
    );
    let unchanged = expect_ok(check, store.get(&first.id).await).expect("record vanished");
    assert_eq!(
        *unchanged, first,
        "{check}: a duplicate overwrote the record"
    );
    let victor = expect_ok(
        check,
        store
            .list(&ListFilter::Owner("victor".into()), Page::first(10))
            .await,
    );
    assert!(victor.is_empty(), "{check}: a refused duplicate is listed");
    let uma = expect_ok(
        check,
        store
            .list(&ListFilter::Owner("uma".into()), Page::first(10))
            .await,
    );
    assert_eq!(uma.len(), 3, "{check}: the owner's keys changed");
}

/// `rotate` checks `NotFound` (old id), then `Conflict` (version), then `Duplicate` (new
/// id), and changes nothing on any of them.
///
/// # Panics
/// When the check fails.
pub async fn rotation_error_order(store: &impl KeyStore) {
    let check = "rotation_error_order";
    let old = record("yusuf");
    let squatter = record("zoe");
    expect_ok(check, store.insert(old.clone()).await);
    expect_ok(check, store.insert(squatter.clone()).await);
    let mut new = record("yusuf");
    new.rotated_from = Some(old.id);
    let mut retired = old.clone();
    retired.expires_at = Some(epoch() + Duration::hours(1));
    retired.rotated_to = Some(new.id);
    let mut clash = new.clone();
    clash.id = squatter.id;
    let ghost = record("yusuf");

    let unchanged = |what: &'static str| {
        rotation_changed_nothing(store, what, [&old, &squatter], [new.id, ghost.id])
    };

    match store.rotate(ghost.clone(), 3, clash.clone()).await {
        Err(StoreError::NotFound(id)) => assert_eq!(id, ghost.id, "{check}: NotFound's id"),
        other => panic!(
            "{check}: a missing old key must be NotFound before Conflict and Duplicate, got \
             {other:?}"
        ),
    }
    unchanged("a rotation of a missing key").await;
    match store.rotate(ghost.clone(), 0, new.clone()).await {
        Err(StoreError::NotFound(id)) => assert_eq!(id, ghost.id, "{check}: NotFound's id"),
        other => panic!("{check}: a missing old key must be NotFound, got {other:?}"),
    }
    unchanged("a rotation of a missing key").await;
    match store.rotate(retired.clone(), 3, clash.clone()).await {
        Err(StoreError::Conflict(id)) => assert_eq!(id, old.id, "{check}: Conflict's id"),
        other => panic!(
            "{check}: a stale version must be Conflict before an existing new id is \
             Duplicate, got {other:?}"
        ),
    }
    unchanged("a rotation from a stale version").await;
    match store.rotate(retired.clone(), 0, clash).await {
        Err(StoreError::Duplicate(id)) => assert_eq!(id, squatter.id, "{check}: Duplicate's id"),
        other => panic!("{check}: an existing new id must be Duplicate, got {other:?}"),
    }
    unchanged("a rotation to an existing id").await;

    expect_ok(check, store.rotate(retired.clone(), 0, new.clone()).await);
    // Again from the same version: the old key moved on (Conflict), the new exists.
    match store.rotate(retired, 0, new.clone()).await {
        Err(StoreError::Conflict(id)) => assert_eq!(id, old.id, "{check}: Conflict's id"),
        other => panic!("{check}: a repeated rotation must be Conflict, got {other:?}"),
    }
    let got = expect_ok(check, store.get(&new.id).await).expect("new key missing");
    assert_eq!(*got, new, "{check}: a refused rotation changed the new key");
    let got = expect_ok(check, store.get(&old.id).await).expect("old key vanished");
    assert_eq!(
        got.version, 1,
        "{check}: a refused rotation changed the old key"
    );
}

/// After a refused rotation: `kept` are stored as they were, `absent` are not stored.
async fn rotation_changed_nothing(
    store: &impl KeyStore,
    what: &str,
    kept: [&KeyRecord; 2],
    absent: [KeyId; 2],
) {
    let check = "rotation_error_order";
    for r in kept {
        let got = expect_ok(check, store.get(&r.id).await).expect("a key vanished");
        assert_eq!(*got, *r, "{check}: {what} changed {}", r.id);
    }
    for id in absent {
        assert!(
            expect_ok(check, store.get(&id).await).is_none(),
            "{check}: {what} inserted {id}"
        );
    }
}

/// The ids of `records` that `filter` selects, in byte order.
fn selected(records: &[KeyRecord], filter: &ListFilter) -> Vec<KeyId> {
    byte_order(
        records
            .iter()
            .filter(|r| filter.matches(r))
            .map(|r| r.id)
            .collect(),
    )
}
/// Inserts one fixture record per entry of `ids` (a fresh id for `None`), with the owner and
/// tenant that `labels` gives its position, and returns them in insertion order.
async fn insert_spread(
    store: &impl KeyStore,
    check: &str,
    ids: impl IntoIterator<Item = Option<KeyId>>,
    labels: impl Fn(usize) -> (&'static str, &'static str),
) -> Vec<KeyRecord> {
    let mut records = Vec::new();
    for (i, id) in ids.into_iter().enumerate() {
        let (owner, tenant) = labels(i);
        let mut r = record(owner);
        if let Some(id) = id {
            r.id = id;
        }
        r.tenant = Some(tenant.to_owned());
        expect_ok(check, store.insert(r.clone()).await);
        records.push(r);
    }
    records
}

/// Paging under every filter ([`ListFilter::All`], [`ListFilter::Owner`],
/// [`ListFilter::Tenant`]) by pages of 3 over 7 matching records among others: each page
/// starts after `page.after` (also an id the filter does not select, or that is not
/// stored), so every record comes once, none is missing, in byte order.
///
/// # Panics
/// When the check fails.
pub async fn paging_under_every_filter(store: &impl KeyStore) {
    let check = "paging_under_every_filter";
    let records = insert_spread(store, check, (0..21).map(|_| None), |i| {
        let owner = ["page-owner", "page-other"][usize::from(i % 3 != 0)];
        (
            owner,
            ["page-tenant", "page-noise"][usize::from(i % 3 != 1)],
        )
    })
    .await;
    let owner = ListFilter::Owner("page-owner".into());
    let tenant = ListFilter::Tenant("page-tenant".into());
    for (filter, limit, count) in [
        (ListFilter::All, 3, 21),
        (ListFilter::All, 5, 21),
        (owner.clone(), 3, 7),
        (tenant.clone(), 3, 7),
    ] {
        let expected = selected(&records, &filter);
        assert_eq!(expected.len(), count);
        let seen = list_all(check, store, &filter, limit).await;
        assert_eq!(
            seen, expected,
            "{check}: listing {filter:?} by pages of {limit} must return every record once, in \
             byte order"
        );
    }
    // A page after an id the filter does not select, and after one not stored at all.
    let all = byte_order(ids(&records));
    for filter in [ListFilter::All, owner, tenant] {
        let mut afters: Vec<KeyId> = records
            .iter()
            .filter(|r| !filter.matches(r))
            .map(|r| r.id)
            .take(2)
            .collect();
        afters.push(random_id());
        afters.push(all[10]);
        for after in afters {
            let page = Page {
                after: Some(after),
                limit: 3,
            };
            let listed = expect_ok(check, store.list(&filter, page).await);
            let expected: Vec<KeyId> = all
                .iter()
                .copied()
                .filter(|id| id.as_str() > after.as_str())
                .filter(|id| records.iter().any(|r| r.id == *id && filter.matches(r)))
                .take(3)
                .collect();
            assert_eq!(
                ids(&listed),
                expected,
                "{check}: listing {filter:?} after {after} (limit 3)"
            );
        }
    }
}

/// Ids of different lengths are listed by their bytes, as `str` compares them
/// (`0000000000000` before `zzzzzzzzzzzz`, `abcdefghijk` before `abcdefghijkl`), under
/// every filter and across pages.
///
/// # Panics
/// When the check fails.
pub async fn ordering_across_id_lengths(store: &impl KeyStore) {
    let check = "ordering_across_id_lengths";
    let ids_by_len = [
        "zzzzzzzzzzzz",
        "0000000000000",
        "zzzzzzzzzzz",
        "00000000000",
        "abcdefghijkl",
        "0000000000000000000000000000000Z",
        "abcdefghijk",
        "ZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZ",
        "aaaaaaaaaaaa",
        "A0000000000000000000",
        "abcdefghijkL",
        "9zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz",
        "zzzzzzzzzzzzz",
    ];
    let fixed_ids = ids_by_len
        .iter()
        .map(|id| Some(id.parse::<KeyId>().expect("fixture id")));
    let records = insert_spread(store, check, fixed_ids, |i| {
        let owner = ["order-even", "order-odd"][i % 2];
        (
            owner,
            ["order-third", "order-rest"][usize::from(i % 3 != 0)],
        )
    })
    .await;
    for filter in [
        ListFilter::All,
        ListFilter::Owner("order-even".into()),
        ListFilter::Tenant("order-third".into()),
    ] {
        let expected = selected(&records, &filter);
        let one_page = expect_ok(check, store.list(&filter, Page::first(100)).await);
        assert_eq!(
            ids(&one_page).iter().map(KeyId::as_str).collect::<Vec<_>>(),
            expected.iter().map(KeyId::as_str).collect::<Vec<_>>(),
            "{check}: listing {filter:?} must order ids by their bytes, whatever their length"
        );
        for limit in [1, 2] {
            let paged = list_all(check, store, &filter, limit).await;
            assert_eq!(
                paged, expected,
                "{check}: listing {filter:?} by pages of {limit} across id lengths"
            );
        }
    }
    // After an id that is not stored, shorter or longer than its neighbours.
    let after: KeyId = "aaaaaaaaaaaaa".parse().expect("fixture id");
    let listed = expect_ok(
        check,
        store
            .list(
                &ListFilter::All,
                Page {
                    after: Some(after),
                    limit: 3,
                },
            )
            .await,
    );
    assert_eq!(
        ids(&listed).iter().map(KeyId::as_str).collect::<Vec<_>>(),
        ["abcdefghijk", "abcdefghijkL", "abcdefghijkl"],
        "{check}: listing after {after}"
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
    async fn insert_within(
        &self,
        record: KeyRecord,
        caps: crate::store::LiveCaps,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        self.check()?;
        self.inner.insert_within(record, caps, now).await
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
    async fn update_within(
        &self,
        record: KeyRecord,
        expected_version: u64,
        caps: crate::store::LiveCaps,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        self.check()?;
        self.inner
            .update_within(record, expected_version, caps, now)
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
    async fn touch_many(&self, touches: &[(KeyId, OffsetDateTime)]) -> Result<(), StoreError> {
        self.check()?;
        self.inner.touch_many(touches).await
    }
    async fn get_fresh(&self, id: &KeyId) -> Result<Option<Arc<KeyRecord>>, StoreError> {
        self.check()?;
        self.inner.get_fresh(id).await
    }
    async fn delete(&self, id: &KeyId) -> Result<bool, StoreError> {
        self.check()?;
        self.inner.delete(id).await
    }
}
