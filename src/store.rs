//! The storage trait applications implement for their database, and its errors.
//!
//! [`MemoryStore`] keeps keys in memory; `SqliteStore` and `PostgresStore` (features
//! `sqlite`, `postgres`) in a database; [`AnyStore`] opens one of them from a URL;
//! [`CachedStore`] answers reads of a shared store from memory within a staleness bound. Run the
//! conformance suite (`keyward::testing`) against a store of your own.
//!
//! ```
//! use keyward::store::ListFilter;
//! use keyward::{Hasher, IssueRequest, KeyFormat, KeyManager, KeyStore, MemoryStore, Pepper, RequestContext};
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), keyward::Error> {
//! let manager = KeyManager::new(MemoryStore::new(), KeyFormat::new(["tak"])?, Hasher::fast(Pepper::random("k1")?));
//! let issued = manager.issue(IssueRequest::new("ci", "user_1"), &RequestContext::new()).await?;
//! let record = manager.store().get(&issued.key.id()).await?;
//! assert_eq!(record.map(|r| r.owner.clone()).as_deref(), Some("user_1"));
//! # Ok(()) }
//! ```
//!
//! # Schema versions
//! The SQL stores' `migrate` creates keyward's tables or upgrades them in place, recording
//! each applied version in `keyward_schema_version`; existing keys are kept as they were.
//! - 1: the keys table.
//! - 2: the usage quota's refill schedule ([`QuotaRefill`](crate::record::QuotaRefill)) and
//!   the time of the last refill, null for existing keys (no schedule).
//! - 3: the delegation parent ([`KeyRecord::parent`](crate::record::KeyRecord::parent)), null
//!   for existing keys (root keys: old `issued_by` values stay history and are not enforced).
//! - 4: IP allowlists ([`KeyRecord::allowed_networks`](crate::record::KeyRecord::allowed_networks),
//!   any network for existing keys), the audit log table `keyward_audit`
//!   ([`AuditStore`](crate::audit::AuditStore)) and the expiry-notice markers
//!   `keyward_expiry_notices` ([`NoticeStore`](crate::manager::NoticeStore)).
//! - 5 (PostgreSQL only; SQLite stays at 4): triggers on `keyward_keys` that notify channel
//!   `keyward_keys` with the id of every key inserted, changed (beyond `last_used_at`) or
//!   deleted, for the caches of other instances (`PgInvalidations`).

use core::future::Future;
use std::error::Error as StdError;
use std::sync::Arc;

use time::OffsetDateTime;

use crate::key::id::KeyId;
use crate::record::KeyRecord;

mod any;
mod cached;
mod caps;
mod memory;
#[cfg(feature = "postgres")]
mod postgres;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod sql;
#[cfg(feature = "sqlite")]
mod sqlite;

pub use any::{AnyInvalidations, AnyStore, AnyStoreError};
pub use cached::{CacheFeed, CachedStore, CachedStoreBuilder, InvalidationStream};
pub use caps::LiveCaps;
pub use memory::MemoryStore;
#[cfg(feature = "postgres")]
#[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
pub use postgres::{PgInvalidations, PostgresStore};
#[cfg(feature = "sqlite")]
#[cfg_attr(docsrs, doc(cfg(feature = "sqlite")))]
pub use sqlite::{SqliteInvalidations, SqliteStore};

/// Where key records live. Implement it for your database; run the conformance suite
/// (`keyward::testing`, feature `testing`) against your implementation.
///
/// # The contract
/// Every rule below is checked by the conformance suite, one check per rule.
///
/// - **Atomicity.** Every method is atomic on its own: `insert_capped`, `insert_within`,
///   `update`, `update_capped`, `update_within`, `rotate` and `consume` are never half applied and never interleave in
///   a way that breaks their checks (two capped inserts racing under a cap never both
///   succeed, even when no `.await` separates a store's count from its write: the suite
///   races them on spawned tasks of a multi-thread runtime). A SQL store does each in one
///   transaction or one statement; a key-value store uses its compare-and-set.
/// - **Versions.** A record's `version` counts its writes: `update`, `update_capped`, the
///   old half of `rotate`, `consume` (when it takes uses) and `revoke_matching` each store
///   `version + 1`; `insert` stores the record's version as given (the manager inserts 0);
///   `touch` never changes it. The `version` field of a record passed to `update` is
///   ignored: the store writes `expected_version + 1`.
/// - **Errors on a conditional write** are checked in a fixed order and change nothing:
///   `update`: [`StoreError::NotFound`], then [`StoreError::Conflict`]; `update_capped`:
///   then [`StoreError::LimitReached`]; `insert_capped`: [`StoreError::Duplicate`] before
///   [`StoreError::LimitReached`] (an existing id is never overwritten); `insert_within`
///   and `update_within` as these, then [`StoreError::TenantLimitReached`] (a store that
///   does not keep tenant caps answers [`StoreError::Unsupported`] before any other check,
///   as the default implementations do); `rotate`:
///   `NotFound` (old id), then `Conflict` (version), then `Duplicate` (new id).
/// - **Listings** are ordered by the id's bytes (`KeyId`'s `Ord` agrees, and so do the
///   shipped stores), start strictly after `page.after` under every [`ListFilter`], and
///   return at most `page.limit` records. A store may assume
///   `1 ≤ page.limit ≤ Page::MAX_LIMIT`: the manager never asks for more or fewer.
/// - **Errors keep their cause**: wrap a driver error in [`StoreError::Unavailable`]
///   (connection, timeout, pool exhaustion) and a row that does not decode in
///   [`StoreError::Corrupt`] naming its key. A row whose id itself is not a valid [`KeyId`]
///   cannot be named: report it as [`StoreError::Unavailable`]. The manager fails closed on
///   every error: no key verifies while the store cannot answer.
/// - **Runtimes and blocking.** The manager runs on any executor and never spawns. A store
///   may need its driver's runtime (the shipped SQL stores use sqlx on tokio) but must not
///   block the calling thread on I/O: hand blocking drivers to `spawn_blocking` or a thread
///   pool. The memory store answers at once.
/// - **Choosing a store at run time.** The trait returns `impl Future`, so it is not
///   object safe (`dyn KeyStore`): [`AnyStore`] opens the shipped stores from a URL and
///   forwards each method; wrap your own stores in an enum the same way.
pub trait KeyStore: Send + Sync {
    /// Inserts a new record, with the version it carries.
    ///
    /// Fails with [`StoreError::Duplicate`] when the id exists (the stored record is left
    /// as it was).
    fn insert(&self, record: KeyRecord) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Inserts new records, all or none (an import of keys from another system).
    ///
    /// Fails with [`StoreError::Duplicate`] naming an id that exists; nothing is inserted
    /// on any error. The SQL stores and the memory store do this in one atomic step. The
    /// default implementation inserts one record at a time and, on an error, deletes the
    /// records it inserted: a reader may see some of them meanwhile, and a failing
    /// deletion leaves them (running the same import again then skips them).
    fn insert_all(
        &self,
        records: Vec<KeyRecord>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        async move {
            let mut inserted = Vec::with_capacity(records.len());
            for record in records {
                let id = record.id;
                if let Err(e) = self.insert(record).await {
                    for id in inserted {
                        let _ = self.delete(&id).await;
                    }
                    return Err(e);
                }
                inserted.push(id);
            }
            Ok(())
        }
    }

    /// Inserts a new record only if its owner has fewer than `max_live` records that
    /// [count against the cap](KeyRecord::counts_against_cap) at `now`, as one atomic step.
    ///
    /// Fails with [`StoreError::Duplicate`] when the id exists (checked first: an existing
    /// record is never overwritten, whatever the count) and [`StoreError::LimitReached`]
    /// otherwise when the owner is at the cap.
    fn insert_capped(
        &self,
        record: KeyRecord,
        max_live: usize,
        now: OffsetDateTime,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Inserts a new record keeping every cap of `caps`: its owner's and, when the record
    /// has a tenant, its tenant's records that [count against the
    /// cap](KeyRecord::counts_against_cap) at `now` must be fewer than the cap, checked and
    /// written as one atomic step (two inserts racing for a tenant's last place, by any
    /// owners, never both succeed).
    ///
    /// Fails with [`StoreError::Duplicate`] when the id exists (checked first), then
    /// [`StoreError::LimitReached`] (the owner's cap), then
    /// [`StoreError::TenantLimitReached`]; nothing changes on an error.
    ///
    /// The default implementation keeps the owner's cap through
    /// [`KeyStore::insert_capped`] and fails closed with [`StoreError::Unsupported`] when a
    /// tenant cap applies: a store enforces tenant caps only by implementing this method
    /// (the shipped stores do).
    fn insert_within(
        &self,
        record: KeyRecord,
        caps: LiveCaps,
        now: OffsetDateTime,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        async move {
            refuse_tenant_cap(&record, caps)?;
            match caps.owner_cap() {
                Some(cap) => self.insert_capped(record, cap, now).await,
                None => self.insert(record).await,
            }
        }
    }

    /// Compare-and-set like [`KeyStore::update`] that keeps every cap of `caps`, as
    /// [`KeyStore::update_capped`] keeps the owner's: when `record` counts against the cap
    /// at `now`, its owner's and (when it has one) its tenant's *other* records that count
    /// must be fewer than the cap. Check, count and write are one atomic step.
    ///
    /// Errors, checked in this order, changing nothing on any of them:
    /// [`StoreError::NotFound`], [`StoreError::Conflict`], [`StoreError::LimitReached`],
    /// [`StoreError::TenantLimitReached`]. The default implementation is built on
    /// [`KeyStore::update_capped`] and fails closed with [`StoreError::Unsupported`] when a
    /// tenant cap applies, as [`KeyStore::insert_within`] does.
    fn update_within(
        &self,
        record: KeyRecord,
        expected_version: u64,
        caps: LiveCaps,
        now: OffsetDateTime,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        async move {
            refuse_tenant_cap(&record, caps)?;
            match caps.owner_cap() {
                Some(cap) => self.update_capped(record, expected_version, cap, now).await,
                None => self.update(record, expected_version).await,
            }
        }
    }

    /// The record with this id, if any, as last written (a later write is seen by the next
    /// call).
    fn get(
        &self,
        id: &KeyId,
    ) -> impl Future<Output = Result<Option<Arc<KeyRecord>>, StoreError>> + Send;

    /// [`KeyStore::get`] from the store of record, past any cache: what a decision to
    /// write is based on. The manager reads this way the key a management call changes, and
    /// the acting key's own record and lineage, so that a cache's staleness bound never
    /// decides a management call. The default is [`KeyStore::get`]; [`CachedStore`]
    /// reads its inner store.
    fn get_fresh(
        &self,
        id: &KeyId,
    ) -> impl Future<Output = Result<Option<Arc<KeyRecord>>, StoreError>> + Send {
        self.get(id)
    }

    /// Replaces the record with `record.id` if its stored version is `expected_version`,
    /// storing it with version `expected_version + 1` (compare-and-set). The record is
    /// stored as given: every field, `last_used_at` (even when older than the stored one),
    /// `owner` and `tenant` included, so listings by owner or tenant follow the change.
    ///
    /// Fails with [`StoreError::NotFound`] when the id is absent, then
    /// [`StoreError::Conflict`] when the version differs; nothing changes on an error.
    fn update(
        &self,
        record: KeyRecord,
        expected_version: u64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// One atomic step of a rotation: replaces the old record (compare-and-set on
    /// `expected_version`, like [`KeyStore::update`]) and inserts the new one. Either both
    /// happen or neither does.
    ///
    /// Fails with [`StoreError::NotFound`] (old id absent), then [`StoreError::Conflict`]
    /// (version), then [`StoreError::Duplicate`] (new id exists); nothing changes on an
    /// error.
    fn rotate(
        &self,
        old: KeyRecord,
        expected_version: u64,
        new: KeyRecord,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Records matching `filter`, ordered by the id's bytes, with ids greater than
    /// `page.after`, at most `page.limit` of them (the manager keeps `page.limit` within
    /// `1..=Page::MAX_LIMIT`).
    fn list(
        &self,
        filter: &ListFilter,
        page: Page,
    ) -> impl Future<Output = Result<Vec<KeyRecord>, StoreError>> + Send;

    /// Compare-and-set like [`KeyStore::update`], that also keeps the owner's cap of live
    /// keys, as [`KeyStore::insert_capped`] does: when `record` [counts against the
    /// cap](KeyRecord::counts_against_cap) at `now`, the owner's *other* records that count
    /// must be fewer than `max_live`. Check, count and write are one atomic step, so two
    /// keys enabled at once under a cap of 1 never both succeed.
    ///
    /// Errors, checked in this order, changing nothing on any of them:
    /// [`StoreError::NotFound`], [`StoreError::Conflict`], [`StoreError::LimitReached`].
    fn update_capped(
        &self,
        record: KeyRecord,
        expected_version: u64,
        max_live: usize,
        now: OffsetDateTime,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Revokes every record matching `filter` that is not revoked yet (incident response,
    /// offboarding), incrementing each one's version, and reports which.
    ///
    /// One row that cannot be decoded must not stop the others: a SQL store does this in
    /// one `UPDATE … WHERE` that decodes nothing (so a corrupt row is revoked too). The
    /// default implementation, built on [`KeyStore::list`] and [`KeyStore::update`], steps
    /// over a row that fails with [`StoreError::Corrupt`] one record at a time and reports
    /// it in [`BulkRevocation::unreadable`] (such a row still refuses at verification, since
    /// reading it fails closed). It is not atomic as a whole: a key inserted meanwhile may
    /// be missed, and each key is revoked by its own compare-and-set.
    ///
    /// # Errors
    /// A store error that is not about one row ([`StoreError::Unavailable`]); keys revoked
    /// before it stay revoked, and running it again is safe.
    fn revoke_matching(
        &self,
        filter: &ListFilter,
    ) -> impl Future<Output = Result<BulkRevocation, StoreError>> + Send {
        async move { revoke_by_listing(self, filter).await }
    }

    /// Atomically takes `cost` uses from a key's quota. Taking uses is a write: it
    /// increments the record's version, so a compare-and-set built on a read from before it
    /// conflicts instead of writing the old count back. A key without a quota answers
    /// [`Consumed::Unlimited`] and an exhausted one [`Consumed::Exhausted`], writing
    /// nothing; an unknown id is [`Consumed::NotFound`].
    fn consume(
        &self,
        id: &KeyId,
        cost: u64,
    ) -> impl Future<Output = Result<Consumed, StoreError>> + Send;

    /// Sets `last_used_at` to `at` if it is later than the stored value. Cheap, and never
    /// changes the record's version (it is not part of compare-and-set). An unknown id is
    /// `Ok(())`: the key may have been deleted since it verified.
    fn touch(
        &self,
        id: &KeyId,
        at: OffsetDateTime,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// [`KeyStore::touch`] for many keys: moves each key's `last_used_at` forward to its
    /// time (an id may appear more than once: the latest time wins), never changing a
    /// version; unknown ids are skipped. [`CachedStore`]'s write-behind flushes the last-use
    /// times it collected with one call.
    ///
    /// The SQL stores write them all in one statement. The default implementation touches
    /// one key at a time and stops at the first error: the keys before it are written, the
    /// rest are not (a last-use time is a statistic; a later flush writes newer times).
    fn touch_many(
        &self,
        touches: &[(KeyId, OffsetDateTime)],
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        async move {
            for (id, at) in touches {
                self.touch(id, *at).await?;
            }
            Ok(())
        }
    }

    /// Deletes a record; `Ok(false)` if it did not exist.
    fn delete(&self, id: &KeyId) -> impl Future<Output = Result<bool, StoreError>> + Send;
}

/// What [`KeyStore::revoke_matching`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct BulkRevocation {
    /// Keys revoked by this call, in id order.
    pub revoked: Vec<KeyId>,
    /// Keys whose record could not be read, so they could not be revoked (they are still
    /// refused at verification, which fails closed on an unreadable record).
    pub unreadable: Vec<KeyId>,
}

impl BulkRevocation {
    /// A report of `revoked` keys and none unreadable.
    #[must_use]
    pub fn new(revoked: Vec<KeyId>, unreadable: Vec<KeyId>) -> Self {
        Self {
            revoked,
            unreadable,
        }
    }
}

/// Visits every record matching `filter`, page by page in id order. A page that fails with
/// [`StoreError::Corrupt`] is read again one record at a time up to the corrupt row, so
/// every readable record is visited and each unreadable one is passed to `unreadable` once.
///
/// # Errors
/// Any other store error.
pub(crate) async fn for_each_readable<S: KeyStore + ?Sized>(
    store: &S,
    filter: &ListFilter,
    mut visit: impl FnMut(KeyRecord),
    mut unreadable: impl FnMut(KeyId),
) -> Result<(), StoreError> {
    let mut after = None;
    let mut limit = Page::MAX_LIMIT;
    loop {
        let page = Page { after, limit };
        match store.list(filter, page).await {
            Ok(records) => {
                let done = records.len() < limit;
                for record in records {
                    after = Some(record.id);
                    visit(record);
                }
                if done {
                    return Ok(());
                }
            }
            Err(StoreError::Corrupt { id, .. }) if limit == 1 => {
                // A page of one that fails names the next row; naming the row already
                // passed would loop forever.
                if after == Some(id) {
                    return Err(StoreError::unavailable(
                        "a listing named a corrupt row out of order",
                    ));
                }
                unreadable(id);
                after = Some(id);
                // Past the corrupt row: back to full pages.
                limit = Page::MAX_LIMIT;
            }
            Err(StoreError::Corrupt { .. }) => limit = 1,
            Err(e) => return Err(e),
        }
    }
}

/// [`KeyStore::revoke_matching`]'s default implementation.
async fn revoke_by_listing<S: KeyStore + ?Sized>(
    store: &S,
    filter: &ListFilter,
) -> Result<BulkRevocation, StoreError> {
    let mut targets = Vec::new();
    let mut report = BulkRevocation::default();
    for_each_readable(
        store,
        filter,
        |r| {
            if r.status != crate::record::KeyStatus::Revoked {
                targets.push(r);
            }
        },
        |id| report.unreadable.push(id),
    )
    .await?;
    for mut record in targets {
        // Re-read after a lost compare-and-set: the record may be revoked or gone by now.
        let mut attempts = 0;
        loop {
            attempts += 1;
            if attempts > 8 {
                return Err(StoreError::Conflict(record.id));
            }
            let version = record.version;
            record.status = crate::record::KeyStatus::Revoked;
            match store.update(record.clone(), version).await {
                Ok(()) => {
                    report.revoked.push(record.id);
                    break;
                }
                Err(StoreError::NotFound(_)) => break,
                Err(StoreError::Conflict(id)) => match store.get(&id).await {
                    Ok(Some(fresh)) if fresh.status != crate::record::KeyStatus::Revoked => {
                        record = KeyRecord::clone(&fresh);
                    }
                    Ok(_) => break,
                    Err(StoreError::Corrupt { id, .. }) => {
                        report.unreadable.push(id);
                        break;
                    }
                    Err(e) => return Err(e),
                },
                Err(e) => return Err(e),
            }
        }
    }
    report.unreadable.sort_unstable();
    Ok(report)
}

/// Which records [`KeyStore::list`] returns.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ListFilter {
    /// Every record.
    All,
    /// Records of one owner.
    Owner(String),
    /// Records of one tenant.
    Tenant(String),
}

impl ListFilter {
    /// Whether `record` matches.
    #[must_use]
    pub fn matches(&self, record: &KeyRecord) -> bool {
        match self {
            Self::All => true,
            Self::Owner(owner) => record.owner == *owner,
            Self::Tenant(tenant) => record.tenant.as_deref() == Some(tenant.as_str()),
        }
    }
}

/// A page of a listing: records with ids greater than `after`, at most `limit` of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page {
    /// Start after this id (`None`: from the beginning).
    pub after: Option<KeyId>,
    /// Most records to return (at least 1, at most [`Page::MAX_LIMIT`]; the manager clamps
    /// a value outside before it reaches a store).
    pub limit: usize,
}

impl Page {
    /// Largest page.
    pub const MAX_LIMIT: usize = 1000;

    /// The first page of `limit` records (clamped to 1..=[`Page::MAX_LIMIT`]).
    #[must_use]
    pub fn first(limit: usize) -> Self {
        Self {
            after: None,
            limit: limit.clamp(1, Self::MAX_LIMIT),
        }
    }

    /// The page after the last record of `records`, or `None` when `records` was a short
    /// (final) page.
    #[must_use]
    pub fn next(&self, records: &[KeyRecord]) -> Option<Self> {
        if records.len() < self.limit {
            return None;
        }
        records.last().map(|r| Self {
            after: Some(r.id),
            limit: self.limit,
        })
    }
}

impl Default for Page {
    fn default() -> Self {
        Self::first(100)
    }
}

/// The result of [`KeyStore::consume`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Consumed {
    /// The key has no quota.
    Unlimited,
    /// Uses were taken; this many remain.
    Remaining(u64),
    /// Not enough uses were left; nothing was taken.
    Exhausted,
    /// No such key.
    NotFound,
}

/// What the default [`KeyStore::insert_within`] and [`KeyStore::update_within`] answer when a
/// tenant cap applies to `record`: they cannot keep it atomically, so they refuse.
fn refuse_tenant_cap(record: &KeyRecord, caps: LiveCaps) -> Result<(), StoreError> {
    if caps.tenant_cap().is_some() && record.tenant.is_some() {
        return Err(StoreError::Unsupported {
            what: "caps on live keys per tenant",
        });
    }
    Ok(())
}

/// A store operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// A record with this id exists already.
    #[error("a key with id {0} exists already")]
    Duplicate(KeyId),
    /// No record with this id.
    #[error("no key with id {0}")]
    NotFound(KeyId),
    /// The record changed since it was read (compare-and-set lost).
    #[error("key {0} was changed concurrently")]
    Conflict(KeyId),
    /// The owner has as many live keys as allowed.
    #[error("owner has reached the limit of {limit} live keys")]
    LimitReached {
        /// The cap.
        limit: usize,
    },
    /// The record's tenant has as many live keys as allowed.
    #[error("tenant has reached the limit of {limit} live keys")]
    TenantLimitReached {
        /// The cap.
        limit: usize,
    },
    /// The store does not implement an operation the manager was configured to need (such
    /// as caps per tenant through a default [`KeyStore::insert_within`]); nothing changed.
    #[error("the key store does not support {what}")]
    Unsupported {
        /// What is missing.
        what: &'static str,
    },
    /// A stored record does not decode (edited by hand, or written by a newer version).
    #[error("stored record for key {id} is corrupt")]
    Corrupt {
        /// The key whose record is corrupt.
        id: KeyId,
        /// What is wrong with it.
        #[source]
        source: Box<dyn StdError + Send + Sync>,
    },
    /// The store cannot be reached or did not answer in time.
    #[error("key store unavailable")]
    Unavailable(#[source] Box<dyn StdError + Send + Sync>),
}

impl StoreError {
    /// A [`StoreError::Unavailable`] from any error.
    pub fn unavailable(source: impl Into<Box<dyn StdError + Send + Sync>>) -> Self {
        Self::Unavailable(source.into())
    }

    /// A [`StoreError::Corrupt`] for key `id`.
    pub fn corrupt(id: KeyId, source: impl Into<Box<dyn StdError + Send + Sync>>) -> Self {
        Self::Corrupt {
            id,
            source: source.into(),
        }
    }
}
