//! Rate limits: who is charged ([`Subject`]), how much they may spend ([`LimitPolicy`]), and
//! the answer ([`Decision`]). This module knows nothing of HTTP: the `http` module turns a
//! decision into `429`, `Retry-After` and `RateLimit-*` headers ([`Decision::headers`],
//! [`Decision::into_result`]).
//!
//! Every limiter implements [`Limiter`]; `MemoryLimiter` (feature `rate-limit`) counts in
//! the memory of one instance, `RedisLimiter` (feature `redis`) shares one count between
//! many instances. Both use GCRA (the generic cell rate algorithm): a limit of `n` per
//! `period` admits a burst of `n`, then one more every `period / n`.
//!
//! A key's budget is charged only **after** the key verified: a forged or guessed key never
//! reaches the limiter, so nobody can drain another's budget by presenting its key id.
//! Failed verifications are throttled separately, per client address, by
//! [`FailureThrottle`], so guessing stays expensive.
//!
//! ```
//! use keyward::limit::{LimitPolicy, Rate};
//!
//! let policy = LimitPolicy::default()                    // reads 600/min, writes 60/min
//!     .owner("acme", "writes", Rate::per_minute(600)?); // a bigger plan for one company
//! # let _ = policy;
//! # Ok::<(), keyward::Error>(())
//! ```

use core::fmt;
use core::future::Future;
use core::ops::Deref;
use core::time::Duration;
use std::error::Error as StdError;
use std::net::IpAddr;
use std::sync::Arc;

use crate::key::id::KeyId;
use crate::verified::Verified;

#[cfg(feature = "rate-limit")]
mod memory;
mod policy;
#[cfg(feature = "redis")]
mod redis;
mod throttle;

#[cfg(feature = "rate-limit")]
pub use memory::MemoryLimiter;
pub use policy::{LimitPolicy, Rate, RateError};
#[cfg(feature = "redis")]
pub use redis::{RedisFallback, RedisLimiter};
pub use throttle::FailureThrottle;

/// Decides whether a subject may spend `cost` units of a named limit now.
///
/// Implementations charge the budget only when they answer [`Decision::Allowed`]; a denied
/// request costs nothing.
pub trait Limiter: Send + Sync {
    /// Charges `cost` units of `limit` (a name from the [`LimitPolicy`], such as `reads`)
    /// to `subject`, or refuses.
    ///
    /// # Errors
    /// [`LimitError::UnknownLimit`] for a name the policy does not define,
    /// [`LimitError::ZeroCost`], [`LimitError::CostTooHigh`] when `cost` exceeds the whole
    /// limit (it could never pass), and [`LimitError::Unavailable`] when a shared limiter
    /// cannot answer and is configured to fail closed.
    fn check(
        &self,
        subject: &Subject,
        limit: &str,
        cost: u32,
    ) -> impl Future<Output = Result<Decision, LimitError>> + Send;
}

/// A limiter behind any pointer (`Arc<L>`, `&L`, `Box<L>`) is a limiter: one impl instead
/// of one per pointer type.
impl<P> Limiter for P
where
    P: Deref + Send + Sync,
    P::Target: Limiter,
{
    fn check(
        &self,
        subject: &Subject,
        limit: &str,
        cost: u32,
    ) -> impl Future<Output = Result<Decision, LimitError>> + Send {
        P::Target::check(self, subject, limit, cost)
    }
}

/// Who is charged: one key, all keys of one owner, or (for failed verifications) a client.
///
/// A key subject may carry its owner, so that the owner's overrides in the
/// [`LimitPolicy`] apply to the key's own budget.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Subject(pub(crate) SubjectKind);

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum SubjectKind {
    Key {
        id: KeyId,
        owner: Option<Arc<str>>,
        tenant: Option<Arc<str>>,
    },
    Owner(Arc<str>),
    Client(IpAddr),
}

impl Subject {
    /// A verified key's own budget; its owner's and its tenant's overrides apply to it.
    #[must_use]
    pub fn key(verified: &Verified) -> Self {
        Self(SubjectKind::Key {
            id: verified.key_id(),
            owner: Some(Arc::from(verified.owner())),
            tenant: verified.tenant().map(Arc::from),
        })
    }

    /// A key's own budget by id alone (only key overrides and defaults apply).
    #[must_use]
    pub fn key_id(id: KeyId) -> Self {
        Self(SubjectKind::Key {
            id,
            owner: None,
            tenant: None,
        })
    }

    /// A budget shared by all keys of one owner.
    #[must_use]
    pub fn owner(owner: &str) -> Self {
        Self(SubjectKind::Owner(Arc::from(owner)))
    }

    /// A budget shared by all keys of the verified key's owner.
    #[must_use]
    pub fn owner_of(verified: &Verified) -> Self {
        Self::owner(verified.owner())
    }

    /// A client address (for [`FailureThrottle`]).
    #[must_use]
    pub fn client(addr: IpAddr) -> Self {
        Self(SubjectKind::Client(addr))
    }

    /// The tenant whose overrides apply, if known.
    #[must_use]
    pub fn tenant_name(&self) -> Option<&str> {
        match &self.0 {
            SubjectKind::Key { tenant, .. } => tenant.as_deref(),
            SubjectKind::Owner(_) | SubjectKind::Client(_) => None,
        }
    }

    /// The owner whose overrides apply, if known.
    #[must_use]
    pub fn owner_name(&self) -> Option<&str> {
        match &self.0 {
            SubjectKind::Key { owner, .. } => owner.as_deref(),
            SubjectKind::Owner(owner) => Some(owner),
            SubjectKind::Client(_) => None,
        }
    }
}

/// `key:<id>`, `owner:<owner>` or `client:<address>`: the form shared limiters store.
impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            SubjectKind::Key { id, .. } => write!(f, "key:{id}"),
            SubjectKind::Owner(owner) => write!(f, "owner:{owner}"),
            SubjectKind::Client(addr) => write!(f, "client:{addr}"),
        }
    }
}

/// A limiter's answer, with what the `RateLimit-*` headers need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Decision {
    /// The units were charged.
    Allowed {
        /// The whole budget (`RateLimit-Limit`).
        limit: u32,
        /// Units left after this request (`RateLimit-Remaining`).
        remaining: u32,
        /// Time until the whole budget is back (`RateLimit-Reset`), rounded up to one
        /// refill interval.
        reset_after: Duration,
    },
    /// Nothing was charged.
    Denied {
        /// The whole budget (`RateLimit-Limit`).
        limit: u32,
        /// Time until the same request would be allowed (`Retry-After`).
        retry_after: Duration,
        /// Time until the whole budget is back (`RateLimit-Reset`).
        reset_after: Duration,
    },
}

impl Decision {
    /// Whether the request may proceed.
    #[must_use]
    pub fn is_allowed(&self) -> bool {
        matches!(self, Self::Allowed { .. })
    }

    /// The whole budget.
    #[must_use]
    pub fn limit(&self) -> u32 {
        match *self {
            Self::Allowed { limit, .. } | Self::Denied { limit, .. } => limit,
        }
    }

    /// Units left (0 when denied).
    #[must_use]
    pub fn remaining(&self) -> u32 {
        match *self {
            Self::Allowed { remaining, .. } => remaining,
            Self::Denied { .. } => 0,
        }
    }

    /// Time until the whole budget is back.
    #[must_use]
    pub fn reset_after(&self) -> Duration {
        match *self {
            Self::Allowed { reset_after, .. } | Self::Denied { reset_after, .. } => reset_after,
        }
    }

    /// Time until a retry may succeed, when denied.
    #[must_use]
    pub fn retry_after(&self) -> Option<Duration> {
        match *self {
            Self::Allowed { .. } => None,
            Self::Denied { retry_after, .. } => Some(retry_after),
        }
    }
}

/// A limiter could not decide.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LimitError {
    /// The policy defines no limit with this name.
    #[error("{0}")]
    UnknownLimit(UnknownLimit),
    /// A cost of zero.
    #[error("rate limit cost must be at least 1")]
    ZeroCost,
    /// The cost exceeds the whole budget, so the request could never pass.
    #[error("cost {cost} exceeds the rate limit of {limit}")]
    CostTooHigh {
        /// The cost asked for.
        cost: u32,
        /// The whole budget.
        limit: u32,
    },
    /// A shared limiter cannot be reached and is configured to fail closed.
    #[error("rate limiter unavailable")]
    Unavailable(#[source] Box<dyn StdError + Send + Sync>),
}

/// The limit a [`LimitError::UnknownLimit`] asked for, which the policy does not define.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownLimit {
    name: Box<str>,
}

impl UnknownLimit {
    /// The limit `name` is unknown (for limiters outside this crate).
    #[must_use]
    pub fn new(name: &str) -> Self {
        Self { name: name.into() }
    }

    /// The name asked for.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// `unknown rate limit "<name>"`.
impl fmt::Display for UnknownLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown rate limit {:?}", self.name)
    }
}
