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
//!
//! # The persisted audit log
//!
//! An [`AuditJournal`] sink that queues events without ever
//! blocking or failing the operation that emitted them, and writes them in batches to an
//! [`AuditStore`] (the SQL stores' `keyward_audit` table, or the memory store), where they
//! are queried by key, owner, tenant, kind and time, page by page.
//!
//! The policy, in full:
//! - **Bounded.** At most `capacity` events wait in memory. When the queue is full (the
//!   store is down or slower than the traffic) a new event is *dropped*, counted, and the
//!   count is written to the log itself as an `audit_events_dropped` record at the next
//!   successful flush ([`AuditJournal::dropped`] gives the running total).
//! - **Verifications are counted, not stored one by one**: successful verifications of one
//!   key between two flushes become one `verified` record whose
//!   [`count`](AuditRecord::count) says how many, so a hot verification adds to a counter
//!   and writes nothing to the database. Refused verifications are stored one by one.
//! - **Flushed by the application**: [`AuditJournal::flush_to`] writes the queue in one
//!   batch; call it on an interval (every second, say) and at shutdown. A failed flush puts
//!   the batch back in front of the queue (as far as the capacity allows) and reports the
//!   error; nothing is lost then unless the queue overflows.
//! - **A query sees every event recorded before it**: [`AuditJournal::query`] flushes first
//!   (waiting for a flush in progress), then reads the store.
//! - **Retention**: with [`AuditJournal::with_retention`], every flush also deletes records
//!   older than the retention period.
//!
//! ```
//! use keyward::audit::{AuditJournal, AuditQuery};
//! use keyward::{Hasher, IssueRequest, KeyFormat, KeyManager, MemoryStore, Pepper, RequestContext};
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let store = MemoryStore::new();
//! let journal = AuditJournal::new(10_000);
//! let manager = KeyManager::new(store.clone(), KeyFormat::new(["tak"])?, Hasher::fast(Pepper::random("k1")?))
//!     .with_audit(journal.clone());
//! let ctx = RequestContext::new().actor("admin@example.com");
//! let issued = manager.issue(IssueRequest::new("ci", "user_1"), &ctx).await?;
//! for _ in 0..3 {
//!     manager.verify(issued.key.expose_secret(), &RequestContext::new()).await?;
//! }
//! let events = journal.query(&store, &AuditQuery::new().key(issued.record.id)).await?;
//! let kinds: Vec<(&str, u64)> = events.iter().map(|e| (e.kind.as_str(), e.count)).collect();
//! assert_eq!(kinds, [("issued", 1), ("verified", 3)]);
//! assert_eq!(events[0].actor.as_deref(), Some("admin@example.com"));
//! # Ok(()) }
//! ```

mod journal;

pub use journal::{AuditJournal, AuditQuery, AuditRecord, AuditStore, Flushed};

use core::fmt;
use core::str::FromStr;
use std::borrow::Cow;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use time::OffsetDateTime;

use crate::key::id::KeyId;
use crate::manager::KeyManager;
use crate::record::{KeyRecord, QuotaRefill};
use crate::store::KeyStore;
use crate::verified::Verified;

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
/// use keyward::audit::Channel;
///
/// let ctx = keyward::RequestContext::new()
///     .client_addr("203.0.113.7".parse().expect("address"))
///     .actor("user_42")
///     .request_id("req-1")
///     .channel(Channel::MCP);
/// assert_eq!(ctx.actor.as_deref(), Some("user_42"));
/// assert_eq!(ctx.channel.as_ref().map(Channel::as_str), Some("mcp"));
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
    /// How the request came in (`http`, `grpc`, `mcp`, …); the layers set it.
    pub channel: Option<Channel>,
}

/// How a request reached the service: `http` (the axum layer), `grpc` (the tonic layer),
/// `mcp` (an MCP endpoint, `keyward::mcp`), or a name of the application's.
///
/// A name is 1 to [`Channel::MAX_LEN`] characters `a-z`, `0-9`, `-` and `_`, starting with
/// a letter; it serializes as that string, so audit events and the rows a key writes can
/// say "via MCP".
///
/// ```
/// use keyward::audit::{Channel, ChannelError};
///
/// assert_eq!("mcp".parse::<Channel>(), Ok(Channel::MCP));
/// assert_eq!(Channel::new("webhook")?.as_str(), "webhook");
/// assert_eq!(Channel::new("Via MCP"), Err(ChannelError::InvalidCharacter));
/// # Ok::<(), ChannelError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Channel(Cow<'static, str>);

impl Channel {
    /// Plain HTTP (set by `keyward::axum`).
    pub const HTTP: Self = Self(Cow::Borrowed("http"));
    /// gRPC (set by `keyward::grpc`).
    pub const GRPC: Self = Self(Cow::Borrowed("grpc"));
    /// The Model Context Protocol (set on an MCP endpoint, see `keyward::mcp`).
    pub const MCP: Self = Self(Cow::Borrowed("mcp"));
    /// The longest name.
    pub const MAX_LEN: usize = 32;

    /// A channel named `name`.
    ///
    /// # Errors
    /// [`ChannelError`] when the name is empty, too long, or has a character outside
    /// `a-z`, `0-9`, `-`, `_` (or does not start with a letter).
    pub fn new(name: &str) -> Result<Self, ChannelError> {
        for known in [Self::HTTP, Self::GRPC, Self::MCP] {
            if known.as_str() == name {
                return Ok(known);
            }
        }
        if name.is_empty() {
            return Err(ChannelError::Empty);
        }
        if name.len() > Self::MAX_LEN {
            return Err(ChannelError::TooLong { max: Self::MAX_LEN });
        }
        let valid = name.bytes().enumerate().all(|(i, b)| {
            b.is_ascii_lowercase() || (i > 0 && (b.is_ascii_digit() || b == b'-' || b == b'_'))
        });
        if !valid {
            return Err(ChannelError::InvalidCharacter);
        }
        Ok(Self(Cow::Owned(name.to_owned())))
    }

    /// The channel's name.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Channel {
    type Err = ChannelError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl Serialize for Channel {
    fn serialize<Ser: Serializer>(&self, serializer: Ser) -> Result<Ser::Ok, Ser::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Channel {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = Cow::<'de, str>::deserialize(deserializer)?;
        Self::new(&name).map_err(serde::de::Error::custom)
    }
}

/// Why a channel name was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ChannelError {
    /// The name is empty.
    #[error("channel name is empty")]
    Empty,
    /// The name is longer than [`Channel::MAX_LEN`].
    #[error("channel name too long (maximum {max} characters)")]
    TooLong {
        /// The longest name.
        max: usize,
    },
    /// A character outside `a-z`, `0-9`, `-`, `_`, or a first character that is not a letter.
    #[error("channel name must start with a-z and contain only a-z, 0-9, '-' and '_'")]
    InvalidCharacter,
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

    /// Sets the channel the request came through.
    #[must_use]
    pub fn channel(mut self, channel: Channel) -> Self {
        self.channel = Some(channel);
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
    /// A key issued by another system was imported by its digest.
    Imported,
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
    /// A key is about to expire and its notice was claimed
    /// ([`KeyManager::expiry_notices`](crate::KeyManager::expiry_notices)).
    ExpiryNotice {
        /// The threshold crossed, in seconds before expiry.
        threshold_seconds: i64,
        /// When the key expires.
        #[serde(with = "time::serde::rfc3339")]
        expires_at: OffsetDateTime,
    },
    /// A live key was edited ([`KeyManager::edit`](crate::KeyManager::edit)).
    Edited {
        /// The fields whose value changed (`name`, `scopes`, `roles`, `restrictions`,
        /// `metadata`, `allowed_networks`); never a secret.
        changed: Vec<String>,
    },
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
    /// The application recorded something a verified key did, such as creating a ticket
    /// ([`KeyManager::record_action`]): the event names the key, its owner and, in its
    /// context, the channel it came through.
    Action {
        /// What the key did, in the application's words (such as `ticket.create`).
        action: String,
        /// What it touched, when the application says (such as `ticket:4`).
        resource: Option<String>,
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
            Self::Imported => "imported",
            Self::RefusedByPolicy { .. } => "refused_by_policy",
            Self::Verified => "verified",
            Self::VerifyFailed { .. } => "verify_failed",
            Self::Rehashed => "rehashed",
            Self::Disabled => "disabled",
            Self::Enabled => "enabled",
            Self::Revoked { .. } => "revoked",
            Self::Rotated { .. } => "rotated",
            Self::Deleted => "deleted",
            Self::Edited { .. } => "edited",
            Self::ExpiryNotice { .. } => "expiry_notice",
            Self::QuotaSet { .. } => "quota_set",
            Self::QuotaRefilled { .. } => "quota_refilled",
            Self::LeakReported { .. } => "leak_reported",
            Self::Action { .. } => "action",
        }
    }
}

impl<S: KeyStore> KeyManager<S> {
    /// Records, through the manager's audit sink, that the key of `proof` did `action` (on
    /// `resource`, if given): an [`AuditKind::Action`] event naming the key, its name, tenant
    /// and owner, with `ctx` (set its [`Channel`] to say how the request came in).
    ///
    /// ```
    /// use keyward::audit::{AuditKind, AuditLog, Channel};
    /// use keyward::{Hasher, IssueRequest, KeyFormat, KeyManager, MemoryStore, Pepper, RequestContext};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), keyward::Error> {
    /// let log = AuditLog::new();
    /// let manager = KeyManager::new(MemoryStore::new(), KeyFormat::new(["tak"])?, Hasher::fast(Pepper::random("k1")?))
    ///     .with_audit(log.clone());
    /// let issued = manager.issue(IssueRequest::new("claude-code on macbook", "jason"), &RequestContext::new()).await?;
    /// let ctx = RequestContext::new().channel(Channel::MCP);
    /// let proof = manager.verify(issued.key.expose_secret(), &ctx).await?;
    /// manager.record_action(&proof, "ticket.create", Some("ticket:4"), &ctx);
    /// let event = log.events().pop().expect("an event");
    /// assert!(matches!(event.kind, AuditKind::Action { .. }));
    /// assert_eq!((event.owner.as_deref(), event.context.channel), (Some("jason"), Some(Channel::MCP)));
    /// # Ok(()) }
    /// ```
    pub fn record_action(
        &self,
        proof: &Verified,
        action: impl Into<String>,
        resource: Option<&str>,
        ctx: &RequestContext,
    ) {
        if !self.audit.enabled() {
            return;
        }
        let kind = AuditKind::Action {
            action: action.into(),
            resource: resource.map(str::to_owned),
        };
        self.emit(AuditEvent::new(self.now(), kind, ctx).about(proof.record()));
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
    /// The key is not allowed from the client's network.
    NetworkNotAllowed,
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
            Self::NetworkNotAllowed => "network_not_allowed",
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
/// `client_addr`, `request_id`, `channel`.
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
                    channel = e.context.channel.as_ref().map_or("", Channel::as_str),
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

/// Both sinks get every event (such as [`TracingAudit`] for logs and an
/// [`AuditJournal`] for the persisted log); events are built when either wants them.
impl<A: AuditSink, B: AuditSink> AuditSink for (A, B) {
    fn record(&self, event: &AuditEvent) {
        if self.0.enabled() {
            self.0.record(event);
        }
        if self.1.enabled() {
            self.1.record(event);
        }
    }

    fn enabled(&self) -> bool {
        self.0.enabled() || self.1.enabled()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_names_are_checked_and_round_trip() {
        for name in [
            "http",
            "grpc",
            "mcp",
            "webhook",
            "cli-v2",
            "a",
            &"x".repeat(32),
        ] {
            let channel = Channel::new(name).expect(name);
            assert_eq!(channel.as_str(), name);
            assert_eq!(channel.to_string(), name);
            let json = serde_json::to_string(&channel).expect("serializes");
            assert_eq!(json, format!("\"{name}\""));
            assert_eq!(
                serde_json::from_str::<Channel>(&json).expect("parses"),
                channel
            );
        }
        assert_eq!(Channel::new("mcp"), Ok(Channel::MCP));
        let refused = [
            ("", ChannelError::Empty),
            (&"x".repeat(33), ChannelError::TooLong { max: 32 }),
            ("MCP", ChannelError::InvalidCharacter),
            ("via mcp", ChannelError::InvalidCharacter),
            ("1http", ChannelError::InvalidCharacter),
            ("-http", ChannelError::InvalidCharacter),
            ("mcp\n", ChannelError::InvalidCharacter),
            ("é", ChannelError::InvalidCharacter),
        ];
        for (name, error) in refused {
            assert_eq!(name.parse::<Channel>(), Err(error), "{name:?}");
        }
        assert!(serde_json::from_str::<Channel>("\"Not A Channel\"").is_err());
    }

    #[test]
    fn the_context_serializes_its_channel_as_a_string() {
        let ctx = RequestContext::new().channel(Channel::MCP);
        let json = serde_json::to_value(&ctx).expect("serializes");
        assert_eq!(json["channel"], "mcp");
        assert!(
            serde_json::to_value(RequestContext::new()).expect("serializes")["channel"].is_null()
        );
    }
}
