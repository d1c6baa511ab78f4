//! The proof that a key verified: the only value handlers should accept.

use std::sync::Arc;

use time::OffsetDateTime;

use crate::key_id::KeyId;
use crate::record::KeyRecord;
use crate::scope::{Denied, Resource, Restrictions, Scope, ScopeSet};

/// A key that verified: right secret, active, not expired, with its effective scopes.
///
/// There is no public constructor: the only way to get one is
/// [`KeyManager::verify`](crate::KeyManager::verify) (or, in tests,
/// `keyward::testing::verified` behind the `testing` feature), so a handler that takes a
/// `Verified` cannot forget to check the key.
#[derive(Debug, Clone)]
pub struct Verified {
    record: Arc<KeyRecord>,
    /// `None`: the record's own scopes are the effective ones.
    effective: Option<ScopeSet>,
    at: OffsetDateTime,
}

impl Verified {
    pub(crate) fn new(
        record: Arc<KeyRecord>,
        effective: Option<ScopeSet>,
        at: OffsetDateTime,
    ) -> Self {
        Self {
            record,
            effective,
            at,
        }
    }

    /// The key's id.
    #[must_use]
    pub fn key_id(&self) -> KeyId {
        self.record.id
    }

    /// The key's record as read during verification.
    #[must_use]
    pub fn record(&self) -> &KeyRecord {
        &self.record
    }

    /// The key's owner.
    #[must_use]
    pub fn owner(&self) -> &str {
        &self.record.owner
    }

    /// The key's tenant.
    #[must_use]
    pub fn tenant(&self) -> Option<&str> {
        self.record.tenant.as_deref()
    }

    /// What the key may do now: its scopes and roles, with implications, bounded by its
    /// owner's current permissions when the manager has an owner-permission source.
    #[must_use]
    pub fn scopes(&self) -> &ScopeSet {
        self.effective.as_ref().unwrap_or(&self.record.scopes)
    }

    /// The resources the key is limited to.
    #[must_use]
    pub fn restrictions(&self) -> &Restrictions {
        &self.record.restrictions
    }

    /// When verification happened.
    #[must_use]
    pub fn verified_at(&self) -> OffsetDateTime {
        self.at
    }

    /// Whether the key holds `scope`.
    #[must_use]
    pub fn allows(&self, scope: &Scope) -> bool {
        self.scopes().allows(scope)
    }

    /// Allows the request when the key holds `required` and, if the request touches a
    /// `resource`, the key's restrictions contain it.
    ///
    /// # Errors
    /// [`Denied`] naming the missing scope or the refused resource.
    pub fn authorize(&self, required: &Scope, resource: Option<&Resource>) -> Result<(), Denied> {
        crate::scope::authorize(self.scopes(), &self.record.restrictions, required, resource)
    }
}
