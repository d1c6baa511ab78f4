//! Editing a live key: its name, scopes, roles, restrictions, metadata and IP allowlist,
//! by compare-and-set, audited with the names of the fields that changed.

use core::future::ready;
use std::sync::Arc;

use super::KeyManager;
use super::authority::Reach;
use super::cas::{CasError, Decision, Outcome, Write};
use super::reasons::{InvalidRequest, MAX_NAME_LEN, MAX_ROLES, Widening};
use super::verify::VerifyError;
use crate::audit::{AuditEvent, AuditKind, RequestContext};
use crate::key::id::KeyId;
use crate::network::Networks;
use crate::record::{KeyRecord, KeyStatus, Metadata};
use crate::scope::{Restrictions, ScopeSet, UnknownScopes};
use crate::store::{KeyStore, StoreError};

/// A change to a live key: each field set replaces the key's, each left `None` keeps it.
///
/// ```
/// use keyward::{Hasher, IssueRequest, KeyFormat, KeyManager, MemoryStore, Pepper, RequestContext};
/// use keyward::manager::KeyEdit;
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// let manager = KeyManager::new(MemoryStore::new(), KeyFormat::new(["tak"])?, Hasher::fast(Pepper::random("k1")?));
/// let ctx = RequestContext::new();
/// let issued = manager.issue(IssueRequest::new("ci", "user_1").scopes("read write".parse()?), &ctx).await?;
/// let edit = KeyEdit::new().name("ci (read only)").scopes("read".parse()?);
/// let record = manager.edit(&issued.record.id, edit, &ctx).await?;
/// assert_eq!(record.name, "ci (read only)");
/// // Effective on the next request: the same key no longer writes.
/// let verified = manager.verify(issued.key.expose_secret(), &ctx).await?;
/// assert!(!verified.allows(&"write".parse()?));
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct KeyEdit {
    /// A new name.
    pub name: Option<String>,
    /// New directly granted scopes.
    pub scopes: Option<ScopeSet>,
    /// New roles.
    pub roles: Option<Vec<String>>,
    /// New resource restrictions.
    pub restrictions: Option<Restrictions>,
    /// New metadata.
    pub metadata: Option<Metadata>,
    /// A new IP allowlist.
    pub allowed_networks: Option<Networks>,
}

impl KeyEdit {
    /// An edit that changes nothing yet.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Renames the key.
    #[must_use]
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Replaces the directly granted scopes.
    #[must_use]
    pub fn scopes(mut self, scopes: ScopeSet) -> Self {
        self.scopes = Some(scopes);
        self
    }

    /// Replaces the roles.
    #[must_use]
    pub fn roles<I: IntoIterator<Item = S>, S: Into<String>>(mut self, roles: I) -> Self {
        self.roles = Some(roles.into_iter().map(Into::into).collect());
        self
    }

    /// Replaces the resource restrictions.
    #[must_use]
    pub fn restrictions(mut self, restrictions: Restrictions) -> Self {
        self.restrictions = Some(restrictions);
        self
    }

    /// Replaces the metadata.
    #[must_use]
    pub fn metadata(mut self, metadata: Metadata) -> Self {
        self.metadata = Some(metadata);
        self
    }

    /// Replaces the IP allowlist.
    #[must_use]
    pub fn allowed_networks(mut self, networks: Networks) -> Self {
        self.allowed_networks = Some(networks);
        self
    }

    /// Whether the edit sets no field.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// `record` with the edit applied, and the names of the fields whose value changed.
    fn apply(&self, record: &KeyRecord) -> (KeyRecord, Vec<&'static str>) {
        let mut next = record.clone();
        let mut changed = Vec::new();
        macro_rules! set {
            ($field:ident, $name:literal) => {
                if let Some(value) = &self.$field {
                    if *value != next.$field {
                        next.$field = value.clone();
                        changed.push($name);
                    }
                }
            };
        }
        set!(name, "name");
        set!(scopes, "scopes");
        set!(roles, "roles");
        set!(restrictions, "restrictions");
        set!(metadata, "metadata");
        set!(allowed_networks, "allowed_networks");
        (next, changed)
    }
}

/// Why a key was not edited.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EditError {
    /// No key with this id, or (through [`Acting::edit`](super::Acting::edit)) one outside
    /// the acting key's reach: the same answer.
    #[error("no key with id {0}")]
    NotFound(KeyId),
    /// The key is revoked or expired; only a live (or disabled) key is edited.
    #[error("key {0} is revoked or expired and cannot be edited")]
    NotLive(KeyId),
    /// A field of the edit is unusable.
    #[error("invalid request: {0}")]
    InvalidRequest(InvalidRequest),
    /// The catalog does not know these scopes or roles.
    #[error("unknown scopes or roles: {0}")]
    Unknown(UnknownScopes),
    /// The edited key would get more than the acting key holds.
    #[error("cannot grant more than the acting key holds: {0}")]
    Widening(Widening),
    /// The acting key no longer verifies.
    #[error("the acting key no longer verifies")]
    Actor(#[source] VerifyError),
    /// The record kept changing under concurrent updates.
    #[error("key {0} is being changed concurrently; try again")]
    Contended(KeyId),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl CasError for EditError {
    fn not_found(id: KeyId) -> Self {
        Self::NotFound(id)
    }

    fn contended(id: KeyId) -> Self {
        Self::Contended(id)
    }
}

/// Compare-and-set attempts before giving up with [`EditError::Contended`].
const CAS_ATTEMPTS: usize = 8;

impl<S: KeyStore> KeyManager<S> {
    /// Edits a key (the operator's call, bounded by nothing but validation): each field the
    /// edit sets replaces the key's, by compare-and-set, effective on the key's next
    /// verification. The secret, owner, tenant, lifetime and lineage never change here. An
    /// edit that changes nothing writes nothing and emits no event; otherwise an
    /// [`AuditKind::Edited`] event names the changed fields.
    ///
    /// # Errors
    /// [`EditError`]: an unknown id, a revoked or expired key, an invalid field (an empty
    /// or long name, too many roles, roles without a catalog), scopes or roles the catalog
    /// does not know, contention or a store failure.
    pub async fn edit(
        &self,
        id: &KeyId,
        edit: KeyEdit,
        ctx: &RequestContext,
    ) -> Result<KeyRecord, EditError> {
        self.edit_within(id, &edit, None, ctx).await
    }

    pub(crate) async fn edit_within(
        &self,
        id: &KeyId,
        edit: &KeyEdit,
        reach: Option<&Reach>,
        ctx: &RequestContext,
    ) -> Result<KeyRecord, EditError> {
        self.check_edit(edit)?;
        let now = self.clock.now();
        let decide = |current: Arc<KeyRecord>| {
            ready(
                self.decide_edit(&current, edit, reach, now)
                    .map(|(next, changed)| {
                        if changed.is_empty() {
                            Decision::Keep(())
                        } else {
                            Decision::Write(Write::Update(next), changed)
                        }
                    }),
            )
        };
        let outcome = self
            .compare_and_set(id, reach, None, CAS_ATTEMPTS, decide)
            .await?;
        match outcome {
            Outcome::Kept(record, ()) => Ok(Arc::unwrap_or_clone(record)),
            Outcome::Written { write, value, .. } => {
                let next = write.into_record();
                let changed = value.iter().map(|f| (*f).to_owned()).collect();
                self.emit(AuditEvent::new(now, AuditKind::Edited { changed }, ctx).about(&next));
                Ok(next)
            }
        }
    }

    /// The checks that need no record: lengths, counts, the catalog.
    fn check_edit(&self, edit: &KeyEdit) -> Result<(), EditError> {
        let invalid = if edit
            .name
            .as_deref()
            .is_some_and(|n| n.is_empty() || n.len() > MAX_NAME_LEN)
        {
            Some(InvalidRequest::NameLength)
        } else if edit.roles.as_ref().is_some_and(|r| r.len() > MAX_ROLES) {
            Some(InvalidRequest::TooManyRoles)
        } else if self.catalog.is_none() && edit.roles.as_ref().is_some_and(|r| !r.is_empty()) {
            Some(InvalidRequest::RolesNeedCatalog)
        } else {
            None
        };
        if let Some(invalid) = invalid {
            return Err(EditError::InvalidRequest(invalid));
        }
        if let Some(catalog) = &self.catalog {
            let empty = ScopeSet::default();
            let unknown = catalog.unknown(
                edit.scopes.as_ref().unwrap_or(&empty),
                edit.roles.as_deref().unwrap_or_default(),
            );
            if !unknown.is_empty() {
                return Err(EditError::Unknown(unknown));
            }
        }
        Ok(())
    }

    /// The edited record, refused when the key is dead or (with `reach`) when the edit
    /// would take it beyond the acting key.
    fn decide_edit(
        &self,
        current: &KeyRecord,
        edit: &KeyEdit,
        reach: Option<&Reach>,
        now: time::OffsetDateTime,
    ) -> Result<(KeyRecord, Vec<&'static str>), EditError> {
        if current.status == KeyStatus::Revoked || current.is_expired(now) {
            return Err(EditError::NotLive(current.id));
        }
        let (next, changed) = edit.apply(current);
        if let Some(reach) = reach {
            let actor = &reach.actor;
            let scopes = self.resolved(&next).unwrap_or_else(|| next.scopes.clone());
            if !scopes.is_subset(actor.scopes()) {
                let extra = scopes.iter().filter(|s| !actor.scopes().allows(s));
                return Err(EditError::Widening(Widening::Scopes(
                    extra.cloned().collect(),
                )));
            }
            if !next.restrictions.is_within(actor.restrictions()) {
                return Err(EditError::Widening(Widening::Resources));
            }
            if !self.networks_within(&next.allowed_networks, next.tenant.as_deref(), actor) {
                return Err(EditError::Widening(Widening::Networks));
            }
        }
        Ok((next, changed))
    }
}
