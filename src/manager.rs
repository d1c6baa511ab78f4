//! The key manager: what an application calls to issue, verify, authorize and manage keys.
//!
//! [`KeyManager`] holds the store, the key format, the hasher and the policies; every
//! operation takes a [`RequestContext`](crate::RequestContext) for its audit event. Managing
//! keys on behalf of a key goes through [`KeyManager::acting_as`], which keeps every target
//! within what the acting key holds.
//!
//! ```
//! use keyward::{Hasher, IssueRequest, KeyFormat, KeyManager, MemoryStore, Pepper, RequestContext};
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), keyward::Error> {
//! let manager = KeyManager::new(MemoryStore::new(), KeyFormat::new(["tak"])?, Hasher::fast(Pepper::random("k1")?));
//! let ctx = RequestContext::new();
//! let issued = manager.issue(IssueRequest::new("ci", "user_1").scopes("read".parse()?), &ctx).await?;
//! let key = manager.verify(issued.key.expose_secret(), &ctx).await?;
//! key.authorize(&"read".parse()?, None)?;
//! manager.revoke(&key.key_id(), Some("done"), &ctx).await?;
//! # Ok(()) }
//! ```

use core::fmt;
use core::future::Future;
use core::pin::Pin;
use std::collections::HashMap;
use std::error::Error as StdError;
use std::sync::Arc;

use time::Duration;

use crate::audit::{AuditEvent, AuditSink, NoAudit};
use crate::clock::{Clock, SystemClock};
use crate::hash::Hasher;
use crate::key::format::KeyFormat;
use crate::key::legacy::{LegacyError, LegacyFormats};
use crate::network::Networks;
use crate::policy::IssuancePolicy;
use crate::scope::{ScopeCatalog, ScopeSet};
use crate::store::KeyStore;

mod authority;
mod cas;
mod edit;
mod import;
mod issue;
mod legacy;
pub(crate) mod lifecycle;
mod lineage;
mod notices;
mod permissions;
mod quota;
mod reasons;
mod verify;

pub use authority::Acting;
pub use edit::{EditError, KeyEdit};
pub use import::{
    DEFAULT_IMPORT_PREFIX, ImportError, ImportLine, ImportLineError, ImportSummary,
    MAX_IMPORT_LINE_LEN,
};
pub use issue::{IssueError, IssueRequest, Issued};
pub use lifecycle::LifecycleError;
pub use lineage::DEFAULT_MAX_DELEGATION_DEPTH;
pub use notices::{ExpiryNotice, NoticeStore};
pub use permissions::PermissionTable;
pub use quota::{QuotaError, Remaining};
pub use reasons::{HookRefusal, InvalidRequest, Widening};
pub use verify::VerifyError;

/// A boxed future, for the application hooks that the manager holds as trait objects.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The application's view of what an owner may do right now. With one configured, a key's
/// effective scopes are its own scopes intersected with its owner's current permissions, so
/// demoting the owner shrinks the key at once. If the lookup fails, verification fails
/// closed.
pub trait OwnerPermissions: Send + Sync + 'static {
    /// The owner's current permissions (an empty set when the owner is unknown).
    fn permissions<'a>(
        &'a self,
        owner: &'a str,
        tenant: Option<&'a str>,
    ) -> BoxFuture<'a, Result<ScopeSet, Box<dyn StdError + Send + Sync>>>;
}

/// An application hook consulted before every issuance (plan gating, quotas, approvals).
pub trait IssueHook: Send + Sync + 'static {
    /// `Err(refusal)` refuses the issuance; the refusal reaches the caller (in
    /// [`IssueError::Refused`]) and its reason the audit log.
    fn check<'a>(&'a self, request: &'a IssueRequest) -> BoxFuture<'a, Result<(), HookRefusal>>;
}

/// Issues, verifies and manages keys over a [`KeyStore`].
///
/// ```
/// use keyward::{Hasher, IssueRequest, KeyFormat, KeyManager, MemoryStore, Pepper, RequestContext};
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// let manager = KeyManager::new(MemoryStore::new(), KeyFormat::new(["tak"])?, Hasher::fast(Pepper::random("k1")?));
/// let ctx = RequestContext::new();
/// let issued = manager.issue(IssueRequest::new("ci", "user_1").scopes("read".parse()?), &ctx).await?;
/// let verified = manager.verify(issued.key.expose_secret(), &ctx).await?;
/// assert!(verified.authorize(&"read".parse()?, None).is_ok());
/// # Ok(()) }
/// ```
pub struct KeyManager<S> {
    pub(crate) store: S,
    pub(crate) format: KeyFormat,
    pub(crate) hasher: Hasher,
    pub(crate) policy: IssuancePolicy,
    pub(crate) catalog: Option<Arc<ScopeCatalog>>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) audit: Arc<dyn AuditSink>,
    pub(crate) owner_permissions: Option<Arc<dyn OwnerPermissions>>,
    pub(crate) issue_hook: Option<Arc<dyn IssueHook>>,
    pub(crate) last_used_interval: Duration,
    pub(crate) max_delegation_depth: usize,
    /// Default IP allowlists by tenant, for keys without one of their own.
    pub(crate) tenant_networks: HashMap<String, Networks>,
    pub(crate) legacy: LegacyFormats,
}

impl<S: KeyStore> KeyManager<S> {
    /// A manager with the default policy, the system clock, no catalog (scopes are taken as
    /// given) and no audit sink.
    pub fn new(store: S, format: KeyFormat, hasher: Hasher) -> Self {
        Self {
            store,
            format,
            hasher,
            policy: IssuancePolicy::default(),
            catalog: None,
            clock: Arc::new(SystemClock),
            audit: Arc::new(NoAudit),
            owner_permissions: None,
            issue_hook: None,
            last_used_interval: Duration::minutes(1),
            max_delegation_depth: DEFAULT_MAX_DELEGATION_DEPTH,
            tenant_networks: HashMap::new(),
            legacy: LegacyFormats::new(),
        }
    }

    /// Also verifies the legacy tokens of these formats: keys issued by another system and
    /// [imported](KeyManager::import) by their digest. A presented string that is not a
    /// well-formed key of the format is tried as a legacy token, recognised by its
    /// configured prefix; keyward's own keys are parsed and checked as before.
    ///
    /// # Errors
    /// [`LegacyError::Overlaps`] if a legacy prefix overlaps a prefix of the key format
    /// (equal, or one of them followed by `_` starting the other), so that no string is
    /// both a legacy token and a key.
    pub fn with_legacy(mut self, formats: LegacyFormats) -> Result<Self, LegacyError> {
        formats.check_disjoint(&self.format)?;
        self.legacy = formats;
        Ok(self)
    }

    /// Sets the issuance policy.
    #[must_use]
    pub fn with_policy(mut self, policy: IssuancePolicy) -> Self {
        self.policy = policy;
        self
    }

    /// Sets the scope catalog (implications and roles; strict catalogs also reject unknown
    /// scopes at issuance).
    #[must_use]
    pub fn with_catalog(mut self, catalog: ScopeCatalog) -> Self {
        self.catalog = Some(Arc::new(catalog));
        self
    }

    /// Sets the clock (tests use [`FakeClock`](crate::clock::FakeClock)).
    #[must_use]
    pub fn with_clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// Sets the audit sink.
    #[must_use]
    pub fn with_audit(mut self, sink: impl AuditSink) -> Self {
        self.audit = Arc::new(sink);
        self
    }

    /// Bounds every key by its owner's current permissions.
    #[must_use]
    pub fn with_owner_permissions(mut self, provider: impl OwnerPermissions) -> Self {
        self.owner_permissions = Some(Arc::new(provider));
        self
    }

    /// Consults `hook` before every issuance.
    #[must_use]
    pub fn with_issue_hook(mut self, hook: impl IssueHook) -> Self {
        self.issue_hook = Some(Arc::new(hook));
        self
    }

    /// How often `last_used_at` is written per key (default one minute): verification
    /// writes it only when the stored value is older than this.
    #[must_use]
    pub fn with_last_used_interval(mut self, interval: Duration) -> Self {
        self.last_used_interval = interval;
        self
    }

    /// How deep delegation may go (default [`DEFAULT_MAX_DELEGATION_DEPTH`], 4): a root
    /// key's child is 1 deep, its grandchild 2. Delegated keys deeper than this (after the
    /// limit was lowered) are refused at verification. Each level costs one store read per
    /// verification of a delegated key (`BENCHMARKS.md`, delegated verify rows).
    #[must_use]
    pub fn with_max_delegation_depth(mut self, depth: usize) -> Self {
        self.max_delegation_depth = depth;
        self
    }

    /// Sets the default IP allowlist of `tenant`'s keys: a key of that tenant whose own
    /// [`allowed_networks`](crate::KeyRecord::allowed_networks) (with its ancestors') is
    /// [`Networks::any`] is used only from these networks. A key with a list of its own is
    /// checked against its own list instead. [`Networks::any`] removes the default.
    ///
    /// ```
    /// use keyward::{Hasher, IssueRequest, KeyFormat, KeyManager, MemoryStore, Pepper, RequestContext};
    /// use keyward::{manager::VerifyError, network::Networks};
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// let manager = KeyManager::new(MemoryStore::new(), KeyFormat::new(["tak"])?, Hasher::fast(Pepper::random("k1")?))
    ///     .with_tenant_networks("acme", Networks::only(["10.0.0.0/8"])?);
    /// let issued = manager.issue(IssueRequest::new("ci", "user_1").tenant("acme"), &RequestContext::new()).await?;
    /// let inside = RequestContext::new().client_addr("10.1.2.3".parse()?);
    /// let outside = RequestContext::new().client_addr("198.51.100.1".parse()?);
    /// assert!(manager.verify(issued.key.expose_secret(), &inside).await.is_ok());
    /// assert!(matches!(
    ///     manager.verify(issued.key.expose_secret(), &outside).await,
    ///     Err(VerifyError::NetworkNotAllowed)
    /// ));
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn with_tenant_networks(mut self, tenant: impl Into<String>, networks: Networks) -> Self {
        let tenant = tenant.into();
        if networks.is_any() {
            self.tenant_networks.remove(&tenant);
        } else {
            self.tenant_networks.insert(tenant, networks);
        }
        self
    }

    /// The store.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// The key format.
    pub fn format(&self) -> &KeyFormat {
        &self.format
    }

    /// The hasher.
    pub fn hasher(&self) -> &Hasher {
        &self.hasher
    }

    /// The legacy formats verified beside the key format.
    pub fn legacy(&self) -> &LegacyFormats {
        &self.legacy
    }

    /// The issuance policy.
    pub fn policy(&self) -> &IssuancePolicy {
        &self.policy
    }

    /// The current time by the manager's clock.
    pub fn now(&self) -> time::OffsetDateTime {
        self.clock.now()
    }

    pub(crate) fn emit(&self, event: AuditEvent) {
        self.audit.record(&event);
    }
}

impl<S> fmt::Debug for KeyManager<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyManager")
            .field("format", &self.format)
            .field("hasher", &self.hasher)
            .field("policy", &self.policy)
            .field("catalog", &self.catalog.is_some())
            .field("owner_permissions", &self.owner_permissions.is_some())
            .field("issue_hook", &self.issue_hook.is_some())
            .field("last_used_interval", &self.last_used_interval)
            .field("max_delegation_depth", &self.max_delegation_depth)
            .field("legacy", &self.legacy)
            .finish_non_exhaustive()
    }
}
