//! The memory store's audit log and expiry-notice markers.

use core::future::{Future, ready};
use std::collections::HashSet;
use std::sync::PoisonError;

use time::{Duration, OffsetDateTime};

use super::MemoryStore;
use crate::audit::{AuditQuery, AuditRecord, AuditStore};
use crate::key::id::KeyId;
use crate::manager::NoticeStore;
use crate::store::StoreError;

/// What the memory store keeps beside its records.
#[derive(Debug, Default)]
pub(super) struct Journal {
    /// Audit records in sequence order.
    records: Vec<AuditRecord>,
    /// The last sequence number given.
    seq: u64,
    /// Claimed notices: key, threshold in seconds, expiry.
    notices: HashSet<(KeyId, i64, OffsetDateTime)>,
}

impl MemoryStore {
    fn journal(&self) -> std::sync::MutexGuard<'_, Journal> {
        self.shared
            .journal
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

impl AuditStore for MemoryStore {
    fn append(
        &self,
        records: Vec<AuditRecord>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        let mut journal = self.journal();
        for mut record in records {
            journal.seq += 1;
            record.seq = journal.seq;
            journal.records.push(record);
        }
        ready(Ok(()))
    }

    fn query(
        &self,
        query: &AuditQuery,
    ) -> impl Future<Output = Result<Vec<AuditRecord>, StoreError>> + Send {
        let journal = self.journal();
        let after = query.after.unwrap_or(0);
        let start = journal.records.partition_point(|r| r.seq <= after);
        let found = journal.records[start..]
            .iter()
            .filter(|r| query.matches(r))
            .take(query.limit.clamp(1, AuditQuery::MAX_LIMIT))
            .cloned()
            .collect();
        ready(Ok(found))
    }

    fn purge_before(
        &self,
        before: OffsetDateTime,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send {
        let mut journal = self.journal();
        let was = journal.records.len();
        journal.records.retain(|r| r.at >= before);
        let purged = was - journal.records.len();
        ready(Ok(u64::try_from(purged).unwrap_or(u64::MAX)))
    }
}

impl NoticeStore for MemoryStore {
    fn claim_notice(
        &self,
        key: &KeyId,
        threshold: Duration,
        expires_at: OffsetDateTime,
        _now: OffsetDateTime,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send {
        let claimed = self
            .journal()
            .notices
            .insert((*key, threshold.whole_seconds(), expires_at));
        ready(Ok(claimed))
    }
}
