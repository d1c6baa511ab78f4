//! [`LiveCaps`]: the caps on live keys that a capped write keeps.

/// The caps on live keys (those that [count against a
/// cap](crate::record::KeyRecord::counts_against_cap)) that one write keeps: at most
/// `owner` for the record's owner and at most `tenant` for its tenant. `None` is no cap.
///
/// The manager builds it from its [`IssuancePolicy`](crate::policy::IssuancePolicy) for
/// each record ([`IssuancePolicy::caps_for`](crate::policy::IssuancePolicy::caps_for)):
/// the tenant's cap is set only for a record that has a tenant.
///
/// ```
/// use keyward::store::LiveCaps;
/// let caps = LiveCaps::none().owner(3).tenant(100);
/// assert_eq!((caps.owner_cap(), caps.tenant_cap()), (Some(3), Some(100)));
/// assert!(LiveCaps::none().is_none());
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct LiveCaps {
    owner: Option<usize>,
    tenant: Option<usize>,
}

impl LiveCaps {
    /// No cap.
    #[must_use]
    pub const fn none() -> Self {
        Self {
            owner: None,
            tenant: None,
        }
    }

    /// At most `cap` live keys for the record's owner.
    #[must_use]
    pub const fn owner(mut self, cap: usize) -> Self {
        self.owner = Some(cap);
        self
    }

    /// At most `cap` live keys for the record's tenant (ignored for a record without one).
    #[must_use]
    pub const fn tenant(mut self, cap: usize) -> Self {
        self.tenant = Some(cap);
        self
    }

    /// The owner's cap, if any.
    #[must_use]
    pub const fn owner_cap(&self) -> Option<usize> {
        self.owner
    }

    /// The tenant's cap, if any.
    #[must_use]
    pub const fn tenant_cap(&self) -> Option<usize> {
        self.tenant
    }

    /// Whether there is no cap at all.
    #[must_use]
    pub const fn is_none(&self) -> bool {
        self.owner.is_none() && self.tenant.is_none()
    }
}
