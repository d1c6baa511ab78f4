//! Lifecycle: disable, enable, revoke (one, or all of an owner or tenant), rotate,
//! regenerate, delete, and listings.

use core::convert::Infallible;
use core::future::ready;
use std::sync::Arc;

use time::Duration;

use super::KeyManager;
use super::authority::{Reach, rotated_end};
use super::cas::{CasError, Decision, Outcome, Write};
use super::issue::Issued;
use crate::audit::{AuditEvent, AuditKind, RequestContext};
use crate::key::id::KeyId;
use crate::record::{KeyRecord, KeyStatus};
use crate::store::{BulkRevocation, KeyStore, ListFilter, Page, StoreError, for_each_readable};

/// Why a lifecycle operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LifecycleError {
    /// No key with this id.
    #[error("no key with id {0}")]
    NotFound(KeyId),
    /// The key is revoked, which is final.
    #[error("key {0} is revoked (revocation is final)")]
    Revoked(KeyId),
    /// Only a live key can be rotated.
    #[error("key {0} is not live (disabled, revoked or expired keys cannot be rotated)")]
    NotLive(KeyId),
    /// The key was rotated already; rotate its successor instead.
    #[error("key {0} was already rotated")]
    AlreadyRotated(KeyId),
    /// The grace period is negative.
    #[error("grace period must not be negative")]
    NegativeGrace,
    /// Enabling the key would exceed its owner's cap of live keys.
    #[error("owner has reached the limit of {limit} live keys")]
    LimitReached {
        /// The cap.
        limit: usize,
    },
    /// Enabling the key would exceed its tenant's cap of live keys.
    #[error("tenant has reached the limit of {limit} live keys")]
    TenantLimitReached {
        /// The cap.
        limit: usize,
    },
    /// The key acting as manager no longer verifies (revoked, disabled, expired, deleted,
    /// or an ancestor of it is).
    #[error("the acting key no longer verifies")]
    Actor(#[source] super::VerifyError),
    /// The record kept changing under concurrent updates.
    #[error("key {0} is being changed concurrently; try again")]
    Contended(KeyId),
    /// Making the replacement key failed (the cause is the [`source`](std::error::Error::source)).
    #[error("could not make the replacement key")]
    Issue(#[source] Box<super::IssueError>),
    /// The store failed.
    #[error(transparent)]
    Store(StoreError),
}

/// A store error; the owner's and the tenant's caps of live keys are
/// [`LifecycleError::LimitReached`] and [`LifecycleError::TenantLimitReached`].
impl From<StoreError> for LifecycleError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::LimitReached { limit } => Self::LimitReached { limit },
            StoreError::TenantLimitReached { limit } => Self::TenantLimitReached { limit },
            other => Self::Store(other),
        }
    }
}

impl CasError for LifecycleError {
    fn not_found(id: KeyId) -> Self {
        Self::NotFound(id)
    }

    fn contended(id: KeyId) -> Self {
        Self::Contended(id)
    }
}

/// Compare-and-set attempts before giving up with [`LifecycleError::Contended`].
const CAS_ATTEMPTS: usize = 8;

impl<S: KeyStore> KeyManager<S> {
    /// The record of a key.
    ///
    /// # Errors
    /// [`LifecycleError::NotFound`] or a store error.
    pub async fn get(&self, id: &KeyId) -> Result<KeyRecord, LifecycleError> {
        let record = self.reachable::<LifecycleError>(id, None).await?;
        Ok(Arc::unwrap_or_clone(record))
    }

    /// Disables a key: it is refused until enabled again, with the same value (and so are
    /// the keys delegated from it). Disabling a disabled key changes nothing. An operator
    /// call, bounded by nothing: see [`KeyManager::acting_as`] for a key's own.
    ///
    /// # Errors
    /// [`LifecycleError::Revoked`] for a revoked key, [`LifecycleError::NotFound`], or a
    /// store error.
    pub async fn disable(
        &self,
        id: &KeyId,
        ctx: &RequestContext,
    ) -> Result<KeyRecord, LifecycleError> {
        self.set_status(id, KeyStatus::Disabled, None, None, ctx)
            .await
    }

    /// Enables a disabled key; the same key value works again (unless it has expired).
    /// The key counts against its owner's and its tenant's caps again, atomically: under a
    /// cap, enabling fails when the owner (or the tenant) already has as many live keys.
    /// An operator call, bounded by nothing: see [`KeyManager::acting_as`] for a key's own.
    ///
    /// # Errors
    /// [`LifecycleError::Revoked`] for a revoked key (revocation is final),
    /// [`LifecycleError::LimitReached`], [`LifecycleError::TenantLimitReached`],
    /// [`LifecycleError::NotFound`], or a store error.
    pub async fn enable(
        &self,
        id: &KeyId,
        ctx: &RequestContext,
    ) -> Result<KeyRecord, LifecycleError> {
        self.set_status(id, KeyStatus::Active, None, None, ctx)
            .await
    }

    /// Revokes a key, at once and for good, and with it every key delegated from it.
    /// Revoking a revoked key changes nothing. An operator call, bounded by nothing: see
    /// [`KeyManager::acting_as`] for a key's own.
    ///
    /// # Errors
    /// [`LifecycleError::NotFound`] or a store error.
    pub async fn revoke(
        &self,
        id: &KeyId,
        reason: Option<&str>,
        ctx: &RequestContext,
    ) -> Result<KeyRecord, LifecycleError> {
        self.set_status(id, KeyStatus::Revoked, reason, None, ctx)
            .await
    }

    /// Sets a key's status to `to` by compare-and-set (with `reach`, only within it):
    /// nothing changes when it has that status already, a revoked key stays revoked
    /// ([`LifecycleError::Revoked`]), and making a key active again keeps the owner's cap.
    /// `reason` goes to the audit event of a revocation.
    pub(crate) async fn set_status(
        &self,
        id: &KeyId,
        to: KeyStatus,
        reason: Option<&str>,
        reach: Option<&Reach>,
        ctx: &RequestContext,
    ) -> Result<KeyRecord, LifecycleError> {
        let capped = to == KeyStatus::Active;
        let decide = |current: Arc<KeyRecord>| {
            ready(if current.status == to {
                Ok(Decision::Keep(()))
            } else if current.status == KeyStatus::Revoked {
                Err(LifecycleError::Revoked(current.id))
            } else {
                let mut next = KeyRecord::clone(&current);
                next.status = to;
                let caps = if capped {
                    self.policy.caps_for(&next)
                } else {
                    crate::store::LiveCaps::none()
                };
                let write = if caps.is_none() {
                    Write::Update(next)
                } else {
                    Write::Capped(next, caps)
                };
                Ok(Decision::Write(write, ()))
            })
        };
        match self
            .compare_and_set(id, reach, None, CAS_ATTEMPTS, decide)
            .await?
        {
            Outcome::Kept(record, ()) => Ok(KeyRecord::clone(&record)),
            Outcome::Written { write, .. } => {
                self.hasher.forget_cached(*id);
                let record = write.into_record();
                let kind = match to {
                    KeyStatus::Active => AuditKind::Enabled,
                    KeyStatus::Disabled => AuditKind::Disabled,
                    KeyStatus::Revoked => AuditKind::Revoked {
                        reason: reason.map(str::to_owned),
                    },
                };
                self.emit(AuditEvent::new(self.clock.now(), kind, ctx).about(&record));
                Ok(record)
            }
        }
    }

    /// Revokes every key of an owner (offboarding), in one store operation that one
    /// unreadable row cannot stop (see [`KeyStore::revoke_matching`]). Keys delegated from
    /// them have the same owner and are revoked too. An operator call: see
    /// [`Acting::revoke_owner`](super::Acting::revoke_owner) for a key's own.
    ///
    /// # Errors
    /// A store error; keys revoked before it stay revoked, and running it again is safe.
    pub async fn revoke_owner(
        &self,
        owner: &str,
        reason: Option<&str>,
        ctx: &RequestContext,
    ) -> Result<BulkRevocation, LifecycleError> {
        let filter = ListFilter::Owner(owner.to_owned());
        self.revoke_all(&filter, reason, None, ctx).await
    }

    /// Revokes every key of a tenant (incident response), as [`KeyManager::revoke_owner`].
    ///
    /// # Errors
    /// As [`KeyManager::revoke_owner`].
    pub async fn revoke_tenant(
        &self,
        tenant: &str,
        reason: Option<&str>,
        ctx: &RequestContext,
    ) -> Result<BulkRevocation, LifecycleError> {
        let filter = ListFilter::Tenant(tenant.to_owned());
        self.revoke_all(&filter, reason, None, ctx).await
    }

    /// Revokes every key matching `filter`. Without `reach`, in one store operation that
    /// revokes even unreadable rows; with it, one key at a time, only the readable ones
    /// within reach (the others are left to the operator).
    pub(crate) async fn revoke_all(
        &self,
        filter: &ListFilter,
        reason: Option<&str>,
        reach: Option<&Reach>,
        ctx: &RequestContext,
    ) -> Result<BulkRevocation, LifecycleError> {
        let Some(reach) = reach else {
            let report = self.store.revoke_matching(filter).await?;
            let now = self.clock.now();
            for id in &report.revoked {
                self.hasher.forget_cached(*id);
                let kind = AuditKind::Revoked {
                    reason: reason.map(str::to_owned),
                };
                self.emit(AuditEvent::new(now, kind, ctx).key(*id));
            }
            return Ok(report);
        };
        let mut candidates = Vec::new();
        for_each_readable(
            &self.store,
            filter,
            |r| {
                if r.status != KeyStatus::Revoked {
                    candidates.push(r);
                }
            },
            |_| {},
        )
        .await?;
        let mut revoked = Vec::new();
        for record in candidates {
            if !self.reaches(reach, &record).await? {
                continue;
            }
            let id = record.id;
            match self
                .set_status(&id, KeyStatus::Revoked, reason, Some(reach), ctx)
                .await
            {
                Ok(_) => revoked.push(id),
                Err(LifecycleError::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(BulkRevocation::new(revoked, Vec::new()))
    }

    /// Deletes a key's record (the keys delegated from it stop working: a missing ancestor
    /// refuses them). Prefer revocation, which keeps the record for audits. An operator
    /// call, bounded by nothing: see [`KeyManager::acting_as`] for a key's own.
    ///
    /// # Errors
    /// [`LifecycleError::NotFound`] or a store error.
    pub async fn delete(&self, id: &KeyId, ctx: &RequestContext) -> Result<(), LifecycleError> {
        self.delete_within(id, None, ctx).await
    }

    pub(crate) async fn delete_within(
        &self,
        id: &KeyId,
        reach: Option<&Reach>,
        ctx: &RequestContext,
    ) -> Result<(), LifecycleError> {
        let record = self.reachable::<LifecycleError>(id, reach).await?;
        if !self.store.delete(id).await? {
            return Err(LifecycleError::NotFound(*id));
        }
        self.hasher.forget_cached(*id);
        self.emit(AuditEvent::new(self.clock.now(), AuditKind::Deleted, ctx).about(&record));
        Ok(())
    }

    /// Rotates a key: issues a new key that copies every authorization field of the old one
    /// (name, tenant, owner, parent, scopes, roles, restrictions, metadata, quota). Rotation
    /// never grants: the new key ends no later than the old one (nor than its ancestors or
    /// the policy allows), an expired or disabled key cannot be rotated, and during the
    /// overlap both keys draw on one pool of uses (the old key's uses move to the new key;
    /// [`KeyManager::consume`] on the old key takes from the new one's). Keys delegated from
    /// the old key are bound to it, not to its successor: they end with it (at the end of
    /// the grace period, or at once without one), so a key rotated because it leaked takes
    /// what was minted from it along. The old key manages nothing during its grace period.
    ///
    /// The old key keeps working until the earlier of its own expiry and now + `grace`, and
    /// only while the new key works (revoking, disabling or deleting the new key during the
    /// grace period ends the old one too), then fails as expired: a grace period ends *by
    /// time*, by design, so instances whose clocks differ end it a little apart. With no
    /// grace (or through [`KeyManager::regenerate`]) the old key is ended by a status
    /// change instead (revoked), which every instance sees at once whatever its clock.
    /// During the overlap the pair counts once against the per-owner cap. Both changes are
    /// one atomic store operation. An operator call, bounded by nothing: see
    /// [`KeyManager::acting_as`] for a key's own.
    ///
    /// # Errors
    /// [`LifecycleError`]: not found, not live, already rotated, negative grace, or a store
    /// or generation failure.
    pub async fn rotate(
        &self,
        id: &KeyId,
        grace: Duration,
        ctx: &RequestContext,
    ) -> Result<Issued, LifecycleError> {
        self.rotate_within(id, grace, None, ctx).await
    }

    pub(crate) async fn rotate_within(
        &self,
        id: &KeyId,
        grace: Duration,
        reach: Option<&Reach>,
        ctx: &RequestContext,
    ) -> Result<Issued, LifecycleError> {
        if grace.is_negative() {
            return Err(LifecycleError::NegativeGrace);
        }
        let decide = |old: Arc<KeyRecord>| async move {
            let now = self.clock.now();
            if old.rotated_to.is_some() {
                return Err(LifecycleError::AlreadyRotated(*id));
            }
            if !old.is_live(now) {
                return Err(LifecycleError::NotLive(*id));
            }
            let prefix_index = self
                .format
                .prefixes()
                .iter()
                .position(|p| *p == old.prefix)
                .unwrap_or(0);
            let (key, hash) = self
                .new_key(prefix_index)
                .map_err(|e| LifecycleError::Issue(Box::new(e)))?;
            let lineage_end = self.bounds_of(&old).await?.ends_at;
            let expires_at = rotated_end(lineage_end, reach, self.policy.latest_expiry(now));
            if expires_at.is_some_and(|at| at <= now) {
                return Err(LifecycleError::NotLive(*id));
            }
            let new = KeyRecord {
                id: key.id(),
                // The successor of an imported key is a key of the format, with its prefix.
                prefix: self
                    .format
                    .prefixes()
                    .get(prefix_index)
                    .cloned()
                    .unwrap_or_else(|| old.prefix.clone()),
                created_at: now,
                expires_at,
                last_used_at: None,
                status: KeyStatus::Active,
                hash,
                version: 0,
                rotated_from: Some(old.id),
                rotated_to: None,
                ..KeyRecord::clone(&old)
            };
            let mut retired = KeyRecord::clone(&old);
            retired.rotated_to = Some(new.id);
            let old_key_expires_at = if grace.is_zero() {
                retired.status = KeyStatus::Revoked;
                Some(now)
            } else {
                let end = now.saturating_add(grace);
                retired.expires_at = Some(retired.expires_at.map_or(end, |at| at.min(end)));
                retired.expires_at
            };
            // One pool: the uses (and their schedule) moved to the new key. The old key keeps
            // none, so a use of it (even through a proof read before the rotation) finds it
            // exhausted and is redirected to the new key (see `consume`).
            retired.remaining_uses = Some(0);
            retired.refill = None;
            let write = Write::Rotate {
                retired: Box::new(retired),
                new: Box::new(new),
            };
            Ok(Decision::<Infallible, _>::Write(
                write,
                (key, old_key_expires_at, now),
            ))
        };
        match self
            .compare_and_set(id, reach, None, CAS_ATTEMPTS, decide)
            .await?
        {
            Outcome::Kept(_, never) => match never {},
            Outcome::Written {
                before: old,
                write,
                value: (key, old_key_expires_at, now),
            } => {
                self.hasher.forget_cached(*id);
                let record = write.into_record();
                let kind = AuditKind::Rotated {
                    new_key: record.id,
                    old_key_expires_at,
                };
                self.emit(AuditEvent::new(now, kind, ctx).about(&old));
                Ok(Issued { key, record })
            }
        }
    }

    /// Regenerates a key: a rotation without overlap. The old key is revoked in the same
    /// atomic step (a status change, not a timestamp), so it fails on the very next request
    /// on every instance, whatever their clocks.
    ///
    /// # Errors
    /// As [`KeyManager::rotate`].
    pub async fn regenerate(
        &self,
        id: &KeyId,
        ctx: &RequestContext,
    ) -> Result<Issued, LifecycleError> {
        self.rotate(id, Duration::ZERO, ctx).await
    }

    /// One page of records matching `filter`, in id order (`page.limit` is clamped to
    /// `1..=Page::MAX_LIMIT`). An operator call that sees every key: see
    /// [`Acting::list`](super::Acting::list) for a key's own view.
    ///
    /// # Errors
    /// A store error.
    pub async fn list(
        &self,
        filter: &ListFilter,
        page: Page,
    ) -> Result<Vec<KeyRecord>, LifecycleError> {
        let page = Page {
            after: page.after,
            limit: page.limit.clamp(1, Page::MAX_LIMIT),
        };
        Ok(self.store.list(filter, page).await?)
    }

    /// Live keys matching `filter` that expire within `within` from now, soonest first
    /// (to warn their owners).
    ///
    /// # Errors
    /// A store error.
    pub async fn list_expiring(
        &self,
        filter: &ListFilter,
        within: Duration,
    ) -> Result<Vec<KeyRecord>, LifecycleError> {
        let now = self.clock.now();
        let horizon = now.saturating_add(within);
        let mut out = Vec::new();
        self.for_each(filter, |r| {
            if r.is_live(now) && r.expires_at.is_some_and(|at| at <= horizon) {
                out.push(r.clone());
            }
        })
        .await?;
        out.sort_by_key(|r| r.expires_at);
        Ok(out)
    }

    async fn for_each(
        &self,
        filter: &ListFilter,
        mut f: impl FnMut(&KeyRecord),
    ) -> Result<(), StoreError> {
        let mut page = Some(Page::first(Page::MAX_LIMIT));
        while let Some(p) = page {
            let records = self.store.list(filter, p).await?;
            records.iter().for_each(&mut f);
            page = p.next(&records);
        }
        Ok(())
    }
}
