//! Authority: managing keys on behalf of a verified key, within that key's reach.
//!
//! A key that manages keys (an admin console's session, a `keys:manage` key, an agent)
//! reaches only the keys within what it holds itself. [`KeyManager::acting_as`] returns an
//! [`Acting`] handle whose every operation refuses a key outside reach exactly as it refuses
//! an unknown id, and changes nothing.

use std::sync::Arc;

use time::{Duration, OffsetDateTime};

use super::KeyManager;
use super::edit::{EditError, KeyEdit};
use super::issue::{IssueError, IssueRequest, Issued, Through};
use super::lifecycle::LifecycleError;
use super::lineage::Bounds;
use super::quota::QuotaError;
use super::reasons::Widening;
use crate::audit::RequestContext;
use crate::key::id::KeyId;
use crate::record::{KeyRecord, KeyStatus, QuotaRefill};
use crate::store::{BulkRevocation, KeyStore, ListFilter, Page, StoreError};
use crate::verified::Verified;

/// Key management on behalf of a verified key, bounded by that key's *reach*.
///
/// A key reaches another when all of these hold:
/// - **tenant**: the target is of the actor's tenant; an actor without a tenant reaches keys
///   without a tenant, and keys of every tenant only if it holds `*`;
/// - **scopes**: the target's effective scopes (its own with roles and implications, within
///   every ancestor's) are all granted by the actor's effective scopes, wildcards and
///   implications respected;
/// - **resources**: the target's effective restrictions lie within the actor's;
/// - **networks**: the target's effective IP allowlist lies within the actor's;
/// - **lifetime**: the target (and its ancestors) end no later than the actor does;
/// - **lineage**: the target is not one of the actor's own ancestors (a child never manages
///   the keys its authority comes from), and a delegated actor reaches only keys delegated
///   below its own parent (so nothing it rotates escapes the parent).
///
/// A delegated actor's administrative issuance ([`Acting::issue`]) files the new key below
/// the actor's parent too: whatever a delegated key makes or obtains dies with its
/// ancestors.
///
/// Every operation re-reads the actor first (a key revoked a moment ago manages nothing),
/// then refuses a target outside reach with the *same* error as an unknown id
/// ([`LifecycleError::NotFound`]) and changes nothing, so a narrow key cannot even learn
/// which ids exist outside its reach. New keys are bounded the same way: never wider than
/// the actor, never outliving it.
///
/// ```
/// use keyward::{Hasher, IssueRequest, KeyFormat, KeyManager, MemoryStore, Pepper, RequestContext, scope::Restrictions};
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// let manager = KeyManager::new(MemoryStore::new(), KeyFormat::new(["tak"])?, Hasher::fast(Pepper::random("k1")?));
/// let ctx = RequestContext::new();
/// let admin = manager.issue(IssueRequest::new("root", "ops").scopes("*".parse()?), &ctx).await?;
/// let narrow = manager
///     .issue(IssueRequest::new("helpdesk", "ops").scopes("keys:manage read".parse()?)
///         .restrictions(Restrictions::only(["company:42"])?), &ctx)
///     .await?;
/// let helpdesk = manager.verify(narrow.key.expose_secret(), &ctx).await?;
/// // The narrow key cannot touch the `*` key: the same answer as for an unknown id.
/// let refused = manager.acting_as(&helpdesk).revoke(&admin.record.id, None, &ctx).await;
/// assert!(matches!(refused, Err(keyward::manager::LifecycleError::NotFound(_))));
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Acting<'a, S> {
    manager: &'a KeyManager<S>,
    actor: &'a Verified,
}

/// A fresh read of the actor, against which targets are checked.
pub(crate) struct Reach {
    pub(crate) actor: Verified,
    /// The actor's ancestors, nearest first: never within its reach, or a stolen child could
    /// rotate its parent into a key its own revocation does not end. For a delegated actor
    /// the first is its parent: it reaches only keys below it, so nothing it issues or
    /// rotates escapes the parent.
    lineage: Vec<KeyId>,
}

impl<S: KeyStore> KeyManager<S> {
    /// Manages keys on behalf of `actor`, within its reach (see [`Acting`]). The operations
    /// of the manager itself (`issue`, `revoke`, `rotate`, ...) are the operator's: bounded
    /// by nothing, for jobs, CLIs and incident response.
    pub fn acting_as<'a>(&'a self, actor: &'a Verified) -> Acting<'a, S> {
        Acting {
            manager: self,
            actor,
        }
    }

    /// The bounds of any record, for reach: its lineage read now, without liveness.
    pub(crate) async fn bounds_of(&self, record: &KeyRecord) -> Result<Bounds, StoreError> {
        if record.parent.is_none() {
            return Ok(self.own_bounds(record));
        }
        match self.ancestors(record).await {
            Ok(ancestors) => Ok(self.lineage_bounds(record, &ancestors)),
            Err(super::lineage::LineageError::Store(e)) => Err(e),
            // A broken lineage leaves the key nothing; judge it by its own fields.
            Err(super::lineage::LineageError::Broken) => Ok(self.own_bounds(record)),
        }
    }

    /// Whether `reach`'s actor reaches `record`.
    pub(crate) async fn reaches(
        &self,
        reach: &Reach,
        record: &KeyRecord,
    ) -> Result<bool, StoreError> {
        let actor = &reach.actor;
        if reach.lineage.contains(&record.id) {
            return Ok(false);
        }
        let tenant_ok = match actor.tenant() {
            Some(tenant) => record.tenant.as_deref() == Some(tenant),
            None => record.tenant.is_none() || actor.scopes().is_all(),
        };
        if !tenant_ok {
            return Ok(false);
        }
        let bounds = match reach.lineage.first() {
            None => self.bounds_of(record).await?,
            Some(&parent) => {
                // A delegated actor reaches only keys below its parent's lineage.
                let ancestors = match self.ancestors(record).await {
                    Ok(ancestors) => ancestors,
                    Err(super::lineage::LineageError::Store(e)) => return Err(e),
                    Err(super::lineage::LineageError::Broken) => return Ok(false),
                };
                if !ancestors.iter().any(|a| a.id == parent) {
                    return Ok(false);
                }
                self.lineage_bounds(record, &ancestors)
            }
        };
        let scopes = bounds.scopes.as_ref().unwrap_or(&record.scopes);
        let restrictions = bounds.restrictions.as_ref().unwrap_or(&record.restrictions);
        let lifetime_ok = match actor.ends_at() {
            None => true,
            Some(end) => bounds.ends_at.is_some_and(|at| at <= end),
        };
        let networks = bounds.networks.as_ref().unwrap_or(&record.allowed_networks);
        Ok(lifetime_ok
            && scopes.is_subset(actor.scopes())
            && restrictions.is_within(actor.restrictions())
            && self.networks_within(networks, record.tenant.as_deref(), actor))
    }
}

impl<S: KeyStore> Acting<'_, S> {
    /// The actor as it is now.
    async fn reach(&self) -> Result<Reach, super::VerifyError> {
        // From the store of record: a cache's staleness bound never decides what a key
        // may manage.
        let actor = self.manager.refresh_reading(self.actor, true).await?;
        // A key retired by a rotation still verifies during its grace period, but manages
        // nothing: its old value must not mint keys or take over its successor.
        if actor.record().rotated_to.is_some() {
            return Err(super::VerifyError::Revoked);
        }
        // `refresh` has just walked the same chain; an error here is a change since.
        let lineage = self
            .manager
            .ancestors(actor.record())
            .await?
            .iter()
            .map(|a| a.id)
            .collect();
        Ok(Reach { actor, lineage })
    }

    async fn lifecycle_reach(&self) -> Result<Reach, LifecycleError> {
        self.reach().await.map_err(LifecycleError::Actor)
    }

    /// The record of a key within reach.
    ///
    /// # Errors
    /// [`LifecycleError::NotFound`] for an unknown id or a key outside reach,
    /// [`LifecycleError::Actor`] when the acting key no longer verifies, or a store error.
    pub async fn get(&self, id: &KeyId) -> Result<KeyRecord, LifecycleError> {
        let reach = self.lifecycle_reach().await?;
        let record = self.manager.reachable::<LifecycleError>(id, Some(&reach));
        Ok(Arc::unwrap_or_clone(record.await?))
    }

    /// One page of the keys matching `filter` that are within reach, in id order: up to
    /// `page.limit` of them (fewer only at the end), so [`Page::next`] pages on as usual.
    /// An actor with a tenant lists within its tenant only.
    ///
    /// # Errors
    /// [`LifecycleError::Actor`], or a store error.
    pub async fn list(
        &self,
        filter: &ListFilter,
        page: Page,
    ) -> Result<Vec<KeyRecord>, LifecycleError> {
        let reach = self.lifecycle_reach().await?;
        let tenant = reach.actor.tenant().map(str::to_owned);
        let filter = match (filter, tenant) {
            (ListFilter::All, Some(tenant)) => ListFilter::Tenant(tenant),
            (other, _) => other.clone(),
        };
        let limit = page.limit.clamp(1, Page::MAX_LIMIT);
        let mut out = Vec::new();
        let mut next = Some(Page {
            after: page.after,
            limit: Page::MAX_LIMIT,
        });
        while let Some(p) = next {
            let records = self.manager.store.list(&filter, p).await?;
            next = p.next(&records);
            for record in records {
                if self.manager.reaches(&reach, &record).await? {
                    out.push(record);
                    if out.len() == limit {
                        return Ok(out);
                    }
                }
            }
        }
        Ok(out)
    }

    /// Issues a key administratively (for an owner within the actor's tenant): the new key
    /// gets the actor's tenant when the request names none (naming another is refused
    /// unless the actor has no tenant and holds `*`), at most the actor's scopes, resources
    /// within the actor's (an unrestricted request inherits them), networks likewise
    /// within its IP allowlist, and ends no later than
    /// the actor (with [`Expiry::Default`](crate::policy::Expiry::Default), at the earlier of the
    /// policy's default and the actor's end). The new key records the actor in
    /// [`issued_by`](KeyRecord::issued_by) as provenance only: it is not the actor's child,
    /// so rotating or revoking the actor leaves it working. Use [`Acting::delegate`] for a
    /// key that must live inside the actor. When the actor is itself a delegated key, the
    /// new key is filed below the actor's parent (its [`parent`](KeyRecord::parent)), so it
    /// cannot outlive the lineage the actor's authority comes from.
    ///
    /// # Errors
    /// [`IssueError::Widening`], [`IssueError::OutlivesActor`], [`IssueError::Actor`], or any
    /// error of [`KeyManager::issue`].
    pub async fn issue(
        &self,
        mut request: IssueRequest,
        ctx: &RequestContext,
    ) -> Result<Issued, IssueError> {
        let reach = self.reach().await.map_err(IssueError::Actor)?;
        let actor = &reach.actor;
        match (actor.tenant(), request.tenant.as_deref()) {
            (Some(own), None) => request.tenant = Some(own.to_owned()),
            (Some(own), Some(named)) if own != named => {
                return self
                    .manager
                    .refuse(&request, ctx, IssueError::Widening(Widening::Tenant));
            }
            (None, Some(_)) if !actor.scopes().is_all() => {
                return self
                    .manager
                    .refuse(&request, ctx, IssueError::Widening(Widening::Tenant));
            }
            _ => {}
        }
        self.bound_request(actor, &mut request, ctx)?;
        self.manager
            .issue_inner(request, Through::Admin(actor), ctx)
            .await
    }

    /// Mints a child of the actor (delegation: a narrower key for an agent or a CI job).
    /// The child has the actor's owner and tenant (a request naming others is refused), at
    /// most its scopes, resources within its restrictions and networks within its IP
    /// allowlist (an unrestricted request inherits
    /// them), and ends no later than it. It stays the actor's child for life: at every
    /// verification it is refused when any ancestor is revoked, disabled, expired or deleted,
    /// and what it may do is bounded by each ancestor's *current* effective scopes and
    /// restrictions. Delegation is at most
    /// [`max_delegation_depth`](KeyManager::with_max_delegation_depth) levels deep.
    /// [`Acting::child_request`] starts a request with the right owner.
    ///
    /// # Errors
    /// [`IssueError::Widening`], [`IssueError::OutlivesActor`], [`IssueError::TooDeep`],
    /// [`IssueError::Actor`], or any error of [`KeyManager::issue`].
    pub async fn delegate(
        &self,
        mut request: IssueRequest,
        ctx: &RequestContext,
    ) -> Result<Issued, IssueError> {
        let reach = self.reach().await.map_err(IssueError::Actor)?;
        let actor = &reach.actor;
        if request.owner != actor.owner() {
            return self
                .manager
                .refuse(&request, ctx, IssueError::Widening(Widening::Owner));
        }
        if request.tenant.is_some() && request.tenant.as_deref() != actor.tenant() {
            return self
                .manager
                .refuse(&request, ctx, IssueError::Widening(Widening::Tenant));
        }
        request.tenant = actor.tenant().map(str::to_owned);
        let max = self.manager.max_delegation_depth;
        if reach.lineage.len() + 1 > max {
            return self
                .manager
                .refuse(&request, ctx, IssueError::TooDeep { max });
        }
        self.bound_request(actor, &mut request, ctx)?;
        self.manager
            .issue_inner(request, Through::Delegate(actor), ctx)
            .await
    }

    /// A request for a child of the actor named `name`: the actor's owner and tenant.
    #[must_use]
    pub fn child_request(&self, name: impl Into<String>) -> IssueRequest {
        let mut request = IssueRequest::new(name, self.actor.owner());
        request.tenant = self.actor.tenant().map(str::to_owned);
        request
    }

    /// Scopes and resources of a request within the actor's.
    fn bound_request(
        &self,
        actor: &Verified,
        request: &mut IssueRequest,
        ctx: &RequestContext,
    ) -> Result<(), IssueError> {
        let wanted = match &self.manager.catalog {
            Some(catalog) => catalog.resolve(&request.scopes, &request.roles),
            None => request.scopes.clone(),
        };
        if !wanted.is_subset(actor.scopes()) {
            let extra = wanted.iter().filter(|s| !actor.scopes().allows(s));
            let e = IssueError::Widening(Widening::Scopes(extra.cloned().collect()));
            return self.manager.refuse(request, ctx, e).map(|_| ());
        }
        if request.restrictions.is_unrestricted() {
            request.restrictions = actor.restrictions().clone();
        } else if !request.restrictions.is_within(actor.restrictions()) {
            return self
                .manager
                .refuse(request, ctx, IssueError::Widening(Widening::Resources))
                .map(|_| ());
        }
        if request.allowed_networks.is_any() {
            // What the actor is usable from: its own list, or its tenant's default.
            request.allowed_networks = self
                .manager
                .effective_networks(actor.allowed_networks(), actor.tenant())
                .clone();
        } else if !self.manager.networks_within(
            &request.allowed_networks,
            request.tenant.as_deref(),
            actor,
        ) {
            return self
                .manager
                .refuse(request, ctx, IssueError::Widening(Widening::Networks))
                .map(|_| ());
        }
        // An actor with a usage quota gives at most what it has left, and no refills.
        if let Some(left) = actor.record().remaining_uses
            && request.remaining_uses.is_none()
            && request.refill.is_none()
        {
            request.remaining_uses = Some(left);
        }
        if !quota_within(actor.record(), request.remaining_uses, request.refill) {
            return self
                .manager
                .refuse(request, ctx, IssueError::Widening(Widening::Quota))
                .map(|_| ());
        }
        Ok(())
    }

    /// Disables a key within reach, as [`KeyManager::disable`].
    ///
    /// # Errors
    /// [`LifecycleError::NotFound`] for an unknown id or a key outside reach, or as
    /// [`KeyManager::disable`].
    pub async fn disable(
        &self,
        id: &KeyId,
        ctx: &RequestContext,
    ) -> Result<KeyRecord, LifecycleError> {
        self.set_status(id, KeyStatus::Disabled, None, ctx).await
    }

    /// Enables a key within reach, as [`KeyManager::enable`] (the caps per owner and per tenant apply).
    ///
    /// # Errors
    /// [`LifecycleError::NotFound`] for an unknown id or a key outside reach, or as
    /// [`KeyManager::enable`].
    pub async fn enable(
        &self,
        id: &KeyId,
        ctx: &RequestContext,
    ) -> Result<KeyRecord, LifecycleError> {
        self.set_status(id, KeyStatus::Active, None, ctx).await
    }

    /// Revokes a key within reach, as [`KeyManager::revoke`].
    ///
    /// # Errors
    /// [`LifecycleError::NotFound`] for an unknown id or a key outside reach, or as
    /// [`KeyManager::revoke`].
    pub async fn revoke(
        &self,
        id: &KeyId,
        reason: Option<&str>,
        ctx: &RequestContext,
    ) -> Result<KeyRecord, LifecycleError> {
        self.set_status(id, KeyStatus::Revoked, reason, ctx).await
    }

    /// A status change within reach.
    async fn set_status(
        &self,
        id: &KeyId,
        to: KeyStatus,
        reason: Option<&str>,
        ctx: &RequestContext,
    ) -> Result<KeyRecord, LifecycleError> {
        let reach = self.lifecycle_reach().await?;
        self.manager
            .set_status(id, to, reason, Some(&reach), ctx)
            .await
    }

    /// Deletes a key within reach, as [`KeyManager::delete`].
    ///
    /// # Errors
    /// [`LifecycleError::NotFound`] for an unknown id or a key outside reach, or as
    /// [`KeyManager::delete`].
    pub async fn delete(&self, id: &KeyId, ctx: &RequestContext) -> Result<(), LifecycleError> {
        let reach = self.lifecycle_reach().await?;
        self.manager.delete_within(id, Some(&reach), ctx).await
    }

    /// Rotates a key within reach, as [`KeyManager::rotate`]; the new key also ends no
    /// later than the actor.
    ///
    /// # Errors
    /// [`LifecycleError::NotFound`] for an unknown id or a key outside reach, or as
    /// [`KeyManager::rotate`].
    pub async fn rotate(
        &self,
        id: &KeyId,
        grace: Duration,
        ctx: &RequestContext,
    ) -> Result<Issued, LifecycleError> {
        let reach = self.lifecycle_reach().await?;
        self.manager
            .rotate_within(id, grace, Some(&reach), ctx)
            .await
    }

    /// Regenerates a key within reach, as [`KeyManager::regenerate`].
    ///
    /// # Errors
    /// As [`Acting::rotate`].
    pub async fn regenerate(
        &self,
        id: &KeyId,
        ctx: &RequestContext,
    ) -> Result<Issued, LifecycleError> {
        self.rotate(id, Duration::ZERO, ctx).await
    }

    /// Edits a key within reach, as [`KeyManager::edit`]: the edited key must still lie
    /// within the actor (its resolved scopes within the actor's, its restrictions and IP
    /// allowlist within the actor's), so an edit never widens a key past the key making it.
    ///
    /// # Errors
    /// [`EditError::NotFound`] for an unknown id or a key outside reach,
    /// [`EditError::Widening`] for an edit beyond the actor, [`EditError::Actor`] when the
    /// acting key no longer verifies, or as [`KeyManager::edit`].
    pub async fn edit(
        &self,
        id: &KeyId,
        edit: KeyEdit,
        ctx: &RequestContext,
    ) -> Result<KeyRecord, EditError> {
        let reach = self.reach().await.map_err(EditError::Actor)?;
        self.manager.edit_within(id, &edit, Some(&reach), ctx).await
    }

    /// Replaces the quota of a key within reach, as [`KeyManager::set_quota`].
    ///
    /// # Errors
    /// [`QuotaError::NotFound`] for an unknown id or a key outside reach (or when the acting
    /// key no longer verifies), or as [`KeyManager::set_quota`].
    pub async fn set_quota(
        &self,
        id: &KeyId,
        remaining_uses: Option<u64>,
        refill: Option<QuotaRefill>,
        ctx: &RequestContext,
    ) -> Result<KeyRecord, QuotaError> {
        let Ok(reach) = self.reach().await else {
            return Err(QuotaError::NotFound(*id));
        };
        // A key never sets its own quota, nor one beyond its own.
        if *id == reach.actor.key_id() {
            return Err(QuotaError::NotFound(*id));
        }
        if !quota_within(reach.actor.record(), remaining_uses, refill) {
            return Err(QuotaError::Widening);
        }
        self.manager
            .set_quota_within(id, remaining_uses, refill, Some(&reach), ctx)
            .await
    }

    /// Revokes every key of `owner` within reach. Returns the keys revoked now; rows that
    /// could not be read are left to the operator's [`KeyManager::revoke_owner`], which
    /// revokes them without reading them.
    ///
    /// # Errors
    /// [`LifecycleError::Actor`], or a store error (keys revoked before it stay revoked).
    pub async fn revoke_owner(
        &self,
        owner: &str,
        reason: Option<&str>,
        ctx: &RequestContext,
    ) -> Result<BulkRevocation, LifecycleError> {
        self.revoke_all(&ListFilter::Owner(owner.to_owned()), reason, ctx)
            .await
    }

    /// Revokes every key of `tenant` within reach (nothing for a tenant the actor cannot
    /// reach). As [`Acting::revoke_owner`].
    ///
    /// # Errors
    /// As [`Acting::revoke_owner`].
    pub async fn revoke_tenant(
        &self,
        tenant: &str,
        reason: Option<&str>,
        ctx: &RequestContext,
    ) -> Result<BulkRevocation, LifecycleError> {
        self.revoke_all(&ListFilter::Tenant(tenant.to_owned()), reason, ctx)
            .await
    }

    async fn revoke_all(
        &self,
        filter: &ListFilter,
        reason: Option<&str>,
        ctx: &RequestContext,
    ) -> Result<BulkRevocation, LifecycleError> {
        let reach = self.lifecycle_reach().await?;
        self.manager
            .revoke_all(filter, reason, Some(&reach), ctx)
            .await
    }

    /// The acting key, as it was verified.
    #[must_use]
    pub fn actor(&self) -> &Verified {
        self.actor
    }
}

/// Whether a quota (`remaining_uses`, `refill`) given by `actor` stays within the actor's
/// own: an actor without a quota gives anything; one with a quota gives at most its uses
/// left, and no refill schedule.
fn quota_within(
    actor: &KeyRecord,
    remaining_uses: Option<u64>,
    refill: Option<QuotaRefill>,
) -> bool {
    match actor.remaining_uses {
        None => true,
        Some(left) => refill.is_none() && remaining_uses.is_some_and(|uses| uses <= left),
    }
}

/// The new key's end in a rotation: no later than the old key, its lineage, the actor or
/// the policy allows.
pub(crate) fn rotated_end(
    old_bounds_end: Option<OffsetDateTime>,
    reach: Option<&Reach>,
    policy_latest: Option<OffsetDateTime>,
) -> Option<OffsetDateTime> {
    let end = super::lineage::earlier(old_bounds_end, policy_latest);
    super::lineage::earlier(end, reach.and_then(|r| r.actor.ends_at()))
}
