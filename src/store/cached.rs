//! [`CachedStore`]: a cache of [`KeyStore::get`] in front of any store, fed by an
//! invalidation stream ([`InvalidationStream`] driving a [`CacheFeed`]) and bounded in
//! staleness. The guarantee, the stream's obligations and the memory cost are documented on
//! [`CachedStore`], where the public API shows them.

use core::fmt;
use core::future::Future;
use core::hash::Hash;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock, RwLockWriteGuard};

use hashbrown::HashMap;
use time::OffsetDateTime;

use super::{BulkRevocation, Consumed, KeyStore, ListFilter, LiveCaps, Page, StoreError};
use crate::clock::{Clock, SystemClock};
use crate::key::id::KeyId;
use crate::record::KeyRecord;

/// How many of the latest single-id invalidations are remembered, to tell whether one of
/// them hit a read that was in flight. A read overtaken by more invalidations than this is
/// not cached, whatever ids they named.
const RECENT_INVALIDATIONS: usize = 1024;

/// Default for [`CachedStoreBuilder::max_entries`].
const DEFAULT_MAX_ENTRIES: usize = 100_000;

/// Default for [`CachedStoreBuilder::max_negative`].
const DEFAULT_MAX_NEGATIVE: usize = 10_000;

/// A cache in front of any [`KeyStore`], kept honest by an invalidation stream and an
/// enforced staleness bound.
///
/// A store shared by many service instances (PostgreSQL, say) costs a round trip on every
/// verification. [`CachedStore`] answers [`KeyStore::get`] from memory instead, and stays
/// correct because two things bound how old an answer can be:
///
/// - an **invalidation stream** ([`InvalidationStream`], driving a [`CacheFeed`]) tells the
///   cache which records changed anywhere, so it drops them;
/// - a **staleness bound** `B`, set by the application: the cache serves from memory only
///   while the stream proved itself live ([`CacheFeed::alive`]) less than `B` ago. When the
///   stream goes quiet (a broken connection, a stuck consumer), every read goes to the inner
///   store once `B` has passed since the last proof, until the stream proves itself again.
///
/// # The guarantee
/// **A write made anywhere is refused everywhere within `B` even if the stream breaks, and as
/// soon as its notification arrives when the stream works.** Precisely: a record served
/// from the cache is the inner store's current record, or an older one that was overwritten
/// less than `B` before now, counting from the moment the write's notification entered the
/// stream (for a notification sent by the database in the writing transaction, the commit),
/// provided that:
///
/// - the stream keeps the obligations of [`InvalidationStream`]: it delivers notifications
///   in the order they were sent, calls [`CacheFeed::invalidate_all`] on every (re)connect
///   once its subscription is in place, and calls [`CacheFeed::alive`] only when a heartbeat
///   that travelled the same path as the notifications came back (so every notification
///   sent before the heartbeat has been delivered);
/// - every write to the inner store, by any instance or tool, sends a notification (a
///   database trigger is the surest way); a write's notification is sent once the write is
///   visible to readers;
/// - the heartbeat's round trip is counted: [`CacheFeed::alive`] dates the proof at the
///   moment it is called, so a write whose notification was sent while the heartbeat was in
///   flight can be served up to `B` plus that round trip. A stream that knows when it sent
///   the heartbeat (by this cache's clock) calls [`CacheFeed::alive_since`] instead, and the
///   bound is exactly `B`.
///
/// Time is read from a [`Clock`] (the system clock unless
/// [`CachedStoreBuilder::with_clock`] says otherwise), and the bound is measured on it. A
/// proof dated in the future of the clock (the clock was stepped back since) counts as no
/// proof, but the cache cannot see a step it did not read the clock across: a wall clock
/// stepped back by `d` lengthens the bound by up to `d` for the writes made around the step
/// (NTP normally slews the clock rather than stepping it).
///
/// # What is cached, and what it costs
/// Only [`KeyStore::get`] is answered from memory: found records (at most
/// [`CachedStoreBuilder::max_entries`], by default 100,000) and absent ids (at most
/// [`CachedStoreBuilder::max_negative`], by default 10,000, kept apart so that a client
/// trying random ids cannot push real records out). The oldest cached entry is evicted
/// first. [`KeyStore::list`] is never cached.
///
/// Each cached record costs 104 bytes of bookkeeping (a 56-byte hash table slot: its id, a
/// pointer and a counter; a 48-byte eviction queue slot: its id and the counter), up to
/// about twice that while the table and the queue have room to grow, plus the record
/// itself, shared with the caller through an [`Arc<KeyRecord>`]: a few hundred bytes with
/// its strings and scopes. An absent id costs 96 bytes, up to about twice that.
///
/// Errors of the inner store are never cached. A read the cache does not answer (a miss,
/// or any read once `B` has passed) returns the inner store's answer, errors included, so
/// it fails closed as the inner store does; while the stream is live, a cached record is
/// served even when the inner store is down.
///
/// Every write through the cache ([`KeyStore::insert`], [`KeyStore::update`],
/// [`KeyStore::rotate`], [`KeyStore::consume`], [`KeyStore::delete`],
/// [`KeyStore::revoke_matching`] and the capped variants) is forwarded to the inner store,
/// whose own atomic versions are used, and drops the ids it wrote from this cache when it
/// returns (also on an error, or when the call is cancelled): this instance reads its own
/// writes at once. The cache does not tell other instances: their notifications come from
/// the stream, which must see this instance's writes too.
///
/// A last use ([`KeyStore::touch`], [`KeyStore::touch_many`]) is different: it moves the
/// cached copy's `last_used_at` instead of dropping it (nothing verification decides on
/// depends on it, and the PostgreSQL triggers do not notify it), and is written to the
/// inner store at once, or, with [`CachedStoreBuilder::write_behind`], collected and
/// written in one statement by [`CachedStore::flush_touches`], so that hot verifications
/// write nothing. A crash loses the last uses collected since the last flush, never a
/// status change.
///
/// A read that misses the cache goes to the inner store; its answer is kept only if no
/// invalidation of that id (and no [`CacheFeed::invalidate_all`]) arrived while the read was
/// in flight, so a notification that overtakes a read of the old record does not leave the
/// old record cached.
///
/// Clones share the same cache. It implements [`KeyStore`] by forwarding every method to
/// `S` (including those with a default implementation, so `S`'s own atomic versions are
/// used), and [`AuditStore`](crate::audit::AuditStore) and
/// [`NoticeStore`](crate::manager::NoticeStore) when `S` does.
///
/// ```
/// use core::time::Duration;
/// use keyward::clock::FakeClock;
/// use keyward::record::KeyStatus;
/// use keyward::store::CachedStore;
/// use keyward::{Hasher, IssueRequest, KeyFormat, KeyManager, KeyRecord, KeyStore};
/// use keyward::{MemoryStore, Pepper, RequestContext};
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let clock = FakeClock::new(time::macros::datetime!(2026-01-01 0:00 UTC));
/// // The shared database (other instances write to it directly).
/// let shared = MemoryStore::new();
/// let (cache, feed) = CachedStore::builder(shared.clone(), Duration::from_secs(5))
///     .with_clock(clock.clone())
///     .build();
/// feed.alive(); // the invalidation stream proved itself live
///
/// let hasher = Hasher::fast(Pepper::random("k1")?);
/// let manager = KeyManager::new(cache.clone(), KeyFormat::new(["tak"])?, hasher)
///     .with_clock(clock.clone());
/// let issued = manager.issue(IssueRequest::new("ci", "user_1"), &RequestContext::new()).await?;
/// let id = issued.record.id;
/// let status = |r: Option<std::sync::Arc<KeyRecord>>| r.map(|r| r.status);
/// assert_eq!(status(cache.get(&id).await?), Some(KeyStatus::Active)); // now cached
///
/// // Another instance disables the key: a write on the shared store, not through this cache.
/// let mut record = KeyRecord::clone(&shared.get(&id).await?.expect("issued"));
/// let version = record.version;
/// record.status = KeyStatus::Disabled;
/// shared.update(record.clone(), version).await?;
/// assert_eq!(status(cache.get(&id).await?), Some(KeyStatus::Active)); // not seen yet
/// feed.invalidate(&id); // its notification arrives
/// assert_eq!(status(cache.get(&id).await?), Some(KeyStatus::Disabled));
///
/// // It revokes the key, and the stream is silent: the write is seen once B has passed.
/// record.status = KeyStatus::Revoked;
/// shared.update(record, version + 1).await?;
/// clock.advance(time::Duration::seconds(4));
/// assert_eq!(status(cache.get(&id).await?), Some(KeyStatus::Disabled)); // within B
/// clock.advance(time::Duration::seconds(1));
/// assert_eq!(status(cache.get(&id).await?), Some(KeyStatus::Revoked)); // B passed
/// # Ok(()) }
/// ```
pub struct CachedStore<S> {
    inner: S,
    shared: Arc<Shared>,
}

/// Builds a [`CachedStore`] and its [`CacheFeed`]: from [`CachedStore::builder`].
pub struct CachedStoreBuilder<S> {
    inner: S,
    staleness: core::time::Duration,
    clock: Arc<dyn Clock>,
    max_entries: usize,
    max_negative: usize,
    write_behind: Option<usize>,
}

/// The handle an invalidation stream drives (see [`InvalidationStream`]): it tells the
/// [`CachedStore`] it came with which records changed, when it may have missed changes, and
/// when it was last known to be live. Clones drive the same cache.
#[derive(Clone)]
pub struct CacheFeed {
    shared: Arc<Shared>,
}

/// A source of invalidations for a [`CachedStore`]: a database's notifications, a Redis
/// pub/sub channel, a message bus. [`run`](Self::run) consumes it and drives the
/// [`CacheFeed`] until the application stops it (spawn it on the application's runtime;
/// keyward spawns nothing).
///
/// # Obligations
/// The cache is only as fresh as its stream is honest. An implementation must:
///
/// 1. **Invalidate on every change**: call [`CacheFeed::invalidate`] with the id of every
///    record inserted, changed or deleted, by any writer, after the change is visible to
///    readers of the inner store. (So the inner store must read where the writes are: a
///    store reading from a lagging replica could read, after the notification, the record
///    from before it, and the cache would keep it.)
/// 2. **Deliver in order**: notifications reach the feed in the order they were sent. A
///    path that can drop a notification and still deliver later ones (without noticing)
///    cannot carry a cache.
/// 3. **Start over on every (re)connect**: once the subscription is in place (so nothing
///    written from then on is missed), call [`CacheFeed::invalidate_all`], because
///    notifications sent while it was not connected are lost. Call it before the first
///    [`CacheFeed::alive`] of the connection.
/// 4. **Prove liveness through the same path**: call [`CacheFeed::alive`] (or
///    [`CacheFeed::alive_since`]) only when a heartbeat this instance sent through the path
///    the notifications take has come back, so every notification sent before the heartbeat
///    has been delivered. Send heartbeats well within the staleness bound (a third of it,
///    say), or the cache will keep falling back to the inner store.
///
/// On an error the implementation reconnects (then keeps rule 3) or returns; it never
/// calls `alive` on a path it cannot vouch for. While no proof comes, the cache reads
/// through once the staleness bound has passed: a broken stream costs speed, never
/// correctness beyond the bound.
///
/// ```
/// use keyward::store::{CacheFeed, InvalidationStream};
/// use keyward::KeyId;
///
/// /// What a bus delivers, in order, on one subscription.
/// enum Message {
///     Changed(KeyId),
///     Heartbeat,
/// }
///
/// /// A stream over an in-process channel (a real one wraps its client's subscription).
/// struct Channel(tokio::sync::mpsc::Receiver<Message>);
///
/// impl InvalidationStream for Channel {
///     async fn run(mut self, feed: CacheFeed) {
///         feed.invalidate_all(); // subscribed: anything before is unknown
///         while let Some(message) = self.0.recv().await {
///             match message {
///                 Message::Changed(id) => feed.invalidate(&id),
///                 Message::Heartbeat => feed.alive(),
///             }
///         }
///     }
/// }
/// # fn main() {}
/// ```
pub trait InvalidationStream: Send + 'static {
    /// Drives `feed` until the stream ends (or forever), keeping the obligations above.
    fn run(self, feed: CacheFeed) -> impl Future<Output = ()> + Send;
}

/// The state the cache and its feed share.
struct Shared {
    clock: Arc<dyn Clock>,
    /// The staleness bound as given.
    bound: core::time::Duration,
    /// The staleness bound; `None` when too large to represent (never stale).
    staleness: Option<time::Duration>,
    state: RwLock<State>,
    /// Last-use times not yet written, when writing behind: at most `max` keys.
    behind: Option<Behind>,
}

/// The last-use times collected by a write-behind cache, until
/// [`CachedStore::flush_touches`] writes them.
struct Behind {
    max: usize,
    pending: Mutex<HashMap<KeyId, OffsetDateTime>>,
}

impl Behind {
    fn lock(&self) -> MutexGuard<'_, HashMap<KeyId, OffsetDateTime>> {
        // No code holding the lock panics; a poisoned lock still holds a consistent map.
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Puts back times a flush could not write, keeping any newer time collected since.
    fn restore(&self, batch: Vec<(KeyId, OffsetDateTime)>) {
        let mut pending = self.lock();
        for (id, at) in batch {
            keep_latest(&mut pending, id, at);
        }
    }
}

/// Records `at` as `id`'s last use unless a later one is recorded.
fn keep_latest(pending: &mut HashMap<KeyId, OffsetDateTime>, id: KeyId, at: OffsetDateTime) {
    let slot = pending.entry(id).or_insert(at);
    if *slot < at {
        *slot = at;
    }
}

/// A batch being written by a flush: put back if the flush fails or is cancelled.
struct Flushing<'a> {
    behind: &'a Behind,
    batch: Option<Vec<(KeyId, OffsetDateTime)>>,
}

impl Drop for Flushing<'_> {
    fn drop(&mut self) {
        if let Some(batch) = self.batch.take() {
            self.behind.restore(batch);
        }
    }
}

/// What a read through the inner store remembers from its start, to tell at its end
/// whether an invalidation overtook it.
#[derive(Clone, Copy)]
struct ReadStart {
    generation: u64,
    invalidations: u64,
}

struct State {
    /// Incremented by every [`CacheFeed::invalidate_all`] (and local wholesale drop).
    generation: u64,
    /// Single-id invalidations so far (never reset).
    invalidations: u64,
    /// The latest single-id invalidations, numbered: the front is the oldest remembered.
    recent: VecDeque<(u64, KeyId)>,
    /// When the stream last proved itself live.
    alive_at: Option<OffsetDateTime>,
    /// Found records.
    records: Bounded<Arc<KeyRecord>>,
    /// Ids known to be absent.
    absent: Bounded<()>,
}

impl State {
    /// Whether the stream's last proof of liveness is within `staleness` of `now`.
    fn fresh(&self, now: OffsetDateTime, staleness: Option<time::Duration>) -> bool {
        let Some(alive_at) = self.alive_at else {
            return false;
        };
        // A proof dated after `now` (the clock went back) is no proof.
        alive_at <= now && staleness.is_none_or(|bound| now - alive_at < bound)
    }

    fn start(&self) -> ReadStart {
        ReadStart {
            generation: self.generation,
            invalidations: self.invalidations,
        }
    }

    /// Whether no invalidation of `id` (or of everything) arrived since `start`.
    fn untouched_since(&self, start: ReadStart, id: &KeyId) -> bool {
        if self.generation != start.generation {
            return false;
        }
        if self.invalidations == start.invalidations {
            return true;
        }
        // `recent` holds consecutive numbers ending at `self.invalidations`: it covers the
        // read only if it reaches back to the first invalidation after its start.
        let covered = self
            .recent
            .front()
            .is_some_and(|&(first, _)| first <= start.invalidations.saturating_add(1));
        covered
            && !self
                .recent
                .iter()
                .rev()
                .take_while(|&&(n, _)| n > start.invalidations)
                .any(|(_, hit)| hit == id)
    }

    fn invalidate(&mut self, id: &KeyId) {
        self.invalidations = self.invalidations.wrapping_add(1);
        if self.recent.len() >= RECENT_INVALIDATIONS {
            self.recent.pop_front();
        }
        self.recent.push_back((self.invalidations, *id));
        self.records.remove(id);
        self.absent.remove(id);
    }

    fn invalidate_all(&mut self) {
        self.generation = self.generation.wrapping_add(1);
        self.recent.clear();
        self.records.clear();
        self.absent.clear();
    }
}

/// A map holding at most `max` entries, evicting the oldest inserted first.
///
/// Each entry carries a stamp; the queue lists (id, stamp) in insertion order, including
/// entries removed or replaced since (their stamp no longer matches the map's), which are
/// skipped when they reach the front and swept out when the queue grows past twice `max`,
/// so every operation is O(1) amortized.
struct Bounded<V> {
    max: usize,
    map: HashMap<KeyId, (V, u64)>,
    order: VecDeque<(KeyId, u64)>,
    next_stamp: u64,
}

impl<V> Bounded<V> {
    fn new(max: usize) -> Self {
        Self {
            max,
            map: HashMap::default(),
            order: VecDeque::new(),
            next_stamp: 0,
        }
    }

    fn len(&self) -> usize {
        self.map.len()
    }

    fn get(&self, id: &KeyId) -> Option<&V> {
        self.map.get(id).map(|(value, _)| value)
    }

    fn insert(&mut self, id: KeyId, value: V) {
        if self.max == 0 {
            return;
        }
        let stamp = self.next_stamp;
        self.next_stamp = self.next_stamp.wrapping_add(1);
        self.map.insert(id, (value, stamp));
        self.order.push_back((id, stamp));
        while self.map.len() > self.max {
            let Some((old, old_stamp)) = self.order.pop_front() else {
                // Unreachable: every entry of the map has its stamp in the queue.
                self.map.clear();
                break;
            };
            remove_if_stamped(&mut self.map, &old, old_stamp);
        }
        if self.order.len() > self.max.saturating_mul(2).max(16) {
            let map = &self.map;
            self.order
                .retain(|(id, stamp)| map.get(id).is_some_and(|(_, s)| s == stamp));
        }
    }

    fn get_mut(&mut self, id: &KeyId) -> Option<&mut V> {
        self.map.get_mut(id).map(|(value, _)| value)
    }

    fn remove(&mut self, id: &KeyId) {
        self.map.remove(id);
    }

    fn clear(&mut self) {
        self.map.clear();
        self.order.clear();
    }
}

/// Removes `id` from `map` if its entry still carries `stamp`.
fn remove_if_stamped<K: Hash + Eq, V>(map: &mut HashMap<K, (V, u64)>, id: &K, stamp: u64) {
    if map.get(id).is_some_and(|(_, s)| *s == stamp) {
        map.remove(id);
    }
}

impl Shared {
    fn write(&self) -> RwLockWriteGuard<'_, State> {
        // No code holding the lock panics; a poisoned lock still holds a consistent state.
        self.state.write().unwrap_or_else(PoisonError::into_inner)
    }

    fn invalidate(&self, id: &KeyId) {
        self.write().invalidate(id);
    }

    fn invalidate_all(&self) {
        self.write().invalidate_all();
    }

    /// Moves the cached copy of `id`'s record (if any) to last use `at`, so that the
    /// manager's once-a-minute last-use write sees its own touch.
    fn touched(&self, id: &KeyId, at: OffsetDateTime) {
        let mut state = self.write();
        if let Some(record) = state.records.get_mut(id)
            && record.last_used_at.is_none_or(|prev| prev < at)
        {
            let mut updated = KeyRecord::clone(record);
            updated.last_used_at = Some(at);
            *record = Arc::new(updated);
        }
    }
}

impl<S: KeyStore> CachedStore<S> {
    /// A cache in front of `inner` serving records while its stream proved itself live
    /// within `staleness`, on the system clock with the default bounds, and the feed its
    /// invalidation stream drives. Until the feed's first [`CacheFeed::alive`], every read
    /// goes to `inner`.
    ///
    /// `staleness` is the longest a write made elsewhere may go unseen when the stream
    /// breaks: a few seconds for revocations to take effect promptly. Zero turns the cache
    /// off (every read goes to `inner`).
    #[must_use]
    pub fn new(inner: S, staleness: core::time::Duration) -> (Self, CacheFeed) {
        Self::builder(inner, staleness).build()
    }

    /// A builder for a cache in front of `inner` with the staleness bound `staleness` (see
    /// [`CachedStore::new`]), to set its clock and bounds.
    #[must_use]
    pub fn builder(inner: S, staleness: core::time::Duration) -> CachedStoreBuilder<S> {
        CachedStoreBuilder {
            inner,
            staleness,
            clock: Arc::new(SystemClock),
            max_entries: DEFAULT_MAX_ENTRIES,
            max_negative: DEFAULT_MAX_NEGATIVE,
            write_behind: None,
        }
    }
}

impl<S> CachedStore<S> {
    /// The store behind the cache. Writes made on it directly are not seen by this cache
    /// until their notification arrives or the staleness bound passes.
    pub fn inner(&self) -> &S {
        &self.inner
    }

    /// A new handle on this cache's feed (the same as the one [`CachedStore::new`]
    /// returned).
    #[must_use]
    pub fn feed(&self) -> CacheFeed {
        CacheFeed {
            shared: Arc::clone(&self.shared),
        }
    }

    /// Whether reads are answered from memory now: the stream proved itself live within
    /// the staleness bound. For health checks and metrics.
    #[must_use]
    pub fn is_fresh(&self) -> bool {
        let now = self.shared.clock.now();
        self.shared
            .state
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .fresh(now, self.shared.staleness)
    }

    /// How many found records are cached (at most the builder's `max_entries`).
    #[must_use]
    pub fn cached_records(&self) -> usize {
        self.shared
            .state
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .records
            .len()
    }

    /// How many absent ids are cached (at most the builder's `max_negative`).
    #[must_use]
    pub fn cached_absent(&self) -> usize {
        self.shared
            .state
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .absent
            .len()
    }

    /// How many keys have a last-use time waiting for [`CachedStore::flush_touches`]
    /// (always 0 without [`CachedStoreBuilder::write_behind`]).
    #[must_use]
    pub fn pending_touches(&self) -> usize {
        self.shared.behind.as_ref().map_or(0, |b| b.lock().len())
    }
}

impl<S: KeyStore> CachedStore<S> {
    /// Reads `id` from the inner store (past its own cache too when `fresh`), and keeps
    /// the answer if no invalidation of it arrived since `start` (taken before the read).
    async fn read_through(
        &self,
        id: &KeyId,
        start: ReadStart,
        fresh: bool,
    ) -> Result<Option<Arc<KeyRecord>>, StoreError> {
        let found = if fresh {
            self.inner.get_fresh(id).await?
        } else {
            self.inner.get(id).await?
        };
        let mut state = self.shared.write();
        if state.untouched_since(start, id) {
            match &found {
                Some(record) => {
                    state.absent.remove(id);
                    state.records.insert(*id, Arc::clone(record));
                }
                None => {
                    state.records.remove(id);
                    state.absent.insert(*id, ());
                }
            }
        }
        Ok(found)
    }

    /// Writes the last-use times collected by a write-behind cache
    /// ([`CachedStoreBuilder::write_behind`]) with one [`KeyStore::touch_many`] (one
    /// statement on the SQL stores), and returns how many keys it wrote. Call it every few
    /// seconds and once at shutdown. Without write-behind there is nothing to flush: `Ok(0)`.
    ///
    /// # Errors
    /// The inner store's error. The times are kept for the next flush (merged with newer
    /// ones), also when the flush is cancelled: nothing is lost but on a crash.
    pub async fn flush_touches(&self) -> Result<usize, StoreError> {
        let Some(behind) = &self.shared.behind else {
            return Ok(0);
        };
        let batch: Vec<(KeyId, OffsetDateTime)> = behind.lock().drain().collect();
        if batch.is_empty() {
            return Ok(0);
        }
        let mut flushing = Flushing {
            behind,
            batch: Some(batch),
        };
        let written = flushing.batch.as_deref().unwrap_or_default();
        self.inner.touch_many(written).await?;
        let n = written.len();
        flushing.batch = None;
        Ok(n)
    }
}

impl<S: Clone> Clone for CachedStore<S> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<S: fmt::Debug> fmt::Debug for CachedStore<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CachedStore")
            .field("inner", &self.inner)
            .field("cache", &self.shared)
            .finish()
    }
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.state.read().unwrap_or_else(PoisonError::into_inner);
        f.debug_struct("Cache")
            .field("staleness", &self.staleness)
            .field("alive_at", &state.alive_at)
            .field("records", &state.records.len())
            .field("absent", &state.absent.len())
            .finish_non_exhaustive()
    }
}

impl<S> CachedStoreBuilder<S> {
    /// Reads time from `clock` (a `FakeClock` in tests) instead of the system clock.
    #[must_use]
    pub fn with_clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// Caches at most `n` found records (default 100,000),
    /// evicting the oldest first. Zero caches none.
    #[must_use]
    pub fn max_entries(mut self, n: usize) -> Self {
        self.max_entries = n;
        self
    }

    /// Caches at most `n` absent ids (default 10,000),
    /// evicting the oldest first. Zero caches none.
    #[must_use]
    pub fn max_negative(mut self, n: usize) -> Self {
        self.max_negative = n;
        self
    }

    /// Writes last-use times behind: [`KeyStore::touch`] through the cache only records the
    /// time in memory (and in the cached record), and [`CachedStore::flush_touches`] writes
    /// them all with one [`KeyStore::touch_many`]. The application calls it on an interval
    /// and at shutdown, so that hot verifications write nothing.
    ///
    /// At most `max_pending` keys wait (at least 1): once that many wait, a touch of
    /// another key is written at once, alone. What a crash loses is the times collected since the
    /// last flush, at most one interval of them; status changes and every other write go
    /// to the inner store at once, as without write-behind.
    ///
    /// ```
    /// # use core::time::Duration;
    /// # use keyward::{MemoryStore, store::CachedStore};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let (cache, feed) = CachedStore::builder(MemoryStore::new(), Duration::from_secs(2))
    ///     .write_behind(100_000)
    ///     .build();
    /// let flusher = cache.clone();
    /// tokio::spawn(async move {
    ///     let mut every = tokio::time::interval(Duration::from_secs(5));
    ///     loop {
    ///         every.tick().await;
    ///         if let Err(e) = flusher.flush_touches().await {
    ///             eprintln!("last-use times kept for the next flush: {e}");
    ///         }
    ///     }
    /// });
    /// // ... serve; at shutdown:
    /// cache.flush_touches().await.expect("flushed");
    /// # drop(feed);
    /// # }
    /// ```
    #[must_use]
    pub fn write_behind(mut self, max_pending: usize) -> Self {
        self.write_behind = Some(max_pending.max(1));
        self
    }

    /// The cache, and the feed its invalidation stream drives.
    #[must_use]
    pub fn build(self) -> (CachedStore<S>, CacheFeed) {
        let shared = Arc::new(Shared {
            clock: self.clock,
            bound: self.staleness,
            behind: self.write_behind.map(|max| Behind {
                max,
                pending: Mutex::new(HashMap::default()),
            }),
            staleness: time::Duration::try_from(self.staleness).ok(),
            state: RwLock::new(State {
                generation: 0,
                invalidations: 0,
                recent: VecDeque::new(),
                alive_at: None,
                records: Bounded::new(self.max_entries),
                absent: Bounded::new(self.max_negative),
            }),
        });
        let feed = CacheFeed {
            shared: Arc::clone(&shared),
        };
        (
            CachedStore {
                inner: self.inner,
                shared,
            },
            feed,
        )
    }
}

impl<S: fmt::Debug> fmt::Debug for CachedStoreBuilder<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CachedStoreBuilder")
            .field("inner", &self.inner)
            .field("staleness", &self.staleness)
            .field("max_entries", &self.max_entries)
            .field("max_negative", &self.max_negative)
            .field("write_behind", &self.write_behind)
            .finish_non_exhaustive()
    }
}

impl CacheFeed {
    /// The record `id` was inserted, changed or deleted: drop it from the cache (found or
    /// absent), and keep a read of it that is in flight from being cached.
    pub fn invalidate(&self, id: &KeyId) {
        self.shared.invalidate(id);
    }

    /// The stream (re)connected and may have missed notifications: drop everything cached,
    /// and keep every read in flight from being cached.
    pub fn invalidate_all(&self) {
        self.shared.invalidate_all();
    }

    /// The stream proved itself live now: a heartbeat sent through the notifications' path
    /// came back, so every notification sent before it has been delivered. The cache serves
    /// from memory until the staleness bound has passed since this call.
    pub fn alive(&self) {
        let now = self.shared.clock.now();
        self.shared.write().alive_at = Some(now);
    }

    /// The time on the cache's clock: what a stream dates a heartbeat with for
    /// [`CacheFeed::alive_since`].
    #[must_use]
    pub fn now(&self) -> OffsetDateTime {
        self.shared.clock.now()
    }

    /// The cache's staleness bound, for a stream to pace its heartbeats (a few per bound).
    #[must_use]
    pub fn staleness(&self) -> core::time::Duration {
        self.shared.bound
    }

    /// Like [`CacheFeed::alive`], for a heartbeat sent at `sent` (read from the same clock
    /// as the cache's, when it was sent): the bound counts from then, which excludes the
    /// heartbeat's round trip from it. A time later than now counts as now; a proof older
    /// than the one already held changes nothing.
    pub fn alive_since(&self, sent: OffsetDateTime) {
        let now = self.shared.clock.now();
        let at = sent.min(now);
        let mut state = self.shared.write();
        // An older proof never replaces a newer one, unless the clock went back past it.
        if state.alive_at.is_none_or(|held| held < at || held > now) {
            state.alive_at = Some(at);
        }
    }
}

impl fmt::Debug for CacheFeed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CacheFeed")
            .field("cache", &self.shared)
            .finish()
    }
}

/// The ids a write touches, dropped from the cache when the write returns, fails or is
/// cancelled (when this guard is dropped).
struct Touched<'a> {
    shared: &'a Shared,
    ids: Ids,
}

enum Ids {
    One(KeyId),
    Two(KeyId, KeyId),
    Many(Vec<KeyId>),
    All,
}

impl<'a> Touched<'a> {
    fn new(shared: &'a Shared, ids: Ids) -> Self {
        Self { shared, ids }
    }
}

impl Drop for Touched<'_> {
    fn drop(&mut self) {
        let mut state = self.shared.write();
        match &self.ids {
            Ids::One(id) => state.invalidate(id),
            Ids::Two(a, b) => {
                state.invalidate(a);
                state.invalidate(b);
            }
            Ids::Many(ids) => ids.iter().for_each(|id| state.invalidate(id)),
            Ids::All => state.invalidate_all(),
        }
    }
}

impl<S: KeyStore> KeyStore for CachedStore<S> {
    async fn insert(&self, record: KeyRecord) -> Result<(), StoreError> {
        let _touched = Touched::new(&self.shared, Ids::One(record.id));
        self.inner.insert(record).await
    }

    async fn insert_all(&self, records: Vec<KeyRecord>) -> Result<(), StoreError> {
        let ids = records.iter().map(|r| r.id).collect();
        let _touched = Touched::new(&self.shared, Ids::Many(ids));
        self.inner.insert_all(records).await
    }

    async fn insert_capped(
        &self,
        record: KeyRecord,
        max_live: usize,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        let _touched = Touched::new(&self.shared, Ids::One(record.id));
        self.inner.insert_capped(record, max_live, now).await
    }

    async fn insert_within(
        &self,
        record: KeyRecord,
        caps: LiveCaps,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        let _touched = Touched::new(&self.shared, Ids::One(record.id));
        self.inner.insert_within(record, caps, now).await
    }

    async fn get(&self, id: &KeyId) -> Result<Option<Arc<KeyRecord>>, StoreError> {
        let now = self.shared.clock.now();
        let start = {
            let state = self
                .shared
                .state
                .read()
                .unwrap_or_else(PoisonError::into_inner);
            if state.fresh(now, self.shared.staleness) {
                if let Some(record) = state.records.get(id) {
                    return Ok(Some(Arc::clone(record)));
                }
                if state.absent.get(id).is_some() {
                    return Ok(None);
                }
            }
            state.start()
        };
        self.read_through(id, start, false).await
    }

    /// Reads the inner store, never the cache, and keeps the answer for later reads when
    /// nothing invalidated it meanwhile.
    async fn get_fresh(&self, id: &KeyId) -> Result<Option<Arc<KeyRecord>>, StoreError> {
        let start = self
            .shared
            .state
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .start();
        self.read_through(id, start, true).await
    }

    async fn update(&self, record: KeyRecord, expected_version: u64) -> Result<(), StoreError> {
        let _touched = Touched::new(&self.shared, Ids::One(record.id));
        self.inner.update(record, expected_version).await
    }

    async fn rotate(
        &self,
        old: KeyRecord,
        expected_version: u64,
        new: KeyRecord,
    ) -> Result<(), StoreError> {
        let _touched = Touched::new(&self.shared, Ids::Two(old.id, new.id));
        self.inner.rotate(old, expected_version, new).await
    }

    async fn list(&self, filter: &ListFilter, page: Page) -> Result<Vec<KeyRecord>, StoreError> {
        self.inner.list(filter, page).await
    }

    async fn update_capped(
        &self,
        record: KeyRecord,
        expected_version: u64,
        max_live: usize,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        let _touched = Touched::new(&self.shared, Ids::One(record.id));
        self.inner
            .update_capped(record, expected_version, max_live, now)
            .await
    }

    async fn update_within(
        &self,
        record: KeyRecord,
        expected_version: u64,
        caps: LiveCaps,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        let _touched = Touched::new(&self.shared, Ids::One(record.id));
        self.inner
            .update_within(record, expected_version, caps, now)
            .await
    }

    async fn revoke_matching(&self, filter: &ListFilter) -> Result<BulkRevocation, StoreError> {
        // Everything, unless the store reports what it revoked.
        let mut touched = Touched::new(&self.shared, Ids::All);
        let report = self.inner.revoke_matching(filter).await?;
        touched.ids = Ids::Many(report.revoked.clone());
        Ok(report)
    }

    async fn consume(&self, id: &KeyId, cost: u64) -> Result<Consumed, StoreError> {
        let _touched = Touched::new(&self.shared, Ids::One(*id));
        self.inner.consume(id, cost).await
    }

    /// Moves the cached record's last use (a change of `last_used_at` alone does not
    /// invalidate it: verification does not depend on it), then writes it to the inner
    /// store, or only collects it with [`CachedStoreBuilder::write_behind`].
    async fn touch(&self, id: &KeyId, at: OffsetDateTime) -> Result<(), StoreError> {
        self.shared.touched(id, at);
        let Some(behind) = &self.shared.behind else {
            return self.inner.touch(id, at).await;
        };
        let collected = {
            let mut pending = behind.lock();
            if pending.len() < behind.max || pending.contains_key(id) {
                keep_latest(&mut pending, *id, at);
                true
            } else {
                false
            }
        };
        if collected {
            return Ok(());
        }
        // Full (the flushes are late or failing): this one is written at once, so memory
        // stays bounded and a verification never pays for a whole batch.
        self.inner.touch(id, at).await
    }

    async fn touch_many(&self, touches: &[(KeyId, OffsetDateTime)]) -> Result<(), StoreError> {
        for (id, at) in touches {
            self.shared.touched(id, *at);
        }
        self.inner.touch_many(touches).await
    }

    async fn delete(&self, id: &KeyId) -> Result<bool, StoreError> {
        let _touched = Touched::new(&self.shared, Ids::One(*id));
        self.inner.delete(id).await
    }
}

impl<S: crate::audit::AuditStore> crate::audit::AuditStore for CachedStore<S> {
    async fn append(&self, records: Vec<crate::audit::AuditRecord>) -> Result<(), StoreError> {
        self.inner.append(records).await
    }

    async fn query(
        &self,
        query: &crate::audit::AuditQuery,
    ) -> Result<Vec<crate::audit::AuditRecord>, StoreError> {
        self.inner.query(query).await
    }

    async fn purge_before(&self, before: OffsetDateTime) -> Result<u64, StoreError> {
        self.inner.purge_before(before).await
    }
}

impl<S: crate::manager::NoticeStore> crate::manager::NoticeStore for CachedStore<S> {
    async fn claim_notice(
        &self,
        key: &KeyId,
        threshold: time::Duration,
        expires_at: OffsetDateTime,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        self.inner
            .claim_notice(key, threshold, expires_at, now)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MemoryStore;
    use crate::clock::FakeClock;
    use crate::record::KeyStatus;
    use crate::testing::{epoch, random_id, record};

    const B: core::time::Duration = core::time::Duration::from_secs(10);

    fn cache(
        max_entries: usize,
        max_negative: usize,
    ) -> (CachedStore<MemoryStore>, CacheFeed, FakeClock) {
        let clock = FakeClock::new(epoch());
        let (store, feed) = CachedStore::builder(MemoryStore::new(), B)
            .with_clock(clock.clone())
            .max_entries(max_entries)
            .max_negative(max_negative)
            .build();
        feed.alive();
        (store, feed, clock)
    }

    fn cached_ids<V>(bounded: &Bounded<V>) -> Vec<KeyId> {
        let mut ids: Vec<KeyId> = bounded.map.keys().copied().collect();
        ids.sort_unstable();
        ids
    }

    #[tokio::test]
    async fn found_records_are_bounded_and_the_oldest_goes_first() {
        let (store, _feed, _clock) = cache(3, 100);
        let mut ids = Vec::new();
        for _ in 0..10 {
            let r = record("ann");
            ids.push(r.id);
            store.inner().insert(r).await.expect("insert");
        }
        for (n, id) in ids.iter().enumerate() {
            assert!(store.get(id).await.expect("get").is_some());
            assert_eq!(store.cached_records(), (n + 1).min(3));
        }
        let mut newest = ids[7..].to_vec();
        newest.sort_unstable();
        assert_eq!(cached_ids(&store.shared.write().records), newest);
        assert_eq!(store.cached_absent(), 0);
    }

    #[tokio::test]
    async fn absent_ids_are_bounded_apart_from_records() {
        let (store, _feed, _clock) = cache(100, 4);
        let present = record("ann");
        let present_id = present.id;
        store.inner().insert(present).await.expect("insert");
        assert!(store.get(&present_id).await.expect("get").is_some());
        for n in 0..50 {
            assert!(store.get(&random_id()).await.expect("get").is_none());
            assert_eq!(store.cached_absent(), (n + 1).min(4));
        }
        // Random ids never push a record out.
        assert_eq!(store.cached_records(), 1);
    }

    #[test]
    fn bookkeeping_sizes_are_as_documented() {
        use core::mem::size_of;
        assert_eq!(size_of::<(KeyId, (Arc<KeyRecord>, u64))>(), 56);
        assert_eq!(size_of::<(KeyId, ((), u64))>(), 48);
        assert_eq!(size_of::<(KeyId, u64)>(), 48);
    }

    #[test]
    fn eviction_queue_stays_bounded_under_replacements() {
        let mut bounded = Bounded::new(8);
        let ids: Vec<KeyId> = (0..8).map(|_| random_id()).collect();
        for round in 0..10_000_usize {
            let id = ids[round % ids.len()];
            bounded.insert(id, round);
            if round % 3 == 0 {
                bounded.remove(&ids[(round / 3) % ids.len()]);
            }
            assert!(bounded.len() <= 8);
            assert!(bounded.order.len() <= 17, "{}", bounded.order.len());
        }
        let mut none = Bounded::new(0);
        none.insert(ids[0], ());
        assert_eq!(none.len(), 0);
    }

    #[test]
    fn a_read_is_cached_only_if_no_invalidation_of_its_id_overtook_it() {
        let (store, feed, _clock) = cache(10, 10);
        let (id, other) = (random_id(), random_id());
        let state = || store.shared.write();

        let start = state().start();
        assert!(state().untouched_since(start, &id));
        feed.invalidate(&other);
        assert!(state().untouched_since(start, &id), "another id");
        feed.invalidate(&id);
        assert!(!state().untouched_since(start, &id), "this id");

        let start = state().start();
        feed.invalidate_all();
        assert!(!state().untouched_since(start, &id), "everything");

        // More invalidations than remembered: not known, so not cached.
        let start = state().start();
        for _ in 0..RECENT_INVALIDATIONS {
            feed.invalidate(&other);
        }
        assert!(state().untouched_since(start, &id), "within the window");
        feed.invalidate(&other);
        assert!(!state().untouched_since(start, &id), "past the window");
    }

    #[tokio::test]
    async fn served_from_memory_only_while_the_feed_is_fresh() {
        let (store, feed, clock) = cache(10, 10);
        let r = record("ann");
        let id = r.id;
        store.inner().insert(r.clone()).await.expect("insert");
        assert!(store.get(&id).await.expect("get").is_some());
        store.inner().delete(&id).await.expect("delete");

        // Within B of the proof: the cached record.
        clock.advance(time::Duration::seconds(9));
        assert!(store.is_fresh());
        assert!(store.get(&id).await.expect("get").is_some());
        // B after it: read through (and the absence is cached).
        clock.advance(time::Duration::seconds(1));
        assert!(!store.is_fresh());
        assert!(store.get(&id).await.expect("get").is_none());
        assert_eq!((store.cached_records(), store.cached_absent()), (0, 1));

        // A clock that goes back never extends the bound.
        store.inner().insert(r).await.expect("insert");
        feed.alive();
        clock.advance(time::Duration::seconds(-1));
        assert!(!store.is_fresh());
        assert!(store.get(&id).await.expect("get").is_some());

        // A heartbeat sent 8 s ago leaves 2 s.
        clock.advance(time::Duration::seconds(20));
        assert!(!store.is_fresh());
        feed.alive_since(clock.now() - time::Duration::seconds(8));
        clock.advance(time::Duration::seconds(1));
        assert!(store.is_fresh());
        clock.advance(time::Duration::seconds(1));
        assert!(!store.is_fresh());
        // An older proof does not replace a newer one.
        feed.alive();
        feed.alive_since(clock.now() - time::Duration::seconds(9));
        clock.advance(time::Duration::seconds(5));
        assert!(store.is_fresh());
    }

    #[tokio::test]
    async fn no_proof_no_cache_and_zero_bound_turns_it_off() {
        let (store, _feed) = CachedStore::new(MemoryStore::new(), B);
        assert!(!store.is_fresh());
        let (off, feed) = CachedStore::new(MemoryStore::new(), core::time::Duration::ZERO);
        feed.alive();
        assert!(!off.is_fresh());
        let (long, feed) = CachedStore::new(MemoryStore::new(), core::time::Duration::MAX);
        feed.alive();
        assert!(long.is_fresh());
        assert!(format!("{long:?}").contains("CachedStore"));
    }

    /// Warms the cache with `id` found, runs `write`, and checks that `id` was dropped.
    async fn drops_after(
        store: &CachedStore<MemoryStore>,
        ids: &[KeyId],
        write: impl Future<Output = ()>,
    ) {
        for id in ids {
            let _ = store.get(id).await.expect("get");
        }
        let before = store.cached_records() + store.cached_absent();
        assert!(before >= ids.len());
        write.await;
        let state = store.shared.write();
        for id in ids {
            assert!(state.records.get(id).is_none() && state.absent.get(id).is_none());
        }
    }

    #[tokio::test]
    async fn a_touch_moves_the_cached_copy_and_writes_through_by_default() {
        let (store, _feed, _clock) = cache(100, 100);
        let r = record("ann");
        let id = r.id;
        store.inner().insert(r).await.expect("insert");
        assert_eq!(
            store
                .get(&id)
                .await
                .expect("get")
                .expect("found")
                .last_used_at,
            None
        );
        let t1 = epoch() + time::Duration::minutes(1);
        store.touch(&id, t1).await.expect("touch");
        // Still cached (a last use changes nothing verification reads), with the new time.
        assert_eq!(store.cached_records(), 1);
        let cached = store.get(&id).await.expect("get").expect("found");
        assert_eq!(cached.last_used_at, Some(t1));
        // Written to the inner store at once; an older time moves nothing.
        let stored = store.inner().get(&id).await.expect("get").expect("found");
        assert_eq!(stored.last_used_at, Some(t1));
        store.touch(&id, epoch()).await.expect("touch");
        assert_eq!(
            store
                .get(&id)
                .await
                .expect("get")
                .expect("found")
                .last_used_at,
            Some(t1)
        );
        assert_eq!(store.pending_touches(), 0);
        assert_eq!(store.flush_touches().await.expect("flush"), 0);
        // touch_many moves cached copies too.
        let t2 = t1 + time::Duration::minutes(1);
        store.touch_many(&[(id, t2)]).await.expect("touch_many");
        assert_eq!(
            store
                .get(&id)
                .await
                .expect("get")
                .expect("found")
                .last_used_at,
            Some(t2)
        );
    }

    #[tokio::test]
    async fn write_behind_collects_flushes_and_keeps_what_a_failed_flush_held() {
        let clock = FakeClock::new(epoch());
        let inner: crate::testing::FlakyStore = crate::testing::FlakyStore::default();
        let (store, feed) = CachedStore::builder(inner.clone(), B)
            .with_clock(clock)
            .write_behind(3)
            .build();
        feed.alive();
        let records: Vec<KeyRecord> = (0..4).map(|_| record("ann")).collect();
        for r in &records {
            inner.inner().insert(r.clone()).await.expect("insert");
        }
        let at = |m: i64| epoch() + time::Duration::minutes(m);
        store.touch(&records[0].id, at(1)).await.expect("touch");
        store.touch(&records[0].id, at(3)).await.expect("touch");
        store.touch(&records[0].id, at(2)).await.expect("touch");
        store.touch(&records[1].id, at(1)).await.expect("touch");
        assert_eq!(store.pending_touches(), 2);
        let stored = |i: usize| {
            let inner = inner.clone();
            let id = records[i].id;
            async move {
                inner
                    .inner()
                    .get(&id)
                    .await
                    .expect("get")
                    .expect("found")
                    .last_used_at
            }
        };
        assert_eq!(stored(0).await, None, "nothing written before a flush");

        // A failed flush keeps its batch, merged with what came meanwhile.
        inner.set_down(true);
        store.flush_touches().await.expect_err("store down");
        assert_eq!(store.pending_touches(), 2);
        inner.set_down(false);
        store.touch(&records[1].id, at(5)).await.expect("touch");
        assert_eq!(store.flush_touches().await.expect("flush"), 2);
        assert_eq!(
            (stored(0).await, stored(1).await),
            (Some(at(3)), Some(at(5)))
        );
        assert_eq!(store.pending_touches(), 0);

        // (A cancelled flush restores its batch by the same guard as a failed one.)
        store.touch(&records[2].id, at(6)).await.expect("touch");
        assert_eq!(store.pending_touches(), 1);

        // The bound: with `max_pending` keys waiting, another key's touch is written at
        // once, alone; a waiting key's is still collected.
        store.touch(&records[3].id, at(7)).await.expect("touch");
        store.touch(&records[0].id, at(8)).await.expect("touch");
        assert_eq!(store.pending_touches(), 3);
        store.touch(&records[1].id, at(9)).await.expect("touch");
        assert_eq!(store.pending_touches(), 3);
        assert_eq!(stored(1).await, Some(at(9)), "written at once");
        assert_eq!(stored(0).await, Some(at(3)), "still waiting");
        store.touch(&records[3].id, at(10)).await.expect("touch");
        assert_eq!(store.pending_touches(), 3);
        assert_eq!(store.flush_touches().await.expect("flush"), 3);
        assert_eq!(
            (stored(2).await, stored(3).await, stored(0).await),
            (Some(at(6)), Some(at(10)), Some(at(8)))
        );
    }

    #[tokio::test]
    async fn every_write_drops_what_it_touched() {
        let (store, _feed, _clock) = cache(100, 100);
        let a = record("ann");
        let (a_id, b_id) = (a.id, random_id());
        drops_after(&store, &[a_id], async {
            store.insert(a.clone()).await.expect("insert");
        })
        .await;
        drops_after(&store, &[a_id], async {
            store.insert(a.clone()).await.expect_err("duplicate");
        })
        .await;
        let mut b = record("ann");
        b.id = b_id;
        drops_after(&store, &[b_id], async {
            store.insert_all(vec![b.clone()]).await.expect("insert_all");
        })
        .await;
        drops_after(&store, &[a_id], async {
            let mut changed = a.clone();
            changed.name = "changed".to_owned();
            store.update(changed, 0).await.expect("update");
        })
        .await;
        drops_after(&store, &[a_id], async {
            store.consume(&a_id, 1).await.expect("consume");
        })
        .await;
        let mut c = record("ann");
        c.rotated_from = Some(a_id);
        let c_id = c.id;
        drops_after(&store, &[a_id, c_id], async {
            let mut old =
                KeyRecord::clone(&store.inner().get(&a_id).await.expect("get").expect("a"));
            let version = old.version;
            old.rotated_to = Some(c_id);
            store.rotate(old, version, c).await.expect("rotate");
        })
        .await;
        drops_after(&store, &[a_id, b_id, c_id], async {
            let report = store
                .revoke_matching(&ListFilter::All)
                .await
                .expect("revoke");
            assert_eq!(report.revoked.len(), 3);
        })
        .await;
        assert_eq!(
            store.get(&c_id).await.expect("get").map(|r| r.status),
            Some(KeyStatus::Revoked)
        );
        drops_after(&store, &[c_id], async {
            assert!(store.delete(&c_id).await.expect("delete"));
        })
        .await;
        let d = record("zed");
        let d_id = d.id;
        drops_after(&store, &[d_id], async {
            store
                .insert_capped(d.clone(), 5, epoch())
                .await
                .expect("capped insert");
        })
        .await;
        drops_after(&store, &[d_id], async {
            store
                .update_capped(d.clone(), 0, 5, epoch())
                .await
                .expect("capped update");
        })
        .await;
        drops_after(&store, &[d_id], async {
            let caps = LiveCaps::none().owner(5).tenant(5);
            store
                .update_within(d.clone(), 1, caps, epoch())
                .await
                .expect("update within");
        })
        .await;
        let e = record("zed");
        let e_id = e.id;
        drops_after(&store, &[e_id], async {
            let caps = LiveCaps::none().owner(5).tenant(5);
            store
                .insert_within(e, caps, epoch())
                .await
                .expect("insert within");
        })
        .await;
    }
}
