//! Key prefixes such as `tak`, `sk_live` or `acme_test`.

use core::fmt;
use core::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Longest accepted prefix, in characters.
pub const MAX_PREFIX_LEN: usize = 32;

/// A validated key prefix: 1 to [`MAX_PREFIX_LEN`] characters matching
/// `[a-z][a-z0-9]*(_[a-z0-9]+)*`.
///
/// An environment tag is just a part of the prefix: `sk_live` and `sk_test` are two prefixes.
///
/// ```
/// use keyward::key::Prefix;
/// let live: Prefix = "sk_live".parse()?;
/// assert_eq!(live.as_str(), "sk_live");
/// assert!("Sk".parse::<Prefix>().is_err());
/// # Ok::<(), keyward::key::PrefixError>(())
/// ```
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Prefix(Box<str>);

/// Why a string is not a valid [`Prefix`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PrefixError {
    /// The prefix is empty.
    #[error("prefix is empty")]
    Empty,
    /// The prefix is longer than [`MAX_PREFIX_LEN`].
    #[error("prefix too long (maximum {MAX_PREFIX_LEN} characters)")]
    TooLong,
    /// The prefix does not start with a lowercase ASCII letter.
    #[error("prefix must start with a lowercase letter a-z")]
    BadStart,
    /// A character outside `a-z`, `0-9` and `_`.
    #[error("prefix has an invalid character at position {position} (allowed: a-z, 0-9, _)")]
    InvalidCharacter {
        /// Zero-based character position.
        position: usize,
    },
    /// An underscore at the end or two underscores in a row.
    #[error(
        "prefix has an empty part at position {position} (underscores separate non-empty parts)"
    )]
    EmptyPart {
        /// Zero-based character position of the offending underscore.
        position: usize,
    },
}

impl Prefix {
    /// Validates `s` as a prefix.
    ///
    /// # Errors
    /// A [`PrefixError`] naming the first rule `s` breaks.
    pub fn new(s: &str) -> Result<Self, PrefixError> {
        validate(s)?;
        Ok(Self(s.into()))
    }

    /// The prefix as a string slice.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

pub(crate) fn validate(s: &str) -> Result<(), PrefixError> {
    let bytes = s.as_bytes();
    let Some(&first) = bytes.first() else {
        return Err(PrefixError::Empty);
    };
    if s.chars().count() > MAX_PREFIX_LEN {
        return Err(PrefixError::TooLong);
    }
    if !first.is_ascii_lowercase() {
        return Err(PrefixError::BadStart);
    }
    let mut previous_underscore = false;
    for (position, ch) in s.chars().enumerate() {
        match ch {
            '_' if previous_underscore => return Err(PrefixError::EmptyPart { position }),
            '_' => previous_underscore = true,
            'a'..='z' | '0'..='9' => previous_underscore = false,
            _ => return Err(PrefixError::InvalidCharacter { position }),
        }
    }
    if previous_underscore {
        return Err(PrefixError::EmptyPart {
            position: bytes.len() - 1,
        });
    }
    Ok(())
}

impl FromStr for Prefix {
    type Err = PrefixError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl AsRef<str> for Prefix {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Prefix({:?})", &*self.0)
    }
}

impl Serialize for Prefix {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        crate::text::serialize(self, serializer)
    }
}

impl<'de> Deserialize<'de> for Prefix {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        crate::text::deserialize(deserializer, "a key prefix such as \"sk_live\"")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_documented_examples() {
        for ok in [
            "tak",
            "sk_live",
            "acme_test",
            "a",
            "a1_b2_c3",
            "ghp",
            "tok_live",
        ] {
            assert!(Prefix::new(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn rejects_each_rule() {
        assert_eq!(Prefix::new(""), Err(PrefixError::Empty));
        assert_eq!(Prefix::new(&"a".repeat(33)), Err(PrefixError::TooLong));
        assert!(Prefix::new(&"a".repeat(32)).is_ok());
        assert_eq!(Prefix::new("1ab"), Err(PrefixError::BadStart));
        assert_eq!(Prefix::new("_ab"), Err(PrefixError::BadStart));
        assert_eq!(
            Prefix::new("aB"),
            Err(PrefixError::InvalidCharacter { position: 1 })
        );
        assert_eq!(
            Prefix::new("a-b"),
            Err(PrefixError::InvalidCharacter { position: 1 })
        );
        assert_eq!(
            Prefix::new("aé"),
            Err(PrefixError::InvalidCharacter { position: 1 })
        );
        assert_eq!(
            Prefix::new("a__b"),
            Err(PrefixError::EmptyPart { position: 2 })
        );
        assert_eq!(
            Prefix::new("ab_"),
            Err(PrefixError::EmptyPart { position: 2 })
        );
    }

    #[test]
    fn serde_round_trip_validates() {
        let p: Prefix = serde_json::from_str("\"sk_live\"").expect("valid");
        assert_eq!(serde_json::to_string(&p).expect("serialize"), "\"sk_live\"");
        assert!(serde_json::from_str::<Prefix>("\"SK\"").is_err());
    }
}
