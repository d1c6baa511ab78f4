//! Which budget applies: named limits with defaults, per-owner and per-key overrides.

use core::time::Duration;

use hashbrown::{DefaultHashBuilder, HashMap};

use super::{Subject, SubjectKind};
use crate::key::id::KeyId;

/// A budget: at most `limit` units per `period`, refilled evenly (one unit every
/// `period / limit`), with a burst of up to `limit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Rate {
    limit: u32,
    period: Duration,
}

/// A [`Rate`] that cannot work.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RateError {
    /// A limit of zero.
    #[error("rate limit must be at least 1")]
    ZeroLimit,
    /// The refill interval (`period / limit`) is under a microsecond, or the period is over
    /// [`Rate::MAX_PERIOD`].
    #[error("rate period must allow at least 1 µs per unit and be at most one year")]
    Period,
}

impl Rate {
    /// The longest period: one year.
    pub const MAX_PERIOD: Duration = Duration::from_secs(366 * 24 * 3600);

    /// `limit` units per `period`.
    ///
    /// # Errors
    /// [`RateError`] for a zero limit, a refill interval under one microsecond, or a period
    /// over [`Rate::MAX_PERIOD`].
    pub const fn new(limit: u32, period: Duration) -> Result<Self, RateError> {
        if limit == 0 {
            return Err(RateError::ZeroLimit);
        }
        if period.as_nanos() > Self::MAX_PERIOD.as_nanos()
            || period.as_nanos() / (limit as u128) < 1000
        {
            return Err(RateError::Period);
        }
        Ok(Self { limit, period })
    }

    /// `limit` units per second.
    ///
    /// # Errors
    /// [`RateError`] as for [`Rate::new`].
    pub const fn per_second(limit: u32) -> Result<Self, RateError> {
        Self::new(limit, Duration::from_secs(1))
    }

    /// `limit` units per minute.
    ///
    /// # Errors
    /// [`RateError`] as for [`Rate::new`].
    pub const fn per_minute(limit: u32) -> Result<Self, RateError> {
        Self::new(limit, Duration::from_secs(60))
    }

    /// `limit` units per hour.
    ///
    /// # Errors
    /// [`RateError`] as for [`Rate::new`].
    pub const fn per_hour(limit: u32) -> Result<Self, RateError> {
        Self::new(limit, Duration::from_secs(3600))
    }

    /// `limit` units per day.
    ///
    /// # Errors
    /// [`RateError`] as for [`Rate::new`].
    pub const fn per_day(limit: u32) -> Result<Self, RateError> {
        Self::new(limit, Duration::from_secs(86_400))
    }

    /// The whole budget.
    #[must_use]
    pub const fn limit(&self) -> u32 {
        self.limit
    }

    /// The period over which the whole budget refills.
    #[must_use]
    pub const fn period(&self) -> Duration {
        self.period
    }

    /// How often one unit comes back: `period / limit`.
    #[must_use]
    pub const fn interval(&self) -> Duration {
        let nanos = self.period.as_nanos() / (self.limit as u128);
        // At most MAX_PERIOD in nanoseconds, which fits in u64.
        Duration::from_nanos(nanos as u64)
    }
}

/// Which budget a subject gets for a named limit: a default per name, overridden per tenant
/// ("configurable per company"), per owner, per key (the most specific wins).
///
/// The default policy is Toado's: `reads` 600 a minute, `writes` 60 a minute, and
/// [`LimitPolicy::FAILED_VERIFICATIONS`] 10 a minute per client.
///
/// ```
/// use keyward::limit::{LimitPolicy, Rate};
/// # fn demo() -> Result<(), keyward::limit::RateError> {
/// let policy = LimitPolicy::default()
///     .limit("exports", Rate::per_hour(10)?)
///     .owner("acme", "writes", Rate::per_minute(600)?);
/// assert_eq!(policy.rate_for(&keyward::limit::Subject::owner("acme"), "writes"), Some(Rate::per_minute(600)?));
/// # Ok(()) }
/// # demo().expect("test setup");
/// ```
#[derive(Debug, Clone)]
pub struct LimitPolicy {
    /// Limit name → index into `defaults` (and into the in-memory limiter's buckets). Every
    /// decision looks a name up here, so the maps hash with a seeded foldhash, not SipHash:
    /// names and owners come from the service, and key ids from its own random generator.
    names: HashMap<Box<str>, usize, DefaultHashBuilder>,
    /// Indexed by limit: (name, default rate).
    defaults: Vec<(Box<str>, Rate)>,
    owners: HashMap<Box<str>, Overrides, DefaultHashBuilder>,
    tenants: HashMap<Box<str>, Overrides, DefaultHashBuilder>,
    keys: HashMap<KeyId, Overrides, DefaultHashBuilder>,
}

/// Overrides of one owner or key, indexed by limit (`None`: not overridden).
type Overrides = Vec<Option<Rate>>;

fn set_override(overrides: &mut Overrides, index: usize, rate: Rate) {
    if overrides.len() <= index {
        overrides.resize(index + 1, None);
    }
    if let Some(slot) = overrides.get_mut(index) {
        *slot = Some(rate);
    }
}

fn get_override(overrides: Option<&Overrides>, index: usize) -> Option<Rate> {
    overrides?.get(index).copied().flatten()
}

/// A limit resolved for one subject.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Resolved {
    /// Index of the limit name (read by the in-memory limiter).
    #[cfg_attr(not(feature = "rate-limit"), allow(dead_code))]
    pub(crate) index: usize,
    pub(crate) rate: Rate,
}

impl LimitPolicy {
    /// The name of the per-client limit on failed verifications.
    pub const FAILED_VERIFICATIONS: &'static str = "failed-verifications";

    /// A policy with no limits at all.
    #[must_use]
    pub fn empty() -> Self {
        Self {
            names: HashMap::default(),
            defaults: Vec::new(),
            owners: HashMap::default(),
            tenants: HashMap::default(),
            keys: HashMap::default(),
        }
    }

    /// Adds (or replaces) the default rate of the limit `name`.
    #[must_use]
    pub fn limit(mut self, name: &str, rate: Rate) -> Self {
        let index = self.index_or_insert(name, rate);
        if let Some(slot) = self.defaults.get_mut(index) {
            slot.1 = rate;
        }
        self
    }

    /// Overrides the limit `name` for every key of `owner`, and for the owner's shared
    /// budget. A name without a default is added, with `rate` as its default too.
    #[must_use]
    pub fn owner(mut self, owner: &str, name: &str, rate: Rate) -> Self {
        let index = self.index_or_insert(name, rate);
        set_override(self.owners.entry(owner.into()).or_default(), index, rate);
        self
    }

    /// Overrides the limit `name` for every key of `tenant` (a company's plan); an owner's
    /// or a key's own override wins over it. A name without a default is added, with
    /// `rate` as its default too.
    ///
    /// ```
    /// use keyward::limit::{LimitPolicy, Rate};
    /// # fn demo() -> Result<(), keyward::limit::RateError> {
    /// let policy = LimitPolicy::default().tenant("acme", "writes", Rate::per_minute(600)?);
    /// # Ok(()) }
    /// # demo().expect("test setup");
    /// ```
    #[must_use]
    pub fn tenant(mut self, tenant: &str, name: &str, rate: Rate) -> Self {
        let index = self.index_or_insert(name, rate);
        set_override(self.tenants.entry(tenant.into()).or_default(), index, rate);
        self
    }

    /// Overrides the limit `name` for one key (wins over its owner's override). A name
    /// without a default is added, with `rate` as its default too.
    #[must_use]
    pub fn key(mut self, id: KeyId, name: &str, rate: Rate) -> Self {
        let index = self.index_or_insert(name, rate);
        set_override(self.keys.entry(id).or_default(), index, rate);
        self
    }

    /// The rate that applies to `subject` for `name`, if the limit exists.
    #[must_use]
    pub fn rate_for(&self, subject: &Subject, name: &str) -> Option<Rate> {
        self.resolve(subject, name).map(|r| r.rate)
    }

    /// For each limit (by index), every distinct rate it may have: its default first, then
    /// the rates of its overrides.
    #[cfg_attr(not(feature = "rate-limit"), allow(dead_code))]
    pub(crate) fn rates_by_limit(&self) -> Vec<Vec<Rate>> {
        let mut rates: Vec<Vec<Rate>> = self.defaults.iter().map(|(_, r)| vec![*r]).collect();
        let all = self.owners.values().chain(self.tenants.values());
        for overrides in all.chain(self.keys.values()) {
            for (index, rate) in overrides.iter().enumerate() {
                if let (Some(rate), Some(known)) = (rate, rates.get_mut(index))
                    && !known.contains(rate)
                {
                    known.push(*rate);
                }
            }
        }
        rates
    }

    /// The limit's index and the rate that applies to `subject`: the key's override, else
    /// its owner's, else the default. One foldhash lookup of the name when the policy has no
    /// overrides.
    pub(crate) fn resolve(&self, subject: &Subject, name: &str) -> Option<Resolved> {
        let index = *self.names.get(name)?;
        let key_override = match &subject.0 {
            SubjectKind::Key { id, .. } if !self.keys.is_empty() => {
                get_override(self.keys.get(id), index)
            }
            _ => None,
        };
        let owner_override = || {
            if self.owners.is_empty() {
                return None;
            }
            get_override(self.owners.get(subject.owner_name()?), index)
        };
        let tenant_override = || {
            if self.tenants.is_empty() {
                return None;
            }
            get_override(self.tenants.get(subject.tenant_name()?), index)
        };
        let rate = match key_override
            .or_else(owner_override)
            .or_else(tenant_override)
        {
            Some(rate) => rate,
            None => self.defaults.get(index)?.1,
        };
        Some(Resolved { index, rate })
    }

    /// What every limiter checks before it decides: the limit exists for `subject`, `cost`
    /// is at least 1 and fits in the whole budget.
    #[cfg(feature = "rate-limit")]
    pub(crate) fn charge(
        &self,
        subject: &Subject,
        name: &str,
        cost: u32,
    ) -> Result<Resolved, super::LimitError> {
        let resolved = self
            .resolve(subject, name)
            .ok_or_else(|| super::LimitError::UnknownLimit(super::UnknownLimit::new(name)))?;
        let limit = resolved.rate.limit();
        if cost == 0 {
            return Err(super::LimitError::ZeroCost);
        }
        if cost > limit {
            return Err(super::LimitError::CostTooHigh { cost, limit });
        }
        Ok(resolved)
    }

    fn index_or_insert(&mut self, name: &str, rate: Rate) -> usize {
        if let Some(index) = self.names.get(name) {
            return *index;
        }
        let index = self.defaults.len();
        self.defaults.push((name.into(), rate));
        self.names.insert(name.into(), index);
        index
    }
}

impl Default for LimitPolicy {
    fn default() -> Self {
        let per_minute = |n| Rate::new(n, Duration::from_secs(60));
        let mut policy = Self::empty();
        for (name, n) in [
            ("reads", 600),
            ("writes", 60),
            (Self::FAILED_VERIFICATIONS, 10),
        ] {
            if let Ok(rate) = per_minute(n) {
                policy = policy.limit(name, rate);
            }
        }
        policy
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_are_validated() {
        assert_eq!(Rate::per_minute(0), Err(RateError::ZeroLimit));
        assert_eq!(
            Rate::new(2_000_000, Duration::from_secs(1)),
            Err(RateError::Period)
        );
        assert_eq!(
            Rate::new(1, Duration::from_secs(400 * 86_400)),
            Err(RateError::Period)
        );
        let r = Rate::per_minute(60).expect("test setup");
        assert_eq!(r.interval(), Duration::from_secs(1));
        assert_eq!(r.limit(), 60);
    }

    #[test]
    fn tenant_overrides_sit_below_owner_and_key() {
        let id = KeyId::new("aaaaaaaaaaaa").expect("test setup");
        let rate = |n| Rate::per_minute(n).expect("test setup");
        let p = LimitPolicy::default()
            .tenant("acme", "writes", rate(600))
            .owner("bob", "writes", rate(7));
        let subject = |owner: &str, tenant: Option<&str>| {
            Subject(SubjectKind::Key {
                id,
                owner: Some(owner.into()),
                tenant: tenant.map(Into::into),
            })
        };
        assert_eq!(
            p.rate_for(&subject("alice", Some("acme")), "writes"),
            Some(rate(600))
        );
        assert_eq!(
            p.rate_for(&subject("alice", Some("globex")), "writes"),
            Some(rate(60))
        );
        assert_eq!(
            p.rate_for(&subject("alice", None), "writes"),
            Some(rate(60))
        );
        assert_eq!(
            p.rate_for(&subject("bob", Some("acme")), "writes"),
            Some(rate(7))
        );
        assert_eq!(
            p.rate_for(&subject("alice", Some("acme")), "reads"),
            Some(rate(600))
        );
        let with_key = p.key(id, "writes", rate(3));
        assert_eq!(
            with_key.rate_for(&subject("bob", Some("acme")), "writes"),
            Some(rate(3))
        );
    }

    #[test]
    fn most_specific_wins() {
        let id = KeyId::new("aaaaaaaaaaaa").expect("test setup");
        let other = KeyId::new("bbbbbbbbbbbb").expect("test setup");
        let p = LimitPolicy::default()
            .owner("acme", "writes", Rate::per_minute(600).expect("test setup"))
            .key(id, "writes", Rate::per_minute(5).expect("test setup"));
        let key = Subject(SubjectKind::Key {
            tenant: None,
            id,
            owner: Some("acme".into()),
        });
        let sibling = Subject(SubjectKind::Key {
            tenant: None,
            id: other,
            owner: Some("acme".into()),
        });
        assert_eq!(p.rate_for(&key, "writes"), Rate::per_minute(5).ok());
        assert_eq!(p.rate_for(&sibling, "writes"), Rate::per_minute(600).ok());
        assert_eq!(
            p.rate_for(&Subject::key_id(other), "writes"),
            Rate::per_minute(60).ok()
        );
        assert_eq!(p.rate_for(&key, "reads"), Rate::per_minute(600).ok());
        assert_eq!(p.rate_for(&key, "nope"), None);
        let (writes, reads) = (p.names["writes"], p.names["reads"]);
        assert_eq!(
            p.rates_by_limit()[writes],
            [60, 600, 5].map(|n| Rate::per_minute(n).expect("test setup"))
        );
        assert_eq!(
            p.rates_by_limit()[reads],
            [Rate::per_minute(600).expect("test setup")]
        );
        assert_eq!(p.rates_by_limit().len(), 3);
    }
}
