//! Lifecycle: disable, enable, revoke (one, or all of an owner or tenant), rotate,
//! regenerate, delete, and listings.

use time::{Duration, OffsetDateTime};

use super::KeyManager;
use super::issue::Issued;
use crate::audit::{AuditEvent, AuditKind, RequestContext};
use crate::key_id::KeyId;
use crate::record::{KeyRecord, KeyStatus};
use crate::store::{KeyStore, ListFilter, Page, StoreError};

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
    /// The record kept changing under concurrent updates.
    #[error("key {0} is being changed concurrently; try again")]
    Contended(KeyId),
    /// Making the replacement key failed.
    #[error("could not make the replacement key: {0}")]
    Issue(#[source] Box<super::IssueError>),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Compare-and-set attempts before giving up with [`LifecycleError::Contended`].
const CAS_ATTEMPTS: usize = 8;

impl<S: KeyStore> KeyManager<S> {
    /// The record of a key.
    ///
    /// # Errors
    /// [`LifecycleError::NotFound`] or a store error.
    pub async fn get(&self, id: &KeyId) -> Result<KeyRecord, LifecycleError> {
        match self.store.get(id).await? {
            Some(r) => Ok(KeyRecord::clone(&r)),
            None => Err(LifecycleError::NotFound(*id)),
        }
    }

    /// Applies `change` with compare-and-set, retrying when another writer won.
    /// `change` returns `Ok(false)` when there is nothing to do.
    async fn change(
        &self,
        id: &KeyId,
        mut change: impl FnMut(&mut KeyRecord) -> Result<bool, LifecycleError>,
    ) -> Result<(KeyRecord, bool), LifecycleError> {
        for _ in 0..CAS_ATTEMPTS {
            let current = self
                .store
                .get(id)
                .await?
                .ok_or(LifecycleError::NotFound(*id))?;
            let mut next = KeyRecord::clone(&current);
            if !change(&mut next)? {
                return Ok((next, false));
            }
            match self.store.update(next.clone(), current.version).await {
                Ok(()) => {
                    next.version = current.version + 1;
                    self.hasher.forget_cached(*id);
                    return Ok((next, true));
                }
                Err(StoreError::Conflict(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Err(LifecycleError::Contended(*id))
    }

    /// Disables a key: it is refused until enabled again, with the same value.
    /// Disabling a disabled key changes nothing.
    ///
    /// # Errors
    /// [`LifecycleError::Revoked`] for a revoked key, [`LifecycleError::NotFound`], or a
    /// store error.
    pub async fn disable(
        &self,
        id: &KeyId,
        ctx: &RequestContext,
    ) -> Result<KeyRecord, LifecycleError> {
        let (record, changed) = self
            .change(id, |r| match r.status {
                KeyStatus::Revoked => Err(LifecycleError::Revoked(r.id)),
                KeyStatus::Disabled => Ok(false),
                KeyStatus::Active => {
                    r.status = KeyStatus::Disabled;
                    Ok(true)
                }
            })
            .await?;
        if changed {
            self.emit(AuditEvent::new(self.clock.now(), AuditKind::Disabled, ctx).about(&record));
        }
        Ok(record)
    }

    /// Enables a disabled key; the same key value works again (unless it has expired).
    ///
    /// # Errors
    /// [`LifecycleError::Revoked`] for a revoked key (revocation is final),
    /// [`LifecycleError::NotFound`], or a store error.
    pub async fn enable(
        &self,
        id: &KeyId,
        ctx: &RequestContext,
    ) -> Result<KeyRecord, LifecycleError> {
        let (record, changed) = self
            .change(id, |r| match r.status {
                KeyStatus::Revoked => Err(LifecycleError::Revoked(r.id)),
                KeyStatus::Active => Ok(false),
                KeyStatus::Disabled => {
                    r.status = KeyStatus::Active;
                    Ok(true)
                }
            })
            .await?;
        if changed {
            self.emit(AuditEvent::new(self.clock.now(), AuditKind::Enabled, ctx).about(&record));
        }
        Ok(record)
    }

    /// Revokes a key, at once and for good. Revoking a revoked key changes nothing.
    ///
    /// # Errors
    /// [`LifecycleError::NotFound`] or a store error.
    pub async fn revoke(
        &self,
        id: &KeyId,
        reason: Option<&str>,
        ctx: &RequestContext,
    ) -> Result<KeyRecord, LifecycleError> {
        let (record, changed) = self
            .change(id, |r| {
                if r.status == KeyStatus::Revoked {
                    return Ok(false);
                }
                r.status = KeyStatus::Revoked;
                Ok(true)
            })
            .await?;
        if changed {
            let kind = AuditKind::Revoked {
                reason: reason.map(str::to_owned),
            };
            self.emit(AuditEvent::new(self.clock.now(), kind, ctx).about(&record));
        }
        Ok(record)
    }

    /// Revokes every key of an owner (offboarding). Returns the ids revoked now.
    ///
    /// # Errors
    /// A store error; keys revoked before it stay revoked.
    pub async fn revoke_owner(
        &self,
        owner: &str,
        reason: Option<&str>,
        ctx: &RequestContext,
    ) -> Result<Vec<KeyId>, LifecycleError> {
        self.revoke_all(&ListFilter::Owner(owner.to_owned()), reason, ctx)
            .await
    }

    /// Revokes every key of a tenant (incident response). Returns the ids revoked now.
    ///
    /// # Errors
    /// A store error; keys revoked before it stay revoked.
    pub async fn revoke_tenant(
        &self,
        tenant: &str,
        reason: Option<&str>,
        ctx: &RequestContext,
    ) -> Result<Vec<KeyId>, LifecycleError> {
        self.revoke_all(&ListFilter::Tenant(tenant.to_owned()), reason, ctx)
            .await
    }

    async fn revoke_all(
        &self,
        filter: &ListFilter,
        reason: Option<&str>,
        ctx: &RequestContext,
    ) -> Result<Vec<KeyId>, LifecycleError> {
        let mut targets = Vec::new();
        self.for_each(filter, |r| {
            if r.status != KeyStatus::Revoked {
                targets.push(r.id);
            }
        })
        .await?;
        let mut revoked = Vec::new();
        for id in targets {
            match self.revoke(&id, reason, ctx).await {
                Ok(_) => revoked.push(id),
                // Deleted meanwhile: nothing left to revoke.
                Err(LifecycleError::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(revoked)
    }

    /// Deletes a key's record. Prefer revocation, which keeps the record for audits.
    ///
    /// # Errors
    /// [`LifecycleError::NotFound`] or a store error.
    pub async fn delete(&self, id: &KeyId, ctx: &RequestContext) -> Result<(), LifecycleError> {
        let record = self.get(id).await?;
        if !self.store.delete(id).await? {
            return Err(LifecycleError::NotFound(*id));
        }
        self.hasher.forget_cached(*id);
        self.emit(AuditEvent::new(self.clock.now(), AuditKind::Deleted, ctx).about(&record));
        Ok(())
    }

    /// Rotates a key: issues a new key that copies every authorization field of the old one
    /// (name, tenant, owner, scopes, roles, restrictions, metadata, quota), with the same
    /// lifetime as the old key had, capped by the policy. The old key keeps working until
    /// the earlier of its own expiry and now + `grace`, then fails as expired. During the
    /// overlap the pair counts once against the per-owner cap. Both changes are one atomic
    /// store operation.
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
        if grace.is_negative() {
            return Err(LifecycleError::NegativeGrace);
        }
        for _ in 0..CAS_ATTEMPTS {
            let now = self.clock.now();
            let old = self
                .store
                .get(id)
                .await?
                .ok_or(LifecycleError::NotFound(*id))?;
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
            let key = self
                .format
                .generate_with_rng(prefix_index, &mut getrandom::SysRng)
                .map_err(|e| LifecycleError::Issue(Box::new(e.into())))?;
            let hash = self
                .hasher
                .hash(&key.as_parsed())
                .map_err(|e| LifecycleError::Issue(Box::new(e.into())))?;
            let expires_at = self.rotated_expiry(&old, now);
            let new = KeyRecord {
                id: key.id(),
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
            let end = now.saturating_add(grace);
            retired.expires_at = Some(retired.expires_at.map_or(end, |at| at.min(end)));
            retired.rotated_to = Some(new.id);
            match self
                .store
                .rotate(retired.clone(), old.version, new.clone())
                .await
            {
                Ok(()) => {
                    self.hasher.forget_cached(*id);
                    let kind = AuditKind::Rotated {
                        new_key: new.id,
                        old_key_expires_at: retired.expires_at,
                    };
                    self.emit(AuditEvent::new(now, kind, ctx).about(&old));
                    return Ok(Issued { key, record: new });
                }
                Err(StoreError::Conflict(_) | StoreError::Duplicate(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Err(LifecycleError::Contended(*id))
    }

    /// Regenerates a key: a rotation without overlap, so the old value fails on the very
    /// next request.
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

    fn rotated_expiry(&self, old: &KeyRecord, now: OffsetDateTime) -> Option<OffsetDateTime> {
        let latest = self.policy.latest_expiry(now);
        let wanted = old
            .expires_at
            .map(|at| now.saturating_add(at - old.created_at));
        match (wanted, latest) {
            (Some(w), Some(l)) => Some(w.min(l)),
            (Some(w), None) => Some(w),
            (None, l) => l,
        }
    }

    /// One page of records matching `filter`.
    ///
    /// # Errors
    /// A store error.
    pub async fn list(
        &self,
        filter: &ListFilter,
        page: Page,
    ) -> Result<Vec<KeyRecord>, LifecycleError> {
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
