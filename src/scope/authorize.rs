//! The authorization check and its denial.

use super::{Resource, Restrictions, Scope, ScopeSet};

/// Why a request was refused. The HTTP layer answers 403 `insufficient_scope`, naming the
/// missing scope (`scope="tickets:write"`) or the refused resource.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Denied {
    /// The key lacks this scope.
    #[error("missing scope {0}")]
    MissingScope(Scope),
    /// The resource is outside the key's restrictions.
    #[error("resource {0} is outside the key's restrictions")]
    Resource(Resource),
}

/// Allows a request needing `required` on `resource` (if it names one) when `granted`
/// allows the scope and `restrictions` allow the resource. A request that names no resource
/// (such as a listing) passes the resource check; filter its rows with
/// [`Restrictions::filter`].
///
/// # Errors
/// [`Denied`] naming the missing scope first, then the refused resource.
pub fn authorize(
    granted: &ScopeSet,
    restrictions: &Restrictions,
    required: &Scope,
    resource: Option<&Resource>,
) -> Result<(), Denied> {
    if !granted.allows(required) {
        return Err(Denied::MissingScope(required.clone()));
    }
    match resource {
        Some(r) if !restrictions.allows(r) => Err(Denied::Resource(r.clone())),
        _ => Ok(()),
    }
}
