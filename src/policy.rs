//! Issuance policy: default and maximum lifetimes, expiry presets, the per-owner cap.
//!
//! ```
//! use keyward::policy::{Expiry, ExpiryPreset, IssuancePolicy};
//! use keyward::{Hasher, IssueRequest, KeyFormat, KeyManager, MemoryStore, Pepper, RequestContext};
//! use time::Duration;
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), keyward::Error> {
//! let policy = IssuancePolicy::default()
//!     .max_ttl(Some(Duration::days(365)))
//!     .max_live_keys_per_owner(10);
//! let manager = KeyManager::new(MemoryStore::new(), KeyFormat::new(["tak"])?, Hasher::fast(Pepper::random("k1")?))
//!     .with_policy(policy);
//! let request = IssueRequest::new("ci", "user_1").expiry(Expiry::Preset(ExpiryPreset::Days30));
//! let issued = manager.issue(request, &RequestContext::new()).await?;
//! assert!(issued.record.expires_at.is_some());
//! # Ok(()) }
//! ```

use time::{Duration, OffsetDateTime};

/// Rules every issued key must follow.
///
/// The defaults: keys expire after 90 days unless asked otherwise, any lifetime up to
/// 365 days may be asked for, never-expiring keys are refused, and there is no cap on live
/// keys per owner.
///
/// ```
/// use keyward::policy::IssuancePolicy;
/// use time::Duration;
/// let policy = IssuancePolicy::default()
///     .max_live_keys_per_owner(3)
///     .max_ttl(Some(Duration::days(180)));
/// assert_eq!(policy.default_ttl_value(), Duration::days(90));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuancePolicy {
    default_ttl: Duration,
    max_ttl: Option<Duration>,
    allow_never_expiring: bool,
    max_live_keys_per_owner: Option<usize>,
}

impl Default for IssuancePolicy {
    fn default() -> Self {
        Self {
            default_ttl: Duration::days(90),
            max_ttl: Some(Duration::days(365)),
            allow_never_expiring: false,
            max_live_keys_per_owner: None,
        }
    }
}

/// How long a new key should live.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Expiry {
    /// The policy's default lifetime.
    #[default]
    Default,
    /// One of the usual choices.
    Preset(ExpiryPreset),
    /// A lifetime from now.
    After(Duration),
    /// A fixed instant.
    At(OffsetDateTime),
    /// Never (only when the policy allows it).
    Never,
}

/// The lifetimes users usually pick from (about 1, 3 and 6 months).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ExpiryPreset {
    /// 30 days.
    Days30,
    /// 90 days.
    Days90,
    /// 180 days.
    Days180,
}

impl ExpiryPreset {
    /// The preset's lifetime.
    #[must_use]
    pub fn duration(self) -> Duration {
        match self {
            Self::Days30 => Duration::days(30),
            Self::Days90 => Duration::days(90),
            Self::Days180 => Duration::days(180),
        }
    }
}

/// An expiry the policy refuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// Never-expiring keys are not allowed.
    #[error("keys must expire (the policy does not allow never-expiring keys)")]
    NeverExpiringNotAllowed,
    /// The requested lifetime is longer than the policy's maximum.
    #[error("requested lifetime exceeds the maximum of {max_days} days")]
    TooLong {
        /// The maximum, in whole days.
        max_days: i64,
    },
    /// The requested expiry is not in the future.
    #[error("expiry must be in the future")]
    NotInFuture,
}

impl IssuancePolicy {
    /// Sets the lifetime used when a request does not choose one.
    #[must_use]
    pub fn default_ttl(mut self, ttl: Duration) -> Self {
        self.default_ttl = ttl;
        self
    }

    /// Sets the longest lifetime a key may have (`None`: no maximum).
    #[must_use]
    pub fn max_ttl(mut self, max: Option<Duration>) -> Self {
        self.max_ttl = max;
        self
    }

    /// Allows or refuses never-expiring keys.
    #[must_use]
    pub fn allow_never_expiring(mut self, allow: bool) -> Self {
        self.allow_never_expiring = allow;
        self
    }

    /// Caps the number of live keys one owner may hold (enforced atomically by the store).
    #[must_use]
    pub fn max_live_keys_per_owner(mut self, cap: usize) -> Self {
        self.max_live_keys_per_owner = Some(cap);
        self
    }

    /// The default lifetime.
    #[must_use]
    pub fn default_ttl_value(&self) -> Duration {
        self.default_ttl
    }

    /// The per-owner cap, if any.
    #[must_use]
    pub fn cap(&self) -> Option<usize> {
        self.max_live_keys_per_owner
    }

    /// The expiry instant for a request made at `now`.
    ///
    /// # Errors
    /// [`PolicyError`] when the request breaks the policy.
    pub fn resolve(
        &self,
        expiry: Expiry,
        now: OffsetDateTime,
    ) -> Result<Option<OffsetDateTime>, PolicyError> {
        let at = match expiry {
            Expiry::Never if self.allow_never_expiring => return Ok(None),
            Expiry::Never => return Err(PolicyError::NeverExpiringNotAllowed),
            Expiry::Default => now.saturating_add(self.default_ttl),
            Expiry::Preset(p) => now.saturating_add(p.duration()),
            Expiry::After(d) => now.saturating_add(d),
            Expiry::At(at) => at,
        };
        if at <= now {
            return Err(PolicyError::NotInFuture);
        }
        if let Some(max) = self.max_ttl {
            if at - now > max {
                return Err(PolicyError::TooLong {
                    max_days: max.whole_days(),
                });
            }
        }
        Ok(Some(at))
    }

    /// The latest expiry allowed for a key issued at `now` (`None`: unbounded, only when
    /// never-expiring keys are allowed and there is no maximum).
    #[must_use]
    pub fn latest_expiry(&self, now: OffsetDateTime) -> Option<OffsetDateTime> {
        match self.max_ttl {
            Some(max) => Some(now.saturating_add(max)),
            None if self.allow_never_expiring => None,
            None => Some(now.saturating_add(self.default_ttl)),
        }
    }
}
