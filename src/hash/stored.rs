//! The stored hash: a PHC-format string such as `$argon2id$v=19$m=19456,t=2,p=1$salt$hash`.

use core::fmt;
use core::str::FromStr;

use base64ct::{Base64Unpadded, Encoding};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::argon2id::Argon2Params;
use super::pepper::{PepperId, PepperIdError};

/// Longest stored-hash string accepted, in bytes.
pub const MAX_STORED_HASH_LEN: usize = 256;

/// Length of an HMAC-SHA256 digest.
pub(crate) const HMAC_LEN: usize = 32;

/// Bounds on the salt of an Argon2id hash, in bytes.
pub const ARGON2_SALT_LEN: core::ops::RangeInclusive<usize> = 8..=64;
/// Bounds on the output of an Argon2id hash, in bytes.
pub const ARGON2_OUTPUT_LEN: core::ops::RangeInclusive<usize> = 16..=64;

/// A key's hash as kept at rest, in the PHC string format.
///
/// These algorithms are understood:
///
/// | algorithm | string |
/// |---|---|
/// | fast keyed hash | `$hmac-sha256$pid=<pepper id>$<digest>` |
/// | Argon2id | `$argon2id$v=19$m=<KiB>,t=<passes>,p=<lanes>$<salt>$<digest>` |
/// | imported: SHA-256 of the whole token | `$foreign-sha256$pid=<pepper id>$<digest>` |
/// | imported: prefixed-api-key (`prefix_short_long`) | `$foreign-pak-sha256$pid=<pepper id>$<digest>` |
///
/// The two `foreign-` forms are keys imported from another system, known only by the
/// SHA-256 digest that system kept ([`StoredHash::is_foreign`]). Their digest is not that
/// SHA-256 but an HMAC of it under the named pepper, so the database holds no public
/// digest of a legacy token; the first successful verification replaces them with a hash
/// of the current settings (see the README, "Migrating from another system").
///
/// Binary fields are base64 without padding (the PHC "B64" encoding). The HMAC form has no
/// salt: its secret key is the server-side pepper, named by id, and the last field is the
/// digest. Argon2id strings are the standard ones, so hashes made by other Argon2
/// implementations (argon2-cffi, libargon2) parse and verify, and ours verify there.
///
/// `FromStr` is strict (canonical parameter order, canonical numbers, no padding), so
/// `Display` writes back exactly the string that was parsed.
///
/// ```
/// use keyward::{StoredHash, hash::HashAlgorithm};
/// let s = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$3gMx2aW5ZrwlT3Q0VeTgcNVv5GY0+9XnO2+ZZiEnYkM";
/// let stored: StoredHash = s.parse()?;
/// assert_eq!(stored.algorithm(), HashAlgorithm::Argon2id);
/// let params = stored.argon2_params().expect("argon2");
/// assert_eq!((params.m_cost(), params.t_cost(), params.p_cost()), (19456, 2, 1));
/// assert_eq!(stored.to_string(), s);
/// # Ok::<(), keyward::hash::HashParseError>(())
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct StoredHash {
    kind: Kind,
    digest: Digest,
}

/// Digest bytes: 32-byte digests (every HMAC-SHA256 one, and Argon2id's default output)
/// are kept inline, so verifying a key reads no other allocation than its record.
#[derive(Clone, PartialEq, Eq)]
enum Digest {
    Inline([u8; HMAC_LEN]),
    Heap(Box<[u8]>),
}

impl Digest {
    fn new(bytes: Vec<u8>) -> Self {
        match <[u8; HMAC_LEN]>::try_from(bytes.as_slice()) {
            Ok(inline) => Self::Inline(inline),
            Err(_) => Self::Heap(bytes.into_boxed_slice()),
        }
    }

    fn as_slice(&self) -> &[u8] {
        match self {
            Self::Inline(bytes) => bytes,
            Self::Heap(bytes) => bytes,
        }
    }
}

#[derive(Clone, PartialEq, Eq)]
pub(crate) enum Kind {
    Hmac {
        pepper: PepperId,
    },
    Argon2 {
        params: Argon2Params,
        salt: Vec<u8>,
    },
    Foreign {
        scheme: ForeignScheme,
        pepper: PepperId,
    },
}

/// How another system digested the keys imported from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ForeignScheme {
    /// SHA-256 of the whole token (Unkey and most home-grown systems).
    Sha256,
    /// The seamapi / prefixed-api-key scheme: tokens read `prefix_short_long`, and the
    /// system kept the SHA-256 of the long token.
    PrefixedApiKey,
}

impl ForeignScheme {
    /// The stored-hash identifier, such as `foreign-sha256`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sha256 => "foreign-sha256",
            Self::PrefixedApiKey => "foreign-pak-sha256",
        }
    }

    /// A one-byte tag that separates the schemes' derivations (ids and stored digests).
    pub(crate) fn tag(self) -> u8 {
        match self {
            Self::Sha256 => 1,
            Self::PrefixedApiKey => 2,
        }
    }
}

impl fmt::Display for ForeignScheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The algorithm of a [`StoredHash`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum HashAlgorithm {
    /// HMAC-SHA256 keyed by a server-side pepper (the default).
    HmacSha256,
    /// Argon2id.
    Argon2id,
    /// A key imported from another system, still on its foreign digest.
    Foreign(ForeignScheme),
}

impl HashAlgorithm {
    /// The PHC identifier, such as `argon2id`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::HmacSha256 => "hmac-sha256",
            Self::Argon2id => "argon2id",
            Self::Foreign(scheme) => scheme.as_str(),
        }
    }
}

impl fmt::Display for HashAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a string is not a valid [`StoredHash`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HashParseError {
    /// The string is empty.
    #[error("stored hash is empty")]
    Empty,
    /// The string is too long.
    #[error("stored hash too long (maximum {MAX_STORED_HASH_LEN} characters)")]
    TooLong,
    /// The string does not start with `$`.
    #[error("stored hash must start with '$' (PHC string format)")]
    MissingDollar,
    /// The algorithm identifier is not one keyward understands.
    #[error(
        "unsupported hash algorithm (expected hmac-sha256, argon2id, foreign-sha256 or foreign-pak-sha256)"
    )]
    UnsupportedAlgorithm,
    /// The Argon2 version is not 19 (0x13).
    #[error("unsupported argon2 version (expected v=19)")]
    UnsupportedVersion,
    /// The number of `$`-separated fields is wrong for the algorithm.
    #[error("stored hash has {found} fields (expected {expected} for this algorithm)")]
    FieldCount {
        /// Fields expected after the algorithm identifier.
        expected: usize,
        /// Fields found.
        found: usize,
    },
    /// A parameter is missing, unknown, out of order or not a canonical decimal number.
    #[error("invalid parameter {name} (expected {expected})")]
    InvalidParam {
        /// The parameter name.
        name: &'static str,
        /// What was expected.
        expected: &'static str,
    },
    /// Argon2 parameters out of the accepted bounds.
    #[error(transparent)]
    Argon2Params(#[from] super::argon2id::Argon2ParamsError),
    /// The pepper id is malformed.
    #[error(transparent)]
    PepperId(#[from] PepperIdError),
    /// A binary field is not valid unpadded base64.
    #[error("{field} is not valid unpadded base64")]
    Base64 {
        /// `salt` or `digest`.
        field: &'static str,
    },
    /// A binary field has the wrong length.
    #[error("{field} has {found} bytes (expected {min} to {max})")]
    Length {
        /// `salt` or `digest`.
        field: &'static str,
        /// Bytes found.
        found: usize,
        /// Fewest bytes accepted.
        min: usize,
        /// Most bytes accepted.
        max: usize,
    },
}

impl StoredHash {
    pub(crate) fn hmac(pepper: PepperId, digest: [u8; HMAC_LEN]) -> Self {
        Self {
            kind: Kind::Hmac { pepper },
            digest: Digest::Inline(digest),
        }
    }

    pub(crate) fn argon2(params: Argon2Params, salt: Vec<u8>, digest: Vec<u8>) -> Self {
        Self {
            kind: Kind::Argon2 { params, salt },
            digest: Digest::new(digest),
        }
    }

    pub(crate) fn foreign(scheme: ForeignScheme, pepper: PepperId, digest: [u8; HMAC_LEN]) -> Self {
        Self {
            kind: Kind::Foreign { scheme, pepper },
            digest: Digest::Inline(digest),
        }
    }

    pub(crate) fn kind(&self) -> &Kind {
        &self.kind
    }

    pub(crate) fn digest(&self) -> &[u8] {
        self.digest.as_slice()
    }

    /// The algorithm.
    #[must_use]
    pub fn algorithm(&self) -> HashAlgorithm {
        match self.kind {
            Kind::Hmac { .. } => HashAlgorithm::HmacSha256,
            Kind::Argon2 { .. } => HashAlgorithm::Argon2id,
            Kind::Foreign { scheme, .. } => HashAlgorithm::Foreign(scheme),
        }
    }

    /// Whether this is the digest of a key imported from another system, not yet upgraded
    /// by a successful verification (listings use it to show which keys to rotate).
    ///
    /// ```
    /// use keyward::StoredHash;
    /// let imported: StoredHash = "$foreign-sha256$pid=k1$GPO/wXplk6TnSaxjNykgAo38qe03cXfN8cMHeVm7p1k".parse()?;
    /// assert!(imported.is_foreign());
    /// let native: StoredHash = "$hmac-sha256$pid=k1$GPO/wXplk6TnSaxjNykgAo38qe03cXfN8cMHeVm7p1k".parse()?;
    /// assert!(!native.is_foreign());
    /// # Ok::<(), keyward::hash::HashParseError>(())
    /// ```
    #[must_use]
    pub fn is_foreign(&self) -> bool {
        matches!(self.kind, Kind::Foreign { .. })
    }

    /// The scheme of an imported key's foreign digest, `None` for keyward's own hashes.
    #[must_use]
    pub fn foreign_scheme(&self) -> Option<ForeignScheme> {
        match self.kind {
            Kind::Foreign { scheme, .. } => Some(scheme),
            _ => None,
        }
    }

    /// The pepper id of an HMAC hash or of an imported key's digest, `None` for Argon2id.
    #[must_use]
    pub fn pepper_id(&self) -> Option<&PepperId> {
        match &self.kind {
            Kind::Hmac { pepper } | Kind::Foreign { pepper, .. } => Some(pepper),
            Kind::Argon2 { .. } => None,
        }
    }

    /// The parameters of an Argon2id hash, `None` for the others.
    #[must_use]
    pub fn argon2_params(&self) -> Option<Argon2Params> {
        match &self.kind {
            Kind::Argon2 { params, .. } => Some(*params),
            Kind::Hmac { .. } | Kind::Foreign { .. } => None,
        }
    }

    /// Length of the digest in bytes.
    #[must_use]
    pub fn digest_len(&self) -> usize {
        self.digest.as_slice().len()
    }

    /// Length of the salt in bytes (0 for HMAC, which has none).
    #[must_use]
    pub fn salt_len(&self) -> usize {
        match &self.kind {
            Kind::Argon2 { salt, .. } => salt.len(),
            Kind::Hmac { .. } | Kind::Foreign { .. } => 0,
        }
    }
}

impl FromStr for StoredHash {
    type Err = HashParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() {
            return Err(HashParseError::Empty);
        }
        if s.len() > MAX_STORED_HASH_LEN {
            return Err(HashParseError::TooLong);
        }
        let rest = s.strip_prefix('$').ok_or(HashParseError::MissingDollar)?;
        let mut fields = rest.split('$');
        let id = fields.next().unwrap_or_default();
        let fields: Vec<&str> = fields.collect();
        let foreign = match id {
            "foreign-sha256" => Some(ForeignScheme::Sha256),
            "foreign-pak-sha256" => Some(ForeignScheme::PrefixedApiKey),
            _ => None,
        };
        match id {
            "hmac-sha256" | "foreign-sha256" | "foreign-pak-sha256" => {
                let [pid, digest] = fields[..] else {
                    return Err(HashParseError::FieldCount {
                        expected: 2,
                        found: fields.len(),
                    });
                };
                let pid = pid
                    .strip_prefix("pid=")
                    .ok_or(HashParseError::InvalidParam {
                        name: "pid",
                        expected: "pid=<pepper id>",
                    })?;
                let pepper = PepperId::new(pid)?;
                let digest = decode("digest", digest, HMAC_LEN..=HMAC_LEN)?;
                let kind = match foreign {
                    Some(scheme) => Kind::Foreign { scheme, pepper },
                    None => Kind::Hmac { pepper },
                };
                Ok(Self {
                    kind,
                    digest: Digest::new(digest),
                })
            }
            "argon2id" => {
                let [version, params, salt, digest] = fields[..] else {
                    return Err(HashParseError::FieldCount {
                        expected: 4,
                        found: fields.len(),
                    });
                };
                if version != "v=19" {
                    return Err(HashParseError::UnsupportedVersion);
                }
                let mut parts = params.split(',');
                let m = number(parts.next(), "m=", "m")?;
                let t = number(parts.next(), "t=", "t")?;
                let p = number(parts.next(), "p=", "p")?;
                if parts.next().is_some() {
                    return Err(HashParseError::InvalidParam {
                        name: "params",
                        expected: "exactly m, t and p, in that order",
                    });
                }
                let params = Argon2Params::new(m, t, p)?;
                let salt = decode("salt", salt, ARGON2_SALT_LEN)?;
                let digest = decode("digest", digest, ARGON2_OUTPUT_LEN)?;
                Ok(Self {
                    kind: Kind::Argon2 { params, salt },
                    digest: Digest::new(digest),
                })
            }
            _ => Err(HashParseError::UnsupportedAlgorithm),
        }
    }
}

fn number(part: Option<&str>, prefix: &str, name: &'static str) -> Result<u32, HashParseError> {
    let err = HashParseError::InvalidParam {
        name,
        expected: "a canonical decimal number, in the order m, t, p",
    };
    let digits = part.and_then(|p| p.strip_prefix(prefix)).ok_or(err)?;
    let canonical = !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit())
        && (digits == "0" || !digits.starts_with('0'))
        && digits.len() <= 10;
    if !canonical {
        return Err(err);
    }
    digits.parse().map_err(|_| err)
}

fn decode(
    field: &'static str,
    b64: &str,
    len: core::ops::RangeInclusive<usize>,
) -> Result<Vec<u8>, HashParseError> {
    let bytes = Base64Unpadded::decode_vec(b64).map_err(|_| HashParseError::Base64 { field })?;
    if !len.contains(&bytes.len()) {
        return Err(HashParseError::Length {
            field,
            found: bytes.len(),
            min: *len.start(),
            max: *len.end(),
        });
    }
    Ok(bytes)
}

impl fmt::Display for StoredHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::Hmac { pepper } => write!(f, "$hmac-sha256$pid={pepper}$")?,
            Kind::Foreign { scheme, pepper } => write!(f, "${scheme}$pid={pepper}$")?,
            Kind::Argon2 { params, salt } => write!(
                f,
                "$argon2id$v=19$m={},t={},p={}${}$",
                params.m_cost(),
                params.t_cost(),
                params.p_cost(),
                Base64Unpadded::encode_string(salt)
            )?,
        }
        f.write_str(&Base64Unpadded::encode_string(self.digest.as_slice()))
    }
}

impl fmt::Debug for StoredHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Parameters are useful in logs; salt and digest are not, so they are left out.
        let mut d = f.debug_struct("StoredHash");
        d.field("algorithm", &self.algorithm());
        match &self.kind {
            Kind::Hmac { pepper } | Kind::Foreign { pepper, .. } => d.field("pepper_id", pepper),
            Kind::Argon2 { params, .. } => d.field("params", params),
        };
        d.finish_non_exhaustive()
    }
}

impl Serialize for StoredHash {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        crate::text::serialize(self, serializer)
    }
}

impl<'de> Deserialize<'de> for StoredHash {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        crate::text::deserialize(
            deserializer,
            "a stored hash such as \"$hmac-sha256$pid=k1$...\"",
        )
    }
}
