//! Expiry notices: tell the application, once per key and threshold, that a key is about to
//! expire, even when the job runs on several instances at once.

use core::future::Future;

use time::{Duration, OffsetDateTime};

use super::KeyManager;
use super::lifecycle::LifecycleError;
use crate::audit::{AuditEvent, AuditKind, RequestContext};
use crate::key::id::KeyId;
use crate::record::KeyRecord;
use crate::store::{KeyStore, ListFilter, StoreError};

/// Where the markers of sent expiry notices are kept, so each is sent once across every
/// instance: implemented by the SQL stores (table `keyward_expiry_notices`, schema version
/// 4), the memory store and `AnyStore`.
pub trait NoticeStore: Send + Sync {
    /// Claims the notice for `key` at `threshold` before its expiry `expires_at`: `true`
    /// when this call is the first to claim it (the caller sends it), `false` when it was
    /// claimed before. Atomic: of concurrent claims exactly one gets `true`. A key whose
    /// expiry changes (edited, or a new key after rotation) is a new notice.
    fn claim_notice(
        &self,
        key: &KeyId,
        threshold: Duration,
        expires_at: OffsetDateTime,
        now: OffsetDateTime,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
}

/// A key about to expire, to tell its owner about (and, say, offer a replacement).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ExpiryNotice {
    /// The key, as read by the job.
    pub record: KeyRecord,
    /// The threshold crossed: the key expires within this.
    pub threshold: Duration,
    /// When the key expires.
    pub expires_at: OffsetDateTime,
}

impl<S: KeyStore + NoticeStore> KeyManager<S> {
    /// The expiry-notice job: finds the live keys matching `filter` that expire within one
    /// of `thresholds` (such as 14 and 3 days), claims each crossed threshold in the store,
    /// and returns one notice per key for which this call claimed something (with the
    /// nearest threshold crossed), soonest expiry first. An `expiry_notice` audit event is
    /// emitted for each.
    ///
    /// Run it on a schedule, on as many instances as you like: a notice claimed by one call
    /// is never returned by another, whichever instance runs it. When the job first sees a
    /// key past several thresholds (a key issued with 2 days left, with thresholds 14 and 3
    /// days), it claims them all and returns one notice. Delivery is at most once: a notice
    /// is claimed before the application sends it, so a crash in between loses it.
    ///
    /// ```
    /// use keyward::{Hasher, IssueRequest, KeyFormat, KeyManager, MemoryStore, Pepper, RequestContext};
    /// use keyward::{policy::Expiry, store::ListFilter};
    /// use time::Duration;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let manager = KeyManager::new(MemoryStore::new(), KeyFormat::new(["tak"])?, Hasher::fast(Pepper::random("k1")?));
    /// let ctx = RequestContext::new();
    /// let request = IssueRequest::new("ci", "user_1").expiry(Expiry::After(Duration::days(10)));
    /// manager.issue(request, &ctx).await?;
    /// let thresholds = [Duration::days(14), Duration::days(3)];
    /// let notices = manager.expiry_notices(&ListFilter::All, &thresholds, &ctx).await?;
    /// assert_eq!(notices.len(), 1);
    /// assert_eq!(notices[0].threshold, Duration::days(14));
    /// // Once: running the job again tells nothing new.
    /// assert!(manager.expiry_notices(&ListFilter::All, &thresholds, &ctx).await?.is_empty());
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// A store error; notices claimed before it stay claimed (and are not returned), so a
    /// failing store loses them rather than sending them twice.
    pub async fn expiry_notices(
        &self,
        filter: &ListFilter,
        thresholds: &[Duration],
        ctx: &RequestContext,
    ) -> Result<Vec<ExpiryNotice>, LifecycleError> {
        let Some(widest) = thresholds.iter().copied().filter(|t| t.is_positive()).max() else {
            return Ok(Vec::new());
        };
        let now = self.clock.now();
        let mut notices = Vec::new();
        for record in self.list_expiring(filter, widest).await? {
            let Some(expires_at) = record.expires_at else {
                continue;
            };
            let left = expires_at - now;
            let mut crossed: Vec<Duration> = thresholds
                .iter()
                .copied()
                .filter(|t| t.is_positive() && left <= *t)
                .collect();
            crossed.sort_unstable();
            crossed.dedup();
            let mut nearest = None;
            for threshold in crossed {
                if self
                    .store
                    .claim_notice(&record.id, threshold, expires_at, now)
                    .await?
                {
                    nearest = Some(nearest.map_or(threshold, |n: Duration| n.min(threshold)));
                }
            }
            if let Some(threshold) = nearest {
                let kind = AuditKind::ExpiryNotice {
                    threshold_seconds: threshold.whole_seconds(),
                    expires_at,
                };
                self.emit(AuditEvent::new(now, kind, ctx).about(&record));
                notices.push(ExpiryNotice {
                    record,
                    threshold,
                    expires_at,
                });
            }
        }
        Ok(notices)
    }
}
