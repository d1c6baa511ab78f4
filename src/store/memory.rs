//! The in-memory store: the embedded default, safe under concurrent use.

use core::future::{Future, ready};
use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, PoisonError, RwLock};

use time::OffsetDateTime;

use super::{Consumed, KeyStore, ListFilter, Page, StoreError};
use crate::key_id::KeyId;
use crate::record::KeyRecord;

/// Keeps records in memory behind one read-write lock: reads (every verification) run in
/// parallel, writes are atomic. Lookups go through a hash map (one or two cache misses per
/// verification, however many keys); an ordered index of ids serves paged listings. Clones share the same records. Everything is lost when the
/// process exits: use it for tests, examples and single-process services that re-issue keys
/// at start; use the SQLite or PostgreSQL store otherwise.
#[derive(Debug, Clone, Default)]
pub struct MemoryStore {
    records: Arc<RwLock<Records>>,
}

#[derive(Debug, Default)]
struct Records {
    by_id: HashMap<KeyId, Arc<KeyRecord>>,
    order: BTreeSet<KeyId>,
}

impl Records {
    fn get(&self, id: &KeyId) -> Option<&Arc<KeyRecord>> {
        self.by_id.get(id)
    }

    fn contains_key(&self, id: &KeyId) -> bool {
        self.by_id.contains_key(id)
    }

    fn insert(&mut self, id: KeyId, record: Arc<KeyRecord>) {
        self.order.insert(id);
        self.by_id.insert(id, record);
    }

    fn get_mut(&mut self, id: &KeyId) -> Option<&mut Arc<KeyRecord>> {
        self.by_id.get_mut(id)
    }

    fn remove(&mut self, id: &KeyId) -> Option<Arc<KeyRecord>> {
        self.order.remove(id);
        self.by_id.remove(id)
    }

    fn values(&self) -> impl Iterator<Item = &Arc<KeyRecord>> {
        self.by_id.values()
    }

    fn len(&self) -> usize {
        self.by_id.len()
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
            map.insert(record.id, Arc::new(record));
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
                .values()
                .filter(|r| r.owner == record.owner && r.counts_against_cap(now))
                .count();
            if live >= max_live {
                return Err(StoreError::LimitReached { limit: max_live });
            }
            map.insert(record.id, Arc::new(record));
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
            map.insert(record.id, Arc::new(record));
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
            map.insert(old.id, Arc::new(old));
            map.insert(new.id, Arc::new(new));
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
                .filter_map(|id| map.by_id.get(id))
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
