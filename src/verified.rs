//! The proof that a key verified: the only value handlers should accept.

use std::sync::Arc;

use time::OffsetDateTime;

use crate::key::id::KeyId;
use crate::network::Networks;
use crate::record::KeyRecord;
use crate::scope::{Denied, Resource, Restrictions, Scope, ScopeSet};

/// A key that verified: right secret, active, not expired, with its effective scopes and
/// restrictions. For a delegated key, every ancestor was active and unexpired too, and the
/// effective scopes and restrictions lie within each ancestor's current ones.
///
/// There is no public constructor: the only way to get one is
/// [`KeyManager::verify`](crate::KeyManager::verify) (tests issue and verify a real key, for
/// example through `keyward::testing::Fixture`), so a handler that takes a `Verified`
/// cannot forget to check the key, and no code can make one without verifying a key.
///
/// A proof says that a key verified against the manager that made it; it is not bound to
/// one manager, so code that builds a manager of its own (over its own store) can hold a
/// proof about a key it issued there. The layers put into a request only proofs of their
/// own manager; an application with several managers keeps their proofs apart, and
/// [`KeyManager::acting_as`](crate::KeyManager::acting_as) re-reads the key from its own
/// store on every call, so a proof from elsewhere manages nothing.
#[derive(Debug, Clone)]
pub struct Verified {
    record: Arc<KeyRecord>,
    /// `None`: the record's own scopes are the effective ones.
    effective: Option<ScopeSet>,
    /// `None`: the record's own restrictions are the effective ones.
    restrictions: Option<Restrictions>,
    /// `None`: the record's own networks are the effective ones.
    networks: Option<Networks>,
    /// The earliest end of the key and its ancestors.
    ends_at: Option<OffsetDateTime>,
    at: OffsetDateTime,
}

impl Verified {
    pub(crate) fn new(
        record: Arc<KeyRecord>,
        effective: Option<ScopeSet>,
        restrictions: Option<Restrictions>,
        networks: Option<Networks>,
        ends_at: Option<OffsetDateTime>,
        at: OffsetDateTime,
    ) -> Self {
        Self {
            record,
            effective,
            restrictions,
            networks,
            ends_at,
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

    /// The shared record, for internal reads that follow it (no copy).
    pub(crate) fn shared_record(&self) -> Arc<KeyRecord> {
        Arc::clone(&self.record)
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
    /// owner's current permissions when the manager has an owner-permission source, and,
    /// for a delegated key, by every ancestor's current effective scopes.
    #[must_use]
    pub fn scopes(&self) -> &ScopeSet {
        self.effective.as_ref().unwrap_or(&self.record.scopes)
    }

    /// The resources the key is limited to: its own restrictions, and for a delegated key
    /// within every ancestor's.
    #[must_use]
    pub fn restrictions(&self) -> &Restrictions {
        self.restrictions
            .as_ref()
            .unwrap_or(&self.record.restrictions)
    }

    /// The networks the key may be used from: its own allowlist, and for a delegated key
    /// within every ancestor's. (A tenant default set with
    /// [`KeyManager::with_tenant_networks`](crate::KeyManager::with_tenant_networks)
    /// applies at verification when this is [`Networks::any`].)
    #[must_use]
    pub fn allowed_networks(&self) -> &Networks {
        self.networks
            .as_ref()
            .unwrap_or(&self.record.allowed_networks)
    }

    /// When the key stops working at the latest: the earliest expiry of the key and its
    /// ancestors (`None`: never). Keys managed through this key end no later.
    #[must_use]
    pub fn ends_at(&self) -> Option<OffsetDateTime> {
        self.ends_at
    }

    /// The delegation parent, for a delegated key.
    #[must_use]
    pub fn parent(&self) -> Option<KeyId> {
        self.record.parent
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
        crate::scope::authorize(self.scopes(), self.restrictions(), required, resource)
    }
}
