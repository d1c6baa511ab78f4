//! Usage quotas: uses left on a key, taken atomically after it verified, refilled by a job.

use std::error::Error as StdError;

use super::KeyManager;
use crate::key_id::KeyId;
use crate::store::{Consumed, KeyStore, ListFilter, Page, StoreError};
use crate::verified::Verified;

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
    /// The store could not answer: fail closed (`503`).
    #[error("usage quota unavailable")]
    Unavailable(#[source] Box<dyn StdError + Send + Sync>),
}

impl From<StoreError> for QuotaError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::NotFound(id) => Self::NotFound(id),
            other => Self::Unavailable(Box::new(other)),
        }
    }
}

impl<S: KeyStore> KeyManager<S> {
    /// Takes `cost` uses from a verified key's quota, atomically in the store, and returns
    /// what is left. A key without a quota is [`Remaining::Unlimited`].
    ///
    /// Call it only with a [`Verified`] key, so a forged key never drains anyone's quota.
    /// Quotas always fail closed: when the store cannot answer, nothing is granted.
    ///
    /// # Errors
    /// [`QuotaError::Exhausted`] when fewer than `cost` uses are left (nothing is taken),
    /// [`QuotaError::NotFound`] when the key was deleted since it verified,
    /// [`QuotaError::Unavailable`] when the store fails.
    pub async fn consume(&self, verified: &Verified, cost: u64) -> Result<Remaining, QuotaError> {
        let id = verified.key_id();
        match self.store.consume(&id, cost).await? {
            Consumed::Unlimited => Ok(Remaining::Unlimited),
            Consumed::Remaining(left) => Ok(Remaining::Uses(left)),
            Consumed::Exhausted => Err(QuotaError::Exhausted),
            Consumed::NotFound => Err(QuotaError::NotFound(id)),
        }
    }

    /// Sets the quota of every key matching `filter` that has one to `uses`: the refill
    /// job. Run it from the application's scheduler at each period boundary (daily at
    /// midnight, monthly on the first); keys without a quota stay unlimited. Returns how many
    /// keys were refilled.
    ///
    /// Each key is refilled by compare-and-set, retried when a concurrent change wins; uses
    /// taken between the read and the write of one key are forgiven (the refill sets, it does
    /// not add).
    ///
    /// # Errors
    /// [`QuotaError::Unavailable`] when the store fails; keys refilled before the failure
    /// stay refilled, and running the job again is safe.
    pub async fn refill_quotas(&self, filter: &ListFilter, uses: u64) -> Result<usize, QuotaError> {
        let mut refilled = 0;
        let mut page = Some(Page::first(Page::MAX_LIMIT));
        while let Some(current) = page {
            let records = self.store.list(filter, current).await?;
            for record in &records {
                if record.remaining_uses.is_some() && self.refill_one(record.id, uses).await? {
                    refilled += 1;
                }
            }
            page = current.next(&records);
        }
        Ok(refilled)
    }

    async fn refill_one(&self, id: KeyId, uses: u64) -> Result<bool, QuotaError> {
        const ATTEMPTS: usize = 8;
        for _ in 0..ATTEMPTS {
            let Some(record) = self.store.get(&id).await? else {
                return Ok(false);
            };
            if record.remaining_uses.is_none() {
                return Ok(false);
            }
            let mut next = crate::record::KeyRecord::clone(&record);
            next.remaining_uses = Some(uses);
            match self.store.update(next, record.version).await {
                Ok(()) => return Ok(true),
                Err(StoreError::Conflict(_)) => {}
                Err(StoreError::NotFound(_)) => return Ok(false),
                Err(other) => return Err(other.into()),
            }
        }
        Err(QuotaError::Unavailable(Box::new(StoreError::Conflict(id))))
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
    async fn quota_is_taken_refused_at_zero_and_refilled() {
        let m = manager();
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
            .refill_quotas(&ListFilter::Owner("acme".into()), 10)
            .await
            .expect("test setup");
        assert_eq!(n, 1, "only the key with a quota");
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
