//! What the store keeps about a key: [`KeyRecord`], its [`KeyStatus`] and [`Metadata`].

use core::fmt;
use core::str::FromStr;
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::hash::StoredHash;
use crate::key_id::KeyId;
use crate::prefix::Prefix;
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
    /// The key this one was issued through (delegation), if any.
    pub issued_by: Option<KeyId>,
    /// Uses left when the key has a usage quota; `None` means unlimited.
    pub remaining_uses: Option<u64>,
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

    /// A preview for UIs, such as `tak_bUiB…`.
    #[must_use]
    pub fn preview(&self) -> String {
        self.id.preview(self.prefix.as_str())
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
/// let mut meta = keyward::Metadata::default();
/// meta.insert("plan", "pro")?;
/// assert_eq!(meta.get("plan"), Some("pro"));
/// # Ok::<(), keyward::MetadataError>(())
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
