//! What the store keeps about a key: [`KeyRecord`], its [`KeyStatus`], [`Metadata`] and
//! the refill schedule of its usage quota ([`QuotaRefill`]).
//!
//! ```
//! use keyward::record::KeyStatus;
//! use keyward::{Hasher, IssueRequest, KeyFormat, KeyManager, MemoryStore, Pepper, RequestContext};
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), keyward::Error> {
//! let manager = KeyManager::new(MemoryStore::new(), KeyFormat::new(["tak"])?, Hasher::fast(Pepper::random("k1")?));
//! let issued = manager.issue(IssueRequest::new("ci", "user_1"), &RequestContext::new()).await?;
//! let record = &issued.record; // what listings show: never the secret
//! assert_eq!(record.status, KeyStatus::Active);
//! assert!(record.preview().starts_with("tak_"));
//! # Ok(()) }
//! ```

use core::fmt;
use core::str::FromStr;
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use time::{Date, Month, OffsetDateTime, UtcOffset};

use crate::hash::StoredHash;
use crate::key::id::KeyId;
use crate::key::prefix::Prefix;
use crate::network::Networks;
use crate::scope::{Restrictions, ScopeSet};

/// Everything known about one key except its secret, which is kept only as [`StoredHash`].
///
/// Fields are public so that a [`KeyStore`](crate::KeyStore) implementation can build a
/// record from a database row; applications normally get records from the
/// [`KeyManager`](crate::KeyManager) and change them only through it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRecord {
    /// The public key id (primary key).
    pub id: KeyId,
    /// The key's prefix (its environment, such as `sk_live`).
    pub prefix: Prefix,
    /// The workspace, company or tenant the key belongs to.
    pub tenant: Option<String>,
    /// A label chosen by the owner, shown in UIs and audit logs.
    pub name: String,
    /// Who the key acts for (a user or service account id).
    pub owner: String,
    /// Scopes granted directly.
    pub scopes: ScopeSet,
    /// Named roles from the scope catalog; their scopes are added at verification.
    pub roles: Vec<String>,
    /// The resources the key is limited to.
    pub restrictions: Restrictions,
    /// The networks the key may be used from ([`Networks::any`] by default); checked at
    /// verification against the request's client address.
    #[serde(default)]
    pub allowed_networks: Networks,
    /// Small application data.
    pub metadata: Metadata,
    /// When the key was issued.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// When the key stops working, if ever.
    #[serde(with = "time::serde::rfc3339::option")]
    pub expires_at: Option<OffsetDateTime>,
    /// When the key last verified (updated at most once per throttle interval).
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_used_at: Option<OffsetDateTime>,
    /// Active, disabled or revoked.
    pub status: KeyStatus,
    /// The key's hash at rest.
    pub hash: StoredHash,
    /// Incremented by the store on every conditional update (compare-and-set).
    pub version: u64,
    /// The key this one replaced in a rotation.
    pub rotated_from: Option<KeyId>,
    /// The key that replaced this one in a rotation (set on the old key).
    pub rotated_to: Option<KeyId>,
    /// Provenance: the key this one was issued through (administrative issuance or
    /// delegation), if any. History only: it does not bind this key to that one.
    pub issued_by: Option<KeyId>,
    /// The delegation parent: the key that minted this one for itself (an agent's or a CI
    /// job's narrower key). A delegated key lives inside its parent for its whole life: it
    /// is refused when the parent or any further ancestor is revoked, disabled, expired or
    /// deleted (a rotated parent's old key ends its children with it), and what it may do
    /// is bounded by each ancestor's current effective scopes and restrictions. `None` for
    /// a root key.
    #[serde(default)]
    pub parent: Option<KeyId>,
    /// Uses left when the key has a usage quota; `None` means unlimited.
    pub remaining_uses: Option<u64>,
    /// When the quota refills by itself: the key manager sets `remaining_uses` back to
    /// [`QuotaRefill::uses`] on the first use of each new period. `None`: never (the
    /// application may still refill with
    /// [`KeyManager::refill_quotas`](crate::KeyManager::refill_quotas)).
    #[serde(default)]
    pub refill: Option<QuotaRefill>,
    /// When the quota was last refilled (or given, at issuance). A key whose
    /// [`refill`](KeyRecord::refill) schedule has a period that started after this time is
    /// due for a refill; `None` with a schedule means due at once.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub refilled_at: Option<OffsetDateTime>,
}

impl KeyRecord {
    /// Whether the key has expired at `now` (expiry is exclusive: at `expires_at` it is
    /// already expired).
    #[must_use]
    pub fn is_expired(&self, now: OffsetDateTime) -> bool {
        self.expires_at.is_some_and(|at| now >= at)
    }

    /// Whether the key works at `now`: active and not expired.
    #[must_use]
    pub fn is_live(&self, now: OffsetDateTime) -> bool {
        self.status == KeyStatus::Active && !self.is_expired(now)
    }

    /// Whether the key counts against its owner's cap of live keys at `now`: live, and not
    /// the old half of a rotation still in its overlap (the pair counts once).
    #[must_use]
    pub fn counts_against_cap(&self, now: OffsetDateTime) -> bool {
        self.is_live(now) && self.rotated_to.is_none()
    }

    /// Whether the quota's refill schedule calls for a refill at `now`: the key has a
    /// schedule, and the period containing `now` started after the last refill (see
    /// [`QuotaRefill::is_due`]).
    #[must_use]
    pub fn refill_due(&self, now: OffsetDateTime) -> bool {
        self.refill
            .is_some_and(|refill| refill.is_due(self.refilled_at, now))
    }

    /// A preview for UIs, such as `tak_bUiB…`.
    #[must_use]
    pub fn preview(&self) -> String {
        self.id.preview(self.prefix.as_str())
    }
}

/// How often a usage quota refills. Periods start at 00:00 UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RefillInterval {
    /// Every day at 00:00 UTC.
    Daily,
    /// Every month on `day` (1 to 31) at 00:00 UTC. In a month shorter than `day`, on the
    /// month's last day: `day` 31 refills on January 31, February 28 (29 in a leap year),
    /// March 31, April 30, and so on, as Unkey's `refillDay` does.
    Monthly {
        /// The day of the month, 1 to 31.
        day: u8,
    },
}

impl RefillInterval {
    /// `daily` or `monthly`: the form stores write.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Daily => "daily",
            Self::Monthly { .. } => "monthly",
        }
    }

    /// The day of the month of a monthly interval.
    #[must_use]
    pub const fn day(self) -> Option<u8> {
        match self {
            Self::Daily => None,
            Self::Monthly { day } => Some(day),
        }
    }
}

/// A usage quota that refills on a schedule: `uses` uses every day, or every month on a
/// given day, at 00:00 UTC.
///
/// The refill sets the uses left to [`QuotaRefill::uses`] (unused uses do not carry over),
/// and is lazy: it happens on the first [`KeyManager::consume`](crate::KeyManager::consume)
/// of a new period, atomically, once per period however many requests race at the
/// boundary. A key nobody uses is not written to.
///
/// ```
/// use keyward::record::{QuotaRefill, RefillError, RefillInterval};
/// let daily = QuotaRefill::daily(1_000)?;
/// let monthly = QuotaRefill::monthly(50_000, 15)?;
/// assert_eq!(monthly.interval(), RefillInterval::Monthly { day: 15 });
/// assert_eq!(QuotaRefill::monthly(10, 32), Err(RefillError::Day));
/// assert_eq!(QuotaRefill::daily(0), Err(RefillError::ZeroUses));
/// # Ok::<(), RefillError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "RawRefill", into = "RawRefill")]
pub struct QuotaRefill {
    uses: u64,
    interval: RefillInterval,
}

/// Why a refill schedule was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RefillError {
    /// A refill of zero uses.
    #[error("a quota refill must give at least 1 use")]
    ZeroUses,
    /// More uses than a store can keep.
    #[error("too many uses in a quota refill (maximum {})", QuotaRefill::MAX_USES)]
    TooManyUses,
    /// A monthly day outside 1 to 31.
    #[error("refill day must be 1 to 31")]
    Day,
    /// An interval name other than `daily` or `monthly`, or a day given with `daily`.
    #[error("unknown refill interval (expected daily, or monthly with a day)")]
    Interval,
}

impl QuotaRefill {
    /// Most uses a refill gives: `i64::MAX`, the largest count the SQL stores keep exactly.
    pub const MAX_USES: u64 = i64::MAX.unsigned_abs();
    /// Latest day of a monthly refill (shorter months refill on their last day).
    pub const MAX_DAY: u8 = 31;

    /// `uses` uses every `interval`.
    ///
    /// # Errors
    /// [`RefillError::ZeroUses`], [`RefillError::TooManyUses`] above
    /// [`QuotaRefill::MAX_USES`], or [`RefillError::Day`] for a monthly day outside 1 to 31.
    pub const fn new(uses: u64, interval: RefillInterval) -> Result<Self, RefillError> {
        if uses == 0 {
            return Err(RefillError::ZeroUses);
        }
        if uses > Self::MAX_USES {
            return Err(RefillError::TooManyUses);
        }
        if let RefillInterval::Monthly { day } = interval
            && (day == 0 || day > Self::MAX_DAY)
        {
            return Err(RefillError::Day);
        }
        Ok(Self { uses, interval })
    }

    /// `uses` uses every day at 00:00 UTC.
    ///
    /// # Errors
    /// As [`QuotaRefill::new`].
    pub const fn daily(uses: u64) -> Result<Self, RefillError> {
        Self::new(uses, RefillInterval::Daily)
    }

    /// `uses` uses every month on `day` (1 to 31; the last day of shorter months) at
    /// 00:00 UTC.
    ///
    /// # Errors
    /// As [`QuotaRefill::new`].
    pub const fn monthly(uses: u64, day: u8) -> Result<Self, RefillError> {
        Self::new(uses, RefillInterval::Monthly { day })
    }

    /// The uses left after each refill.
    #[must_use]
    pub const fn uses(&self) -> u64 {
        self.uses
    }

    /// How often the quota refills.
    #[must_use]
    pub const fn interval(&self) -> RefillInterval {
        self.interval
    }

    /// The start of the period that contains `now`: 00:00 UTC of `now`'s day, or of the
    /// latest refill day of a month at or before `now`.
    ///
    /// ```
    /// use keyward::record::QuotaRefill;
    /// use time::macros::datetime;
    /// let on_31st = QuotaRefill::monthly(10, 31)?;
    /// assert_eq!(on_31st.period_start(datetime!(2026-03-10 12:00 UTC)), datetime!(2026-02-28 0:00 UTC));
    /// assert_eq!(on_31st.period_start(datetime!(2026-05-01 0:00 UTC)), datetime!(2026-04-30 0:00 UTC));
    /// # Ok::<(), keyward::record::RefillError>(())
    /// ```
    #[must_use]
    pub fn period_start(&self, now: OffsetDateTime) -> OffsetDateTime {
        let today = now.checked_to_offset(UtcOffset::UTC).unwrap_or(now).date();
        let start = match self.interval {
            RefillInterval::Daily => Some(today),
            RefillInterval::Monthly { day } => {
                match refill_date(today.year(), today.month(), day) {
                    Some(this_month) if this_month <= today => Some(this_month),
                    _ => previous_month(today.year(), today.month())
                        .and_then(|(year, month)| refill_date(year, month, day)),
                }
            }
        };
        // Only a `now` in the first month `time` can represent has no earlier refill day.
        start.unwrap_or(Date::MIN).midnight().assume_utc()
    }

    /// Whether a quota last refilled at `refilled_at` is due for a refill at `now`: the
    /// period containing `now` started after `refilled_at` (or there was no refill yet).
    ///
    /// ```
    /// use keyward::record::QuotaRefill;
    /// use time::macros::datetime;
    /// let daily = QuotaRefill::daily(100)?;
    /// let refilled = Some(datetime!(2026-03-01 17:00 UTC));
    /// assert!(!daily.is_due(refilled, datetime!(2026-03-01 23:59:59.999 UTC)));
    /// assert!(daily.is_due(refilled, datetime!(2026-03-02 0:00 UTC)));
    /// # Ok::<(), keyward::record::RefillError>(())
    /// ```
    #[must_use]
    pub fn is_due(&self, refilled_at: Option<OffsetDateTime>, now: OffsetDateTime) -> bool {
        refilled_at.is_none_or(|at| at < self.period_start(now))
    }
}

/// The refill day of `day` in a month: `day`, or the month's last day when it is shorter.
fn refill_date(year: i32, month: Month, day: u8) -> Option<Date> {
    (1..=day)
        .rev()
        .find_map(|d| Date::from_calendar_date(year, month, d).ok())
}

fn previous_month(year: i32, month: Month) -> Option<(i32, Month)> {
    match month {
        Month::January => year.checked_sub(1).map(|y| (y, Month::December)),
        other => Some((year, other.previous())),
    }
}

/// How a [`QuotaRefill`] is serialized: `{"uses": 100, "interval": "daily"}` or
/// `{"uses": 100, "interval": "monthly", "day": 15}`.
#[derive(Serialize, Deserialize)]
struct RawRefill {
    uses: u64,
    interval: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    day: Option<u8>,
}

impl QuotaRefill {
    /// A schedule from its stored parts: an interval name (`daily` or `monthly`), a day for
    /// `monthly`, and the uses.
    ///
    /// # Errors
    /// [`RefillError::Interval`] for an unknown name, a day with `daily` or none with
    /// `monthly`; otherwise as [`QuotaRefill::new`].
    pub fn from_parts(uses: u64, interval: &str, day: Option<u8>) -> Result<Self, RefillError> {
        match (interval, day) {
            ("daily", None) => Self::daily(uses),
            ("monthly", Some(day)) => Self::monthly(uses, day),
            _ => Err(RefillError::Interval),
        }
    }
}

impl TryFrom<RawRefill> for QuotaRefill {
    type Error = RefillError;
    fn try_from(raw: RawRefill) -> Result<Self, Self::Error> {
        Self::from_parts(raw.uses, &raw.interval, raw.day)
    }
}

impl From<QuotaRefill> for RawRefill {
    fn from(refill: QuotaRefill) -> Self {
        Self {
            uses: refill.uses,
            interval: refill.interval.as_str().to_owned(),
            day: refill.interval.day(),
        }
    }
}

/// The state of a key. Disabling is reversible; revocation is final.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyStatus {
    /// The key works (unless expired).
    Active,
    /// Temporarily refused; enabling makes the same key value work again.
    Disabled,
    /// Permanently refused.
    Revoked,
}

impl KeyStatus {
    /// `active`, `disabled` or `revoked`: the form stores write.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Disabled => "disabled",
            Self::Revoked => "revoked",
        }
    }
}

impl fmt::Display for KeyStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A string that is not a [`KeyStatus`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("unknown key status (expected active, disabled or revoked)")]
pub struct KeyStatusError;

impl FromStr for KeyStatus {
    type Err = KeyStatusError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "active" => Ok(Self::Active),
            "disabled" => Ok(Self::Disabled),
            "revoked" => Ok(Self::Revoked),
            _ => Err(KeyStatusError),
        }
    }
}

/// Small, bounded application data attached to a key (plan, purpose, ticket link).
///
/// At most [`Metadata::MAX_ENTRIES`] entries; keys up to [`Metadata::MAX_KEY_LEN`] bytes
/// and values up to [`Metadata::MAX_VALUE_LEN`] bytes. Never put secrets here: metadata
/// appears in listings.
///
/// ```
/// let mut meta = keyward::record::Metadata::default();
/// meta.insert("plan", "pro")?;
/// assert_eq!(meta.get("plan"), Some("pro"));
/// # Ok::<(), keyward::record::MetadataError>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Metadata(BTreeMap<String, String>);

/// Why metadata was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MetadataError {
    /// Too many entries.
    #[error("too many metadata entries (maximum {})", Metadata::MAX_ENTRIES)]
    TooManyEntries,
    /// A key is empty or too long.
    #[error("metadata key must have 1 to {} bytes", Metadata::MAX_KEY_LEN)]
    KeyLength,
    /// A value is too long.
    #[error("metadata value too long (maximum {} bytes)", Metadata::MAX_VALUE_LEN)]
    ValueLength,
}

impl Metadata {
    /// Most entries.
    pub const MAX_ENTRIES: usize = 16;
    /// Longest key, in bytes.
    pub const MAX_KEY_LEN: usize = 64;
    /// Longest value, in bytes.
    pub const MAX_VALUE_LEN: usize = 512;

    /// Adds or replaces an entry.
    ///
    /// # Errors
    /// [`MetadataError`] when a bound is exceeded; the metadata is then unchanged.
    pub fn insert(
        &mut self,
        key: impl Into<String>,
        value: impl Into<String>,
    ) -> Result<(), MetadataError> {
        let (key, value) = (key.into(), value.into());
        if key.is_empty() || key.len() > Self::MAX_KEY_LEN {
            return Err(MetadataError::KeyLength);
        }
        if value.len() > Self::MAX_VALUE_LEN {
            return Err(MetadataError::ValueLength);
        }
        if self.0.len() >= Self::MAX_ENTRIES && !self.0.contains_key(&key) {
            return Err(MetadataError::TooManyEntries);
        }
        self.0.insert(key, value);
        Ok(())
    }

    /// The value for `key`.
    #[must_use]
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    /// All entries, in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// Number of entries.
    #[must_use]
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are no entries.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl TryFrom<BTreeMap<String, String>> for Metadata {
    type Error = MetadataError;
    fn try_from(map: BTreeMap<String, String>) -> Result<Self, Self::Error> {
        let mut meta = Self::default();
        for (k, v) in map {
            meta.insert(k, v)?;
        }
        Ok(meta)
    }
}

impl<'de> Deserialize<'de> for Metadata {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let map = BTreeMap::<String, String>::deserialize(deserializer)?;
        Self::try_from(map).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::{QuotaRefill, RefillError, RefillInterval};

    #[test]
    fn schedules_are_validated() {
        assert_eq!(QuotaRefill::daily(0), Err(RefillError::ZeroUses));
        assert_eq!(
            QuotaRefill::daily(QuotaRefill::MAX_USES + 1),
            Err(RefillError::TooManyUses)
        );
        assert!(QuotaRefill::daily(QuotaRefill::MAX_USES).is_ok());
        assert_eq!(QuotaRefill::monthly(1, 0), Err(RefillError::Day));
        assert_eq!(QuotaRefill::monthly(1, 32), Err(RefillError::Day));
        for day in 1..=31 {
            let refill = QuotaRefill::monthly(5, day).expect("days 1 to 31 are valid");
            assert_eq!(refill.interval(), RefillInterval::Monthly { day });
            assert_eq!(refill.uses(), 5);
        }
        assert_eq!(
            QuotaRefill::from_parts(3, "daily", Some(1)),
            Err(RefillError::Interval)
        );
        assert_eq!(
            QuotaRefill::from_parts(3, "monthly", None),
            Err(RefillError::Interval)
        );
        assert_eq!(
            QuotaRefill::from_parts(3, "weekly", None),
            Err(RefillError::Interval)
        );
        assert_eq!(
            QuotaRefill::from_parts(3, "monthly", Some(15)),
            QuotaRefill::monthly(3, 15)
        );
    }

    #[test]
    fn daily_periods_start_at_utc_midnight() {
        let daily = QuotaRefill::daily(3).expect("valid");
        assert_eq!(
            daily.period_start(datetime!(2026-03-01 0:00 UTC)),
            datetime!(2026-03-01 0:00 UTC)
        );
        assert_eq!(
            daily.period_start(datetime!(2026-03-01 23:59:59.999_999 UTC)),
            datetime!(2026-03-01 0:00 UTC)
        );
        // A time given in another offset is placed in its UTC day.
        assert_eq!(
            daily.period_start(datetime!(2026-03-01 23:30 -2)),
            datetime!(2026-03-02 0:00 UTC)
        );
    }

    #[test]
    fn monthly_periods_start_on_the_day_or_the_months_last_day() {
        let mid = QuotaRefill::monthly(3, 15).expect("valid");
        assert_eq!(
            mid.period_start(datetime!(2026-03-14 23:59 UTC)),
            datetime!(2026-02-15 0:00 UTC)
        );
        assert_eq!(
            mid.period_start(datetime!(2026-03-15 0:00 UTC)),
            datetime!(2026-03-15 0:00 UTC)
        );
        assert_eq!(
            mid.period_start(datetime!(2026-01-10 0:00 UTC)),
            datetime!(2025-12-15 0:00 UTC),
            "across a year"
        );
        let last = QuotaRefill::monthly(3, 31).expect("valid");
        for (now, start) in [
            (
                datetime!(2026-02-27 12:00 UTC),
                datetime!(2026-01-31 0:00 UTC),
            ),
            (
                datetime!(2026-02-28 0:00 UTC),
                datetime!(2026-02-28 0:00 UTC),
            ),
            (
                datetime!(2026-03-30 0:00 UTC),
                datetime!(2026-02-28 0:00 UTC),
            ),
            (
                datetime!(2026-03-31 0:00 UTC),
                datetime!(2026-03-31 0:00 UTC),
            ),
            (
                datetime!(2026-04-30 0:00 UTC),
                datetime!(2026-04-30 0:00 UTC),
            ),
            (
                datetime!(2028-02-28 23:00 UTC),
                datetime!(2028-01-31 0:00 UTC),
            ),
            (
                datetime!(2028-02-29 0:00 UTC),
                datetime!(2028-02-29 0:00 UTC),
            ),
        ] {
            assert_eq!(last.period_start(now), start, "at {now}");
        }
        let first = QuotaRefill::monthly(3, 1).expect("valid");
        assert_eq!(
            first.period_start(datetime!(2026-12-31 23:59 UTC)),
            datetime!(2026-12-01 0:00 UTC)
        );
        // The earliest representable month has no earlier refill day: no panic.
        let earliest = time::Date::MIN.midnight().assume_utc();
        assert_eq!(mid.period_start(earliest), earliest);
        assert_eq!(
            mid.period_start(time::Date::MAX.midnight().assume_utc())
                .month(),
            time::Month::December
        );
    }

    #[test]
    fn due_once_per_period() {
        let daily = QuotaRefill::daily(3).expect("valid");
        assert!(daily.is_due(None, datetime!(2026-03-01 12:00 UTC)));
        let at = Some(datetime!(2026-03-01 0:00 UTC));
        assert!(!daily.is_due(at, datetime!(2026-03-01 0:00 UTC)));
        assert!(!daily.is_due(at, datetime!(2026-03-01 23:59:59.999_999 UTC)));
        assert!(daily.is_due(at, datetime!(2026-03-02 0:00 UTC)));
        // A clock that went back does not refill again.
        assert!(!daily.is_due(at, datetime!(2026-02-28 12:00 UTC)));
    }

    #[test]
    fn serde_round_trip_and_validation() {
        for refill in [
            QuotaRefill::daily(100).expect("valid"),
            QuotaRefill::monthly(7, 31).expect("valid"),
        ] {
            let json = serde_json::to_string(&refill).expect("serialize");
            let back: QuotaRefill = serde_json::from_str(&json).expect("deserialize");
            assert_eq!(back, refill, "{json}");
        }
        assert_eq!(
            serde_json::to_string(&QuotaRefill::monthly(7, 15).expect("valid")).expect("json"),
            r#"{"uses":7,"interval":"monthly","day":15}"#
        );
        for bad in [
            r#"{"uses":0,"interval":"daily"}"#,
            r#"{"uses":7,"interval":"monthly","day":40}"#,
            r#"{"uses":7,"interval":"monthly"}"#,
            r#"{"uses":7,"interval":"hourly"}"#,
        ] {
            assert!(serde_json::from_str::<QuotaRefill>(bad).is_err(), "{bad}");
        }
    }
}
