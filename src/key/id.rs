//! The public key id: the first characters of a key's body, used for lookups and logs.

use core::fmt;
use core::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::key::alphabet;

/// Shortest key id a [`KeyFormat`](crate::KeyFormat) may use: 11 base62 characters carry
/// more than 64 bits.
pub const MIN_KEY_ID_LEN: usize = 11;
/// Longest key id, in characters.
pub const MAX_KEY_ID_LEN: usize = 32;

/// The public identifier of a key.
///
/// A key id is not secret: it appears in logs, audit events and UIs, and it is how the store
/// finds a key's record. It is `Copy` and has a fixed size, so passing it around costs nothing.
///
/// ```
/// use keyward::KeyId;
/// let id: KeyId = "bUiB7xK2pQ9m".parse()?;
/// assert_eq!(id.as_str(), "bUiB7xK2pQ9m");
/// assert_eq!(id.to_string(), "bUiB7xK2pQ9m");
/// # Ok::<(), keyward::key::KeyIdError>(())
/// ```
///
/// Ids are ordered by their bytes (as `str` compares them, and as SQL's `ORDER BY id` does
/// on the shipped stores), so a shorter id comes before the longer ids it begins:
///
/// ```
/// use keyward::KeyId;
/// let id = |s: &str| s.parse::<KeyId>();
/// assert!(id("0000000000000")? < id("zzzzzzzzzzzz")?);
/// assert!(id("abcdefghijkl")? < id("abcdefghijklm")?);
/// # Ok::<(), keyward::key::KeyIdError>(())
/// ```
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct KeyId {
    // Invariant: bytes[..len] are base62 ASCII, bytes[len..] are zero.
    len: u8,
    bytes: [u8; MAX_KEY_ID_LEN],
}

// Byte order: the padding is zero, below every base62 character, so comparing the padded
// arrays orders a prefix before the ids it begins, exactly as comparing the strings does.
impl Ord for KeyId {
    fn cmp(&self, other: &Self) -> core::cmp::Ordering {
        self.bytes.cmp(&other.bytes)
    }
}

impl PartialOrd for KeyId {
    fn partial_cmp(&self, other: &Self) -> Option<core::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

// Hashes the id's characters only (12 by default), not the zero padding: equal ids have equal
// characters, so this agrees with the derived equality, and a short input takes the hashers'
// fast path on every store lookup.
impl core::hash::Hash for KeyId {
    fn hash<H: core::hash::Hasher>(&self, state: &mut H) {
        self.bytes
            .get(..usize::from(self.len))
            .unwrap_or_default()
            .hash(state);
    }
}

/// Why a string is not a valid [`KeyId`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyIdError {
    /// Too short or too long.
    #[error("key id has {found} characters (expected {MIN_KEY_ID_LEN} to {MAX_KEY_ID_LEN})")]
    Length {
        /// Characters found.
        found: usize,
    },
    /// A character outside `0-9A-Za-z`.
    #[error("key id has an invalid character at position {position} (allowed: 0-9, A-Z, a-z)")]
    InvalidCharacter {
        /// Zero-based character position.
        position: usize,
    },
}

impl KeyId {
    /// Builds a key id from a slice already known to be base62 and short enough.
    pub(crate) fn from_base62_unchecked_len(s: &[u8]) -> Self {
        let len = s.len().min(MAX_KEY_ID_LEN);
        let mut bytes = [0u8; MAX_KEY_ID_LEN];
        bytes[..len].copy_from_slice(&s[..len]);
        Self {
            len: len as u8,
            bytes,
        }
    }

    /// Parses a key id: [`MIN_KEY_ID_LEN`] to [`MAX_KEY_ID_LEN`] base62 characters.
    ///
    /// # Errors
    /// [`KeyIdError`] when the length or a character is wrong.
    pub fn new(s: &str) -> Result<Self, KeyIdError> {
        let found = s.chars().count();
        if !(MIN_KEY_ID_LEN..=MAX_KEY_ID_LEN).contains(&found) {
            return Err(KeyIdError::Length { found });
        }
        if let Some(position) = alphabet::first_invalid(s.as_bytes()) {
            return Err(KeyIdError::InvalidCharacter { position });
        }
        Ok(Self::from_base62_unchecked_len(s.as_bytes()))
    }

    /// The id as a string slice.
    #[must_use]
    pub fn as_str(&self) -> &str {
        // Only base62 ASCII is ever stored, so this never fails; the fallback keeps it total.
        core::str::from_utf8(&self.bytes[..usize::from(self.len)]).unwrap_or_default()
    }

    /// Number of characters.
    #[must_use]
    pub fn len(&self) -> usize {
        usize::from(self.len)
    }

    /// A short, non-secret preview for UIs: the prefix and the first four id characters,
    /// such as `tak_bUiB…`.
    ///
    /// ```
    /// let id: keyward::KeyId = "bUiB7xK2pQ9m".parse()?;
    /// assert_eq!(id.preview("tak"), "tak_bUiB…");
    /// # Ok::<(), keyward::key::KeyIdError>(())
    /// ```
    #[must_use]
    pub fn preview(&self, prefix: &str) -> String {
        let shown = &self.as_str()[..self.len().min(4)];
        format!("{prefix}_{shown}…")
    }

    /// Always `false`: a key id has at least one character. Present for API symmetry.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl FromStr for KeyId {
    type Err = KeyIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({})", self.as_str())
    }
}

impl Serialize for KeyId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        crate::text::serialize(self, serializer)
    }
}

impl<'de> Deserialize<'de> for KeyId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        crate::text::deserialize(deserializer, "a key id of 11 to 32 base62 characters")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_display() {
        let id = KeyId::new("bUiB7xK2pQ9m").expect("valid");
        assert_eq!(id.to_string(), "bUiB7xK2pQ9m");
        assert_eq!(format!("{id:?}"), "KeyId(bUiB7xK2pQ9m)");
        assert_eq!(id.len(), 12);
    }

    #[test]
    fn rejects_bad_ids() {
        assert_eq!(KeyId::new("short"), Err(KeyIdError::Length { found: 5 }));
        assert_eq!(
            KeyId::new(&"a".repeat(33)),
            Err(KeyIdError::Length { found: 33 })
        );
        assert_eq!(
            KeyId::new("abcdefghij_k"),
            Err(KeyIdError::InvalidCharacter { position: 10 })
        );
        assert_eq!(
            KeyId::new("abcdéfghijkl"),
            Err(KeyIdError::InvalidCharacter { position: 4 })
        );
    }

    #[test]
    fn serde_as_string() {
        let id = KeyId::new("bUiB7xK2pQ9m").expect("valid");
        let json = serde_json::to_string(&id).expect("serialize");
        assert_eq!(json, "\"bUiB7xK2pQ9m\"");
        assert_eq!(
            serde_json::from_str::<KeyId>(&json).expect("deserialize"),
            id
        );
        assert!(serde_json::from_str::<KeyId>("\"bad\"").is_err());
    }
}
