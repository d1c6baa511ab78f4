//! The persisted audit log (see the `audit` module documentation for its policy).

use core::future::Future;
use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use futures_util::lock::Mutex as AsyncMutex;
use serde::Serialize;
use time::{Duration, OffsetDateTime};

use super::{AuditEvent, AuditKind, AuditSink};
use crate::key::id::KeyId;
use crate::store::StoreError;

/// One stored audit record: an event, or the count of a key's successful verifications
/// between two flushes. Never a secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct AuditRecord {
    /// The store's sequence number (increasing in write order; 0 before it is stored).
    pub seq: u64,
    /// When it happened (for a count: the last verification counted).
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// The event's name ([`AuditKind::name`]), such as `revoked`; `audit_events_dropped`
    /// for the journal's own report of dropped events.
    pub kind: String,
    /// The key concerned.
    pub key_id: Option<KeyId>,
    /// The key's name.
    pub name: Option<String>,
    /// The key's tenant.
    pub tenant: Option<String>,
    /// The key's owner.
    pub owner: Option<String>,
    /// Who acted, when not the key itself.
    pub actor: Option<String>,
    /// The client's address.
    pub client_addr: Option<IpAddr>,
    /// The application's request id.
    pub request_id: Option<String>,
    /// The event's details as JSON (the fields of its [`AuditKind`]; `{}` when it has none).
    pub detail: serde_json::Value,
    /// How many events this record stands for: 1, or the number of verifications counted.
    pub count: u64,
}

impl AuditRecord {
    /// The record of one event.
    #[must_use]
    pub fn from_event(event: &AuditEvent) -> Self {
        let mut detail = serde_json::to_value(&event.kind).unwrap_or(serde_json::Value::Null);
        if let Some(fields) = detail.as_object_mut() {
            fields.remove("type");
        }
        Self {
            seq: 0,
            at: event.at,
            kind: event.kind.name().to_owned(),
            key_id: event.key_id,
            name: event.name.clone(),
            tenant: event.tenant.clone(),
            owner: event.owner.clone(),
            actor: event.context.actor.clone(),
            client_addr: event.context.client_addr,
            request_id: event.context.request_id.clone(),
            detail,
            count: 1,
        }
    }
}

/// Which audit records to read: every condition set must hold. Records come in sequence
/// order, at most [`limit`](AuditQuery::limit) of them, after
/// [`after`](AuditQuery::after); [`AuditQuery::next`] gives the following page.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct AuditQuery {
    /// Only this key's records.
    pub key: Option<KeyId>,
    /// Only records about keys of this owner.
    pub owner: Option<String>,
    /// Only records about keys of this tenant.
    pub tenant: Option<String>,
    /// Only records of this kind (such as `revoked`).
    pub kind: Option<String>,
    /// Only records at or after this time.
    pub since: Option<OffsetDateTime>,
    /// Only records before this time.
    pub until: Option<OffsetDateTime>,
    /// Only records with a larger sequence number (the last one of the previous page).
    pub after: Option<u64>,
    /// At most this many records (1 to [`AuditQuery::MAX_LIMIT`]).
    pub limit: usize,
}

impl Default for AuditQuery {
    fn default() -> Self {
        Self::new()
    }
}

impl AuditQuery {
    /// The largest page.
    pub const MAX_LIMIT: usize = 1000;

    /// Every record, 100 a page.
    #[must_use]
    pub fn new() -> Self {
        Self {
            key: None,
            owner: None,
            tenant: None,
            kind: None,
            since: None,
            until: None,
            after: None,
            limit: 100,
        }
    }

    /// Only `key`'s records.
    #[must_use]
    pub fn key(mut self, key: KeyId) -> Self {
        self.key = Some(key);
        self
    }

    /// Only records about keys of `owner`.
    #[must_use]
    pub fn owner(mut self, owner: impl Into<String>) -> Self {
        self.owner = Some(owner.into());
        self
    }

    /// Only records about keys of `tenant`.
    #[must_use]
    pub fn tenant(mut self, tenant: impl Into<String>) -> Self {
        self.tenant = Some(tenant.into());
        self
    }

    /// Only records of `kind`.
    #[must_use]
    pub fn kind(mut self, kind: impl Into<String>) -> Self {
        self.kind = Some(kind.into());
        self
    }

    /// Only records in `[since, until)`.
    #[must_use]
    pub fn between(mut self, since: OffsetDateTime, until: OffsetDateTime) -> Self {
        self.since = Some(since);
        self.until = Some(until);
        self
    }

    /// At most `limit` records a page (clamped to 1 ..= [`AuditQuery::MAX_LIMIT`]).
    #[must_use]
    pub fn limit(mut self, limit: usize) -> Self {
        self.limit = limit.clamp(1, Self::MAX_LIMIT);
        self
    }

    /// The query for the page after `records` (`None` when `records` was the last page).
    #[must_use]
    pub fn next(&self, records: &[AuditRecord]) -> Option<Self> {
        if records.len() < self.limit {
            return None;
        }
        let last = records.last()?;
        Some(Self {
            after: Some(last.seq),
            ..self.clone()
        })
    }

    /// Whether `record` meets every condition but the paging.
    #[must_use]
    pub fn matches(&self, record: &AuditRecord) -> bool {
        self.key.is_none_or(|k| record.key_id == Some(k))
            && self
                .owner
                .as_deref()
                .is_none_or(|o| record.owner.as_deref() == Some(o))
            && self
                .tenant
                .as_deref()
                .is_none_or(|t| record.tenant.as_deref() == Some(t))
            && self.kind.as_deref().is_none_or(|k| record.kind == k)
            && self.since.is_none_or(|s| record.at >= s)
            && self.until.is_none_or(|u| record.at < u)
    }
}

/// Where audit records are kept: implemented by the SQL stores (table `keyward_audit`,
/// schema version 4), the memory store and `AnyStore`; implement it to keep them
/// elsewhere.
pub trait AuditStore: Send + Sync {
    /// Appends `records` in order, each with the next sequence number (their `seq` field is
    /// ignored), all or none.
    fn append(
        &self,
        records: Vec<AuditRecord>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// The records matching `query`, in sequence order, at most `query.limit`.
    fn query(
        &self,
        query: &AuditQuery,
    ) -> impl Future<Output = Result<Vec<AuditRecord>, StoreError>> + Send;

    /// Deletes the records from before `before`; returns how many.
    fn purge_before(
        &self,
        before: OffsetDateTime,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send;
}

/// What a flush wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Flushed {
    /// Records written (events, verification counts and a drop report).
    pub written: usize,
    /// Records deleted by the retention period.
    pub purged: u64,
}

/// An [`AuditSink`] that queues events for an [`AuditStore`] (see the
/// [`audit` module](crate::audit#the-persisted-audit-log) for the policy). Clones share one queue.
#[derive(Debug, Clone)]
pub struct AuditJournal {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    capacity: usize,
    /// Shared by every clone, so a clone already given to a manager follows a later setting.
    retention: Mutex<Option<Duration>>,
    pending: Mutex<Pending>,
    /// Held for the whole of a flush, so a query waits for one in progress.
    flushing: AsyncMutex<()>,
    dropped: AtomicU64,
}

#[derive(Debug, Default)]
struct Pending {
    events: VecDeque<AuditRecord>,
    /// Successful verifications by key since the last flush.
    verified: HashMap<KeyId, AuditRecord>,
    /// Dropped since the last report written.
    unreported: u64,
}

impl Pending {
    fn len(&self) -> usize {
        self.events.len() + self.verified.len()
    }
}

impl AuditJournal {
    /// A journal that keeps at most `capacity` events (and verification counters) waiting.
    #[must_use]
    pub fn new(capacity: usize) -> Self {
        Self {
            inner: Arc::new(Inner {
                capacity: capacity.max(1),
                retention: Mutex::new(None),
                pending: Mutex::new(Pending::default()),
                flushing: AsyncMutex::new(()),
                dropped: AtomicU64::new(0),
            }),
        }
    }

    /// Deletes records older than `retention` at every flush, for this journal and every
    /// clone of it.
    #[must_use]
    pub fn with_retention(self, retention: Duration) -> Self {
        *self
            .inner
            .retention
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(retention);
        self
    }

    fn pending(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.inner
            .pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Events dropped because the queue was full, since the journal was made.
    #[must_use]
    pub fn dropped(&self) -> u64 {
        self.inner.dropped.load(Ordering::Relaxed)
    }

    /// Events (and verification counters) waiting for a flush.
    #[must_use]
    pub fn queued(&self) -> usize {
        self.pending().len()
    }

    /// Writes everything queued to `store` in one batch (with a record of the events
    /// dropped since the last report, if any), then applies the retention period.
    ///
    /// # Errors
    /// The store's error; the batch is queued again (up to the capacity).
    pub async fn flush_to<A: AuditStore>(&self, store: &A) -> Result<Flushed, StoreError> {
        let _flushing = self.inner.flushing.lock().await;
        let (batch, unreported) = {
            let mut pending = self.pending();
            let unreported = core::mem::take(&mut pending.unreported);
            let mut batch: Vec<AuditRecord> = pending.events.drain(..).collect();
            let mut counts: Vec<AuditRecord> = pending.verified.drain().map(|(_, r)| r).collect();
            counts.sort_by_key(|r| r.at);
            batch.extend(counts);
            (batch, unreported)
        };
        let mut records = batch.clone();
        if unreported > 0 {
            let now = records
                .last()
                .map_or_else(OffsetDateTime::now_utc, |r| r.at);
            records.push(AuditRecord {
                seq: 0,
                at: now,
                kind: "audit_events_dropped".to_owned(),
                key_id: None,
                name: None,
                tenant: None,
                owner: None,
                actor: None,
                client_addr: None,
                request_id: None,
                detail: serde_json::json!({ "capacity": self.inner.capacity }),
                count: unreported,
            });
        }
        let written = records.len();
        if written > 0
            && let Err(e) = store.append(records).await
        {
            self.requeue(batch, unreported);
            return Err(e);
        }
        let retention = *self
            .inner
            .retention
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let purged = match retention {
            Some(retention) => {
                store
                    .purge_before(OffsetDateTime::now_utc().saturating_sub(retention))
                    .await?
            }
            None => 0,
        };
        Ok(Flushed { written, purged })
    }

    /// Puts a batch that could not be written back in front of the queue.
    fn requeue(&self, batch: Vec<AuditRecord>, unreported: u64) {
        let mut pending = self.pending();
        pending.unreported += unreported;
        let mut lost = 0;
        for record in batch.into_iter().rev() {
            // A verification counter merges with the one counted since, if any.
            if let (true, Some(id)) = (record.kind == VERIFIED, record.key_id)
                && let Some(counter) = pending.verified.get_mut(&id)
            {
                counter.count += record.count;
                counter.at = counter.at.max(record.at);
                continue;
            }
            if pending.len() >= self.inner.capacity {
                lost += record.count;
            } else if let (true, Some(id)) = (record.kind == VERIFIED, record.key_id) {
                pending.verified.insert(id, record);
            } else {
                pending.events.push_front(record);
            }
        }
        if lost > 0 {
            pending.unreported += lost;
            self.inner.dropped.fetch_add(lost, Ordering::Relaxed);
        }
    }

    /// The records matching `query`, after writing every event recorded before the call.
    ///
    /// # Errors
    /// The store's error (from the flush or the read).
    pub async fn query<A: AuditStore>(
        &self,
        store: &A,
        query: &AuditQuery,
    ) -> Result<Vec<AuditRecord>, StoreError> {
        self.flush_to(store).await?;
        store.query(query).await
    }
}

/// The kind of a verification counter.
const VERIFIED: &str = "verified";

impl AuditSink for AuditJournal {
    fn record(&self, event: &AuditEvent) {
        let mut pending = self.pending();
        if let (AuditKind::Verified, Some(id)) = (&event.kind, event.key_id)
            && let Some(counter) = pending.verified.get_mut(&id)
        {
            counter.count += 1;
            counter.at = counter.at.max(event.at);
            return;
        }
        // Another event about a key with a pending counter: the counted verifications came
        // first, so they go into the queue before it (a key's records stay in time order).
        if let Some(id) = event.key_id
            && let Some(counter) = pending.verified.remove(&id)
        {
            pending.events.push_back(counter);
        }
        if pending.len() >= self.inner.capacity {
            pending.unreported += 1;
            self.inner.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let record = AuditRecord::from_event(event);
        match (&event.kind, event.key_id) {
            (AuditKind::Verified, Some(id)) => {
                pending.verified.insert(id, record);
            }
            _ => pending.events.push_back(record),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicBool;

    use super::*;
    use crate::audit::RequestContext;
    use crate::store::MemoryStore;

    /// A store that fails while `down` is set.
    #[derive(Default)]
    struct Flaky {
        inner: MemoryStore,
        down: AtomicBool,
    }

    impl AuditStore for Flaky {
        async fn append(&self, records: Vec<AuditRecord>) -> Result<(), StoreError> {
            if self.down.load(Ordering::Relaxed) {
                return Err(StoreError::unavailable("down"));
            }
            self.inner.append(records).await
        }

        async fn query(&self, query: &AuditQuery) -> Result<Vec<AuditRecord>, StoreError> {
            self.inner.query(query).await
        }

        async fn purge_before(&self, before: OffsetDateTime) -> Result<u64, StoreError> {
            self.inner.purge_before(before).await
        }
    }

    fn event(kind: AuditKind, key: KeyId, at: i64) -> AuditEvent {
        let at = OffsetDateTime::from_unix_timestamp(at).expect("time");
        AuditEvent::new(at, kind, &RequestContext::new()).key(key)
    }

    fn kinds(records: &[AuditRecord]) -> Vec<(&str, u64)> {
        records.iter().map(|r| (r.kind.as_str(), r.count)).collect()
    }

    #[tokio::test]
    async fn a_full_queue_drops_counts_and_reports() {
        let journal = AuditJournal::new(2);
        let store = MemoryStore::new();
        let key = crate::testing::random_id();
        for at in 0..5 {
            journal.record(&event(AuditKind::Disabled, key, at));
        }
        assert_eq!((journal.queued(), journal.dropped()), (2, 3));
        let flushed = journal.flush_to(&store).await.expect("flush");
        assert_eq!(flushed.written, 3);
        let records = store.query(&AuditQuery::new()).await.expect("query");
        assert_eq!(
            kinds(&records),
            [
                ("disabled", 1),
                ("disabled", 1),
                ("audit_events_dropped", 3)
            ]
        );
        // Reported once.
        assert_eq!(journal.flush_to(&store).await.expect("flush").written, 0);
        assert_eq!(journal.dropped(), 3);
    }

    #[tokio::test]
    async fn retention_holds_for_clones_made_before_it_was_set() {
        let journal = AuditJournal::new(10);
        let sink = journal.clone();
        let journal = journal.with_retention(Duration::days(1));
        let store = MemoryStore::new();
        let key = crate::testing::random_id();
        // Recorded through the earlier clone, in 1970: older than the retention period.
        sink.record(&event(AuditKind::Disabled, key, 1));
        assert_eq!(journal.queued(), 1, "the clones share one queue");
        let flushed = sink.flush_to(&store).await.expect("flush");
        assert_eq!((flushed.written, flushed.purged), (1, 1));
        assert!(
            store
                .query(&AuditQuery::new())
                .await
                .expect("query")
                .is_empty()
        );
    }

    #[tokio::test]
    async fn verifications_are_counted_and_keep_their_place() {
        let journal = AuditJournal::new(100);
        let store = MemoryStore::new();
        let (a, b) = (crate::testing::random_id(), crate::testing::random_id());
        for at in 0..4 {
            journal.record(&event(AuditKind::Verified, a, at));
        }
        journal.record(&event(AuditKind::Verified, b, 5));
        journal.record(&event(AuditKind::Disabled, a, 6));
        journal.record(&event(AuditKind::Verified, a, 7));
        assert_eq!(
            journal.queued(),
            4,
            "two counters and two events, not seven"
        );
        journal.flush_to(&store).await.expect("flush");
        let records = store.query(&AuditQuery::new().key(a)).await.expect("query");
        assert_eq!(
            kinds(&records),
            [("verified", 4), ("disabled", 1), ("verified", 1)]
        );
        assert_eq!(
            records[0].at.unix_timestamp(),
            3,
            "the last verification counted"
        );
    }

    #[tokio::test]
    async fn a_failed_flush_keeps_the_batch() {
        let journal = AuditJournal::new(10);
        let store = Flaky::default();
        let key = crate::testing::random_id();
        journal.record(&event(AuditKind::Disabled, key, 1));
        journal.record(&event(AuditKind::Verified, key, 2));
        store.down.store(true, Ordering::Relaxed);
        assert!(journal.flush_to(&store).await.is_err());
        journal.record(&event(AuditKind::Verified, key, 3));
        journal.record(&event(AuditKind::Enabled, key, 4));
        store.down.store(false, Ordering::Relaxed);
        let records = journal
            .query(&store, &AuditQuery::new())
            .await
            .expect("query");
        assert_eq!(
            kinds(&records),
            [("disabled", 1), ("verified", 2), ("enabled", 1)]
        );
        assert_eq!(journal.dropped(), 0);
    }
}
