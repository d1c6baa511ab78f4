//! Legacy tokens: keys issued by another system before keyward, imported by their digest
//! (see [`KeyManager::import`](crate::KeyManager::import)) and recognised by a configured
//! prefix.
//!
//! A legacy token is its configured prefix, `_`, then RFC 6750 `b64token` characters
//! (`A-Z a-z 0-9 - . _ ~ + /`, then any number of `=`). It is recognised by the longest
//! configured prefix it starts with, never by splitting at its last `_` (the body may hold
//! `_` itself). keyward's own keys keep their format and checksum: a legacy prefix may not
//! overlap a prefix of the manager's [`KeyFormat`](crate::KeyFormat), so no string is both.
//!
//! ```
//! use keyward::key::{LegacyFormats, LegacyParseError};
//!
//! let legacy = LegacyFormats::new().sha256("old_sk")?.prefixed_api_key("acme")?;
//! let token = legacy.parse("old_sk_9f8e-7d6c.5b4a~3_2+1/0==")?;
//! assert_eq!(token.prefix(), "old_sk");
//! let pak = legacy.parse("acme_BRTRKFsL_51FwqftsmMDHHbJAMEXXHCgG")?;
//! assert_eq!(pak.short_token(), Some("BRTRKFsL"));
//! assert_eq!(legacy.parse("new_abc").unwrap_err(), LegacyParseError::UnknownPrefix);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use core::fmt;

use crate::hash::{ForeignKey, ForeignScheme};
use crate::key::format::KeyFormat;
use crate::key::prefix::{Prefix, PrefixError};

/// Longest legacy token accepted, in bytes.
pub const MAX_LEGACY_TOKEN_LEN: usize = 512;

/// The legacy formats a manager accepts: prefixes, each with the scheme its keys were
/// digested with.
#[derive(Debug, Clone, Default)]
pub struct LegacyFormats {
    /// Longest prefix first, so that the first match is the longest.
    formats: Vec<(Prefix, ForeignScheme)>,
}

/// Why a legacy format is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LegacyError {
    /// The prefix is not a valid prefix.
    #[error("legacy prefix: {0}")]
    Prefix(#[from] PrefixError),
    /// The prefix is configured twice.
    #[error("legacy prefix {0} is configured twice")]
    Duplicate(Prefix),
    /// The prefix overlaps one of keyward's own key prefixes, so a string could be both.
    #[error("legacy prefix {legacy} overlaps the key prefix {own}")]
    Overlaps {
        /// The legacy prefix.
        legacy: Prefix,
        /// keyward's key prefix.
        own: Prefix,
    },
}

/// Why a presented string is not a legacy token of the configured formats.
///
/// Messages never contain the token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LegacyParseError {
    /// The input is empty.
    #[error("token is empty")]
    Empty,
    /// The input is too long.
    #[error("token too long (maximum {MAX_LEGACY_TOKEN_LEN} bytes)")]
    TooLong,
    /// No configured legacy prefix followed by `_` starts the input.
    #[error("unknown legacy token prefix")]
    UnknownPrefix,
    /// Nothing after the prefix (or only `=`).
    #[error("legacy token has no body after its prefix")]
    EmptyBody,
    /// A character outside RFC 6750's `b64token`, or a character after the trailing `=`.
    #[error(
        "invalid character at position {position} (allowed after the prefix: A-Z, a-z, 0-9, -, ., _, ~, +, /, then trailing =)"
    )]
    InvalidCharacter {
        /// Zero-based character position in the input.
        position: usize,
    },
    /// A prefixed-api-key token without its `short_long` shape.
    #[error("prefixed-api-key token must read prefix_short_long")]
    MissingShortToken,
}

impl LegacyFormats {
    /// No legacy format.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Accepts tokens starting with `prefix_`, imported by the SHA-256 of the whole token.
    ///
    /// # Errors
    /// [`LegacyError`] when the prefix is invalid or configured already.
    pub fn sha256(self, prefix: &str) -> Result<Self, LegacyError> {
        self.with(prefix, ForeignScheme::Sha256)
    }

    /// Accepts prefixed-api-key tokens `prefix_short_long`, imported by the SHA-256 of the
    /// long token.
    ///
    /// # Errors
    /// [`LegacyError`] when the prefix is invalid or configured already.
    pub fn prefixed_api_key(self, prefix: &str) -> Result<Self, LegacyError> {
        self.with(prefix, ForeignScheme::PrefixedApiKey)
    }

    /// Accepts tokens starting with `prefix_`, imported with `scheme`.
    ///
    /// # Errors
    /// [`LegacyError`] when the prefix is invalid or configured already.
    pub fn with(mut self, prefix: &str, scheme: ForeignScheme) -> Result<Self, LegacyError> {
        let prefix = Prefix::new(prefix)?;
        if self.formats.iter().any(|(p, _)| *p == prefix) {
            return Err(LegacyError::Duplicate(prefix));
        }
        self.formats.push((prefix, scheme));
        self.formats.sort_by(|a, b| {
            b.0.as_str()
                .len()
                .cmp(&a.0.as_str().len())
                .then(a.0.cmp(&b.0))
        });
        Ok(self)
    }

    /// Whether no format is configured.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.formats.is_empty()
    }

    /// The configured prefixes and their schemes, longest prefix first.
    pub fn iter(&self) -> impl Iterator<Item = (&Prefix, ForeignScheme)> {
        self.formats.iter().map(|(p, s)| (p, *s))
    }

    /// Checks that no legacy prefix overlaps a prefix of `format`: equal, or one of them
    /// followed by `_` starting the other.
    ///
    /// # Errors
    /// [`LegacyError::Overlaps`] naming the first overlap.
    pub fn check_disjoint(&self, format: &KeyFormat) -> Result<(), LegacyError> {
        let starts = |long: &str, short: &str| {
            long.strip_prefix(short)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('_'))
        };
        for (legacy, _) in &self.formats {
            for own in format.prefixes() {
                if starts(legacy.as_str(), own.as_str()) || starts(own.as_str(), legacy.as_str()) {
                    return Err(LegacyError::Overlaps {
                        legacy: legacy.clone(),
                        own: own.clone(),
                    });
                }
            }
        }
        Ok(())
    }

    /// Parses a presented legacy token: its prefix (the longest configured one it starts
    /// with, followed by `_`), then its body's characters and, for prefixed-api-key tokens,
    /// the `short_long` shape.
    ///
    /// # Errors
    /// A [`LegacyParseError`] naming what is wrong; it never contains the token.
    pub fn parse<'a>(&self, input: &'a str) -> Result<LegacyToken<'a>, LegacyParseError> {
        if input.is_empty() {
            return Err(LegacyParseError::Empty);
        }
        if input.len() > MAX_LEGACY_TOKEN_LEN {
            return Err(LegacyParseError::TooLong);
        }
        let (prefix, scheme) = self
            .formats
            .iter()
            .find(|(p, _)| {
                input
                    .strip_prefix(p.as_str())
                    .is_some_and(|rest| rest.starts_with('_'))
            })
            .ok_or(LegacyParseError::UnknownPrefix)?;
        let start = prefix.as_str().len() + 1;
        let body = &input.as_bytes()[start..];
        check_b64token(body).map_err(|offset| LegacyParseError::InvalidCharacter {
            position: input[..start + offset].chars().count(),
        })?;
        if body.iter().all(|&b| b == b'=') {
            return Err(LegacyParseError::EmptyBody);
        }
        let short_end = match scheme {
            ForeignScheme::PrefixedApiKey => {
                let sep = body
                    .iter()
                    .position(|&b| b == b'_')
                    .filter(|&i| i > 0 && i + 1 < body.len())
                    .ok_or(LegacyParseError::MissingShortToken)?;
                Some(start + sep)
            }
            _ => None,
        };
        Ok(LegacyToken {
            full: input,
            prefix_len: prefix.as_str().len(),
            scheme: *scheme,
            short_end,
        })
    }
}

/// Checks RFC 6750's `b64token`: `1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" )
/// *"="` (the body's emptiness is checked by the caller). `Err` holds the byte offset of
/// the first character that breaks it.
fn check_b64token(body: &[u8]) -> Result<(), usize> {
    let mut padding = false;
    for (i, &b) in body.iter().enumerate() {
        let token_char =
            b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/');
        if b == b'=' {
            padding = true;
        } else if padding || !token_char {
            return Err(i);
        }
    }
    Ok(())
}

/// A presented token of a configured legacy format, borrowed from the input.
///
/// Like [`ParsedKey`](crate::key::ParsedKey), it proves only that the string is well formed.
#[derive(Clone, Copy)]
pub struct LegacyToken<'a> {
    full: &'a str,
    prefix_len: usize,
    scheme: ForeignScheme,
    /// Prefixed-api-key: byte index of the `_` that ends the short token.
    short_end: Option<usize>,
}

impl<'a> LegacyToken<'a> {
    /// The configured prefix that matched.
    #[must_use]
    pub fn prefix(&self) -> &'a str {
        &self.full[..self.prefix_len]
    }

    /// The scheme of the prefix's format.
    #[must_use]
    pub fn scheme(&self) -> ForeignScheme {
        self.scheme
    }

    /// The short token of a prefixed-api-key token (a public lookup part), `None` for
    /// other schemes.
    #[must_use]
    pub fn short_token(&self) -> Option<&'a str> {
        self.short_end
            .map(|end| &self.full[self.prefix_len + 1..end])
    }

    /// The whole token. Named so that every use is easy to find in review.
    #[must_use]
    pub fn expose_secret(&self) -> &'a str {
        self.full
    }

    /// What the other system's digest was computed over, digested, with the public parts
    /// the digest does not cover.
    pub(crate) fn foreign_key(&self) -> ForeignKey<'a> {
        match self.short_end {
            Some(end) => ForeignKey::prefixed(
                self.prefix(),
                &self.full[self.prefix_len + 1..end],
                ForeignKey::sha256_of(&self.full.as_bytes()[end + 1..]),
            ),
            None => ForeignKey::sha256(ForeignKey::sha256_of(self.full.as_bytes())),
        }
    }
}

impl fmt::Debug for LegacyToken<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LegacyToken")
            .field("prefix", &self.prefix())
            .field("scheme", &self.scheme)
            .field("secret", &"<redacted>")
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn formats() -> LegacyFormats {
        LegacyFormats::new()
            .sha256("old")
            .and_then(|f| f.sha256("old_sk"))
            .and_then(|f| f.prefixed_api_key("pak"))
            .expect("formats")
    }

    #[test]
    fn longest_prefix_wins_and_body_may_hold_underscores() {
        let f = formats();
        assert_eq!(f.parse("old_sk_a_b").map(|t| t.prefix()), Ok("old_sk"));
        assert_eq!(f.parse("old_x_sk").map(|t| t.prefix()), Ok("old"));
        assert_eq!(f.parse("old_abc==").map(|t| t.prefix()), Ok("old"));
    }

    #[test]
    fn refusals() {
        let f = formats();
        let table = [
            ("", LegacyParseError::Empty),
            ("old", LegacyParseError::UnknownPrefix),
            ("oldsk_abc", LegacyParseError::UnknownPrefix),
            ("Old_abc", LegacyParseError::UnknownPrefix),
            ("old_", LegacyParseError::EmptyBody),
            ("old_==", LegacyParseError::EmptyBody),
            (
                "old_a=b",
                LegacyParseError::InvalidCharacter { position: 6 },
            ),
            (
                "old_a b",
                LegacyParseError::InvalidCharacter { position: 5 },
            ),
            ("old_é", LegacyParseError::InvalidCharacter { position: 4 }),
            (
                "old_abc\n",
                LegacyParseError::InvalidCharacter { position: 7 },
            ),
            ("pak_abc", LegacyParseError::MissingShortToken),
            ("pak__abc", LegacyParseError::MissingShortToken),
            ("pak_abc_", LegacyParseError::MissingShortToken),
        ];
        for (input, expected) in table {
            assert_eq!(f.parse(input).err(), Some(expected), "{input:?}");
        }
        let long = format!("old_{}", "a".repeat(MAX_LEGACY_TOKEN_LEN));
        assert_eq!(f.parse(&long).err(), Some(LegacyParseError::TooLong));
    }

    #[test]
    fn prefixed_api_key_parts() {
        let token = formats().parse("pak_short_lo_ng").expect("token");
        assert_eq!(token.short_token(), Some("short"));
        let key = token.foreign_key();
        assert_eq!(key.digest, ForeignKey::sha256_of(b"lo_ng"));
        assert_eq!((key.prefix, key.short), ("pak", "short"));
        assert!(!format!("{token:?}").contains("lo_ng"));
    }

    #[test]
    fn configuration() {
        assert!(matches!(
            LegacyFormats::new().sha256("a").and_then(|f| f.sha256("a")),
            Err(LegacyError::Duplicate(_))
        ));
        assert!(matches!(
            LegacyFormats::new().sha256("A"),
            Err(LegacyError::Prefix(_))
        ));
        let own = KeyFormat::new(["tak", "sk_live"]).expect("format");
        for overlapping in ["tak", "sk", "tak_old", "sk_live"] {
            let f = LegacyFormats::new().sha256(overlapping).expect("valid");
            assert!(f.check_disjoint(&own).is_err(), "{overlapping}");
        }
        for disjoint in ["ta", "takx", "sk_test", "old_sk"] {
            let f = LegacyFormats::new().sha256(disjoint).expect("valid");
            assert_eq!(f.check_disjoint(&own), Ok(()), "{disjoint}");
        }
    }
}
