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

use time::{Duration, Month, OffsetDateTime};

/// Rules every issued key must follow.
///
/// The defaults: keys expire after 90 days unless asked otherwise, any lifetime up to
/// 365 days may be asked for, never-expiring keys are refused, and there is no cap on live
/// keys per owner or per tenant. The caps hold for issuing (delegation included) and
/// enabling; rotation and regeneration replace a key within its own place; an import
/// (`KeyManager::import`, an operator's bulk action) is not capped.
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
    /// When set, the default lifetime is this preset (calendar months) instead.
    default_preset: Option<ExpiryPreset>,
    max_ttl: Option<Duration>,
    allow_never_expiring: bool,
    max_live_keys_per_owner: Option<usize>,
    /// The cap of every tenant without an override.
    max_live_keys_per_tenant: Option<usize>,
    /// Caps of named tenants, over the one above.
    tenant_caps: std::collections::BTreeMap<String, usize>,
}

impl Default for IssuancePolicy {
    fn default() -> Self {
        Self {
            default_ttl: Duration::days(90),
            default_preset: None,
            max_ttl: Some(Duration::days(365)),
            allow_never_expiring: false,
            max_live_keys_per_owner: None,
            max_live_keys_per_tenant: None,
            tenant_caps: std::collections::BTreeMap::new(),
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

/// The lifetimes users usually pick from: 30, 90 or 180 days, or 1, 3 or 6 calendar months.
///
/// ```
/// use keyward::policy::ExpiryPreset;
/// use time::macros::datetime;
/// let issued = datetime!(2027-01-31 10:00 UTC);
/// // A calendar month ends on the same day, or on the last day of a shorter month.
/// assert_eq!(ExpiryPreset::Months1.end(issued), Some(datetime!(2027-02-28 10:00 UTC)));
/// assert_eq!(ExpiryPreset::Months3.end(issued), Some(datetime!(2027-04-30 10:00 UTC)));
/// assert_eq!(ExpiryPreset::Days30.end(issued), Some(datetime!(2027-03-02 10:00 UTC)));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ExpiryPreset {
    /// 30 days.
    Days30,
    /// 90 days.
    Days90,
    /// 180 days.
    Days180,
    /// One calendar month.
    Months1,
    /// Three calendar months.
    Months3,
    /// Six calendar months.
    Months6,
}

impl ExpiryPreset {
    /// When a key issued at `from` with this preset expires: `from` plus the days, or the
    /// same time of day the given number of calendar months later, on the same day of the
    /// month or the last day of a shorter month (the way monthly quota refills are clamped).
    /// `None` past the last date `time` can represent.
    #[must_use]
    pub fn end(self, from: OffsetDateTime) -> Option<OffsetDateTime> {
        let months = match self {
            Self::Days30 => return from.checked_add(Duration::days(30)),
            Self::Days90 => return from.checked_add(Duration::days(90)),
            Self::Days180 => return from.checked_add(Duration::days(180)),
            Self::Months1 => 1,
            Self::Months3 => 3,
            Self::Months6 => 6,
        };
        add_months(from, months)
    }
}

/// `from` moved `months` calendar months ahead, the day clamped to the target month's length.
fn add_months(from: OffsetDateTime, months: i32) -> Option<OffsetDateTime> {
    let date = from.date();
    let index = date.year().checked_mul(12)? + i32::from(u8::from(date.month())) - 1 + months;
    let (year, month) = (index.div_euclid(12), index.rem_euclid(12) + 1);
    let month = Month::try_from(u8::try_from(month).ok()?).ok()?;
    let day = date.day().min(month.length(year));
    let date = time::Date::from_calendar_date(year, month, day).ok()?;
    Some(from.replace_date(date))
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
    /// The requested expiry lies past the last date the calendar can represent.
    #[error("expiry is past the last representable date")]
    NotRepresentable,
}

impl IssuancePolicy {
    /// Sets the lifetime used when a request does not choose one.
    #[must_use]
    pub fn default_ttl(mut self, ttl: Duration) -> Self {
        self.default_ttl = ttl;
        self.default_preset = None;
        self
    }

    /// Makes a preset the lifetime used when a request does not choose one, such as
    /// three calendar months ("The default is 3 months"). Replaces
    /// [`default_ttl`](IssuancePolicy::default_ttl) until that is set again.
    ///
    /// ```
    /// use keyward::policy::{Expiry, ExpiryPreset, IssuancePolicy};
    /// use time::macros::datetime;
    /// let policy = IssuancePolicy::default().default_preset(ExpiryPreset::Months3);
    /// let now = datetime!(2026-11-30 12:00 UTC);
    /// assert_eq!(policy.resolve(Expiry::Default, now), Ok(Some(datetime!(2027-02-28 12:00 UTC))));
    /// ```
    #[must_use]
    pub fn default_preset(mut self, preset: ExpiryPreset) -> Self {
        self.default_preset = Some(preset);
        self
    }

    /// The end of the default lifetime for a key issued at `now`.
    fn default_end(&self, now: OffsetDateTime) -> Result<OffsetDateTime, PolicyError> {
        match self.default_preset {
            Some(preset) => preset.end(now).ok_or(PolicyError::NotRepresentable),
            None => Ok(now.saturating_add(self.default_ttl)),
        }
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

    /// Caps the number of live keys of every tenant, across all its owners (enforced
    /// atomically by the store, [`KeyStore::insert_within`](crate::KeyStore::insert_within)):
    /// issuing or enabling a key past it fails with `TenantLimitReached`. Keys without a
    /// tenant are not held by it. [`tenant_max_live_keys`](Self::tenant_max_live_keys) sets
    /// a tenant's own cap over this one.
    ///
    /// ```
    /// use keyward::policy::IssuancePolicy;
    /// let policy = IssuancePolicy::default()
    ///     .max_live_keys_per_tenant(50)
    ///     .tenant_max_live_keys("acme", 500);
    /// assert_eq!(policy.tenant_cap("acme"), Some(500));
    /// assert_eq!(policy.tenant_cap("globex"), Some(50));
    /// ```
    #[must_use]
    pub fn max_live_keys_per_tenant(mut self, cap: usize) -> Self {
        self.max_live_keys_per_tenant = Some(cap);
        self
    }

    /// Sets the cap on live keys of one tenant (a plan's allowance), over
    /// [`max_live_keys_per_tenant`](Self::max_live_keys_per_tenant).
    #[must_use]
    pub fn tenant_max_live_keys(mut self, tenant: impl Into<String>, cap: usize) -> Self {
        self.tenant_caps.insert(tenant.into(), cap);
        self
    }

    /// The cap on live keys of `tenant`, if any: its own, or the one of every tenant.
    #[must_use]
    pub fn tenant_cap(&self, tenant: &str) -> Option<usize> {
        self.tenant_caps
            .get(tenant)
            .copied()
            .or(self.max_live_keys_per_tenant)
    }

    /// The caps a write of `record` keeps: its owner's, and its tenant's when it has one.
    #[must_use]
    pub fn caps_for(&self, record: &crate::record::KeyRecord) -> crate::store::LiveCaps {
        let mut caps = crate::store::LiveCaps::none();
        if let Some(cap) = self.max_live_keys_per_owner {
            caps = caps.owner(cap);
        }
        if let Some(cap) = record.tenant.as_deref().and_then(|t| self.tenant_cap(t)) {
            caps = caps.tenant(cap);
        }
        caps
    }

    /// The default lifetime, as a duration (see also
    /// [`default_preset`](IssuancePolicy::default_preset), which takes precedence).
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
            Expiry::Default => self.default_end(now)?,
            Expiry::Preset(p) => p.end(now).ok_or(PolicyError::NotRepresentable)?,
            Expiry::After(d) => now.saturating_add(d),
            Expiry::At(at) => at,
        };
        if at <= now {
            return Err(PolicyError::NotInFuture);
        }
        if let Some(max) = self.max_ttl
            && at - now > max
        {
            return Err(PolicyError::TooLong {
                max_days: max.whole_days(),
            });
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
            None => Some(
                self.default_end(now)
                    .unwrap_or_else(|_| now.saturating_add(self.default_ttl)),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use time::macros::datetime;

    use super::*;

    #[test]
    fn calendar_months_clamp_to_shorter_months_and_cross_years() {
        let cases = [
            (
                datetime!(2027-01-31 10:00 UTC),
                ExpiryPreset::Months1,
                datetime!(2027-02-28 10:00 UTC),
            ),
            (
                datetime!(2028-01-31 10:00 UTC),
                ExpiryPreset::Months1,
                datetime!(2028-02-29 10:00 UTC),
            ),
            (
                datetime!(2026-08-31 23:59:59 UTC),
                ExpiryPreset::Months6,
                datetime!(2027-02-28 23:59:59 UTC),
            ),
            (
                datetime!(2026-11-15 08:30 UTC),
                ExpiryPreset::Months3,
                datetime!(2027-02-15 08:30 UTC),
            ),
            (
                datetime!(2026-12-31 00:00 UTC),
                ExpiryPreset::Months1,
                datetime!(2027-01-31 00:00 UTC),
            ),
            (
                datetime!(2026-03-31 12:00 UTC),
                ExpiryPreset::Months3,
                datetime!(2026-06-30 12:00 UTC),
            ),
        ];
        for (from, preset, end) in cases {
            assert_eq!(preset.end(from), Some(end), "{from} + {preset:?}");
        }
        assert_eq!(
            ExpiryPreset::Months6.end(datetime!(9999-12-01 0:00 UTC)),
            None
        );
    }

    #[test]
    fn the_policy_bounds_month_presets_like_any_lifetime() {
        let now = datetime!(2026-01-31 0:00 UTC);
        let policy = IssuancePolicy::default().max_ttl(Some(Duration::days(100)));
        assert_eq!(
            policy.resolve(Expiry::Preset(ExpiryPreset::Months3), now),
            Ok(Some(datetime!(2026-04-30 0:00 UTC)))
        );
        assert_eq!(
            policy.resolve(Expiry::Preset(ExpiryPreset::Months6), now),
            Err(PolicyError::TooLong { max_days: 100 })
        );
    }

    proptest! {
        #[test]
        fn a_month_preset_keeps_the_time_and_the_day_or_the_last_day(
            secs in 0i64..4_000_000_000,
            preset in prop::sample::select(vec![
                (ExpiryPreset::Months1, 1u8),
                (ExpiryPreset::Months3, 3),
                (ExpiryPreset::Months6, 6),
            ]),
        ) {
            let (preset, months) = preset;
            let from = OffsetDateTime::from_unix_timestamp(secs).expect("in range");
            let end = preset.end(from).expect("representable");
            prop_assert_eq!(end.time(), from.time());
            prop_assert!(end - from >= Duration::days(28 * i64::from(months)));
            prop_assert!(end - from <= Duration::days(31 * i64::from(months)));
            let length = end.month().length(end.year());
            prop_assert!(end.day() == from.day() || (end.day() == length && from.day() > length));
            let expected_month = (u8::from(from.month()) - 1 + months) % 12 + 1;
            prop_assert_eq!(u8::from(end.month()), expected_month);
        }
    }
}
