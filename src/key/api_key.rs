//! The owned key that generation returns, and how it is generated.

use core::fmt;

use rand_core::TryCryptoRng;
use zeroize::{Zeroize, Zeroizing};

use crate::key::alphabet::BASE62;
use crate::key::checksum::{CHECKSUM_LEN, checksum};
use crate::key::format::KeyFormat;
use crate::key::id::KeyId;
use crate::key::parse::ParsedKey;

/// A freshly generated key: the plaintext that is shown to its owner once.
///
/// It has no `Clone`, `PartialEq` or `Serialize`, and its `Debug` and `Display` print only
/// the redacted preview. The key string is reached through [`ApiKey::expose_secret`], a name
/// that is easy to find in review.
///
/// The string is overwritten with zeros when the `ApiKey` is dropped (best effort: copies the
/// caller makes with `expose_secret().to_owned()`, in HTTP response buffers, or that the
/// operating system swapped out are not covered).
pub struct ApiKey {
    // Exactly `prefix_len + 1 + id_len + secret_len + CHECKSUM_LEN` ASCII bytes, allocated
    // once at the right capacity so no reallocation leaves a stray copy behind.
    full: Zeroizing<String>,
    prefix_len: usize,
    id_len: usize,
    prefix_index: usize,
}

/// Why a key could not be generated.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GenerateError {
    /// The requested prefix is not one of the format's prefixes.
    #[error("prefix is not one of the key format's prefixes")]
    UnknownPrefix,
    /// The random number generator failed.
    #[error("the random number generator failed")]
    Rng(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl ApiKey {
    /// The whole key string, to show to its owner once. Every use is a place where the
    /// secret leaves keyward's control.
    #[must_use]
    pub fn expose_secret(&self) -> &str {
        &self.full
    }

    /// The key's prefix, such as `sk_live`.
    #[must_use]
    pub fn prefix(&self) -> &str {
        &self.full[..self.prefix_len]
    }

    /// The public key id.
    #[must_use]
    pub fn id(&self) -> KeyId {
        let start = self.prefix_len + 1;
        KeyId::from_base62_unchecked_len(&self.full.as_bytes()[start..start + self.id_len])
    }

    /// Only the secret characters (after the id, before the checksum).
    #[must_use]
    pub fn expose_secret_part(&self) -> &str {
        &self.full[self.prefix_len + 1 + self.id_len..self.full.len() - CHECKSUM_LEN]
    }

    /// A short, non-secret preview for UIs, such as `tak_bUiB…`.
    #[must_use]
    pub fn preview(&self) -> String {
        self.id().preview(self.prefix())
    }

    /// A borrowed, already-parsed view of this key (for hashing it).
    #[must_use]
    pub fn as_parsed(&self) -> ParsedKey<'_> {
        ParsedKey::from_generated(&self.full, self.prefix_len, self.id_len, self.prefix_index)
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ApiKey({})", self.preview())
    }
}

impl fmt::Display for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.preview())
    }
}

impl KeyFormat {
    /// Generates a key with the default (first) prefix from the operating system's CSPRNG.
    ///
    /// # Errors
    /// [`GenerateError::Rng`] if the operating system cannot provide randomness.
    pub fn generate(&self) -> Result<ApiKey, GenerateError> {
        self.generate_with_rng(0, &mut getrandom::SysRng)
    }

    /// Generates a key with the given prefix, which must be one of the format's.
    ///
    /// # Errors
    /// [`GenerateError::UnknownPrefix`] or [`GenerateError::Rng`].
    pub fn generate_with_prefix(&self, prefix: &str) -> Result<ApiKey, GenerateError> {
        let index = self
            .prefixes()
            .iter()
            .position(|p| p.as_str() == prefix)
            .ok_or(GenerateError::UnknownPrefix)?;
        self.generate_with_rng(index, &mut getrandom::SysRng)
    }

    /// Generates a key with the prefix at `prefix_index` from `rng`, which must be a
    /// cryptographically secure generator (tests may pass a seeded one).
    ///
    /// Every character is drawn uniformly from the 62-character alphabet by rejection
    /// sampling: a random byte's low six bits are used when below 62 and discarded
    /// otherwise, so there is no modulo bias.
    ///
    /// # Errors
    /// [`GenerateError::UnknownPrefix`] when the index is out of range, or
    /// [`GenerateError::Rng`] when the generator fails.
    pub fn generate_with_rng<R>(
        &self,
        prefix_index: usize,
        rng: &mut R,
    ) -> Result<ApiKey, GenerateError>
    where
        R: TryCryptoRng + ?Sized,
        R::Error: Send + Sync + 'static,
    {
        let prefix = self
            .prefixes()
            .get(prefix_index)
            .ok_or(GenerateError::UnknownPrefix)?
            .as_str();
        let body_len = self.id_len() + self.secret_len();
        let mut full = Zeroizing::new(String::with_capacity(
            prefix.len() + 1 + body_len + CHECKSUM_LEN,
        ));
        full.push_str(prefix);
        full.push('_');
        let body_start = full.len();
        let mut buf = Zeroizing::new([0u8; 64]);
        let mut filled = 0;
        while filled < body_len {
            rng.try_fill_bytes(&mut buf[..])
                .map_err(|e| GenerateError::Rng(Box::new(e)))?;
            for &byte in buf.iter() {
                let v = usize::from(byte & 0x3f);
                if v < BASE62.len() && filled < body_len {
                    full.push(char::from(BASE62[v]));
                    filled += 1;
                }
            }
        }
        let mut sum = checksum(&full.as_bytes()[body_start..]);
        for &c in &sum {
            full.push(char::from(c));
        }
        sum.zeroize();
        Ok(ApiKey {
            full,
            prefix_len: prefix.len(),
            id_len: self.id_len(),
            prefix_index,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_are_redacted() {
        let format = KeyFormat::new(["tak"]).expect("format");
        let key = format.generate().expect("generate");
        let secret = key.expose_secret_part().to_owned();
        let shown = format!("{key:?} {key}");
        assert!(!shown.contains(&secret), "{shown}");
        assert!(shown.contains("tak_"));
        assert_eq!(key.preview().chars().count(), "tak_".len() + 4 + 1);
    }

    #[test]
    fn generated_keys_have_exact_capacity() {
        let format = KeyFormat::new(["sk_live"]).expect("format");
        let key = format.generate().expect("generate");
        assert_eq!(key.full.len(), key.full.capacity());
        assert_eq!(key.full.len(), format.max_len());
    }
}
