//! Verification: parse, look up, check the hash, status and expiry, bound by the owner.

use std::error::Error as StdError;
use std::net::IpAddr;
use std::sync::Arc;

use super::KeyManager;
use super::lineage::{Bounds, MAX_SUCCESSORS};
use crate::audit::{AuditEvent, AuditKind, FailureReason, RequestContext};
use crate::key::parse::ParseError;
use crate::record::KeyRecord;
use crate::scope::ScopeSet;
use crate::store::{KeyStore, StoreError};
use crate::verified::Verified;

/// Why a presented key was refused.
///
/// `Invalid` covers an unknown key id and a wrong secret alike, so a caller cannot tell
/// them apart. `Disabled`, `Revoked` and `Expired` are returned only after the secret
/// verified, so they reveal nothing to someone who does not hold the key. Messages never
/// contain the key.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// Not a well-formed key of this service. The message says what is wrong (clients
    /// are told, so they can fix a copy-paste error), so the [`ParseError`] is not also
    /// returned from [`source`](std::error::Error::source).
    #[error("malformed key: {0}")]
    Malformed(ParseError),
    /// Unknown key or wrong secret.
    #[error("invalid key")]
    Invalid,
    /// The key is disabled.
    #[error("key is disabled")]
    Disabled,
    /// The key is revoked.
    #[error("key is revoked")]
    Revoked,
    /// The key has expired.
    #[error("key has expired")]
    Expired,
    /// The key is not allowed from the request's network (its IP allowlist, an ancestor's
    /// or its tenant's default excludes the client address, or the address is unknown).
    /// Returned only after the secret matched; the list itself is never revealed.
    #[error("key is not allowed from this network")]
    NetworkNotAllowed,
    /// The store (or the owner-permission source) could not answer: fail closed.
    #[error("key store unavailable")]
    Unavailable(#[source] Box<dyn StdError + Send + Sync>),
}

impl VerifyError {
    /// The reason recorded in audit events.
    #[must_use]
    pub fn reason(&self) -> FailureReason {
        match self {
            Self::Malformed(_) => FailureReason::Malformed,
            Self::Invalid => FailureReason::Invalid,
            Self::Disabled => FailureReason::Disabled,
            Self::Revoked => FailureReason::Revoked,
            Self::Expired => FailureReason::Expired,
            Self::NetworkNotAllowed => FailureReason::NetworkNotAllowed,
            Self::Unavailable(_) => FailureReason::Unavailable,
        }
    }
}

impl<S: KeyStore> KeyManager<S> {
    /// Verifies a presented key and returns the proof that handlers accept.
    ///
    /// In order: the format and checksum are checked offline; the record is read from the
    /// store (an unknown id still costs one hash, so timing does not reveal whether an id
    /// exists); the hash is compared in constant time; then status and expiry; then the
    /// owner bound. A stored hash on old settings is upgraded, and `last_used_at` is written
    /// at most once per interval. Every change made through any manager over the same store
    /// takes effect here on the next call.
    ///
    /// # Errors
    /// [`VerifyError`]; store failures fail closed as [`VerifyError::Unavailable`].
    pub async fn verify(
        &self,
        presented: &str,
        ctx: &RequestContext,
    ) -> Result<Verified, VerifyError> {
        let now = self.clock.now();
        let result = self.verify_inner(presented, ctx.client_addr, now).await;
        if !self.audit.enabled() {
            return result.map_err(|(e, _)| e);
        }
        match &result {
            Ok(v) => self.emit(AuditEvent::new(now, AuditKind::Verified, ctx).about(v.record())),
            Err((e, record)) => {
                let mut event =
                    AuditEvent::new(now, AuditKind::VerifyFailed { reason: e.reason() }, ctx);
                // The record's details are attached only when the secret verified; otherwise
                // only the presented (public) key id, when it parsed.
                event = match record {
                    Some(r) => event.about(r),
                    None => match self.format.parse(presented) {
                        Ok(p) => event.key(p.key_id()),
                        Err(_) => event,
                    },
                };
                self.emit(event);
            }
        }
        result.map_err(|(e, _)| e)
    }

    async fn verify_inner(
        &self,
        presented: &str,
        client: Option<IpAddr>,
        now: time::OffsetDateTime,
    ) -> Result<Verified, (VerifyError, Option<Arc<KeyRecord>>)> {
        let parsed = match self.format.parse(presented) {
            Ok(parsed) => parsed,
            Err(e) => {
                // Not a key of the format: a legacy token, if its prefix is configured.
                if let Ok(token) = self.legacy.parse(presented) {
                    return Box::pin(self.verify_legacy(token, client, now)).await;
                }
                return Err((VerifyError::Malformed(e), None));
            }
        };
        let id = parsed.key_id();
        let record = match self.store.get(&id).await {
            Ok(Some(record)) => record,
            Ok(None) => {
                self.hasher.verify_absent(&parsed);
                return Err((VerifyError::Invalid, None));
            }
            Err(e) => return Err((VerifyError::Unavailable(Box::new(e)), None)),
        };
        if record.id != id || self.hasher.verify(&parsed, &record.hash).is_err() {
            return Err((VerifyError::Invalid, None));
        }
        self.accept(record, parsed.expose_secret(), client, now)
            .await
    }

    /// What follows a matching secret (a key's, or an imported key's legacy token): status,
    /// expiry and bounds, the client's network, then the hash upgrade and the last-use
    /// write.
    pub(super) async fn accept(
        &self,
        record: Arc<KeyRecord>,
        secret: &str,
        client: Option<IpAddr>,
        now: time::OffsetDateTime,
    ) -> Result<Verified, (VerifyError, Option<Arc<KeyRecord>>)> {
        let id = record.id;
        let verified = match self.admit(Arc::clone(&record), now).await {
            Ok(verified) => verified,
            Err(e) => {
                if !matches!(e, VerifyError::Unavailable(_)) {
                    self.hasher.forget_cached(id);
                }
                return Err((e, Some(record)));
            }
        };
        if !self.admits_network(&verified, client) {
            return Err((VerifyError::NetworkNotAllowed, Some(record)));
        }
        if self.hasher.needs_rehash(&record.hash) {
            // Rare (once per key after a settings change), and its future holds whole
            // records: boxed, so it does not grow every verification's future.
            Box::pin(self.rehash(&record, secret, now)).await;
        }
        if record
            .last_used_at
            .is_none_or(|t| now - t >= self.last_used_interval)
        {
            // Best effort: a failed write of a statistic must not refuse a valid key.
            if let Err(e) = self.store.touch(&id, now).await {
                tracing::warn!(target: "keyward", key_id = %id, error = %e, "could not record last use");
            }
        }
        Ok(verified)
    }

    /// Whether a verified key may be used from `client` (`None`: unknown address): its
    /// effective IP allowlist, or its tenant's default when it has none. [`verify`]
    /// checks this itself; an application that keeps proofs (sessions made from a key,
    /// checked again with [`refresh`](KeyManager::refresh)) checks each request with it.
    ///
    /// [`verify`]: KeyManager::verify
    #[must_use]
    pub fn admits_network(&self, verified: &Verified, client: Option<IpAddr>) -> bool {
        self.effective_networks(verified.allowed_networks(), verified.tenant())
            .admits(client)
    }

    /// Whether a key with networks `own` in `tenant` stays within `actor`: its own list within
    /// the actor's, and what it is usable from (with tenant defaults) within what the actor
    /// is usable from, so that a key bound only by its tenant's default never hands out
    /// networks beyond that default.
    pub(crate) fn networks_within(
        &self,
        own: &crate::network::Networks,
        tenant: Option<&str>,
        actor: &Verified,
    ) -> bool {
        let actor_own = actor.allowed_networks();
        own.is_within(actor_own)
            && self
                .effective_networks(own, tenant)
                .is_within(self.effective_networks(actor_own, actor.tenant()))
    }

    /// The networks a key may be used from: its own list (`own`, already bounded by its
    /// ancestors), or, when that allows any, its tenant's default, if the tenant has one.
    /// Verification admits by it, and management compares keys by it, so that a key bound
    /// only by its tenant's default never hands out networks beyond that default.
    pub(crate) fn effective_networks<'a>(
        &'a self,
        own: &'a crate::network::Networks,
        tenant: Option<&str>,
    ) -> &'a crate::network::Networks {
        if !own.is_any() {
            return own;
        }
        tenant
            .and_then(|t| self.tenant_networks.get(t))
            .unwrap_or(own)
    }

    /// Checks again a key that verified earlier (for example when a session made from it is
    /// used): re-reads its record and returns a fresh proof if it is still active, unexpired
    /// and its owner still has the permissions, with effective scopes recomputed. The secret
    /// is not needed, since only a proof can be refreshed.
    ///
    /// # Errors
    /// [`VerifyError::Invalid`] if the key was deleted, `Disabled`, `Revoked`, `Expired`, or
    /// `Unavailable`.
    pub async fn refresh(&self, proof: &Verified) -> Result<Verified, VerifyError> {
        self.refresh_reading(proof, false).await
    }

    /// [`KeyManager::refresh`], reading the key and its lineage from the store of record
    /// when `fresh` (an acting key's authority for a management call).
    pub(crate) async fn refresh_reading(
        &self,
        proof: &Verified,
        fresh: bool,
    ) -> Result<Verified, VerifyError> {
        let now = self.clock.now();
        let record = match self.read(&proof.key_id(), fresh).await {
            Ok(Some(record)) => record,
            Ok(None) => return Err(VerifyError::Invalid),
            Err(e) => return Err(VerifyError::Unavailable(Box::new(e))),
        };
        self.admit_reading(record, now, fresh).await
    }

    /// Admits a key whose secret matched (or whose proof is refreshed): its own status and
    /// expiry, then, for a delegated key, every ancestor's (read now, so an ancestor revoked,
    /// disabled, expired or deleted since refuses the key at once), then what it may do:
    /// its scopes with roles and implications, within every ancestor's current ones and its
    /// owner's current permissions, and its restrictions within every ancestor's.
    pub(crate) async fn admit(
        &self,
        record: Arc<KeyRecord>,
        now: time::OffsetDateTime,
    ) -> Result<Verified, VerifyError> {
        self.admit_reading(record, now, false).await
    }

    /// [`KeyManager::admit`], reading the lineage from the store of record when `fresh`.
    async fn admit_reading(
        &self,
        record: Arc<KeyRecord>,
        now: time::OffsetDateTime,
        fresh: bool,
    ) -> Result<Verified, VerifyError> {
        Self::check_live(&record, now)?;
        let bounds = if record.parent.is_some() || record.rotated_to.is_some() {
            // Boxed: only delegated keys and keys in a rotation's grace period pay for the
            // walk's larger future.
            Box::pin(self.delegated_bounds(&record, now, fresh)).await?
        } else {
            self.own_bounds(&record)
        };
        let scopes = match self.owner_bound(&record).await? {
            Some(owner) => Some(
                bounds
                    .scopes
                    .as_ref()
                    .unwrap_or(&record.scopes)
                    .intersection(&owner),
            ),
            None => bounds.scopes,
        };
        Ok(Verified::new(
            record,
            scopes,
            bounds.restrictions,
            bounds.networks,
            bounds.ends_at,
            now,
        ))
    }

    /// The bounds of a delegated key (every ancestor must work at `now`, and bounds it), and
    /// for a key in a rotation's grace period, the check that its successor still works.
    /// Walked one ancestor at a time, keeping nothing but the bounds (the depth limit also
    /// ends a chain that loops).
    async fn delegated_bounds(
        &self,
        record: &KeyRecord,
        now: time::OffsetDateTime,
        fresh: bool,
    ) -> Result<Bounds, VerifyError> {
        // A key in a rotation's grace period works only while its successor does: revoking,
        // disabling or deleting the new key ends the pair (which counts once against the
        // cap, through the new key).
        if record.rotated_to.is_some() {
            self.check_successors(record, now, fresh).await?;
        }
        let mut bounds = self.own_bounds(record);
        let mut next = record.parent;
        let mut depth = 0;
        while let Some(id) = next {
            depth += 1;
            if depth > self.max_delegation_depth {
                return Err(VerifyError::Revoked);
            }
            let ancestor = self.read_ancestor(id, fresh).await?;
            Self::check_live(&ancestor, now)?;
            // An ancestor in its grace period ends, with its children, when its successor
            // does.
            if ancestor.rotated_to.is_some() {
                self.check_successors(&ancestor, now, fresh).await?;
            }
            self.bound_by(record, &mut bounds, &ancestor);
            // An ancestor of another owner or tenant (possible only in records written
            // outside the manager) bounds the key by that owner's permissions too.
            if (ancestor.owner != record.owner || ancestor.tenant != record.tenant)
                && let Some(theirs) = self.owner_bound(&ancestor).await?
            {
                let ours = bounds.scopes.as_ref().unwrap_or(&record.scopes);
                bounds.scopes = Some(ours.intersection(&theirs));
            }
            next = ancestor.parent;
        }
        Ok(bounds)
    }

    /// Checks every successor of a key retired by a rotation (each must still work).
    async fn check_successors(
        &self,
        record: &KeyRecord,
        now: time::OffsetDateTime,
        fresh: bool,
    ) -> Result<(), VerifyError> {
        let mut successor = record.rotated_to;
        let mut hops = 0;
        while let Some(id) = successor {
            hops += 1;
            if hops > MAX_SUCCESSORS {
                return Err(VerifyError::Revoked);
            }
            let next = self.read_ancestor(id, fresh).await?;
            Self::check_live(&next, now)?;
            successor = next.rotated_to;
        }
        Ok(())
    }

    /// The owner's current permissions (with implications), when the manager has an
    /// owner-permission source.
    async fn owner_bound(&self, record: &KeyRecord) -> Result<Option<ScopeSet>, VerifyError> {
        let Some(provider) = &self.owner_permissions else {
            return Ok(None);
        };
        let owner = provider
            .permissions(&record.owner, record.tenant.as_deref())
            .await
            .map_err(VerifyError::Unavailable)?;
        Ok(Some(match &self.catalog {
            Some(catalog) => catalog.expand(&owner),
            None => owner,
        }))
    }

    /// Replaces a record's hash by one of the current settings (compare-and-set over the
    /// version read): after a settings change, or the first use of an imported key.
    async fn rehash(&self, record: &KeyRecord, secret: &str, now: time::OffsetDateTime) {
        let Ok(hash) = self.hasher.hash_secret(secret) else {
            return;
        };
        let mut updated = record.clone();
        updated.hash = hash;
        match self.store.update(updated, record.version).await {
            Ok(()) => self.emit(
                AuditEvent::new(now, AuditKind::Rehashed, &RequestContext::default()).about(record),
            ),
            // Someone else changed the record first; the next verification tries again.
            Err(StoreError::Conflict(_)) => {}
            Err(e) => {
                tracing::warn!(target: "keyward", key_id = %record.id, error = %e, "could not store upgraded hash")
            }
        }
    }
}
