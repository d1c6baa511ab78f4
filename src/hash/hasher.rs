//! The hasher: makes stored hashes, verifies presented keys against them in constant time,
//! and says when a stored hash should be upgraded.

use core::fmt;
use std::collections::BTreeMap;

use hmac::Mac;
use zeroize::Zeroizing;

use super::argon2id::Argon2Params;
use super::cache::VerifyCache;
use super::compare::ct_eq;
use super::pepper::{Pepper, PepperId};
use super::stored::{HMAC_LEN, HashAlgorithm, Kind, StoredHash};
use crate::key::parse::ParsedKey;

/// Salt bytes for new Argon2id hashes.
const ARGON2_SALT: usize = 16;
/// Output bytes for new Argon2id hashes.
const ARGON2_OUT: usize = 32;

/// Hashes keys for storage and verifies presented keys against stored hashes.
///
/// The default is the **fast keyed hash**: HMAC-SHA256 of the whole key string under a
/// server-side [`Pepper`]. Keys carry at least 128 bits of randomness, so a slow password
/// hash adds no security against guessing and costs orders of magnitude more per request
/// (BENCHMARKS.md, Hot path: "Argon2id verify" against "fast verify"); the pepper means a
/// stolen database alone cannot even be tested against. Argon2id is available for policies
/// that demand it.
///
/// ```
/// use keyward::{Hasher, KeyFormat, Pepper};
/// let hasher = Hasher::fast(Pepper::new("k1", [42u8; 32])?);
/// let format = KeyFormat::new(["tak"])?;
/// let key = format.generate()?;
/// let stored = hasher.hash(&key.as_parsed())?;
/// assert!(stored.to_string().starts_with("$hmac-sha256$pid=k1$"));
/// assert!(hasher.verify(&key.as_parsed(), &stored).is_ok());
/// let other = format.generate()?;
/// assert!(hasher.verify(&other.as_parsed(), &stored).is_err());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// # What is constant time
/// The digest computed from the presented key (the 32-byte HMAC-SHA-256 tag, or the Argon2id
/// output of the stored length) is compared with the stored digest by a word-folded
/// comparison: after a length check (lengths are public), every 8-byte word of both is
/// XOR-ed and OR-ed into one accumulator behind an optimization barrier, and only that
/// accumulator is compared with zero, by [`subtle`]'s constant-time equality, then turned
/// into a `bool` once. No branch or memory access depends on the bytes, so the time taken
/// does not depend on how many leading bytes match. The hash computation itself takes
/// time that depends only on the key's length and the parameters, never on the secret's
/// value. Verifying against a stored hash whose pepper is unknown fails after computing the
/// same HMAC. [`Hasher::verify_absent`] spends one hash with the current settings so that an
/// unknown key id costs the same as a wrong secret. Not hidden: which algorithm and
/// parameters a stored hash uses (an Argon2 hash is slower than an HMAC), and, with the
/// Argon2 cache, whether a key was verified recently (a cache hit is fast). Key ids are public
/// identifiers, so these reveal nothing about secrets.
pub struct Hasher {
    current: Current,
    /// Accepted peppers; for the fast hasher the first is the current one.
    peppers: Vec<Pepper>,
    cache: Option<VerifyCache>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Current {
    Fast,
    Argon2(Argon2Params),
}

/// The presented key does not match the stored hash.
///
/// Deliberately opaque: the same value for a wrong secret, a digest mismatch, an unknown
/// pepper or an unusable stored hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the key does not match the stored hash")]
pub struct Mismatch;

/// A hash could not be computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HashError {
    /// The operating system could not provide a salt.
    #[error("the random number generator failed while making a salt")]
    Rng,
    /// Argon2 refused its inputs or could not allocate its memory.
    #[error("argon2 failed (memory could not be allocated or inputs out of range)")]
    Argon2,
}

/// Why a [`Hasher`] configuration is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HashConfigError {
    /// Two peppers share an id.
    #[error("pepper id {0} is configured twice")]
    DuplicatePepper(PepperId),
}

impl Hasher {
    /// The fast keyed hash (HMAC-SHA256) with `pepper` as the current pepper.
    #[must_use]
    pub fn fast(pepper: Pepper) -> Self {
        Self {
            current: Current::Fast,
            peppers: vec![pepper],
            cache: None,
        }
    }

    /// Argon2id with `params` for new hashes. Add peppers with [`Hasher::accept_pepper`] to
    /// keep verifying (and upgrading) keys hashed with the fast hash.
    #[must_use]
    pub fn argon2(params: Argon2Params) -> Self {
        Self {
            current: Current::Argon2(params),
            peppers: Vec::new(),
            cache: None,
        }
    }

    /// Also accepts hashes made with `pepper`, without making it current. This is both step
    /// one of a pepper rotation (every instance accepts the new pepper before any makes it
    /// current) and the way to keep verifying keys on a retiring pepper; such keys are
    /// rehashed with the current pepper when they next verify.
    ///
    /// # Errors
    /// [`HashConfigError::DuplicatePepper`] if a pepper with the same id is configured.
    pub fn accept_pepper(mut self, pepper: Pepper) -> Result<Self, HashConfigError> {
        if self.peppers.iter().any(|p| p.id() == pepper.id()) {
            return Err(HashConfigError::DuplicatePepper(pepper.id().clone()));
        }
        self.peppers.push(pepper);
        Ok(self)
    }

    /// Enables the Argon2 verification cache with room for `capacity` keys (see the README's
    /// Hashing section). It has no effect on HMAC hashes, which are already fast. If the
    /// operating system cannot seed the cache's key, the cache stays off.
    #[must_use]
    pub fn with_verify_cache(mut self, capacity: usize) -> Self {
        self.cache = VerifyCache::new(capacity);
        self
    }

    /// The algorithm used for new hashes.
    #[must_use]
    pub fn algorithm(&self) -> HashAlgorithm {
        match self.current {
            Current::Fast => HashAlgorithm::HmacSha256,
            Current::Argon2(_) => HashAlgorithm::Argon2id,
        }
    }

    /// The pepper used for new fast hashes (`None` when the current algorithm is Argon2id).
    #[must_use]
    pub fn current_pepper(&self) -> Option<&PepperId> {
        match self.current {
            Current::Fast => self.peppers.first().map(Pepper::id),
            Current::Argon2(_) => None,
        }
    }

    /// Hashes a key with the current settings.
    ///
    /// # Errors
    /// [`HashError`] if no salt could be drawn or Argon2 failed.
    pub fn hash(&self, key: &ParsedKey<'_>) -> Result<StoredHash, HashError> {
        self.hash_secret(key.expose_secret())
    }

    /// Hashes a whole token string with the current settings: a keyward key, or a legacy
    /// token when an imported key is upgraded.
    pub(crate) fn hash_secret(&self, secret: &str) -> Result<StoredHash, HashError> {
        match self.current {
            Current::Fast => {
                let pepper = self.peppers.first().ok_or(HashError::Rng)?;
                Ok(StoredHash::hmac(
                    pepper.id().clone(),
                    hmac_digest(pepper, secret),
                ))
            }
            Current::Argon2(params) => {
                let mut salt = [0u8; ARGON2_SALT];
                getrandom::fill(&mut salt).map_err(|_| HashError::Rng)?;
                let mut out = vec![0u8; ARGON2_OUT];
                params
                    .compute(secret.as_bytes(), &salt, &mut out)
                    .map_err(|()| HashError::Argon2)?;
                Ok(StoredHash::argon2(params, salt.to_vec(), out))
            }
        }
    }

    /// Verifies a presented key against its stored hash, comparing digests in constant time.
    ///
    /// # Errors
    /// [`Mismatch`], the same for every kind of failure.
    pub fn verify(&self, key: &ParsedKey<'_>, stored: &StoredHash) -> Result<(), Mismatch> {
        self.verify_secret(key.expose_secret(), key.key_id(), stored)
    }

    /// [`Hasher::verify`] for a whole token string whose record has id `id` (the Argon2
    /// cache's key): a keyward key, or an upgraded legacy token.
    pub(crate) fn verify_secret(
        &self,
        presented: &str,
        id: crate::KeyId,
        stored: &StoredHash,
    ) -> Result<(), Mismatch> {
        match stored.kind() {
            Kind::Foreign { .. } => {
                // A foreign digest is checked only on the legacy path, never against a
                // whole keyward key: the same work as a mismatching HMAC, then a refusal.
                if let Some(p) = self.peppers.first() {
                    let digest = hmac_digest(p, presented);
                    core::hint::black_box(ct_eq(&digest, stored.digest()));
                }
                Err(Mismatch)
            }
            Kind::Hmac { pepper } => {
                let found = self.peppers.iter().find(|p| p.id() == pepper);
                // An unknown pepper still costs one HMAC, with the current pepper or none.
                let Some(p) = found.or(self.peppers.first()) else {
                    return Err(Mismatch);
                };
                let digest = hmac_digest(p, presented);
                let equal = ct_eq(&digest, stored.digest());
                if equal && found.is_some() {
                    Ok(())
                } else {
                    Err(Mismatch)
                }
            }
            Kind::Argon2 { params, salt } => {
                if let Some(cache) = &self.cache
                    && cache.hit(id, presented, stored)
                {
                    return Ok(());
                }
                let mut out = Zeroizing::new(vec![0u8; stored.digest_len()]);
                params
                    .compute(presented.as_bytes(), salt, &mut out)
                    .map_err(|()| Mismatch)?;
                if ct_eq(&out, stored.digest()) {
                    if let Some(cache) = &self.cache {
                        cache.insert(id, presented, stored);
                    }
                    Ok(())
                } else {
                    if let Some(cache) = &self.cache {
                        cache.forget(id);
                    }
                    Err(Mismatch)
                }
            }
        }
    }

    /// Spends the cost of one verification with the current settings, for a key whose id is
    /// unknown, so that timing does not tell an unknown id from a wrong secret.
    pub fn verify_absent(&self, key: &ParsedKey<'_>) {
        let presented = key.expose_secret();
        match self.current {
            Current::Fast => {
                if let Some(p) = self.peppers.first() {
                    let digest = hmac_digest(p, presented);
                    core::hint::black_box(ct_eq(&digest, &[0u8; HMAC_LEN]));
                }
            }
            Current::Argon2(params) => {
                let mut out = Zeroizing::new([0u8; ARGON2_OUT]);
                let _ = params.compute(presented.as_bytes(), &[0u8; ARGON2_SALT], &mut out[..]);
                core::hint::black_box(&out);
            }
        }
    }

    /// Every accepted pepper, the current one first for the fast hasher.
    pub(super) fn peppers(&self) -> &[Pepper] {
        &self.peppers
    }

    /// Forgets a key in the Argon2 verification cache (the manager calls this when a key
    /// changes state).
    pub fn forget_cached(&self, key_id: crate::KeyId) {
        if let Some(cache) = &self.cache {
            cache.forget(key_id);
        }
    }

    /// Whether `stored` should be replaced by a fresh hash after a successful verification:
    /// it uses another algorithm than the current one, weaker Argon2 parameters, a shorter
    /// salt or digest, or a pepper that is accepted but not current.
    #[must_use]
    pub fn needs_rehash(&self, stored: &StoredHash) -> bool {
        match (self.current, stored.kind()) {
            (Current::Fast, Kind::Hmac { pepper }) => self.current_pepper() != Some(pepper),
            (Current::Argon2(current), Kind::Argon2 { params, salt }) => {
                params.weaker_than(&current)
                    || salt.len() < ARGON2_SALT
                    || stored.digest_len() < ARGON2_OUT
            }
            _ => true,
        }
    }

    /// Counts stored hashes by pepper id (`None` for Argon2id hashes), to see how many keys
    /// still depend on a retiring pepper. Keys that are never used are never rehashed, so a
    /// pepper can only be dropped once its count is zero (or its keys are revoked).
    #[must_use]
    pub fn census<'a>(
        hashes: impl IntoIterator<Item = &'a StoredHash>,
    ) -> BTreeMap<Option<PepperId>, usize> {
        let mut counts = BTreeMap::new();
        for h in hashes {
            *counts.entry(h.pepper_id().cloned()).or_insert(0) += 1;
        }
        counts
    }
}

/// HMAC-SHA256 of `key` under `pepper`. `Pepper::mac` clones an HMAC state kept after the
/// key schedule instead of keying a new one, which saves two SHA-256 compressions per hash:
/// that is why BENCHMARKS.md, Hot path: "fast hash (HMAC-SHA256, peppered)" and "fast
/// verify" come in below their primitive, raw HMAC-SHA256 including key setup.
pub(super) fn hmac_digest(pepper: &Pepper, key: &str) -> [u8; HMAC_LEN] {
    let mut mac = pepper.mac();
    mac.update(key.as_bytes());
    mac.finalize().into_bytes().into()
}

impl fmt::Debug for Hasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let peppers: Vec<&PepperId> = self.peppers.iter().map(Pepper::id).collect();
        f.debug_struct("Hasher")
            .field("current", &self.current)
            .field("peppers", &peppers)
            .field("cache", &self.cache.as_ref().map(VerifyCache::len))
            .finish()
    }
}
