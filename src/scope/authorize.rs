//! The authorization check and its denial.

use super::{Resource, Restrictions, Scope, ScopeSet};

/// Why a request was refused. The HTTP layer answers 403 `insufficient_scope`, naming the
/// missing scope (`scope="tickets:write"`, from [`Denied::missing_scope`]) or the refused
/// resource.
///
/// ```
/// use keyward::{ScopeSet, scope::{Denied, Restrictions, authorize}};
/// let granted: ScopeSet = "read comments".parse()?;
/// let denied = authorize(&granted, &Restrictions::unrestricted(), &"tickets:write".parse()?, None)
///     .unwrap_err();
/// assert_eq!(denied.missing_scope().map(|s| s.as_str()), Some("tickets:write"));
/// assert_eq!(denied.to_string(), "missing scope tickets:write");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
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

impl Denied {
    /// The scope the request needed and the key lacks, for `scope="..."` in a 403 answer.
    ///
    /// ```
    /// let denied = keyward::scope::Denied::Resource("company:9".parse()?);
    /// assert!(denied.missing_scope().is_none());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn missing_scope(&self) -> Option<&Scope> {
        match self {
            Self::MissingScope(scope) => Some(scope),
            Self::Resource(_) => None,
        }
    }

    /// The resource the key may not touch.
    ///
    /// ```
    /// let denied = keyward::scope::Denied::Resource("company:9".parse()?);
    /// assert_eq!(denied.refused_resource().map(|r| r.as_str()), Some("company:9"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn refused_resource(&self) -> Option<&Resource> {
        match self {
            Self::Resource(resource) => Some(resource),
            Self::MissingScope(_) => None,
        }
    }
}

/// Allows a request needing `required` on `resource` (if it names one) when `granted`
/// allows the scope and `restrictions` allow the resource. `granted` should be the key's
/// effective scopes (expanded by the catalog and bounded by its owner). A request that
/// names no resource (such as a listing) passes the resource check; filter its rows with
/// [`Restrictions::filter`].
///
/// ```
/// use keyward::{ScopeSet, scope::{Denied, Restrictions, authorize}};
/// let granted: ScopeSet = "read tickets:write".parse()?;
/// let only = Restrictions::only(["company:42"])?;
/// let write = "tickets:write".parse()?;
/// assert_eq!(authorize(&granted, &only, &write, Some(&"company:42/project:7".parse()?)), Ok(()));
/// assert_eq!(
///     authorize(&granted, &only, &write, Some(&"company:43".parse()?)),
///     Err(Denied::Resource("company:43".parse()?))
/// );
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
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
