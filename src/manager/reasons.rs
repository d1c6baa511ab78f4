//! Why an issuance was refused, as values a caller can act on: which field of the request
//! is unusable, which scopes and roles a catalog does not know, what the application's
//! hook said, and what a key issued through another would get beyond it.

use core::fmt;

use crate::scope::Scope;

/// Longest key name, in bytes.
pub(crate) const MAX_NAME_LEN: usize = 128;
/// Longest owner or tenant, in bytes.
pub(crate) const MAX_OWNER_LEN: usize = 128;
/// Most roles a key may have.
pub(crate) const MAX_ROLES: usize = 32;

/// Which part of an [`IssueRequest`](super::IssueRequest) is unusable
/// ([`IssueError::InvalidRequest`](super::IssueError::InvalidRequest)).
///
/// ```
/// # use keyward::{Hasher, IssueRequest, KeyFormat, KeyManager, MemoryStore, Pepper, RequestContext, manager::IssueError};
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// # let manager = KeyManager::new(MemoryStore::new(), KeyFormat::new(["tak"])?, Hasher::fast(Pepper::random("k1")?));
/// let err = manager.issue(IssueRequest::new("", "user_1"), &RequestContext::new()).await.unwrap_err();
/// assert!(matches!(err, IssueError::InvalidRequest(_)));
/// assert_eq!(err.to_string(), "invalid request: name must have 1 to 128 bytes");
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum InvalidRequest {
    /// The name is empty or longer than 128 bytes.
    NameLength,
    /// The owner is empty or longer than 128 bytes.
    OwnerLength,
    /// The tenant is empty or longer than 128 bytes.
    TenantLength,
    /// More than 32 roles.
    TooManyRoles,
    /// Roles were asked for, but the manager has no scope catalog to resolve them.
    RolesNeedCatalog,
    /// The prefix is not one of the key format's.
    UnknownPrefix,
}

impl fmt::Display for InvalidRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NameLength => write!(f, "name must have 1 to {MAX_NAME_LEN} bytes"),
            Self::OwnerLength => write!(f, "owner must have 1 to {MAX_OWNER_LEN} bytes"),
            Self::TenantLength => write!(f, "tenant must have 1 to {MAX_OWNER_LEN} bytes"),
            Self::TooManyRoles => write!(f, "too many roles (maximum {MAX_ROLES})"),
            Self::RolesNeedCatalog => f.write_str("roles need a scope catalog"),
            Self::UnknownPrefix => f.write_str("unknown prefix"),
        }
    }
}

/// Why the application's [`IssueHook`](super::IssueHook) refused an issuance
/// ([`IssueError::Refused`](super::IssueError::Refused)). Its reason reaches the caller
/// and the audit log, so it should say what the caller can do about it.
///
/// ```
/// # use keyward::{Hasher, IssueRequest, KeyFormat, KeyManager, MemoryStore, Pepper, RequestContext};
/// use keyward::manager::{BoxFuture, HookRefusal, IssueError, IssueHook};
/// struct Closed;
/// impl IssueHook for Closed {
///     fn check<'a>(&'a self, _: &'a IssueRequest) -> BoxFuture<'a, Result<(), HookRefusal>> {
///         Box::pin(async { Err(HookRefusal::new("sign-ups are closed")) })
///     }
/// }
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// # let manager = KeyManager::new(MemoryStore::new(), KeyFormat::new(["tak"])?, Hasher::fast(Pepper::random("k1")?));
/// let manager = manager.with_issue_hook(Closed);
/// match manager.issue(IssueRequest::new("ci", "user_1"), &RequestContext::new()).await {
///     Err(IssueError::Refused(refusal)) => assert_eq!(refusal.reason(), "sign-ups are closed"),
///     other => panic!("{other:?}"),
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HookRefusal {
    reason: String,
}

impl HookRefusal {
    /// A refusal for `reason`.
    #[must_use]
    pub fn new(reason: impl Into<String>) -> Self {
        Self {
            reason: reason.into(),
        }
    }

    /// The hook's reason.
    #[must_use]
    pub fn reason(&self) -> &str {
        &self.reason
    }
}

impl fmt::Display for HookRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.reason)
    }
}

impl From<String> for HookRefusal {
    fn from(reason: String) -> Self {
        Self::new(reason)
    }
}

impl From<&str> for HookRefusal {
    fn from(reason: &str) -> Self {
        Self::new(reason)
    }
}

/// What a key issued through another key would get beyond that key
/// ([`IssueError::Widening`](super::IssueError::Widening)).
///
/// ```
/// # use keyward::{Hasher, IssueRequest, KeyFormat, KeyManager, MemoryStore, Pepper, RequestContext, manager::IssueError};
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// # let manager = KeyManager::new(MemoryStore::new(), KeyFormat::new(["tak"])?, Hasher::fast(Pepper::random("k1")?));
/// # let ctx = RequestContext::new();
/// let parent = manager.issue(IssueRequest::new("ci", "user_1").scopes("read".parse()?), &ctx).await?;
/// let parent = manager.verify(parent.key.expose_secret(), &ctx).await?;
/// let wider = IssueRequest::new("job", "user_1").scopes("read write".parse()?);
/// match manager.issue_delegated(&parent, wider, &ctx).await {
///     Err(IssueError::Widening(what)) => assert_eq!(what.to_string(), "scopes write"),
///     other => panic!("{other:?}"),
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Widening {
    /// Another tenant (or any tenant, from a key without one that does not hold `*`).
    Tenant,
    /// Another owner (delegation keeps the owner).
    Owner,
    /// These scopes, which the issuing key does not hold.
    Scopes(Vec<Scope>),
    /// Resources outside the issuing key's restrictions.
    Resources,
    /// Networks outside the issuing key's IP allowlist.
    Networks,
    /// A usage quota beyond the issuing key's own.
    Quota,
}

impl fmt::Display for Widening {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Tenant => f.write_str("tenant"),
            Self::Owner => f.write_str("owner"),
            Self::Scopes(scopes) => {
                f.write_str("scopes")?;
                scopes.iter().try_for_each(|s| write!(f, " {s}"))
            }
            Self::Resources => f.write_str("resources"),
            Self::Networks => f.write_str("networks"),
            Self::Quota => f.write_str("quota"),
        }
    }
}
