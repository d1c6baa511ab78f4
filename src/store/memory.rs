//! The in-memory store: the embedded default, safe under concurrent use.

use core::future::{Future, ready};
use core::hash::BuildHasher;
use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, PoisonError, RwLock};

use hashbrown::{DefaultHashBuilder, HashTable};
use time::OffsetDateTime;

use super::{Consumed, KeyStore, ListFilter, Page, StoreError};
use crate::key_id::KeyId;
use crate::record::KeyRecord;
use crate::scope::ScopeSet;

/// Keeps records in memory behind one read-write lock: reads (every verification) run in
/// parallel, writes are atomic. Clones share the same records. Everything is lost when the
/// process exits: use it for tests, examples and single-process services that re-issue keys
/// at start; use the SQLite or PostgreSQL store otherwise.
///
/// Layout, for services that hold many keys: records are found through a hash table of
/// pointers (9 bytes per slot, hashed with a per-store random seed, so ids chosen by a
/// client cannot aim at one slot), an ordered index of ids serves paged listings, and each
/// distinct scope set is stored once however many keys hold it. A verification touches the
/// table slot and the record; `BENCHMARKS.md` has the bytes per key at 1,000,000 keys.
/// [`KeyStore::insert_capped`] counts the owner's keys through an owner index, built by the
/// first capped insert, so stores that never cap keys do not pay for it.
#[derive(Debug, Clone, Default)]
pub struct MemoryStore {
    records: Arc<RwLock<Records>>,
}

#[derive(Default)]
struct Records {
    by_id: HashTable<Arc<KeyRecord>>,
    hasher: DefaultHashBuilder,
    order: BTreeSet<KeyId>,
    scope_sets: ScopeInterner,
    /// Ids by owner, for the per-owner cap: built by the first capped insert (one scan),
    /// kept up to date from then on, so stores that never cap pay nothing for it.
    owners: Option<HashMap<String, Vec<KeyId>>>,
}

impl core::fmt::Debug for Records {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Records")
            .field("len", &self.by_id.len())
            .field("distinct_scope_sets", &self.scope_sets.sets.len())
            .finish_non_exhaustive()
    }
}

impl Records {
    fn hash(&self, id: &KeyId) -> u64 {
        self.hasher.hash_one(id)
    }

    fn get(&self, id: &KeyId) -> Option<&Arc<KeyRecord>> {
        self.by_id.find(self.hash(id), |r| r.id == *id)
    }

    fn contains_key(&self, id: &KeyId) -> bool {
        self.get(id).is_some()
    }

    fn get_mut(&mut self, id: &KeyId) -> Option<&mut Arc<KeyRecord>> {
        let hash = self.hash(id);
        self.by_id.find_mut(hash, |r| r.id == *id)
    }

    /// Inserts or replaces the record with `record.id`.
    fn insert(&mut self, mut record: KeyRecord) {
        record.scopes = self.scope_sets.intern(record.scopes);
        let id = record.id;
        let hash = self.hash(&id);
        let hasher = &self.hasher;
        let new_owner = record.owner.clone();
        let old_owner = match self
            .by_id
            .entry(hash, |r| r.id == id, |r| hasher.hash_one(r.id))
        {
            hashbrown::hash_table::Entry::Occupied(mut slot) => {
                let old = core::mem::replace(slot.get_mut(), Arc::new(record));
                Some(old.owner.clone())
            }
            hashbrown::hash_table::Entry::Vacant(slot) => {
                slot.insert(Arc::new(record));
                self.order.insert(id);
                None
            }
        };
        if let Some(owners) = &mut self.owners {
            if old_owner.as_ref() != Some(&new_owner) {
                if let Some(old) = old_owner {
                    unlink(owners, &old, id);
                }
                owners.entry(new_owner).or_default().push(id);
            }
        }
    }

    fn remove(&mut self, id: &KeyId) -> Option<Arc<KeyRecord>> {
        let hash = self.hash(id);
        let (record, _) = self.by_id.find_entry(hash, |r| r.id == *id).ok()?.remove();
        self.order.remove(id);
        if let Some(owners) = &mut self.owners {
            unlink(owners, &record.owner, *id);
        }
        Some(record)
    }

    /// The owner's records, through the owner index (built here on first use).
    fn of_owner(&mut self, owner: &str) -> impl Iterator<Item = &Arc<KeyRecord>> {
        if self.owners.is_none() {
            let mut owners: HashMap<String, Vec<KeyId>> = HashMap::new();
            for r in self.by_id.iter() {
                owners.entry(r.owner.clone()).or_default().push(r.id);
            }
            self.owners = Some(owners);
        }
        let ids = self
            .owners
            .as_ref()
            .and_then(|owners| owners.get(owner))
            .map_or(&[][..], Vec::as_slice);
        ids.iter().filter_map(|id| self.get(id))
    }

    fn len(&self) -> usize {
        self.by_id.len()
    }
}

/// Removes `id` from `owner`'s ids, and the owner when it has none left.
fn unlink(owners: &mut HashMap<String, Vec<KeyId>>, owner: &str, id: KeyId) {
    if let Some(ids) = owners.get_mut(owner) {
        ids.retain(|i| *i != id);
        if ids.is_empty() {
            owners.remove(owner);
        }
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
        f(&self.records.read().unwrap_or_else(PoisonError::into_inner))
    }

    fn write<T>(&self, f: impl FnOnce(&mut Records) -> T) -> T {
        f(&mut self.records.write().unwrap_or_else(PoisonError::into_inner))
    }
}

fn cas(map: &Records, id: KeyId, expected: u64) -> Result<(), StoreError> {
    match map.get(&id) {
        None => Err(StoreError::NotFound(id)),
        Some(current) if current.version != expected => Err(StoreError::Conflict(id)),
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

    fn insert_capped(
        &self,
        record: KeyRecord,
        max_live: usize,
        now: OffsetDateTime,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        ready(self.write(|map| {
            if map.contains_key(&record.id) {
                return Err(StoreError::Duplicate(record.id));
            }
            let live = map
                .of_owner(&record.owner)
                .filter(|r| r.counts_against_cap(now))
                .count();
            if live >= max_live {
                return Err(StoreError::LimitReached { limit: max_live });
            }
            map.insert(record);
            Ok(())
        }))
    }

    fn get(
        &self,
        id: &KeyId,
    ) -> impl Future<Output = Result<Option<Arc<KeyRecord>>, StoreError>> + Send {
        ready(Ok(self.read(|map| map.get(id).cloned())))
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
        ready(Ok(self.read(|map| {
            let range = match page.after {
                Some(after) => map.order.range((
                    core::ops::Bound::Excluded(after),
                    core::ops::Bound::Unbounded,
                )),
                None => map.order.range(..),
            };
            range
                .filter_map(|id| map.get(id))
                .filter(|r| filter.matches(r))
                .take(limit)
                .map(|r| KeyRecord::clone(r))
                .collect()
        })))
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
            match record.remaining_uses {
                None => Consumed::Unlimited,
                Some(left) if left < cost => Consumed::Exhausted,
                Some(left) => {
                    Arc::make_mut(record).remaining_uses = Some(left - cost);
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
            if let Some(record) = map.get_mut(id) {
                if record.last_used_at.is_none_or(|prev| prev < at) {
                    Arc::make_mut(record).last_used_at = Some(at);
                }
            }
        });
        ready(Ok(()))
    }

    fn delete(&self, id: &KeyId) -> impl Future<Output = Result<bool, StoreError>> + Send {
        ready(Ok(self.write(|map| map.remove(id).is_some())))
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
}
