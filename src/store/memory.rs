//! The in-memory store: the embedded default, safe under concurrent use.

use core::future::{Future, ready};
use core::hash::BuildHasher;
use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, RwLock};

use hashbrown::{DefaultHashBuilder, HashTable};
use time::OffsetDateTime;

use super::{BulkRevocation, Consumed, KeyStore, ListFilter, LiveCaps, Page, StoreError};
use crate::key::id::KeyId;
use crate::record::{KeyRecord, KeyStatus};
use crate::scope::ScopeSet;

mod compact;
mod journal;

use compact::{Compact, Contexts};

/// Keeps records in memory behind one read-write lock: reads (every verification) run in
/// parallel, writes are atomic. Clones share the same records. Everything is lost when the
/// process exits: use it for tests, examples and single-process services that re-issue keys
/// at start; use the SQLite or PostgreSQL store otherwise.
///
/// Layout, for services that hold many keys: each record is kept in a compact form (the
/// fields most keys leave empty are boxed only when set; prefix, tenant and pepper id are
/// shared between the keys that have the same ones; each distinct scope set is stored once)
/// and found through a hash table of pointers (9 bytes per slot, hashed with a per-store
/// random seed, so ids chosen by a client cannot aim at one slot); an ordered index of ids
/// serves paged listings. [`KeyStore::get`] returns the record expanded to a
/// [`KeyRecord`]; the expanded records of recently read keys are kept in a bounded set
/// (8,192 entries), so a hot key is expanded once, not on every verification, and read
/// without the records' lock; every write of a record drops its expanded copy before the
/// write returns. `BENCHMARKS.md` has the bytes per key at
/// 1,000,000 keys. [`KeyStore::insert_capped`] counts the owner's keys through an owner
/// index, built by the first capped insert, so stores that never cap keys do not pay for it.
#[derive(Debug, Clone, Default)]
pub struct MemoryStore {
    shared: Arc<Shared>,
}

/// The records behind their lock, and the hot set beside it: a read of a hot key takes only
/// the lock of its hot slot. That is safe because every write of a record drops the record's
/// hot copy before it releases the write lock, and copies are put in only under the read
/// lock: a read that finds a copy runs before any write of the record still in progress.
struct Shared {
    /// The same seeds as the records' own table hasher.
    hasher: DefaultHashBuilder,
    hot: Arc<HotRecords>,
    records: RwLock<Records>,
    /// The audit log and expiry-notice markers.
    journal: Mutex<journal::Journal>,
}

impl Default for Shared {
    fn default() -> Self {
        let hasher = DefaultHashBuilder::default();
        let hot = Arc::new(HotRecords::default());
        let records = Records {
            hasher: hasher.clone(),
            hot: Arc::clone(&hot),
            ..Records::default()
        };
        Self {
            hasher,
            hot,
            records: RwLock::new(records),
            journal: Mutex::default(),
        }
    }
}

impl core::fmt::Debug for Shared {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        core::fmt::Debug::fmt(&self.records, f)
    }
}

#[derive(Default)]
struct Records {
    by_id: HashTable<Box<Compact>>,
    hasher: DefaultHashBuilder,
    order: BTreeSet<KeyId>,
    scope_sets: ScopeInterner,
    contexts: Contexts,
    /// Ids by owner, for the per-owner cap.
    owners: Index,
    /// Ids by tenant, for the per-tenant cap.
    tenants: Index,
    hot: Arc<HotRecords>,
}

impl core::fmt::Debug for Records {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Records")
            .field("len", &self.by_id.len())
            .field("distinct_scope_sets", &self.scope_sets.sets.len())
            .field("distinct_contexts", &self.contexts.len())
            .finish_non_exhaustive()
    }
}

/// The corruption error for a compact record that cannot be expanded (never expected: see
/// [`Compact::expand`]).
fn lost_hash(id: KeyId) -> StoreError {
    StoreError::corrupt(id, "memory store: the record lost its hash")
}

impl Records {
    fn hash(&self, id: &KeyId) -> u64 {
        self.hasher.hash_one(id)
    }

    fn get(&self, id: &KeyId) -> Option<&Compact> {
        self.by_id
            .find(self.hash(id), |c| c.id() == *id)
            .map(|c| &**c)
    }

    fn contains_key(&self, id: &KeyId) -> bool {
        self.get(id).is_some()
    }

    /// The record to change in place: call [`Records::forget`] after changing it.
    fn get_mut(&mut self, id: &KeyId) -> Option<&mut Compact> {
        let hash = self.hash(id);
        self.by_id
            .find_mut(hash, |c| c.id() == *id)
            .map(|c| &mut **c)
    }

    /// Drops the expanded copy of a record changed in place.
    fn forget(&self, id: &KeyId) {
        self.hot.forget(self.hash(id), *id);
    }

    /// The expanded record, from the hot set when it holds one.
    fn expanded(&self, id: &KeyId) -> Result<Option<Arc<KeyRecord>>, StoreError> {
        let hash = self.hash(id);
        let Some(compact) = self.by_id.find(hash, |c| c.id() == *id) else {
            return Ok(None);
        };
        if let Some(record) = self.hot.current(hash, *id) {
            return Ok(Some(record));
        }
        let record = Arc::new(compact.expand().ok_or_else(|| lost_hash(*id))?);
        self.hot.put(hash, &record);
        Ok(Some(record))
    }

    /// Inserts or replaces the record with `record.id`.
    fn insert(&mut self, mut record: KeyRecord) {
        record.scopes = self.scope_sets.intern(record.scopes);
        let id = record.id;
        let hash = self.hash(&id);
        let indexed = self.owners.is_built() || self.tenants.is_built();
        let new = indexed.then(|| (record.owner.clone(), record.tenant.clone()));
        let compact = Box::new(Compact::new(record, &mut self.contexts));
        self.hot.forget(hash, id);
        let hasher = &self.hasher;
        let old = match self
            .by_id
            .entry(hash, |c| c.id() == id, |c| hasher.hash_one(c.id()))
        {
            hashbrown::hash_table::Entry::Occupied(mut slot) => {
                let old = core::mem::replace(slot.get_mut(), compact);
                indexed.then(|| (old.owner().to_owned(), old.tenant().map(str::to_owned)))
            }
            hashbrown::hash_table::Entry::Vacant(slot) => {
                slot.insert(compact);
                self.order.insert(id);
                None
            }
        };
        if let Some((owner, tenant)) = new {
            let (old_owner, old_tenant) = match &old {
                Some((o, t)) => (Some(o.as_str()), t.as_deref()),
                None => (None, None),
            };
            self.owners.relink(old_owner, Some(&owner), id);
            self.tenants.relink(old_tenant, tenant.as_deref(), id);
        }
    }

    fn remove(&mut self, id: &KeyId) -> bool {
        let hash = self.hash(id);
        self.hot.forget(hash, *id);
        let Ok(entry) = self.by_id.find_entry(hash, |c| c.id() == *id) else {
            return false;
        };
        let (record, _) = entry.remove();
        self.order.remove(id);
        self.owners.relink(Some(record.owner()), None, *id);
        self.tenants.relink(record.tenant(), None, *id);
        true
    }

    /// The records of `caps`' owner and tenant that count against the cap at `now`, other
    /// than `except`: (the owner's, the tenant's; `0` for a cap that is not set or a record
    /// without a tenant). A record that cannot be expanded counts, so the cap fails closed.
    fn live_counts(
        &mut self,
        record: &KeyRecord,
        caps: LiveCaps,
        except: Option<KeyId>,
        now: OffsetDateTime,
    ) -> (usize, usize) {
        let counts = |c: &&Compact| {
            Some(c.id()) != except && c.expand().is_none_or(|r| r.counts_against_cap(now))
        };
        let owner = match caps.owner_cap() {
            Some(_) => {
                self.owners.build(&self.by_id, |c| Some(c.owner()));
                self.of(&self.owners, &record.owner).filter(counts).count()
            }
            None => 0,
        };
        let tenant = match (caps.tenant_cap(), &record.tenant) {
            (Some(_), Some(tenant)) => {
                self.tenants.build(&self.by_id, Compact::tenant);
                self.of(&self.tenants, tenant).filter(counts).count()
            }
            _ => 0,
        };
        (owner, tenant)
    }

    /// The records `index` holds under `key`.
    fn of<'a>(&'a self, index: &'a Index, key: &str) -> impl Iterator<Item = &'a Compact> {
        index.ids(key).iter().filter_map(|id| self.get(id))
    }

    fn len(&self) -> usize {
        self.by_id.len()
    }
}

/// Whether a listing filter selects `record`, read from its compact form.
fn selects(filter: &ListFilter, record: &Compact) -> bool {
    match filter {
        ListFilter::All => true,
        ListFilter::Owner(owner) => record.owner() == owner,
        ListFilter::Tenant(tenant) => record.tenant() == Some(tenant.as_str()),
    }
}

/// Number of expanded records kept for recently read keys (a power of two).
const HOT_SLOTS: usize = 8_192;

/// Expanded copies of recently read records, so that verifying a hot key does not expand
/// it again. Each key has two candidate slots (from two parts of its hash); every write of
/// a record drops its copy while holding the store's write lock, and copies are put in only
/// under the read lock, so a copy found is the stored record (see [`Shared`]). Bounded: at
/// most [`HOT_SLOTS`] records, allocated on the first read.
///
/// Why it exists: [`Compact`] records cost an expansion (several allocations) per
/// [`KeyStore::get`], and the records' `RwLock` is a shared cache line that every reader
/// writes. With the hot set a verification of a recently read key takes one slot mutex and
/// one reference count, allocates nothing, and skips the table probe. It buys BENCHMARKS.md,
/// Hot path: "manager verify + authorize, memory store, record hot" (target ≤ 2x raw
/// HMAC-SHA256) and "manager verify + authorize, 1,000,000 keys, cycling through 4,096"
/// (target ≤ 3x), and Memory: "peak bytes allocated by one verify (hot record)" (0).
#[derive(Default)]
struct HotRecords {
    slots: OnceLock<Box<[HotSlot]>>,
}

/// One slot of [`HotRecords`]: an expanded record, or nothing.
type HotSlot = Mutex<Option<Arc<KeyRecord>>>;

impl HotRecords {
    fn candidates(hash: u64) -> [usize; 2] {
        let mask = HOT_SLOTS as u64 - 1;
        // Both values are masked below `HOT_SLOTS`, so the casts cannot truncate.
        [(hash & mask) as usize, ((hash >> 32) & mask) as usize]
    }

    fn slot(
        slots: &[HotSlot],
        index: usize,
    ) -> Option<std::sync::MutexGuard<'_, Option<Arc<KeyRecord>>>> {
        slots
            .get(index)
            .map(|slot| slot.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// The copy of `id`, if one is held: current, since every write drops it (called
    /// without the records' lock).
    fn current(&self, hash: u64, id: KeyId) -> Option<Arc<KeyRecord>> {
        let slots = self.slots.get()?;
        Self::candidates(hash).into_iter().find_map(|index| {
            let slot = Self::slot(slots, index)?;
            slot.as_ref().filter(|r| r.id == id).map(Arc::clone)
        })
    }

    fn put(&self, hash: u64, record: &Arc<KeyRecord>) {
        let slots = self
            .slots
            .get_or_init(|| (0..HOT_SLOTS).map(|_| Mutex::new(None)).collect());
        let [first, second] = Self::candidates(hash);
        // An empty candidate, or one holding this key, is taken first; otherwise one of the
        // two is replaced (which one depends on the hash, so keys spread over both).
        for index in [first, second] {
            if let Some(mut slot) = Self::slot(slots, index)
                && slot.as_ref().is_none_or(|r| r.id == record.id)
            {
                *slot = Some(Arc::clone(record));
                return;
            }
        }
        let victim = if hash & (1 << 20) == 0 { first } else { second };
        if let Some(mut slot) = Self::slot(slots, victim) {
            *slot = Some(Arc::clone(record));
        }
    }

    fn forget(&self, hash: u64, id: KeyId) {
        let Some(slots) = self.slots.get() else {
            return;
        };
        for index in Self::candidates(hash) {
            if let Some(mut slot) = Self::slot(slots, index)
                && slot.as_ref().is_some_and(|r| r.id == id)
            {
                *slot = None;
            }
        }
    }
}

/// Fails with the error of the first cap of `caps` that `record` would break (the owner's,
/// then the tenant's), not counting record `except`.
fn within_caps(
    map: &mut Records,
    record: &KeyRecord,
    caps: LiveCaps,
    except: Option<KeyId>,
    now: OffsetDateTime,
) -> Result<(), StoreError> {
    let (owner, tenant) = map.live_counts(record, caps, except, now);
    if let Some(limit) = caps.owner_cap().filter(|&cap| owner >= cap) {
        return Err(StoreError::LimitReached { limit });
    }
    if let Some(limit) = caps
        .tenant_cap()
        .filter(|&cap| record.tenant.is_some() && tenant >= cap)
    {
        return Err(StoreError::TenantLimitReached { limit });
    }
    Ok(())
}

/// Ids by one field of their records (owner or tenant), for the caps on live keys: built by
/// the first capped write that needs it (one scan), kept up to date from then on, so
/// stores that never cap pay nothing for it.
#[derive(Default)]
struct Index(Option<HashMap<String, Vec<KeyId>>>);

impl Index {
    fn is_built(&self) -> bool {
        self.0.is_some()
    }

    /// Builds the index from every record, keyed by `field`, unless it exists.
    fn build<'a>(
        &mut self,
        records: &'a HashTable<Box<Compact>>,
        field: impl Fn(&'a Compact) -> Option<&'a str>,
    ) {
        if self.0.is_some() {
            return;
        }
        let mut map: HashMap<String, Vec<KeyId>> = HashMap::new();
        for c in records {
            if let Some(key) = field(c) {
                map.entry(key.to_owned()).or_default().push(c.id());
            }
        }
        self.0 = Some(map);
    }

    /// Moves `id` from `old`'s ids to `new`'s (either may be absent); nothing when the index
    /// is not built. A key left with no ids is removed.
    fn relink(&mut self, old: Option<&str>, new: Option<&str>, id: KeyId) {
        let Some(map) = &mut self.0 else {
            return;
        };
        if old == new {
            return;
        }
        if let Some(old) = old
            && let Some(ids) = map.get_mut(old)
        {
            ids.retain(|i| *i != id);
            if ids.is_empty() {
                map.remove(old);
            }
        }
        if let Some(new) = new {
            map.entry(new.to_owned()).or_default().push(id);
        }
    }

    /// The ids under `key` (none when the index is not built).
    fn ids(&self, key: &str) -> &[KeyId] {
        self.0
            .as_ref()
            .and_then(|map| map.get(key))
            .map_or(&[][..], Vec::as_slice)
    }
}

/// One shared copy of each distinct scope set. Sets no record holds any more are dropped
/// when the table has doubled since the last sweep, so it stays within twice the number of
/// sets in use.
#[derive(Default)]
struct ScopeInterner {
    sets: hashbrown::HashSet<ScopeSet, DefaultHashBuilder>,
    swept_at: usize,
}

impl ScopeInterner {
    fn intern(&mut self, set: ScopeSet) -> ScopeSet {
        if let Some(shared) = self.sets.get(&set) {
            return shared.clone();
        }
        if self.sets.len() >= 2 * self.swept_at.max(32) {
            self.sets.retain(|s| s.is_shared());
            self.swept_at = self.sets.len();
        }
        self.sets.insert(set.clone());
        set
    }
}

impl MemoryStore {
    /// An empty store.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of records.
    #[must_use]
    pub fn len(&self) -> usize {
        self.read(|map| map.len())
    }

    /// Whether the store is empty.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn read<T>(&self, f: impl FnOnce(&Records) -> T) -> T {
        // A panic while holding the lock cannot leave a half-written record (every write is
        // a single insert or replace), so a poisoned lock is still consistent.
        f(&self
            .shared
            .records
            .read()
            .unwrap_or_else(PoisonError::into_inner))
    }

    fn write<T>(&self, f: impl FnOnce(&mut Records) -> T) -> T {
        f(&mut self
            .shared
            .records
            .write()
            .unwrap_or_else(PoisonError::into_inner))
    }
}

fn cas(map: &Records, id: KeyId, expected: u64) -> Result<(), StoreError> {
    match map.get(&id) {
        None => Err(StoreError::NotFound(id)),
        Some(current) if current.version() != expected => Err(StoreError::Conflict(id)),
        Some(_) => Ok(()),
    }
}

impl KeyStore for MemoryStore {
    fn insert(&self, record: KeyRecord) -> impl Future<Output = Result<(), StoreError>> + Send {
        ready(self.write(|map| {
            if map.contains_key(&record.id) {
                return Err(StoreError::Duplicate(record.id));
            }
            map.insert(record);
            Ok(())
        }))
    }

    fn insert_all(
        &self,
        records: Vec<KeyRecord>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        ready(self.write(|map| {
            let mut ids = std::collections::HashSet::with_capacity(records.len());
            for record in &records {
                if map.contains_key(&record.id) || !ids.insert(record.id) {
                    return Err(StoreError::Duplicate(record.id));
                }
            }
            for record in records {
                map.insert(record);
            }
            Ok(())
        }))
    }

    fn insert_capped(
        &self,
        record: KeyRecord,
        max_live: usize,
        now: OffsetDateTime,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        self.insert_within(record, LiveCaps::none().owner(max_live), now)
    }

    fn insert_within(
        &self,
        record: KeyRecord,
        caps: LiveCaps,
        now: OffsetDateTime,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        ready(self.write(|map| {
            if map.contains_key(&record.id) {
                return Err(StoreError::Duplicate(record.id));
            }
            within_caps(map, &record, caps, None, now)?;
            map.insert(record);
            Ok(())
        }))
    }

    fn get(
        &self,
        id: &KeyId,
    ) -> impl Future<Output = Result<Option<Arc<KeyRecord>>, StoreError>> + Send {
        // A hot key is served from its slot alone (see `Shared`); the rest through the table.
        let hash = self.shared.hasher.hash_one(id);
        if let Some(record) = self.shared.hot.current(hash, *id) {
            return ready(Ok(Some(record)));
        }
        ready(self.read(|map| map.expanded(id)))
    }

    fn update(
        &self,
        mut record: KeyRecord,
        expected_version: u64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        ready(self.write(|map| {
            cas(map, record.id, expected_version)?;
            record.version = expected_version + 1;
            map.insert(record);
            Ok(())
        }))
    }

    fn update_capped(
        &self,
        record: KeyRecord,
        expected_version: u64,
        max_live: usize,
        now: OffsetDateTime,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        self.update_within(
            record,
            expected_version,
            LiveCaps::none().owner(max_live),
            now,
        )
    }

    fn update_within(
        &self,
        mut record: KeyRecord,
        expected_version: u64,
        caps: LiveCaps,
        now: OffsetDateTime,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        ready(self.write(|map| {
            cas(map, record.id, expected_version)?;
            if record.counts_against_cap(now) {
                within_caps(map, &record, caps, Some(record.id), now)?;
            }
            record.version = expected_version + 1;
            map.insert(record);
            Ok(())
        }))
    }

    fn revoke_matching(
        &self,
        filter: &ListFilter,
    ) -> impl Future<Output = Result<BulkRevocation, StoreError>> + Send {
        // One write lock: atomic as a whole, unlike the default implementation.
        ready(Ok(self.write(|map| {
            let targets: Vec<KeyId> = map
                .order
                .iter()
                .filter_map(|id| map.get(id))
                .filter(|c| selects(filter, c) && c.status() != KeyStatus::Revoked)
                .map(Compact::id)
                .collect();
            for id in &targets {
                if let Some(record) = map.get_mut(id) {
                    record.set_status(KeyStatus::Revoked);
                    record.bump_version();
                }
                map.forget(id);
            }
            BulkRevocation::new(targets, Vec::new())
        })))
    }

    fn rotate(
        &self,
        mut old: KeyRecord,
        expected_version: u64,
        new: KeyRecord,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        ready(self.write(|map| {
            cas(map, old.id, expected_version)?;
            if map.contains_key(&new.id) {
                return Err(StoreError::Duplicate(new.id));
            }
            old.version = expected_version + 1;
            map.insert(old);
            map.insert(new);
            Ok(())
        }))
    }

    fn list(
        &self,
        filter: &ListFilter,
        page: Page,
    ) -> impl Future<Output = Result<Vec<KeyRecord>, StoreError>> + Send {
        let limit = page.limit.clamp(1, Page::MAX_LIMIT);
        ready(self.read(|map| {
            let range = match page.after {
                Some(after) => map.order.range((
                    core::ops::Bound::Excluded(after),
                    core::ops::Bound::Unbounded,
                )),
                None => map.order.range(..),
            };
            range
                .filter_map(|id| map.get(id))
                .filter(|c| selects(filter, c))
                .take(limit)
                .map(|c| c.expand().ok_or_else(|| lost_hash(c.id())))
                .collect()
        }))
    }

    fn consume(
        &self,
        id: &KeyId,
        cost: u64,
    ) -> impl Future<Output = Result<Consumed, StoreError>> + Send {
        ready(Ok(self.write(|map| {
            let Some(record) = map.get_mut(id) else {
                return Consumed::NotFound;
            };
            match record.remaining_uses() {
                None => Consumed::Unlimited,
                Some(left) if left < cost => Consumed::Exhausted,
                Some(left) => {
                    record.set_remaining_uses(left - cost);
                    // A consume is a write: a compare-and-set built on an older read loses.
                    record.bump_version();
                    map.forget(id);
                    Consumed::Remaining(left - cost)
                }
            }
        })))
    }

    fn touch(
        &self,
        id: &KeyId,
        at: OffsetDateTime,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        self.write(|map| {
            if let Some(record) = map.get_mut(id)
                && record.last_used_at().is_none_or(|prev| prev < at)
            {
                record.set_last_used_at(at);
                map.forget(id);
            }
        });
        ready(Ok(()))
    }

    fn delete(&self, id: &KeyId) -> impl Future<Output = Result<bool, StoreError>> + Send {
        ready(Ok(self.write(|map| map.remove(id))))
    }
}

#[cfg(all(test, feature = "testing"))]
mod tests {
    use super::*;
    use crate::testing::record;

    /// The memory store's futures are ready at once.
    fn block_on<F: Future>(f: F) -> F::Output {
        let mut f = core::pin::pin!(f);
        let mut cx = core::task::Context::from_waker(core::task::Waker::noop());
        match f.as_mut().poll(&mut cx) {
            core::task::Poll::Ready(v) => v,
            core::task::Poll::Pending => unreachable!("memory store futures are ready"),
        }
    }

    fn distinct_sets(store: &MemoryStore) -> usize {
        store.read(|map| map.scope_sets.sets.len())
    }

    #[test]
    fn equal_scope_sets_are_stored_once() {
        let store = MemoryStore::new();
        for i in 0..100 {
            let mut r = record(&format!("owner-{i}"));
            // Parsed separately for each key: equal sets, distinct allocations.
            r.scopes = "read comments tickets:write".parse().expect("scopes");
            block_on(store.insert(r)).expect("insert");
        }
        assert_eq!(store.len(), 100);
        assert_eq!(distinct_sets(&store), 1);
        let listed = block_on(store.list(&ListFilter::All, Page::first(100))).expect("list");
        assert!(listed.windows(2).all(|w| w[0].scopes == w[1].scopes));
        assert_eq!(listed[0].scopes.to_string(), "comments read tickets:write");
    }

    #[test]
    fn unused_scope_sets_are_dropped_as_keys_come_and_go() {
        let store = MemoryStore::new();
        for round in 0..20 {
            let mut ids = Vec::new();
            for i in 0..50 {
                let mut r = record("churn");
                r.scopes = format!("s{round}x{i}").parse().expect("scope");
                ids.push(r.id);
                block_on(store.insert(r)).expect("insert");
            }
            for id in &ids {
                assert!(block_on(store.delete(id)).expect("delete"));
            }
        }
        assert!(store.is_empty());
        // 1,000 distinct sets came and went; at most about twice those alive at a sweep stay.
        assert!(
            distinct_sets(&store) <= 2 * 50 + 64,
            "{}",
            distinct_sets(&store)
        );
    }

    #[test]
    fn replacing_a_record_keeps_one_entry_and_its_order() {
        let store = MemoryStore::new();
        let r = record("o");
        let id = r.id;
        block_on(store.insert(r.clone())).expect("insert");
        let mut changed = r;
        changed.name = "renamed".to_owned();
        block_on(store.update(changed, 0)).expect("update");
        assert_eq!(store.len(), 1);
        let got = block_on(store.get(&id)).expect("get").expect("present");
        assert_eq!((got.name.as_str(), got.version), ("renamed", 1));
        let listed = block_on(store.list(&ListFilter::All, Page::first(10))).expect("list");
        assert_eq!(listed.len(), 1);
        assert!(block_on(store.delete(&id)).expect("delete"));
        assert!(block_on(store.get(&id)).expect("get").is_none());
        assert!(
            block_on(store.list(&ListFilter::All, Page::first(10)))
                .expect("list")
                .is_empty()
        );
    }

    #[test]
    fn owner_index_follows_inserts_owner_changes_and_deletes() {
        let store = MemoryStore::new();
        let now = crate::testing::epoch();
        let mut ids = Vec::new();
        for _ in 0..3 {
            let r = record("alice");
            ids.push(r.id);
            block_on(store.insert(r)).expect("uncapped insert before the index exists");
        }
        let capped = |owner: &str, cap| block_on(store.insert_capped(record(owner), cap, now));
        assert!(matches!(
            capped("alice", 3),
            Err(StoreError::LimitReached { limit: 3 })
        ));
        // The index now exists: later changes must keep it exact.
        assert!(block_on(store.delete(&ids[0])).expect("delete"));
        capped("alice", 3).expect("a slot was freed");
        assert!(matches!(
            capped("alice", 3),
            Err(StoreError::LimitReached { .. })
        ));
        let moved = block_on(store.get(&ids[1])).expect("get").expect("present");
        let mut to_bob = KeyRecord::clone(&moved);
        to_bob.owner = "bob".to_owned();
        block_on(store.update(to_bob, moved.version)).expect("update");
        capped("alice", 3).expect("alice has one key fewer");
        assert!(matches!(
            capped("bob", 1),
            Err(StoreError::LimitReached { limit: 1 })
        ));
        capped("carol", 1).expect("a new owner");
        let alice = block_on(store.list(&ListFilter::Owner("alice".into()), Page::first(10)))
            .expect("list");
        assert_eq!(alice.len(), 3);
    }

    #[test]
    fn tenant_index_follows_inserts_tenant_changes_and_deletes() {
        let store = MemoryStore::new();
        let now = crate::testing::epoch();
        let caps = LiveCaps::none().tenant(2);
        let in_tenant = |owner: &str, tenant: &str| {
            let mut r = record(owner);
            r.tenant = Some(tenant.to_owned());
            r
        };
        let first = in_tenant("a", "t1");
        block_on(store.insert(first.clone())).expect("uncapped insert before the index exists");
        let capped = |r: KeyRecord| block_on(store.insert_within(r, caps, now));
        capped(in_tenant("b", "t1")).expect("the second key of t1 (builds the index)");
        assert!(matches!(
            capped(in_tenant("c", "t1")),
            Err(StoreError::TenantLimitReached { limit: 2 })
        ));
        // The index now exists: a delete frees a place.
        assert!(block_on(store.delete(&first.id)).expect("delete"));
        let third = in_tenant("c", "t1");
        capped(third.clone()).expect("a place was freed");
        // Moving a key to another tenant frees its place in the first, takes one there.
        let stored = block_on(store.get(&third.id))
            .expect("get")
            .expect("present");
        let mut moved = KeyRecord::clone(&stored);
        moved.tenant = Some("t2".to_owned());
        block_on(store.update(moved, stored.version)).expect("update");
        capped(in_tenant("d", "t1")).expect("t1 has one key fewer");
        capped(in_tenant("e", "t2")).expect("t2's second key");
        assert!(matches!(
            capped(in_tenant("f", "t2")),
            Err(StoreError::TenantLimitReached { limit: 2 })
        ));
        // Leaving every tenant: the key no longer counts anywhere.
        let stored = block_on(store.get(&third.id))
            .expect("get")
            .expect("present");
        let mut untenanted = KeyRecord::clone(&stored);
        untenanted.tenant = None;
        block_on(store.update(untenanted, stored.version)).expect("update");
        capped(in_tenant("f", "t2")).expect("t2 has a place again");
    }

    /// A record as the quickstart issues it: nothing in the boxed rest.
    fn plain(owner: &str, tenant: &str) -> KeyRecord {
        let mut r = record(owner);
        r.roles.clear();
        r.metadata = crate::record::Metadata::default();
        r.tenant = Some(tenant.to_owned());
        r.hash = crate::StoredHash::hmac(
            crate::hash::PepperId::new("k1").expect("pepper id"),
            [7; 32],
        );
        r
    }

    #[test]
    fn every_shape_of_record_comes_back_equal() {
        let store = MemoryStore::new();
        let mut shapes = vec![plain("a", "t"), record("b")];
        let mut argon = plain("c", "t");
        argon.hash = crate::StoredHash::argon2(
            crate::hash::Argon2Params::default(),
            vec![1; 16],
            vec![2; 32],
        );
        shapes.push(argon);
        let mut long_digest = plain("d", "t");
        long_digest.hash = crate::StoredHash::argon2(
            crate::hash::Argon2Params::default(),
            vec![1; 16],
            vec![3; 64],
        );
        shapes.push(long_digest);
        let mut busy = record("e");
        busy.tenant = None;
        busy.restrictions = crate::scope::Restrictions::only(["company:42"]).expect("restriction");
        busy.rotated_from = Some(crate::testing::random_id());
        busy.rotated_to = Some(crate::testing::random_id());
        busy.issued_by = Some(crate::testing::random_id());
        busy.remaining_uses = Some(9);
        busy.refill = Some(crate::record::QuotaRefill::daily(9).expect("refill"));
        busy.refilled_at = Some(crate::testing::epoch());
        busy.last_used_at = Some(
            crate::testing::epoch().to_offset(time::UtcOffset::from_hms(5, 30, 0).expect("offset")),
        );
        busy.status = crate::record::KeyStatus::Disabled;
        busy.version = 41;
        shapes.push(busy);
        for r in &shapes {
            block_on(store.insert(r.clone())).expect("insert");
        }
        for r in &shapes {
            let got = block_on(store.get(&r.id)).expect("get").expect("present");
            assert_eq!(*got, *r);
            // The hot copy, served on the second read, is the same record.
            let again = block_on(store.get(&r.id)).expect("get").expect("present");
            assert_eq!(*again, *r);
            assert_eq!(
                format!("{got:?}"),
                format!("{r:?}"),
                "offsets kept as given"
            );
        }
        let mut listed = block_on(store.list(&ListFilter::All, Page::first(10))).expect("list");
        listed.sort_by_key(|r| r.id);
        shapes.sort_by_key(|r| r.id);
        assert_eq!(listed, shapes);
    }

    #[test]
    fn a_hot_copy_never_outlives_a_change() {
        let store = MemoryStore::new();
        let mut r = plain("a", "t");
        r.remaining_uses = Some(3);
        let id = r.id;
        block_on(store.insert(r.clone())).expect("insert");
        let get = || block_on(store.get(&id)).expect("get").expect("present");
        assert_eq!(get().last_used_at, None);
        let at = crate::testing::epoch() + time::Duration::hours(1);
        block_on(store.touch(&id, at)).expect("touch");
        assert_eq!(
            get().last_used_at,
            Some(at),
            "touch does not bump the version"
        );
        assert!(matches!(
            block_on(store.consume(&id, 1)).expect("consume"),
            Consumed::Remaining(2)
        ));
        assert_eq!(get().remaining_uses, Some(2));
        assert_eq!(get().version, 1, "a consume is a write");
        let mut revoked = KeyRecord::clone(&get());
        revoked.status = crate::record::KeyStatus::Revoked;
        block_on(store.update(revoked, 1)).expect("update");
        assert_eq!(get().status, crate::record::KeyStatus::Revoked);
        assert!(block_on(store.delete(&id)).expect("delete"));
        assert!(block_on(store.get(&id)).expect("get").is_none());
        let mut again = r;
        again.name = "reissued".to_owned();
        block_on(store.insert(again)).expect("insert");
        assert_eq!(get().name, "reissued");
    }

    #[test]
    fn many_keys_through_the_bounded_hot_set() {
        let store = MemoryStore::new();
        let records: Vec<_> = (0..3 * HOT_SLOTS)
            .map(|i| plain(&format!("o{i}"), &format!("t{}", i % 7)))
            .collect();
        for r in &records {
            block_on(store.insert(r.clone())).expect("insert");
        }
        for _ in 0..2 {
            for r in &records {
                let got = block_on(store.get(&r.id)).expect("get").expect("present");
                assert_eq!(*got, *r);
            }
        }
        let held = store.read(|map| {
            map.hot.slots.get().map_or(0, |slots| {
                slots
                    .iter()
                    .filter(|s| s.lock().is_ok_and(|s| s.is_some()))
                    .count()
            })
        });
        assert!(held <= HOT_SLOTS, "{held}");
        assert_eq!(
            store.read(|map| map.contexts.len()),
            7,
            "one context per tenant"
        );
    }

    #[test]
    fn readers_of_a_hot_key_never_go_back_in_time() {
        let store = MemoryStore::new();
        let r = plain("a", "t");
        let id = r.id;
        block_on(store.insert(r)).expect("insert");
        let stop = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|s| {
            for _ in 0..3 {
                s.spawn(|| {
                    let mut seen = 0;
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        let got = block_on(store.get(&id)).expect("get").expect("present");
                        assert!(got.version >= seen, "{} after {seen}", got.version);
                        seen = got.version;
                    }
                });
            }
            for version in 0..2_000 {
                let current = block_on(store.get(&id)).expect("get").expect("present");
                assert_eq!(current.version, version, "a finished write is seen at once");
                let mut next = KeyRecord::clone(&current);
                next.name = format!("v{}", version + 1);
                block_on(store.update(next, version)).expect("update");
            }
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
        });
        let last = block_on(store.get(&id)).expect("get").expect("present");
        assert_eq!((last.version, last.name.as_str()), (2_000, "v2000"));
    }
}
