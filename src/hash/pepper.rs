//! Peppers: the server-side secret keys of the fast keyed hash, with ids so they can rotate.

use core::fmt;
use std::sync::Arc;

use base64ct::{Base64, Base64Unpadded, Encoding};
use hmac::{Hmac, KeyInit};
use sha2::Sha256;
use zeroize::Zeroizing;

/// Fewest bytes a pepper may have.
pub const MIN_PEPPER_LEN: usize = 32;
/// Most bytes a pepper may have.
pub const MAX_PEPPER_LEN: usize = 256;
/// Longest pepper id, in characters.
pub const MAX_PEPPER_ID_LEN: usize = 32;

/// The public name of a pepper, recorded in every hash made with it: 1 to
/// [`MAX_PEPPER_ID_LEN`] characters of `a-z`, `0-9`, `.` and `-`, starting with a letter or
/// digit (for example `2026-11` or `k1`).
#[derive(Clone, Eq, PartialOrd, Ord)]
pub struct PepperId(Arc<str>);

// Equal by content. Ids cloned from one another share their string, which every verification
// compares with the hasher's own (records read from the memory store keep the hasher's id):
// the pointer is checked first, the bytes only when it differs.
impl PartialEq for PepperId {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0) || self.0 == other.0
    }
}

// By content, as equality.
impl core::hash::Hash for PepperId {
    fn hash<H: core::hash::Hasher>(&self, state: &mut H) {
        self.0.hash(state);
    }
}

/// Why a string is not a valid [`PepperId`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PepperIdError {
    /// Empty or longer than [`MAX_PEPPER_ID_LEN`].
    #[error("pepper id must have 1 to {MAX_PEPPER_ID_LEN} characters")]
    Length,
    /// A character outside the allowed set.
    #[error("pepper id may contain only a-z, 0-9, '.' and '-', starting with a letter or digit")]
    InvalidCharacter,
}

impl PepperId {
    /// Validates a pepper id.
    ///
    /// # Errors
    /// [`PepperIdError`] when the length or a character is wrong.
    pub fn new(s: &str) -> Result<Self, PepperIdError> {
        if s.is_empty() || s.len() > MAX_PEPPER_ID_LEN {
            return Err(PepperIdError::Length);
        }
        let ok_char =
            |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-';
        let first_ok = s
            .as_bytes()
            .first()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
        if !first_ok || !s.bytes().all(ok_char) {
            return Err(PepperIdError::InvalidCharacter);
        }
        Ok(Self(s.into()))
    }

    /// The id as a string slice.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for PepperId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for PepperId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PepperId({})", self.0)
    }
}

/// A server-side secret of at least [`MIN_PEPPER_LEN`] random bytes that keys the fast hash.
///
/// Keep it outside the database (environment, secret manager): a stolen database without
/// the pepper gives an attacker nothing to test keys against. There is no default pepper.
/// The bytes are zeroized on drop; `Debug` shows only the id.
///
/// ```
/// use keyward::Pepper;
/// let pepper = Pepper::new("k1", [7u8; 32])?;
/// assert_eq!(pepper.id().as_str(), "k1");
/// assert!(Pepper::new("k1", [7u8; 16]).is_err());
/// # Ok::<(), keyward::hash::PepperError>(())
/// ```
///
/// A pepper has no `Clone`: share one through the [`Hasher`](crate::Hasher) that owns it
/// (or an `Arc`), so the secret lives in one place and is wiped once.
///
/// ```compile_fail
/// let pepper = keyward::Pepper::new("k1", [7u8; 32]).expect("pepper");
/// let copy = pepper.clone(); // a pepper is never copied
/// ```
pub struct Pepper {
    id: PepperId,
    // The HMAC state after absorbing the key: cloning it skips the key schedule on every hash.
    // hmac's `zeroize` feature wipes it on drop.
    mac: Hmac<Sha256>,
}

/// Why a [`Pepper`] cannot be built.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PepperError {
    /// The id is invalid.
    #[error(transparent)]
    Id(#[from] PepperIdError),
    /// Too few or too many bytes.
    #[error(
        "pepper has {found} bytes (expected {MIN_PEPPER_LEN} to {MAX_PEPPER_LEN} random bytes)"
    )]
    Length {
        /// Bytes given.
        found: usize,
    },
    /// The text form is not valid base64.
    #[error(
        "pepper is not valid base64 (expected [<id>:]<base64 of at least {MIN_PEPPER_LEN} random bytes>)"
    )]
    Base64,
    /// No pepper was configured.
    #[error(
        "no pepper configured (the fast hash needs a secret of at least {MIN_PEPPER_LEN} random bytes; there is no default)"
    )]
    Missing,
}

impl Pepper {
    /// A pepper from its id and secret bytes.
    ///
    /// # Errors
    /// [`PepperError`] when the id is invalid or the bytes are fewer than [`MIN_PEPPER_LEN`].
    pub fn new(id: &str, secret: impl AsRef<[u8]>) -> Result<Self, PepperError> {
        let id = PepperId::new(id)?;
        let secret = secret.as_ref();
        if !(MIN_PEPPER_LEN..=MAX_PEPPER_LEN).contains(&secret.len()) {
            return Err(PepperError::Length {
                found: secret.len(),
            });
        }
        let mac =
            <Hmac<Sha256> as KeyInit>::new_from_slice(secret).map_err(|_| PepperError::Length {
                found: secret.len(),
            })?;
        Ok(Self { id, mac })
    }

    /// Parses the text form `[<id>:]<base64>` (padded or not), as read from an environment
    /// variable such as `KEYWARD_PEPPER`; without `<id>:` the id is `default`.
    /// Generate one with `openssl rand -base64 32`.
    ///
    /// # Errors
    /// [`PepperError`] when the text is malformed or too short.
    pub fn from_text(text: &str) -> Result<Self, PepperError> {
        let (id, b64) = match text.split_once(':') {
            Some((id, b64)) => (id, b64),
            None => ("default", text),
        };
        let bytes = Zeroizing::new(
            Base64::decode_vec(b64)
                .or_else(|_| Base64Unpadded::decode_vec(b64))
                .map_err(|_| PepperError::Base64)?,
        );
        Self::new(id, &*bytes)
    }

    /// A pepper of 32 fresh random bytes from the operating system, with the given id.
    ///
    /// # Errors
    /// [`PepperError::Id`] for a bad id; [`PepperError::Missing`] if the operating system
    /// cannot provide randomness.
    pub fn random(id: &str) -> Result<Self, PepperError> {
        let mut bytes = Zeroizing::new([0u8; MIN_PEPPER_LEN]);
        getrandom::fill(&mut bytes[..]).map_err(|_| PepperError::Missing)?;
        Self::new(id, &bytes[..])
    }

    /// The pepper's id.
    #[must_use]
    pub fn id(&self) -> &PepperId {
        &self.id
    }

    pub(crate) fn mac(&self) -> Hmac<Sha256> {
        self.mac.clone()
    }
}

impl fmt::Debug for Pepper {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pepper")
            .field("id", &self.id)
            .field("secret", &"<redacted>")
            .finish()
    }
}
