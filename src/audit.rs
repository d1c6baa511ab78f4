//! Audit events: what happened to which key, when, on whose behalf. Never the secret.
//!
//! Give the manager a sink with [`KeyManager::with_audit`](crate::KeyManager::with_audit):
//! [`TracingAudit`] logs through `tracing`, [`AuditLog`] keeps events in memory, and any
//! [`AuditSink`] of the application's forwards them elsewhere.
//!
//! ```
//! use keyward::audit::{AuditKind, AuditLog};
//! use keyward::{Hasher, IssueRequest, KeyFormat, KeyManager, MemoryStore, Pepper, RequestContext};
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), keyward::Error> {
//! let log = AuditLog::new();
//! let manager = KeyManager::new(MemoryStore::new(), KeyFormat::new(["tak"])?, Hasher::fast(Pepper::random("k1")?))
//!     .with_audit(log.clone());
//! let ctx = RequestContext::new().actor("admin@example.com");
//! manager.issue(IssueRequest::new("ci", "user_1"), &ctx).await?;
//! assert!(matches!(log.events()[0].kind, AuditKind::Issued { .. }));
//! # Ok(()) }
//! ```

use core::fmt;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};

use serde::Serialize;
use time::OffsetDateTime;

use crate::key::id::KeyId;
use crate::record::{KeyRecord, QuotaRefill};

/// Receives every audit event. Implementations must be fast and must not fail the
/// operation: buffer, or hand off to another task, if the destination is slow.
pub trait AuditSink: Send + Sync + 'static {
    /// Records one event.
    fn record(&self, event: &AuditEvent);

    /// Whether events are wanted at all; when `false` the manager does not even build them
    /// (which keeps verification free of allocations for audit).
    fn enabled(&self) -> bool {
        true
    }
}

/// What the application knows about the request that caused an operation.
///
/// ```
/// let ctx = keyward::RequestContext::new()
///     .client_addr("203.0.113.7".parse().expect("address"))
///     .actor("user_42")
///     .request_id("req-1");
/// assert_eq!(ctx.actor.as_deref(), Some("user_42"));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct RequestContext {
    /// The client's network address.
    pub client_addr: Option<IpAddr>,
    /// Who acts (an admin user, or the key id of a management key), when not the key itself.
    pub actor: Option<String>,
    /// The application's request or trace id.
    pub request_id: Option<String>,
}

impl RequestContext {
    /// An empty context.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the client address.
    #[must_use]
    pub fn client_addr(mut self, addr: IpAddr) -> Self {
        self.client_addr = Some(addr);
        self
    }

    /// Sets the acting principal.
    #[must_use]
    pub fn actor(mut self, actor: impl Into<String>) -> Self {
        self.actor = Some(actor.into());
        self
    }

    /// Sets the request id.
    #[must_use]
    pub fn request_id(mut self, id: impl Into<String>) -> Self {
        self.request_id = Some(id.into());
        self
    }
}

/// One audit event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct AuditEvent {
    /// When it happened (from the manager's clock).
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// What happened.
    pub kind: AuditKind,
    /// The key concerned (absent when a presented string did not even parse).
    pub key_id: Option<KeyId>,
    /// The key's name.
    pub name: Option<String>,
    /// The key's tenant.
    pub tenant: Option<String>,
    /// The key's owner.
    pub owner: Option<String>,
    /// The request context the application passed in.
    pub context: RequestContext,
}

impl AuditEvent {
    pub(crate) fn new(at: OffsetDateTime, kind: AuditKind, context: &RequestContext) -> Self {
        Self {
            at,
            kind,
            key_id: None,
            name: None,
            tenant: None,
            owner: None,
            context: context.clone(),
        }
    }

    pub(crate) fn about(mut self, record: &KeyRecord) -> Self {
        self.key_id = Some(record.id);
        self.name = Some(record.name.clone());
        self.tenant.clone_from(&record.tenant);
        self.owner = Some(record.owner.clone());
        self
    }

    pub(crate) fn key(mut self, id: KeyId) -> Self {
        self.key_id = Some(id);
        self
    }
}

/// What an [`AuditEvent`] records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum AuditKind {
    /// A key was issued.
    Issued {
        /// The key it was delegated from, if any.
        delegated_from: Option<KeyId>,
    },
    /// Issuance was refused by policy, the cap or the application's hook.
    RefusedByPolicy {
        /// Why.
        reason: String,
    },
    /// A key verified.
    Verified,
    /// A presented key did not verify.
    VerifyFailed {
        /// Why (`invalid` covers unknown ids and wrong secrets alike).
        reason: FailureReason,
    },
    /// A key's stored hash was upgraded after a successful verification.
    Rehashed,
    /// A key was disabled.
    Disabled,
    /// A key was enabled again.
    Enabled,
    /// A key was revoked.
    Revoked {
        /// Why, when given (for example `leaked`).
        reason: Option<String>,
    },
    /// A key was rotated.
    Rotated {
        /// The new key.
        new_key: KeyId,
        /// When the old key stops working.
        #[serde(with = "time::serde::rfc3339::option")]
        old_key_expires_at: Option<OffsetDateTime>,
    },
    /// A key was deleted.
    Deleted,
    /// A key's usage quota was replaced
    /// ([`KeyManager::set_quota`](crate::KeyManager::set_quota): a plan change).
    QuotaSet {
        /// The uses the key now has (`None`: unlimited).
        remaining_uses: Option<u64>,
        /// The refill schedule it now has, if any.
        refill: Option<QuotaRefill>,
    },
    /// A key's usage quota was refilled.
    QuotaRefilled {
        /// The uses the key now has.
        remaining_uses: u64,
        /// `true` when the key's own schedule refilled it (on its first use in a new
        /// period, with no acting principal), `false` for
        /// [`KeyManager::refill_quotas`](crate::KeyManager::refill_quotas).
        scheduled: bool,
    },
    /// A secret scanner reported the key's token in a public place and the token verified
    /// (see [`KeyManager::revoke_leaked`](crate::KeyManager::revoke_leaked)).
    LeakReported {
        /// The scanner's token type.
        token_type: String,
        /// Where the token was found, when the scanner said.
        url: Option<String>,
        /// What kind of place (such as `commit`), when the scanner said.
        source: Option<String>,
        /// Which scanner reported it (such as `github`), when known.
        scanner: Option<String>,
        /// Whether this report revoked the key (`false`: it was revoked already).
        revoked: bool,
    },
}

impl AuditKind {
    /// The event's name in snake case, such as `verify_failed`.
    #[must_use]
    pub fn name(&self) -> &'static str {
        match self {
            Self::Issued { .. } => "issued",
            Self::RefusedByPolicy { .. } => "refused_by_policy",
            Self::Verified => "verified",
            Self::VerifyFailed { .. } => "verify_failed",
            Self::Rehashed => "rehashed",
            Self::Disabled => "disabled",
            Self::Enabled => "enabled",
            Self::Revoked { .. } => "revoked",
            Self::Rotated { .. } => "rotated",
            Self::Deleted => "deleted",
            Self::QuotaSet { .. } => "quota_set",
            Self::QuotaRefilled { .. } => "quota_refilled",
            Self::LeakReported { .. } => "leak_reported",
        }
    }
}

/// Why a verification failed, as recorded in audit events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum FailureReason {
    /// Not a well-formed key.
    Malformed,
    /// Unknown key id or wrong secret.
    Invalid,
    /// The key is disabled.
    Disabled,
    /// The key is revoked.
    Revoked,
    /// The key has expired.
    Expired,
    /// The store or the owner-permission source could not answer.
    Unavailable,
}

impl FailureReason {
    /// The reason as a short word.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Malformed => "malformed",
            Self::Invalid => "invalid",
            Self::Disabled => "disabled",
            Self::Revoked => "revoked",
            Self::Expired => "expired",
            Self::Unavailable => "unavailable",
        }
    }
}

impl fmt::Display for FailureReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Discards events.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoAudit;

impl AuditSink for NoAudit {
    fn record(&self, _event: &AuditEvent) {}

    fn enabled(&self) -> bool {
        false
    }
}

/// Emits each event as a `tracing` event with target `keyward::audit` (INFO; WARN for
/// failures and revocations), fields `event`, `key_id`, `name`, `tenant`, `owner`, `actor`,
/// `client_addr`, `request_id`.
#[derive(Debug, Clone, Copy, Default)]
pub struct TracingAudit;

impl AuditSink for TracingAudit {
    fn record(&self, e: &AuditEvent) {
        let kind = e.kind.name();
        let key_id = e.key_id.as_ref().map(KeyId::as_str).unwrap_or("");
        let client = e
            .context
            .client_addr
            .map(|a| a.to_string())
            .unwrap_or_default();
        macro_rules! emit {
            ($level:expr) => {
                tracing::event!(
                    target: "keyward::audit",
                    $level,
                    event = kind,
                    detail = ?e.kind,
                    key_id,
                    name = e.name.as_deref().unwrap_or(""),
                    tenant = e.tenant.as_deref().unwrap_or(""),
                    owner = e.owner.as_deref().unwrap_or(""),
                    actor = e.context.actor.as_deref().unwrap_or(""),
                    client_addr = %client,
                    request_id = e.context.request_id.as_deref().unwrap_or(""),
                    "keyward audit event"
                )
            };
        }
        match e.kind {
            AuditKind::VerifyFailed { .. }
            | AuditKind::Revoked { .. }
            | AuditKind::LeakReported { .. }
            | AuditKind::RefusedByPolicy { .. } => {
                emit!(tracing::Level::WARN);
            }
            _ => emit!(tracing::Level::INFO),
        }
    }
}

/// Keeps events in memory (for tests and for applications that forward them in batches).
/// Clones share the same list.
#[derive(Debug, Clone, Default)]
pub struct AuditLog {
    events: Arc<Mutex<Vec<AuditEvent>>>,
}

impl AuditLog {
    /// An empty log.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// A copy of the events so far.
    #[must_use]
    pub fn events(&self) -> Vec<AuditEvent> {
        self.events
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Removes and returns the events so far.
    #[must_use]
    pub fn take(&self) -> Vec<AuditEvent> {
        core::mem::take(&mut *self.events.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

impl AuditSink for AuditLog {
    fn record(&self, event: &AuditEvent) {
        self.events
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(event.clone());
    }
}

impl<T: AuditSink> AuditSink for Arc<T> {
    fn record(&self, event: &AuditEvent) {
        (**self).record(event);
    }

    fn enabled(&self) -> bool {
        (**self).enabled()
    }
}
