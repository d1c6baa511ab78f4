//! A key format: which prefixes a service accepts and how long the id and secret are.

use crate::key::checksum::{CHECKSUM_LEN, Crc32};
use crate::key::id::{MAX_KEY_ID_LEN, MIN_KEY_ID_LEN};
use crate::key::prefix::{Prefix, PrefixError};

/// The shape of a service's keys: `{prefix}_{id}{secret}{checksum}`.
///
/// A format accepts one or more prefixes (for example `sk_live` and `sk_test`); the first one
/// is the default for generation, and parsing tells which one matched.
///
/// ```
/// use keyward::KeyFormat;
/// let format = KeyFormat::new(["sk_live", "sk_test"])?;
/// let key = format.generate_with_prefix("sk_test")?;
/// let parsed = format.parse(key.expose_secret())?;
/// assert_eq!(parsed.prefix(), "sk_test");
/// assert_eq!(parsed.key_id(), key.id());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyFormat {
    prefixes: Vec<Prefix>,
    id_len: usize,
    secret_len: usize,
    // Each prefix followed by `_`, in the order of `prefixes`: what a key starts with.
    pub(crate) heads: Vec<Box<[u8]>>,
    // The CRC-32 implementation for this CPU, chosen once rather than on every parse.
    pub(crate) crc: Crc32,
}

/// Why a [`KeyFormat`] cannot be built.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FormatError {
    /// A prefix is not valid.
    #[error(transparent)]
    Prefix(#[from] PrefixError),
    /// No prefix was given.
    #[error("a key format needs at least one prefix")]
    NoPrefix,
    /// The same prefix was given twice.
    #[error("prefix listed twice")]
    DuplicatePrefix,
    /// The id length is out of bounds.
    #[error(
        "key id length {found} out of bounds ({MIN_KEY_ID_LEN} to {MAX_KEY_ID_LEN} characters)"
    )]
    IdLength {
        /// Requested length.
        found: usize,
    },
    /// The secret length is out of bounds.
    #[error(
        "secret length {found} out of bounds ({} to {} characters; {} carry 128 bits)",
        KeyFormat::MIN_SECRET_LEN,
        KeyFormat::MAX_SECRET_LEN,
        KeyFormat::MIN_SECRET_LEN
    )]
    SecretLength {
        /// Requested length.
        found: usize,
    },
}

impl KeyFormat {
    /// Default number of key id characters (about 71 bits).
    pub const DEFAULT_ID_LEN: usize = 12;
    /// Default number of secret characters (about 190 bits).
    pub const DEFAULT_SECRET_LEN: usize = 32;
    /// Fewest secret characters allowed: 22 base62 characters carry 130 bits.
    pub const MIN_SECRET_LEN: usize = 22;
    /// Most secret characters allowed.
    pub const MAX_SECRET_LEN: usize = 128;

    /// A format accepting `prefixes` (the first is the default for generation), with the
    /// default id and secret lengths.
    ///
    /// # Errors
    /// [`FormatError`] when a prefix is invalid or repeated, or none is given.
    pub fn new<I, S>(prefixes: I) -> Result<Self, FormatError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut list: Vec<Prefix> = Vec::new();
        for p in prefixes {
            let p = Prefix::new(p.as_ref())?;
            if list.contains(&p) {
                return Err(FormatError::DuplicatePrefix);
            }
            list.push(p);
        }
        if list.is_empty() {
            return Err(FormatError::NoPrefix);
        }
        let heads = list
            .iter()
            .map(|p| [p.as_str().as_bytes(), b"_"].concat().into_boxed_slice())
            .collect();
        Ok(Self {
            heads,
            prefixes: list,
            id_len: Self::DEFAULT_ID_LEN,
            secret_len: Self::DEFAULT_SECRET_LEN,
            crc: Crc32::new(),
        })
    }

    /// Sets the key id length ([`MIN_KEY_ID_LEN`] to [`MAX_KEY_ID_LEN`]).
    ///
    /// # Errors
    /// [`FormatError::IdLength`] when out of bounds.
    pub fn with_id_len(mut self, len: usize) -> Result<Self, FormatError> {
        if !(MIN_KEY_ID_LEN..=MAX_KEY_ID_LEN).contains(&len) {
            return Err(FormatError::IdLength { found: len });
        }
        self.id_len = len;
        Ok(self)
    }

    /// Sets the secret length ([`Self::MIN_SECRET_LEN`] to [`Self::MAX_SECRET_LEN`]).
    ///
    /// # Errors
    /// [`FormatError::SecretLength`] when out of bounds.
    pub fn with_secret_len(mut self, len: usize) -> Result<Self, FormatError> {
        if !(Self::MIN_SECRET_LEN..=Self::MAX_SECRET_LEN).contains(&len) {
            return Err(FormatError::SecretLength { found: len });
        }
        self.secret_len = len;
        Ok(self)
    }

    /// The accepted prefixes; the first is the default for generation.
    #[must_use]
    pub fn prefixes(&self) -> &[Prefix] {
        &self.prefixes
    }

    /// Characters in the key id.
    #[must_use]
    pub fn id_len(&self) -> usize {
        self.id_len
    }

    /// Characters in the secret.
    #[must_use]
    pub fn secret_len(&self) -> usize {
        self.secret_len
    }

    /// Characters after the prefix separator: id, secret and checksum.
    #[must_use]
    pub fn tail_len(&self) -> usize {
        self.id_len + self.secret_len + CHECKSUM_LEN
    }

    /// Length of the longest key this format accepts.
    #[must_use]
    pub fn max_len(&self) -> usize {
        let longest = self
            .prefixes
            .iter()
            .map(|p| p.as_str().len())
            .max()
            .unwrap_or(0);
        longest + 1 + self.tail_len()
    }

    /// A regular expression (POSIX ERE and most engines) that matches keys of this format,
    /// for secret scanners. It cannot check the checksum; scanners that can should also
    /// verify it (see the README).
    ///
    /// ```
    /// let format = keyward::KeyFormat::new(["tak"])?;
    /// assert_eq!(format.regex(), r"\b(tak)_[0-9A-Za-z]{50}\b");
    /// # Ok::<(), keyward::key::FormatError>(())
    /// ```
    #[must_use]
    pub fn regex(&self) -> String {
        let alternatives: Vec<&str> = self.prefixes.iter().map(Prefix::as_str).collect();
        format!(
            r"\b({})_[0-9A-Za-z]{{{}}}\b",
            alternatives.join("|"),
            self.tail_len()
        )
    }
}
