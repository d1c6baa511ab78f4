//! `CachedStore`: the conformance suite through the cache, a model of a shared store written
//! by other instances whose invalidation stream delivers, stalls, breaks and reconnects
//! (every read is the current record or one overwritten less than the staleness bound ago,
//! by the clock, plus however far the clock was stepped back),
//! and the race between a read in flight and an invalidation.

use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use keyward::clock::FakeClock;
use keyward::store::{
    BulkRevocation, CacheFeed, CachedStore, Consumed, ListFilter, LiveCaps, Page, StoreError,
};
use keyward::{Clock, KeyId, KeyRecord, KeyStore, MemoryStore, testing};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use time::OffsetDateTime;
use tokio::sync::oneshot;

/// A cache whose stream proved itself live at creation, on the system clock, with a bound
/// longer than any check of the suite takes.
async fn fresh_store() -> CachedStore<MemoryStore> {
    let (store, feed) = CachedStore::new(MemoryStore::new(), core::time::Duration::from_secs(3600));
    feed.alive();
    store
}

/// One test per rule of the contract, every call through the cache.
mod conformance {
    keyward::conformance_tests!(super::fresh_store);
}

// ---------------------------------------------------------------------------------------
// The model: other instances write to the shared store; the stream carries their
// notifications (and this instance's), in order, until it breaks.

/// The staleness bound of the model, in milliseconds.
const B_MS: i64 = 1000;
const IDS: usize = 4;
const MAX_ENTRIES: usize = 2;
const MAX_NEGATIVE: usize = 2;

#[derive(Debug, Clone)]
enum Op {
    /// Another instance writes key `i` (inserts or changes it) on the shared store.
    RemoteWrite(usize),
    /// Another instance deletes key `i`.
    RemoteDelete(usize),
    /// This instance writes key `i` through the cache.
    LocalWrite(usize),
    /// The oldest queued notification reaches the feed.
    Deliver,
    /// A heartbeat: everything queued reaches the feed, then `alive`.
    Heartbeat,
    /// The stream breaks: queued notifications are lost, and so are later ones until it
    /// reconnects.
    Lose,
    /// The stream reconnects: `invalidate_all`, then `alive`.
    Reconnect,
    /// The clock moves (a little backwards, sometimes).
    Advance(i64),
    /// A read of key `i` through the cache.
    Get(usize),
}

fn op() -> impl Strategy<Value = Op> {
    let id = 0..IDS;
    prop_oneof![
        4 => id.clone().prop_map(Op::RemoteWrite),
        1 => id.clone().prop_map(Op::RemoteDelete),
        1 => id.clone().prop_map(Op::LocalWrite),
        2 => Just(Op::Deliver),
        2 => Just(Op::Heartbeat),
        1 => Just(Op::Lose),
        1 => Just(Op::Reconnect),
        3 => (0..B_MS * 3 / 2).prop_map(Op::Advance),
        1 => (-B_MS / 5..0).prop_map(Op::Advance),
        6 => id.prop_map(Op::Get),
    ]
}

static STALE_SERVED: AtomicUsize = AtomicUsize::new(0);
static CURRENT_FROM_MEMORY: AtomicUsize = AtomicUsize::new(0);
static READ_THROUGH_AFTER_BOUND: AtomicUsize = AtomicUsize::new(0);

struct World {
    clock: FakeClock,
    shared: MemoryStore,
    cache: CachedStore<MemoryStore>,
    feed: CacheFeed,
    ids: [KeyId; IDS],
    /// Each key's values (its name, or absent) in write order, with the write's time.
    history: Vec<Vec<(Option<String>, OffsetDateTime)>>,
    /// Notifications sent and not delivered yet, in order.
    queue: VecDeque<usize>,
    /// The stream is broken: notifications are lost until it reconnects.
    broken: bool,
    /// Keys with a notification lost since the last reconnect.
    lost: HashSet<usize>,
    /// Keys written elsewhere whose notification has not been delivered: only these may be
    /// read stale.
    unsynced: HashSet<usize>,
    writes: usize,
    /// How far the clock has been moved back in all: a wall clock stepped back by `d`
    /// between a proof of liveness and a write lengthens that write's staleness, measured
    /// on the clock, by up to `d` (the cache cannot see a step it did not read the clock
    /// across).
    stepped_back: time::Duration,
}

impl World {
    fn new() -> Self {
        let clock = FakeClock::new(testing::epoch());
        let shared = MemoryStore::new();
        let (cache, feed) =
            CachedStore::builder(shared.clone(), core::time::Duration::from_millis(1000))
                .with_clock(clock.clone())
                .max_entries(MAX_ENTRIES)
                .max_negative(MAX_NEGATIVE)
                .build();
        let never = testing::epoch() - time::Duration::days(1);
        Self {
            clock,
            shared,
            cache,
            feed,
            ids: core::array::from_fn(|_| testing::random_id()),
            history: vec![vec![(None, never)]; IDS],
            queue: VecDeque::new(),
            broken: false,
            lost: HashSet::new(),
            unsynced: HashSet::new(),
            writes: 0,
            stepped_back: time::Duration::ZERO,
        }
    }

    /// Sends key `i`'s notification into the stream (lost when it is broken).
    fn notify(&mut self, i: usize) {
        if self.broken {
            self.lost.insert(i);
        } else {
            self.queue.push_back(i);
        }
    }

    fn deliver_one(&mut self) {
        if self.broken {
            return;
        }
        if let Some(i) = self.queue.pop_front() {
            self.feed.invalidate(&self.ids[i]);
            if !self.queue.contains(&i) && !self.lost.contains(&i) {
                self.unsynced.remove(&i);
            }
        }
    }

    /// Writes a new value of key `i` on `store`: inserted when absent, changed otherwise.
    async fn write(&mut self, i: usize, store: &impl KeyStore) -> Result<(), TestCaseError> {
        self.writes += 1;
        let name = format!("v{}", self.writes);
        let current = self.shared.get(&self.ids[i]).await.map_err(fail)?;
        match current {
            None => {
                let mut record = testing::record("ann");
                record.id = self.ids[i];
                record.name = name.clone();
                store.insert(record).await.map_err(fail)?;
            }
            Some(record) => {
                let mut record = KeyRecord::clone(&record);
                let version = record.version;
                record.name = name.clone();
                store.update(record, version).await.map_err(fail)?;
            }
        }
        self.history[i].push((Some(name), self.clock.now()));
        Ok(())
    }

    async fn step(&mut self, op: Op) -> Result<(), TestCaseError> {
        match op {
            Op::RemoteWrite(i) => {
                let shared = self.shared.clone();
                self.write(i, &shared).await?;
                self.unsynced.insert(i);
                self.notify(i);
            }
            Op::RemoteDelete(i) => {
                if self.shared.delete(&self.ids[i]).await.map_err(fail)? {
                    self.history[i].push((None, self.clock.now()));
                    self.unsynced.insert(i);
                    self.notify(i);
                }
            }
            Op::LocalWrite(i) => {
                let cache = self.cache.clone();
                self.write(i, &cache).await?;
                // Read at once by this instance; the stream tells the others (and us again).
                self.unsynced.remove(&i);
                self.lost.remove(&i);
                self.notify(i);
            }
            Op::Deliver => self.deliver_one(),
            Op::Heartbeat => {
                if !self.broken {
                    while !self.queue.is_empty() {
                        self.deliver_one();
                    }
                    self.feed.alive();
                }
            }
            Op::Lose => {
                self.lost.extend(self.queue.drain(..));
                self.broken = true;
            }
            Op::Reconnect => {
                self.queue.clear();
                self.lost.clear();
                self.broken = false;
                self.feed.invalidate_all();
                self.unsynced.clear();
                self.feed.alive();
            }
            Op::Advance(ms) => {
                let by = time::Duration::milliseconds(ms);
                if by.is_negative() {
                    self.stepped_back -= by;
                }
                self.clock.advance(by);
            }
            Op::Get(i) => self.check_get(i).await?,
        }
        Ok(())
    }

    async fn check_get(&mut self, i: usize) -> Result<(), TestCaseError> {
        let fresh = self.cache.is_fresh();
        let got = self
            .cache
            .get(&self.ids[i])
            .await
            .map_err(fail)?
            .map(|r| r.name.clone());
        let now = self.clock.now();
        let history = &self.history[i];
        let Some(k) = history.iter().rposition(|(value, _)| *value == got) else {
            return Err(TestCaseError::fail(format!(
                "key {i}: read {got:?}, never written"
            )));
        };
        if let Some((_, overwritten_at)) = history.get(k + 1) {
            let age = now - *overwritten_at;
            let bound = time::Duration::milliseconds(B_MS) + self.stepped_back;
            prop_assert!(
                age < bound,
                "key {i}: read {got:?}, overwritten {age} ago (bound {bound})"
            );
            prop_assert!(
                self.unsynced.contains(&i),
                "key {i}: read {got:?} stale though every notification of it was delivered"
            );
            STALE_SERVED.fetch_add(1, Ordering::Relaxed);
        } else if fresh && self.unsynced.contains(&i) {
            CURRENT_FROM_MEMORY.fetch_add(1, Ordering::Relaxed);
        } else if !fresh && self.unsynced.contains(&i) && history.len() > 1 {
            READ_THROUGH_AFTER_BOUND.fetch_add(1, Ordering::Relaxed);
        }
        prop_assert!(self.cache.cached_records() <= MAX_ENTRIES);
        prop_assert!(self.cache.cached_absent() <= MAX_NEGATIVE);
        Ok(())
    }
}

fn fail(e: StoreError) -> TestCaseError {
    TestCaseError::fail(format!("store error: {e}"))
}

#[test]
fn reads_are_current_or_overwritten_within_the_bound() {
    let mut runner = TestRunner::new(Config::with_cases(512));
    let result = runner.run(&proptest::collection::vec(op(), 1..80), |ops| {
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
    for (what, counter) in [
        ("a stale record served within the bound", &STALE_SERVED),
        ("a current record served from memory", &CURRENT_FROM_MEMORY),
        (
            "a read through once the bound passed",
            &READ_THROUGH_AFTER_BOUND,
        ),
    ] {
        assert!(
            counter.load(Ordering::Relaxed) > 0,
            "never happened: {what}"
        );
    }
}

// ---------------------------------------------------------------------------------------
// A read in flight overtaken by an invalidation.

/// Where a read waits: it has read the inner store and tells `reached`, then returns only
/// once `resume` fires.
struct Gate {
    reached: oneshot::Sender<()>,
    resume: oneshot::Receiver<()>,
}

/// A memory store whose next `get` can be held between its read and its answer.
#[derive(Clone, Default)]
struct Gated {
    inner: MemoryStore,
    gate: Arc<Mutex<Option<Gate>>>,
}

impl Gated {
    /// Holds the next read; returns the signal that it read, and the switch that resumes it.
    fn arm(&self) -> (oneshot::Receiver<()>, oneshot::Sender<()>) {
        let (reached, reached_rx) = oneshot::channel();
        let (resume_tx, resume) = oneshot::channel();
        *self.gate.lock().expect("gate") = Some(Gate { reached, resume });
        (reached_rx, resume_tx)
    }
}

impl KeyStore for Gated {
    async fn insert(&self, record: KeyRecord) -> Result<(), StoreError> {
        self.inner.insert(record).await
    }

    async fn insert_capped(
        &self,
        record: KeyRecord,
        max_live: usize,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        self.inner.insert_capped(record, max_live, now).await
    }

    async fn get(&self, id: &KeyId) -> Result<Option<Arc<KeyRecord>>, StoreError> {
        let found = self.inner.get(id).await?;
        let gate = self.gate.lock().expect("gate").take();
        if let Some(gate) = gate {
            let _ = gate.reached.send(());
            let _ = gate.resume.await;
        }
        Ok(found)
    }

    async fn update(&self, record: KeyRecord, expected_version: u64) -> Result<(), StoreError> {
        self.inner.update(record, expected_version).await
    }

    async fn rotate(
        &self,
        old: KeyRecord,
        expected_version: u64,
        new: KeyRecord,
    ) -> Result<(), StoreError> {
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
        self.inner
            .update_within(record, expected_version, caps, now)
            .await
    }

    async fn revoke_matching(&self, filter: &ListFilter) -> Result<BulkRevocation, StoreError> {
        self.inner.revoke_matching(filter).await
    }

    async fn consume(&self, id: &KeyId, cost: u64) -> Result<Consumed, StoreError> {
        self.inner.consume(id, cost).await
    }

    async fn touch(&self, id: &KeyId, at: OffsetDateTime) -> Result<(), StoreError> {
        self.inner.touch(id, at).await
    }

    async fn delete(&self, id: &KeyId) -> Result<bool, StoreError> {
        self.inner.delete(id).await
    }
}

/// What happens while the read is in flight.
#[derive(Debug, Clone, Copy)]
enum Meanwhile {
    /// Another instance changes the key; its notification arrives.
    WriteThenInvalidate,
    /// Another instance changes the key; the stream reconnects (`invalidate_all`).
    WriteThenInvalidateAll,
    /// This instance changes the key through the cache (no notification needed).
    LocalWrite,
    /// Another key's notification arrives; this key is not written.
    OtherKeyInvalidated,
}

/// Reads a key (existing or not) through the cache while `meanwhile` happens, then reads
/// it again; returns both names (absent: `None`) and the cache.
async fn race(
    existing: bool,
    meanwhile: Meanwhile,
) -> (Option<String>, Option<String>, CachedStore<Gated>) {
    let gated = Gated::default();
    let (cache, feed) = CachedStore::new(gated.clone(), core::time::Duration::from_secs(3600));
    feed.alive();
    let mut record = testing::record("ann");
    record.name = "old".to_owned();
    let id = record.id;
    if existing {
        gated.inner.insert(record.clone()).await.expect("insert");
    }
    let (reached, resume) = gated.arm();
    let interfere = async {
        reached.await.expect("the read reached the store");
        let mut new = record.clone();
        new.name = "new".to_owned();
        match meanwhile {
            Meanwhile::WriteThenInvalidate | Meanwhile::WriteThenInvalidateAll => {
                if existing {
                    gated.inner.update(new, 0).await.expect("update");
                } else {
                    gated.inner.insert(new).await.expect("insert");
                }
                if matches!(meanwhile, Meanwhile::WriteThenInvalidate) {
                    feed.invalidate(&id);
                } else {
                    feed.invalidate_all();
                }
            }
            Meanwhile::LocalWrite => {
                if existing {
                    cache.update(new, 0).await.expect("update");
                } else {
                    cache.insert(new).await.expect("insert");
                }
            }
            Meanwhile::OtherKeyInvalidated => feed.invalidate(&testing::random_id()),
        }
        resume.send(()).expect("the read waits");
    };
    let (first, ()) = tokio::join!(cache.get(&id), interfere);
    let name = |r: Option<Arc<KeyRecord>>| r.map(|r| r.name.clone());
    let first = name(first.expect("first read"));
    let second = name(cache.get(&id).await.expect("second read"));
    (first, second, cache)
}

#[tokio::test]
async fn an_invalidation_during_a_read_keeps_the_old_value_out_of_the_cache() {
    for existing in [true, false] {
        let old = existing.then(|| "old".to_owned());
        for meanwhile in [
            Meanwhile::WriteThenInvalidate,
            Meanwhile::WriteThenInvalidateAll,
            Meanwhile::LocalWrite,
        ] {
            let (first, second, _) = race(existing, meanwhile).await;
            // The read began before the write: the old value is a fair answer to it...
            assert_eq!(first, old, "{meanwhile:?}, existing {existing}");
            // ...but must not be kept.
            assert_eq!(
                second.as_deref(),
                Some("new"),
                "{meanwhile:?}, existing {existing}"
            );
        }
        // Another key's notification does not stop the read from being cached.
        let (first, second, cache) = race(existing, Meanwhile::OtherKeyInvalidated).await;
        assert_eq!((&first, &second), (&old, &old));
        let cached = (cache.cached_records(), cache.cached_absent());
        assert_eq!(cached, if existing { (1, 0) } else { (0, 1) });
    }
}

#[tokio::test]
async fn an_inner_error_is_returned_never_a_cached_value() {
    let (cache, feed) = CachedStore::new(Failing, core::time::Duration::from_secs(1));
    let id = testing::random_id();
    assert!(cache.get(&id).await.is_err());
    feed.alive();
    // Nothing cached from the failed read: the next read fails too.
    assert!(cache.get(&id).await.is_err());
    assert_eq!((cache.cached_records(), cache.cached_absent()), (0, 0));
}

/// A store that cannot be reached.
#[derive(Clone, Default)]
struct Failing;

fn down<T>() -> Result<T, StoreError> {
    Err(StoreError::unavailable("down"))
}

impl KeyStore for Failing {
    async fn insert(&self, _: KeyRecord) -> Result<(), StoreError> {
        down()
    }
    async fn insert_capped(
        &self,
        _: KeyRecord,
        _: usize,
        _: OffsetDateTime,
    ) -> Result<(), StoreError> {
        down()
    }
    async fn get(&self, _: &KeyId) -> Result<Option<Arc<KeyRecord>>, StoreError> {
        down()
    }
    async fn update(&self, _: KeyRecord, _: u64) -> Result<(), StoreError> {
        down()
    }
    async fn rotate(&self, _: KeyRecord, _: u64, _: KeyRecord) -> Result<(), StoreError> {
        down()
    }
    async fn list(&self, _: &ListFilter, _: Page) -> Result<Vec<KeyRecord>, StoreError> {
        down()
    }
    async fn update_capped(
        &self,
        _: KeyRecord,
        _: u64,
        _: usize,
        _: OffsetDateTime,
    ) -> Result<(), StoreError> {
        down()
    }
    async fn consume(&self, _: &KeyId, _: u64) -> Result<Consumed, StoreError> {
        down()
    }
    async fn touch(&self, _: &KeyId, _: OffsetDateTime) -> Result<(), StoreError> {
        down()
    }
    async fn delete(&self, _: &KeyId) -> Result<bool, StoreError> {
        down()
    }
}

/// A manager over a cache that never hears of other instances' writes (its stream is
/// live but silent), beside the shared store those instances write.
fn silent_cache() -> (
    keyward::KeyManager<CachedStore<MemoryStore>>,
    MemoryStore,
    CacheFeed,
) {
    let shared = MemoryStore::new();
    let (cache, feed) = CachedStore::new(shared.clone(), core::time::Duration::from_secs(3600));
    feed.alive();
    let manager = keyward::KeyManager::new(
        cache,
        keyward::KeyFormat::new(["tak"]).expect("format"),
        keyward::Hasher::fast(keyward::Pepper::new("k1", [5u8; 32]).expect("pepper")),
    );
    (manager, shared, feed)
}

/// Sets `id`'s status on the shared store, as another instance would.
async fn remote_status(shared: &MemoryStore, id: &KeyId, status: keyward::record::KeyStatus) {
    let mut record = KeyRecord::clone(&shared.get(id).await.expect("get").expect("present"));
    let version = record.version;
    record.status = status;
    shared.update(record, version).await.expect("remote write");
}

#[tokio::test]
async fn a_management_call_decides_on_the_stored_record_not_a_cached_copy() {
    use keyward::record::KeyStatus;
    let (manager, shared, _feed) = silent_cache();
    let ctx = keyward::RequestContext::new();
    let issued = manager
        .issue(keyward::IssueRequest::new("k", "ann"), &ctx)
        .await
        .expect("issue");
    let id = issued.key.id();
    manager.disable(&id, &ctx).await.expect("disable");
    // Cached as disabled; another instance enables it, unheard of here.
    assert!(
        manager
            .verify(issued.key.expose_secret(), &ctx)
            .await
            .is_err()
    );
    remote_status(&shared, &id, KeyStatus::Active).await;
    // Disabling again must disable it, not keep what the cache shows.
    manager.disable(&id, &ctx).await.expect("disable");
    let stored = shared.get(&id).await.expect("get").expect("present");
    assert_eq!(stored.status, KeyStatus::Disabled);
}

#[tokio::test]
async fn an_acting_key_revoked_elsewhere_manages_nothing_through_a_cache() {
    use keyward::record::KeyStatus;
    let (manager, shared, _feed) = silent_cache();
    let ctx = keyward::RequestContext::new();
    let admin = manager
        .issue(
            keyward::IssueRequest::new("admin", "ann").scopes(keyward::ScopeSet::all()),
            &ctx,
        )
        .await
        .expect("issue");
    let target = manager
        .issue(keyward::IssueRequest::new("k", "ann"), &ctx)
        .await
        .expect("issue");
    let proof = manager
        .verify(admin.key.expose_secret(), &ctx)
        .await
        .expect("verifies");
    // Revoked by another instance: this cache still holds it as active (within its bound,
    // verification may accept it), but it manages nothing.
    remote_status(&shared, &admin.key.id(), KeyStatus::Revoked).await;
    assert!(
        manager
            .verify(admin.key.expose_secret(), &ctx)
            .await
            .is_ok()
    );
    let refused = manager
        .acting_as(&proof)
        .revoke(&target.key.id(), None, &ctx)
        .await;
    assert!(
        matches!(refused, Err(keyward::manager::LifecycleError::Actor(_))),
        "{refused:?}"
    );
    let stored = shared
        .get(&target.key.id())
        .await
        .expect("get")
        .expect("present");
    assert_eq!(stored.status, KeyStatus::Active);
}
