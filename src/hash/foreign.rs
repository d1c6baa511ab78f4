//! Keys imported from another system, known only by the SHA-256 digest that system kept:
//! the public id derived from that digest, the peppered form stored in place of it, and
//! its verification.
//!
//! Both derivations are HMAC-SHA256 under a [`Pepper`], with their own domain string and
//! the scheme's tag, so the id (which appears in logs and listings) and the stored digest
//! are unrelated values, and neither can be computed, nor a guess tested against them,
//! without the pepper.

use hmac::Mac;
use sha2::{Digest as _, Sha256};

use super::compare::ct_eq;
use super::hasher::{Hasher, Mismatch};
use super::pepper::Pepper;
use super::stored::{ForeignScheme, HMAC_LEN, Kind, StoredHash};
use crate::key::alphabet::encode_padded;
use crate::key::id::KeyId;

/// Length of the SHA-256 digest another system kept.
pub const FOREIGN_DIGEST_LEN: usize = 32;

/// Characters of an imported key's id: 128 bits of an HMAC in base62.
pub(crate) const FOREIGN_ID_LEN: usize = 22;

const ID_DOMAIN: &[u8] = b"keyward/foreign-id/v1\0";
const STORED_DOMAIN: &[u8] = b"keyward/foreign-digest/v1\0";

/// What identifies an imported key: the other system's digest and, for the
/// prefixed-api-key scheme, the public parts of the token that digest does not cover.
#[derive(Clone, Copy)]
pub(crate) struct ForeignKey<'a> {
    pub(crate) scheme: ForeignScheme,
    /// SHA-256 of the whole token (`Sha256`) or of the long token (`PrefixedApiKey`).
    pub(crate) digest: [u8; FOREIGN_DIGEST_LEN],
    /// `PrefixedApiKey` only: the prefix and the short token, bound into the stored digest
    /// (empty for `Sha256`, whose digest covers the whole token).
    pub(crate) prefix: &'a str,
    pub(crate) short: &'a str,
}

impl<'a> ForeignKey<'a> {
    /// A whole-token SHA-256 digest.
    pub(crate) fn sha256(digest: [u8; FOREIGN_DIGEST_LEN]) -> Self {
        Self {
            scheme: ForeignScheme::Sha256,
            digest,
            prefix: "",
            short: "",
        }
    }

    /// A prefixed-api-key token's parts: its prefix, short token and the long token's
    /// SHA-256.
    pub(crate) fn prefixed(prefix: &'a str, short: &'a str, digest: [u8; 32]) -> Self {
        Self {
            scheme: ForeignScheme::PrefixedApiKey,
            digest,
            prefix,
            short,
        }
    }

    /// SHA-256 of `bytes`, as the other system computed it.
    pub(crate) fn sha256_of(bytes: &[u8]) -> [u8; FOREIGN_DIGEST_LEN] {
        Sha256::digest(bytes).into()
    }

    /// The key id under `pepper`: the first 128 bits of an HMAC of the digest, in base62.
    pub(crate) fn id(&self, pepper: &Pepper) -> KeyId {
        let mut mac = pepper.mac();
        mac.update(ID_DOMAIN);
        mac.update(&[self.scheme.tag()]);
        mac.update(&self.digest);
        let tag: [u8; HMAC_LEN] = mac.finalize().into_bytes().into();
        let mut first = [0u8; 16];
        first.copy_from_slice(&tag[..16]);
        // Any u128 fits in 22 base62 digits, so the fallback (all zeros) is never taken.
        let chars: [u8; FOREIGN_ID_LEN] =
            encode_padded(u128::from_le_bytes(first)).unwrap_or([b'0'; FOREIGN_ID_LEN]);
        KeyId::from_base62_unchecked_len(&chars)
    }

    /// The digest stored in place of the other system's, under `pepper`.
    fn stored_digest(&self, pepper: &Pepper) -> [u8; HMAC_LEN] {
        let mut mac = pepper.mac();
        mac.update(STORED_DOMAIN);
        mac.update(&[self.scheme.tag()]);
        mac.update(&self.digest);
        if self.scheme == ForeignScheme::PrefixedApiKey {
            // Length-prefixed, so that no two (prefix, short) pairs feed the same bytes.
            for part in [self.prefix, self.short] {
                mac.update(&(part.len() as u64).to_le_bytes());
                mac.update(part.as_bytes());
            }
        }
        mac.finalize().into_bytes().into()
    }
}

impl Hasher {
    /// The ids an imported key may have: one per accepted pepper, the current one first.
    pub(crate) fn foreign_ids(&self, key: &ForeignKey<'_>) -> impl Iterator<Item = KeyId> {
        self.peppers().iter().map(|p| key.id(p))
    }

    /// The id and stored hash of a key imported now, under the current pepper (the first
    /// accepted one for an Argon2id hasher); `None` when no pepper is configured.
    pub(crate) fn foreign_record(&self, key: &ForeignKey<'_>) -> Option<(KeyId, StoredHash)> {
        let pepper = self.peppers().first()?;
        Some((
            key.id(pepper),
            StoredHash::foreign(key.scheme, pepper.id().clone(), key.stored_digest(pepper)),
        ))
    }

    /// Verifies a legacy token's parts against an imported key's stored hash, in constant
    /// time; the same work (one HMAC) whatever the outcome.
    pub(crate) fn verify_foreign(
        &self,
        key: &ForeignKey<'_>,
        stored: &StoredHash,
    ) -> Result<(), Mismatch> {
        let (scheme, pepper) = match stored.kind() {
            Kind::Foreign { scheme, pepper } => (Some(*scheme), Some(pepper)),
            _ => (None, None),
        };
        let found = self.peppers().iter().find(|p| Some(p.id()) == pepper);
        let Some(p) = found.or(self.peppers().first()) else {
            return Err(Mismatch);
        };
        let digest = key.stored_digest(p);
        let equal = ct_eq(&digest, stored.digest());
        if equal && found.is_some() && scheme == Some(key.scheme) {
            Ok(())
        } else {
            Err(Mismatch)
        }
    }

    /// Spends the work of [`Hasher::verify_foreign`] for a legacy token whose id is unknown.
    pub(crate) fn foreign_absent(&self, key: &ForeignKey<'_>) {
        if let Some(p) = self.peppers().first() {
            let digest = key.stored_digest(p);
            core::hint::black_box(ct_eq(&digest, &[0u8; HMAC_LEN]));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pepper(id: &str, byte: u8) -> Pepper {
        Pepper::new(id, [byte; 32]).expect("pepper")
    }

    #[test]
    fn ids_are_base62_of_fixed_length_and_depend_on_the_pepper() {
        let key = ForeignKey::sha256(ForeignKey::sha256_of(b"old_sk_abc"));
        let a = key.id(&pepper("k1", 1));
        let b = key.id(&pepper("k2", 2));
        assert_eq!(a.len(), FOREIGN_ID_LEN);
        assert_ne!(a, b);
        assert_eq!(KeyId::new(a.as_str()), Ok(a));
        // Another scheme over the same digest has another id.
        let other = ForeignKey::prefixed("", "", key.digest);
        assert_ne!(other.id(&pepper("k1", 1)), a);
    }

    #[test]
    fn stored_digest_verifies_only_the_same_key() {
        let hasher = Hasher::fast(pepper("k1", 1));
        let digest = ForeignKey::sha256_of(b"long");
        let key = ForeignKey::prefixed("acme", "short", digest);
        let (_, stored) = hasher.foreign_record(&key).expect("pepper");
        assert!(stored.is_foreign());
        assert_eq!(hasher.verify_foreign(&key, &stored), Ok(()));
        for other in [
            ForeignKey::prefixed("acme", "shorT", digest),
            ForeignKey::prefixed("acmes", "hort", digest),
            ForeignKey::prefixed("acme", "short", ForeignKey::sha256_of(b"lonG")),
            ForeignKey::sha256(digest),
        ] {
            assert_eq!(hasher.verify_foreign(&other, &stored), Err(Mismatch));
        }
        // Another pepper of the same id does not verify, nor does an unknown pepper.
        assert_eq!(
            Hasher::fast(pepper("k1", 2)).verify_foreign(&key, &stored),
            Err(Mismatch)
        );
        assert_eq!(
            Hasher::fast(pepper("k2", 1)).verify_foreign(&key, &stored),
            Err(Mismatch)
        );
    }
}
