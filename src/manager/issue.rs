//! Issuance: policy, the per-owner cap, the application's hook, delegation.

use core::fmt;

use super::KeyManager;
use super::lineage::earlier;
use super::reasons::{
    HookRefusal, InvalidRequest, MAX_NAME_LEN, MAX_OWNER_LEN, MAX_ROLES, Widening,
};
use super::verify::VerifyError;
use crate::audit::{AuditEvent, AuditKind, RequestContext};
use crate::hash::{HashError, StoredHash};
use crate::key::api_key::{ApiKey, GenerateError};
use crate::network::Networks;
use crate::policy::{Expiry, PolicyError};
use crate::record::{KeyRecord, KeyStatus, Metadata, QuotaRefill};
use crate::scope::{Restrictions, ScopeSet, UnknownScopes};
use crate::store::{KeyStore, StoreError};
use crate::verified::Verified;

/// What to issue.
///
/// ```
/// use keyward::{IssueRequest, policy::{Expiry, ExpiryPreset}};
/// let request = IssueRequest::new("claude-desktop-jane", "user_42")
///     .tenant("acme")
///     .scopes("read comments".parse()?)
///     .expiry(Expiry::Preset(ExpiryPreset::Days30));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct IssueRequest {
    /// A label for UIs and audit logs.
    pub name: String,
    /// Who the key acts for.
    pub owner: String,
    /// The owner's workspace or company.
    pub tenant: Option<String>,
    /// Scopes granted directly.
    pub scopes: ScopeSet,
    /// Roles from the catalog.
    pub roles: Vec<String>,
    /// Resources the key is limited to.
    pub restrictions: Restrictions,
    /// Networks the key may be used from.
    pub allowed_networks: Networks,
    /// How long the key lives.
    pub expiry: Expiry,
    /// Application data.
    pub metadata: Metadata,
    /// Which of the format's prefixes to use (`None`: the first).
    pub prefix: Option<String>,
    /// A usage quota (`None`: unlimited, unless `refill` gives one).
    pub remaining_uses: Option<u64>,
    /// A schedule that refills the usage quota (`None`: it never refills by itself).
    pub refill: Option<QuotaRefill>,
}

impl IssueRequest {
    /// A request for a key named `name` owned by `owner`, with no scopes, no restrictions
    /// and the policy's default expiry.
    pub fn new(name: impl Into<String>, owner: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            owner: owner.into(),
            tenant: None,
            scopes: ScopeSet::default(),
            roles: Vec::new(),
            restrictions: Restrictions::default(),
            allowed_networks: Networks::any(),
            expiry: Expiry::Default,
            metadata: Metadata::default(),
            prefix: None,
            remaining_uses: None,
            refill: None,
        }
    }

    /// Sets the tenant.
    #[must_use]
    pub fn tenant(mut self, tenant: impl Into<String>) -> Self {
        self.tenant = Some(tenant.into());
        self
    }

    /// Sets the scopes.
    #[must_use]
    pub fn scopes(mut self, scopes: ScopeSet) -> Self {
        self.scopes = scopes;
        self
    }

    /// Sets the roles.
    #[must_use]
    pub fn roles<I: IntoIterator<Item = S>, S: Into<String>>(mut self, roles: I) -> Self {
        self.roles = roles.into_iter().map(Into::into).collect();
        self
    }

    /// Sets the resource restrictions.
    #[must_use]
    pub fn restrictions(mut self, restrictions: Restrictions) -> Self {
        self.restrictions = restrictions;
        self
    }

    /// Sets the networks the key may be used from (see [`crate::network`]).
    #[must_use]
    pub fn allowed_networks(mut self, networks: Networks) -> Self {
        self.allowed_networks = networks;
        self
    }

    /// Sets the expiry.
    #[must_use]
    pub fn expiry(mut self, expiry: Expiry) -> Self {
        self.expiry = expiry;
        self
    }

    /// Sets the metadata.
    #[must_use]
    pub fn metadata(mut self, metadata: Metadata) -> Self {
        self.metadata = metadata;
        self
    }

    /// Chooses one of the format's prefixes (such as `sk_test`).
    #[must_use]
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = Some(prefix.into());
        self
    }

    /// Gives the key a usage quota.
    #[must_use]
    pub fn remaining_uses(mut self, uses: u64) -> Self {
        self.remaining_uses = Some(uses);
        self
    }

    /// Refills the key's usage quota on a schedule, daily or monthly: on the first use of
    /// each new period the uses left are set back to [`QuotaRefill::uses`]. The key starts
    /// with [`IssueRequest::remaining_uses`] when given, and with a full refill otherwise;
    /// the first automatic refill comes at the start of the next period.
    ///
    /// ```
    /// use keyward::{IssueRequest, record::QuotaRefill};
    /// let request = IssueRequest::new("free-plan", "user_42").refill(QuotaRefill::daily(1_000)?);
    /// # Ok::<(), keyward::record::RefillError>(())
    /// ```
    #[must_use]
    pub fn refill(mut self, refill: QuotaRefill) -> Self {
        self.refill = Some(refill);
        self
    }
}

/// A newly issued key: the plaintext, to show once, and its record.
pub struct Issued {
    /// The key; show [`ApiKey::expose_secret`] to its owner once, then drop it.
    pub key: ApiKey,
    /// The stored record.
    pub record: KeyRecord,
}

impl fmt::Debug for Issued {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Issued")
            .field("key", &self.key)
            .field("record", &self.record)
            .finish()
    }
}

/// Why a key was not issued.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IssueError {
    /// A field of the request is unusable.
    #[error("invalid request: {0}")]
    InvalidRequest(InvalidRequest),
    /// The catalog does not know these scopes or roles.
    #[error("unknown scopes or roles: {0}")]
    Unknown(UnknownScopes),
    /// The expiry breaks the policy.
    #[error(transparent)]
    Policy(#[from] PolicyError),
    /// The owner already has as many live keys as allowed.
    #[error("owner has reached the limit of {limit} live keys")]
    LimitReached {
        /// The cap.
        limit: usize,
    },
    /// The key's tenant already has as many live keys as allowed
    /// ([`IssuancePolicy::max_live_keys_per_tenant`](crate::policy::IssuancePolicy::max_live_keys_per_tenant)).
    #[error("tenant has reached the limit of {limit} live keys")]
    TenantLimitReached {
        /// The cap.
        limit: usize,
    },
    /// The application's hook refused.
    #[error("refused: {0}")]
    Refused(HookRefusal),
    /// The key would get more than the key it is issued through holds (scopes, resources,
    /// tenant, owner or quota).
    #[error("cannot grant more than the issuing key holds: {0}")]
    Widening(Widening),
    /// An explicit expiry later than the end of the key it is issued through.
    #[error("the key would outlive the key issuing it")]
    OutlivesActor,
    /// A delegated key this deep is not allowed.
    #[error("delegation deeper than {max} levels is not allowed")]
    TooDeep {
        /// The deepest delegation allowed.
        max: usize,
    },
    /// The key acting as issuer no longer verifies (revoked, disabled, expired, deleted,
    /// or an ancestor of it is).
    #[error("the issuing key no longer verifies")]
    Actor(#[source] VerifyError),
    /// Generation failed.
    #[error(transparent)]
    Generate(#[from] GenerateError),
    /// Hashing failed.
    #[error(transparent)]
    Hash(#[from] HashError),
    /// The store failed.
    #[error(transparent)]
    Store(StoreError),
}

/// Who a key is issued through.
#[derive(Clone, Copy)]
pub(crate) enum Through<'a> {
    /// The operator's unbounded call.
    Operator,
    /// Administrative issuance by a key (provenance only).
    Admin(&'a Verified),
    /// Delegation: the key's child for life.
    Delegate(&'a Verified),
}

impl<'a> Through<'a> {
    fn actor(self) -> Option<&'a Verified> {
        match self {
            Self::Operator => None,
            Self::Admin(actor) | Self::Delegate(actor) => Some(actor),
        }
    }
}

impl<S: KeyStore> KeyManager<S> {
    /// Issues a key. The plaintext is in the result and nowhere else.
    ///
    /// # Errors
    /// [`IssueError`]: an invalid request, an unknown scope with a strict catalog, the
    /// policy, the caps on live keys per owner and per tenant, the application's hook, or a
    /// store failure (`StoreError::Unsupported` when a tenant cap applies and the store does
    /// not keep one).
    ///
    /// This is the operator's call, bounded by nothing but the policy: for jobs, CLIs and
    /// sign-up flows. When a key asks for the issuance, use
    /// [`KeyManager::acting_as`] so the new key stays within that key.
    pub async fn issue(
        &self,
        request: IssueRequest,
        ctx: &RequestContext,
    ) -> Result<Issued, IssueError> {
        self.issue_inner(request, Through::Operator, ctx).await
    }

    /// Issues a key on behalf of a verified key: delegation, as
    /// [`Acting::delegate`](super::Acting::delegate) does (the same as
    /// `self.acting_as(parent).delegate(request, ctx)`). The new key is `parent`'s child
    /// for life: same owner and tenant, never wider, refused once any ancestor dies.
    ///
    /// # Errors
    /// As [`Acting::delegate`](super::Acting::delegate).
    pub async fn issue_delegated(
        &self,
        parent: &Verified,
        request: IssueRequest,
        ctx: &RequestContext,
    ) -> Result<Issued, IssueError> {
        self.acting_as(parent).delegate(request, ctx).await
    }

    pub(crate) fn refuse(
        &self,
        request: &IssueRequest,
        ctx: &RequestContext,
        e: IssueError,
    ) -> Result<Issued, IssueError> {
        let mut event = AuditEvent::new(
            self.clock.now(),
            AuditKind::RefusedByPolicy {
                reason: e.to_string(),
            },
            ctx,
        );
        event.name = Some(request.name.clone());
        event.owner = Some(request.owner.clone());
        event.tenant.clone_from(&request.tenant);
        self.emit(event);
        Err(e)
    }

    pub(crate) async fn issue_inner(
        &self,
        request: IssueRequest,
        through: Through<'_>,
        ctx: &RequestContext,
    ) -> Result<Issued, IssueError> {
        let now = self.clock.now();
        if let Err(e) = self.check_request(&request) {
            return self.refuse(&request, ctx, e);
        }
        let mut expires_at = match self.policy.resolve(request.expiry, now) {
            Ok(at) => at,
            Err(e) => return self.refuse(&request, ctx, e.into()),
        };
        if let Some(actor) = through.actor() {
            // The default ends no later than the issuing key; an explicit expiry past its
            // end is refused rather than shortened behind the caller's back.
            let end = actor.ends_at();
            if request.expiry == Expiry::Default {
                expires_at = earlier(expires_at, end);
            } else if end.is_some_and(|end| expires_at.is_none_or(|at| at > end)) {
                return self.refuse(&request, ctx, IssueError::OutlivesActor);
            }
        }
        if let Some(hook) = &self.issue_hook
            && let Err(refusal) = hook.check(&request).await
        {
            return self.refuse(&request, ctx, IssueError::Refused(refusal));
        }
        let prefix_index = match &request.prefix {
            None => 0,
            Some(p) => match self.format.prefixes().iter().position(|q| q.as_str() == p) {
                Some(i) => i,
                None => {
                    let e = IssueError::InvalidRequest(InvalidRequest::UnknownPrefix);
                    return self.refuse(&request, ctx, e);
                }
            },
        };
        // A fresh id collides with an existing one with negligible probability; retry anyway.
        let mut attempts = 0;
        loop {
            attempts += 1;
            let (key, hash) = self.new_key(prefix_index)?;
            let record = KeyRecord {
                id: key.id(),
                prefix: self.format.prefixes()[prefix_index].clone(),
                tenant: request.tenant.clone(),
                name: request.name.clone(),
                owner: request.owner.clone(),
                scopes: request.scopes.clone(),
                roles: request.roles.clone(),
                restrictions: request.restrictions.clone(),
                allowed_networks: request.allowed_networks.clone(),
                metadata: request.metadata.clone(),
                created_at: now,
                expires_at,
                last_used_at: None,
                status: KeyStatus::Active,
                hash,
                version: 0,
                rotated_from: None,
                rotated_to: None,
                issued_by: through.actor().map(Verified::key_id),
                parent: match through {
                    Through::Delegate(parent) => Some(parent.key_id()),
                    // A delegated administrator's keys stay below its own parent.
                    Through::Admin(actor) => actor.parent(),
                    Through::Operator => None,
                },
                remaining_uses: request.remaining_uses.or(request.refill.map(|r| r.uses())),
                refill: request.refill,
                refilled_at: request.refill.map(|_| now),
            };
            let caps = self.policy.caps_for(&record);
            let stored = if caps.is_none() {
                self.store.insert(record.clone()).await
            } else {
                self.store.insert_within(record.clone(), caps, now).await
            };
            match stored {
                Ok(()) => {
                    let kind = AuditKind::Issued {
                        delegated_from: record.parent,
                    };
                    self.emit(AuditEvent::new(now, kind, ctx).about(&record));
                    return Ok(Issued { key, record });
                }
                Err(StoreError::Duplicate(_)) if attempts < 3 => {}
                Err(StoreError::LimitReached { limit }) => {
                    return self.refuse(&request, ctx, IssueError::LimitReached { limit });
                }
                Err(StoreError::TenantLimitReached { limit }) => {
                    let refusal = IssueError::TenantLimitReached { limit };
                    return self.refuse(&request, ctx, refusal);
                }
                Err(e) => return Err(IssueError::Store(e)),
            }
        }
    }

    /// A fresh key with the format's prefix number `prefix_index`, and its hash.
    pub(crate) fn new_key(&self, prefix_index: usize) -> Result<(ApiKey, StoredHash), IssueError> {
        let key = self
            .format
            .generate_with_rng(prefix_index, &mut getrandom::SysRng)?;
        let hash = self.hasher.hash(&key.as_parsed())?;
        Ok((key, hash))
    }

    fn check_request(&self, request: &IssueRequest) -> Result<(), IssueError> {
        let bad_len = |text: &str, max: usize| text.is_empty() || text.len() > max;
        let invalid = if bad_len(&request.name, MAX_NAME_LEN) {
            Some(InvalidRequest::NameLength)
        } else if bad_len(&request.owner, MAX_OWNER_LEN) {
            Some(InvalidRequest::OwnerLength)
        } else if request
            .tenant
            .as_deref()
            .is_some_and(|t| bad_len(t, MAX_OWNER_LEN))
        {
            Some(InvalidRequest::TenantLength)
        } else if request.roles.len() > MAX_ROLES {
            Some(InvalidRequest::TooManyRoles)
        } else if self.catalog.is_none() && !request.roles.is_empty() {
            Some(InvalidRequest::RolesNeedCatalog)
        } else {
            None
        };
        if let Some(invalid) = invalid {
            return Err(IssueError::InvalidRequest(invalid));
        }
        if let Some(catalog) = &self.catalog {
            let unknown = catalog.unknown(&request.scopes, &request.roles);
            if !unknown.is_empty() {
                return Err(IssueError::Unknown(unknown));
            }
        }
        Ok(())
    }
}
