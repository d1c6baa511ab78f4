//! Usage quotas: uses left on a key, taken atomically after it verified, refilled on the
//! key's schedule (lazily, on the first use of each period) or by a job.

use core::convert::Infallible;
use core::future::ready;
use std::sync::Arc;

use super::KeyManager;
use super::authority::Reach;
use super::cas::{CasError, Decision, Outcome, Write};
use crate::audit::{AuditEvent, AuditKind, RequestContext};
use crate::key::id::KeyId;
use crate::record::{KeyRecord, QuotaRefill};
use crate::store::{Consumed, KeyStore, ListFilter, Page, StoreError};
use crate::verified::Verified;

/// Compare-and-set attempts of a refill before giving up with
/// [`QuotaError::Unavailable`]. A refill loses only to another write of the same record,
/// and after losing it re-reads the record, which is then refilled already (the usual
/// case at a period boundary) or changed by a rare lifecycle operation.
const REFILL_ATTEMPTS: usize = 8;

/// Most rotations followed from a retired key to the key that holds its uses now.
const ROTATION_HOPS: usize = 16;

/// Uses left after [`KeyManager::consume`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Remaining {
    /// The key has no quota.
    Unlimited,
    /// This many uses are left.
    Uses(u64),
}

/// Why uses could not be taken.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum QuotaError {
    /// Not enough uses left; nothing was taken (`429` in the HTTP layer, or `402` if the
    /// application sells uses).
    #[error("usage quota exhausted")]
    Exhausted,
    /// The key no longer exists.
    #[error("no key with id {0}")]
    NotFound(KeyId),
    /// A key acting as manager tried to give a quota beyond its own (more uses than it has
    /// left, none at all, or a refill schedule, while it has a quota itself).
    #[error("cannot give a usage quota beyond the acting key's own")]
    Widening,
    /// The store could not answer, or the record kept changing under concurrent writes
    /// ([`StoreError::Conflict`]): fail closed (`503`).
    #[error("usage quota unavailable")]
    Unavailable(#[source] StoreError),
}

/// A store error; a missing record is [`QuotaError::NotFound`].
impl From<StoreError> for QuotaError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::NotFound(id) => Self::NotFound(id),
            other => Self::Unavailable(other),
        }
    }
}

impl CasError for QuotaError {
    fn not_found(id: KeyId) -> Self {
        Self::NotFound(id)
    }

    fn contended(id: KeyId) -> Self {
        Self::Unavailable(StoreError::Conflict(id))
    }
}

impl<S: KeyStore> KeyManager<S> {
    /// Takes `cost` uses from a verified key's quota, atomically in the store, and returns
    /// what is left. A key without a quota is [`Remaining::Unlimited`].
    ///
    /// When the key has a [refill schedule](crate::record::QuotaRefill) and a new period has begun
    /// since its last refill (by the manager's clock), the quota is first set back to the
    /// refill amount: a compare-and-set on the record's version, starting from the record in
    /// `verified`. Of several uses racing at a period boundary exactly one refills; the others
    /// lose the compare-and-set, read the refilled record and only take their uses.
    ///
    /// Call it only with a [`Verified`] key, so a forged key never drains anyone's quota.
    /// Quotas always fail closed: when the store cannot answer, nothing is granted.
    ///
    /// # Errors
    /// [`QuotaError::Exhausted`] when fewer than `cost` uses are left (nothing is taken),
    /// [`QuotaError::NotFound`] when the key was deleted since it verified,
    /// [`QuotaError::Unavailable`] when the store fails (or a refill kept losing to other
    /// writes of the record).
    pub async fn consume(&self, verified: &Verified, cost: u64) -> Result<Remaining, QuotaError> {
        let mut record: Arc<KeyRecord> = verified.shared_record();
        // A key retired by a rotation draws on its successor's pool: its own uses moved
        // there. A proof read before the rotation learns it from the exhausted retired key.
        for _ in 0..ROTATION_HOPS {
            if let Some(successor) = record.rotated_to {
                record = self
                    .store
                    .get(&successor)
                    .await?
                    .ok_or(QuotaError::NotFound(verified.key_id()))?;
                continue;
            }
            if record.refill.is_some() {
                self.refill_if_due(&record).await?;
            }
            match self.store.consume(&record.id, cost).await? {
                Consumed::Unlimited => return Ok(Remaining::Unlimited),
                Consumed::Remaining(left) => return Ok(Remaining::Uses(left)),
                Consumed::NotFound => return Err(QuotaError::NotFound(verified.key_id())),
                Consumed::Exhausted => {
                    let fresh = self.store.get(&record.id).await?;
                    match fresh {
                        Some(fresh) if fresh.rotated_to.is_some() => record = fresh,
                        _ => return Err(QuotaError::Exhausted),
                    }
                }
            }
        }
        Err(QuotaError::Exhausted)
    }

    /// Refills the quota of `seen` (a possibly stale read of the record) if its schedule
    /// calls for it now, by compare-and-set, re-reading and deciding again after a lost one.
    async fn refill_if_due(&self, seen: &Arc<KeyRecord>) -> Result<(), QuotaError> {
        let now = self.clock.now();
        let decide = |record: Arc<KeyRecord>| {
            let due = record.refill.filter(|r| r.is_due(record.refilled_at, now));
            ready(Ok::<_, QuotaError>(match due {
                None => Decision::Keep(()),
                Some(refill) => {
                    let mut next = KeyRecord::clone(&record);
                    next.remaining_uses = Some(refill.uses());
                    next.refilled_at = Some(now);
                    Decision::Write(Write::Update(next), refill.uses())
                }
            }))
        };
        let id = seen.id;
        let outcome =
            self.compare_and_set(&id, None, Some(Arc::clone(seen)), REFILL_ATTEMPTS, decide);
        if let Outcome::Written { before, value, .. } = outcome.await? {
            let kind = AuditKind::QuotaRefilled {
                remaining_uses: value,
                scheduled: true,
            };
            let ctx = RequestContext::new();
            self.emit(AuditEvent::new(now, kind, &ctx).about(&before));
        }
        Ok(())
    }

    /// Replaces a key's quota, as [`IssueRequest::remaining_uses`](crate::IssueRequest::remaining_uses)
    /// and [`IssueRequest::refill`](crate::IssueRequest::refill) set it at issuance: the key
    /// gets `remaining_uses` uses (or, when `None`, a full refill of `refill`, or no quota at
    /// all when both are `None`) and the refill schedule `refill`, counted from now (the next
    /// automatic refill comes at the start of the next period). For plan changes. Returns the
    /// updated record. Uses are counted in the store, so the change applies to every later
    /// [`consume`](KeyManager::consume); refills by the new schedule start from proofs
    /// verified after the change (a proof carries the record as it was read).
    ///
    /// ```
    /// # use keyward::{Hasher, IssueRequest, KeyFormat, KeyManager, MemoryStore, Pepper, RequestContext, record::QuotaRefill};
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// # let manager = KeyManager::new(MemoryStore::new(), KeyFormat::new(["tak"])?, Hasher::fast(Pepper::random("k1")?));
    /// # let id = manager.issue(IssueRequest::new("ci", "user_1"), &RequestContext::new()).await?.key.id();
    /// // An upgrade to the pro plan: 10,000 uses a month, renewed on the 1st.
    /// let plan = Some(QuotaRefill::monthly(10_000, 1)?);
    /// let record = manager.set_quota(&id, None, plan, &RequestContext::new()).await?;
    /// assert_eq!(record.remaining_uses, Some(10_000));
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`QuotaError::NotFound`], or [`QuotaError::Unavailable`] when the store fails or the
    /// record kept changing under concurrent writes.
    pub async fn set_quota(
        &self,
        id: &KeyId,
        remaining_uses: Option<u64>,
        refill: Option<QuotaRefill>,
        ctx: &RequestContext,
    ) -> Result<KeyRecord, QuotaError> {
        self.set_quota_within(id, remaining_uses, refill, None, ctx)
            .await
    }

    pub(crate) async fn set_quota_within(
        &self,
        id: &KeyId,
        remaining_uses: Option<u64>,
        refill: Option<QuotaRefill>,
        reach: Option<&Reach>,
        ctx: &RequestContext,
    ) -> Result<KeyRecord, QuotaError> {
        let now = self.clock.now();
        let decide = |current: Arc<KeyRecord>| {
            let mut next = KeyRecord::clone(&current);
            next.remaining_uses = remaining_uses.or(refill.map(|r| r.uses()));
            next.refill = refill;
            next.refilled_at = refill.map(|_| now);
            ready(Ok::<_, QuotaError>(Decision::<Infallible, _>::Write(
                Write::Update(next),
                (),
            )))
        };
        match self
            .compare_and_set(id, reach, None, REFILL_ATTEMPTS, decide)
            .await?
        {
            Outcome::Kept(_, never) => match never {},
            Outcome::Written { write, .. } => {
                let next = write.into_record();
                let kind = AuditKind::QuotaSet {
                    remaining_uses: next.remaining_uses,
                    refill,
                };
                self.emit(AuditEvent::new(now, kind, ctx).about(&next));
                Ok(next)
            }
        }
    }

    /// Sets the quota of every key matching `filter` that has one to `uses`: the refill
    /// job, for schedules the built-in ones do not cover (keys issued with
    /// [`IssueRequest::refill`](crate::IssueRequest::refill) refill by themselves). Run it
    /// from the application's scheduler; keys without a quota stay unlimited. Each refilled
    /// key's [`refilled_at`](KeyRecord::refilled_at) becomes now, so a key that also has a
    /// schedule is not refilled again by it before its next period. Returns how many keys
    /// were refilled.
    ///
    /// Each key is refilled by compare-and-set, retried when a concurrent change wins; uses
    /// taken between the read and the write of one key are forgiven (the refill sets, it does
    /// not add).
    ///
    /// # Errors
    /// [`QuotaError::Unavailable`] when the store fails; keys refilled before the failure
    /// stay refilled, and running the job again is safe.
    pub async fn refill_quotas(
        &self,
        filter: &ListFilter,
        uses: u64,
        ctx: &RequestContext,
    ) -> Result<usize, QuotaError> {
        let mut refilled = 0;
        let mut page = Some(Page::first(Page::MAX_LIMIT));
        while let Some(current) = page {
            let records = self.store.list(filter, current).await?;
            for record in &records {
                // A key retired by a rotation has no pool of its own any more.
                if record.remaining_uses.is_some()
                    && record.rotated_to.is_none()
                    && self.refill_one(record.id, uses, ctx).await?
                {
                    refilled += 1;
                }
            }
            page = current.next(&records);
        }
        Ok(refilled)
    }

    async fn refill_one(
        &self,
        id: KeyId,
        uses: u64,
        ctx: &RequestContext,
    ) -> Result<bool, QuotaError> {
        let now = self.clock.now();
        let decide = |record: Arc<KeyRecord>| {
            ready(Ok::<_, QuotaError>(if record.remaining_uses.is_none() {
                Decision::Keep(())
            } else {
                let mut next = KeyRecord::clone(&record);
                next.remaining_uses = Some(uses);
                next.refilled_at = Some(now);
                Decision::Write(Write::Update(next), ())
            }))
        };
        match self
            .compare_and_set(&id, None, None, REFILL_ATTEMPTS, decide)
            .await
        {
            Ok(Outcome::Written { before, .. }) => {
                let kind = AuditKind::QuotaRefilled {
                    remaining_uses: uses,
                    scheduled: false,
                };
                self.emit(AuditEvent::new(now, kind, ctx).about(&before));
                Ok(true)
            }
            // Deleted since it was listed, or without a quota now: nothing to refill.
            Ok(Outcome::Kept(..)) | Err(QuotaError::NotFound(_)) => Ok(false),
            Err(other) => Err(other),
        }
    }
}

#[cfg(all(test, feature = "testing"))]
mod tests {
    use super::*;
    use crate::testing::{epoch, record, verified};
    use crate::{Hasher, KeyFormat, MemoryStore, Pepper};

    fn manager() -> KeyManager<MemoryStore> {
        KeyManager::new(
            MemoryStore::new(),
            KeyFormat::new(["test"]).expect("test setup"),
            Hasher::fast(Pepper::random("k1").expect("test setup")),
        )
    }

    #[tokio::test]
    async fn a_stale_proof_refills_once_after_losing_the_compare_and_set() {
        let clock = crate::clock::FakeClock::new(epoch() + time::Duration::hours(12));
        let log = crate::audit::AuditLog::new();
        let m = manager().with_clock(clock.clone()).with_audit(log.clone());
        let mut r = record("acme");
        r.remaining_uses = Some(0);
        r.refill = Some(QuotaRefill::daily(2).expect("valid"));
        r.refilled_at = Some(epoch());
        m.store().insert(r.clone()).await.expect("test setup");
        let stale = verified(r.clone(), r.scopes.clone(), epoch());
        // Another write bumps the version: the proof's record is now stale.
        let mut renamed = r.clone();
        renamed.name = "renamed".to_owned();
        m.store().update(renamed, 0).await.expect("test setup");

        assert!(matches!(
            m.consume(&stale, 1).await,
            Err(QuotaError::Exhausted)
        ));
        clock.advance(time::Duration::days(1));
        assert_eq!(
            m.consume(&stale, 1).await.expect("refilled"),
            Remaining::Uses(1)
        );
        assert_eq!(
            m.consume(&stale, 1).await.expect("same period"),
            Remaining::Uses(0)
        );
        assert!(matches!(
            m.consume(&stale, 1).await,
            Err(QuotaError::Exhausted)
        ));
        let got = m.store().get(&r.id).await.expect("get").expect("present");
        assert_eq!(got.name, "renamed", "the refill kept the other change");
        assert_eq!(
            got.version, 4,
            "one rename, one refill, two consumes (a consume is a write)"
        );
        assert_eq!(got.refilled_at, Some(m.now()));
        let kinds: Vec<_> = log.take().into_iter().map(|e| (e.kind, e.key_id)).collect();
        assert_eq!(
            kinds,
            [(
                AuditKind::QuotaRefilled {
                    remaining_uses: 2,
                    scheduled: true
                },
                Some(r.id)
            )]
        );
    }

    #[tokio::test]
    async fn set_quota_replaces_the_quota_and_its_schedule() {
        let clock = crate::clock::FakeClock::new(epoch());
        let log = crate::audit::AuditLog::new();
        let m = manager().with_clock(clock.clone()).with_audit(log.clone());
        let ctx = RequestContext::new().actor("billing");
        let r = record("acme");
        m.store().insert(r.clone()).await.expect("test setup");
        let monthly = QuotaRefill::monthly(5, 1).expect("valid");
        let set = m
            .set_quota(&r.id, None, Some(monthly), &ctx)
            .await
            .expect("set");
        assert_eq!(
            (set.remaining_uses, set.refill, set.refilled_at, set.version),
            (Some(5), Some(monthly), Some(epoch()), 1)
        );
        assert_eq!(
            *m.store().get(&r.id).await.expect("get").expect("present"),
            set
        );
        let set = m
            .set_quota(&r.id, Some(2), Some(monthly), &ctx)
            .await
            .expect("set");
        assert_eq!(set.remaining_uses, Some(2));
        let set = m.set_quota(&r.id, None, None, &ctx).await.expect("set");
        assert_eq!(
            (set.remaining_uses, set.refill, set.refilled_at),
            (None, None, None)
        );
        let missing = crate::testing::random_id();
        assert!(
            matches!(m.set_quota(&missing, Some(1), None, &ctx).await, Err(QuotaError::NotFound(id)) if id == missing)
        );
        let events = log.take();
        let kinds: Vec<_> = events.iter().map(|e| e.kind.clone()).collect();
        assert_eq!(
            kinds,
            [
                AuditKind::QuotaSet {
                    remaining_uses: Some(5),
                    refill: Some(monthly)
                },
                AuditKind::QuotaSet {
                    remaining_uses: Some(2),
                    refill: Some(monthly)
                },
                AuditKind::QuotaSet {
                    remaining_uses: None,
                    refill: None
                },
            ],
            "one event per change, none for the missing key"
        );
        assert!(
            events
                .iter()
                .all(|e| e.key_id == Some(r.id) && e.context.actor.as_deref() == Some("billing"))
        );
    }

    #[tokio::test]
    async fn quota_is_taken_refused_at_zero_and_refilled() {
        let log = crate::audit::AuditLog::new();
        let m = manager().with_audit(log.clone());
        let mut limited = record("acme");
        limited.remaining_uses = Some(3);
        let unlimited = record("acme");
        m.store().insert(limited.clone()).await.expect("test setup");
        m.store()
            .insert(unlimited.clone())
            .await
            .expect("test setup");
        let v = verified(limited.clone(), limited.scopes.clone(), epoch());
        let u = verified(unlimited.clone(), unlimited.scopes.clone(), epoch());
        assert_eq!(
            m.consume(&v, 2).await.expect("test setup"),
            Remaining::Uses(1)
        );
        assert!(matches!(m.consume(&v, 2).await, Err(QuotaError::Exhausted)));
        assert_eq!(
            m.consume(&v, 1).await.expect("test setup"),
            Remaining::Uses(0)
        );
        assert!(matches!(m.consume(&v, 1).await, Err(QuotaError::Exhausted)));
        assert_eq!(
            m.consume(&u, 1_000).await.expect("test setup"),
            Remaining::Unlimited
        );
        let n = m
            .refill_quotas(
                &ListFilter::Owner("acme".into()),
                10,
                &RequestContext::new(),
            )
            .await
            .expect("test setup");
        assert_eq!(n, 1, "only the key with a quota");
        let refills: Vec<_> = log
            .take()
            .into_iter()
            .filter(|e| e.kind.name() == "quota_refilled")
            .map(|e| (e.kind, e.key_id))
            .collect();
        assert_eq!(
            refills,
            [(
                AuditKind::QuotaRefilled {
                    remaining_uses: 10,
                    scheduled: false
                },
                Some(limited.id)
            )]
        );
        assert_eq!(
            m.consume(&v, 1).await.expect("test setup"),
            Remaining::Uses(9)
        );
        assert_eq!(
            m.consume(&u, 1).await.expect("test setup"),
            Remaining::Unlimited
        );
        m.store().delete(&limited.id).await.expect("test setup");
        assert!(
            matches!(m.consume(&v, 1).await, Err(QuotaError::NotFound(id)) if id == limited.id)
        );
    }
}
