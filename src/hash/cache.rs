//! The opt-in Argon2 verification cache.

use std::collections::HashMap;
use std::sync::Mutex;

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use zeroize::Zeroizing;

use super::compare::ct_eq;
use super::stored::StoredHash;
use crate::key::id::KeyId;

/// Remembers, per key id, a keyed digest of a presented key that verified against a given
/// Argon2 hash, so the next request for that key costs one HMAC instead of one Argon2.
///
/// What it stores is not the key: it is HMAC-SHA256 of the key under a random per-process
/// key, plus the whole stored hash it was checked against, parameters and salt included (so a
/// rotated or rehashed key misses, and so does a stored hash that kept the digest but changed
/// its salt or parameters). It replaces only the hash check: the key manager still reads the
/// record's status and expiry from the store on every request, so a revoked, disabled or
/// expired key is never served from here. Bounded: when full, an arbitrary entry is evicted.
///
/// What it buys: BENCHMARKS.md, Hot path: "Argon2id verify, cache hit" (target ≤ 3x raw
/// HMAC-SHA256) instead of "Argon2id verify (m=19456, t=2, p=1)" on every request. It is
/// opt-in ([`Hasher::with_verify_cache`](super::Hasher::with_verify_cache)) because a hit
/// shows in timing (see the README's "What is and is not constant time"). A hit compares
/// the stored hash structurally (public) and the 32-byte keyed digests with
/// [`ct_eq`](super::compare::ct_eq).
pub(crate) struct VerifyCache {
    key: Hmac<Sha256>,
    capacity: usize,
    entries: Mutex<HashMap<KeyId, Entry>>,
}

struct Entry {
    /// The stored hash (parameters, salt and digest) the key was checked against. Stored
    /// hashes are not secret, so comparing them structurally (not in constant time) reveals
    /// nothing about the presented key; the presented key's digest is compared in constant
    /// time.
    stored: StoredHash,
    presented: Zeroizing<[u8; 32]>,
}

impl VerifyCache {
    pub(crate) fn new(capacity: usize) -> Option<Self> {
        let mut seed = Zeroizing::new([0u8; 32]);
        getrandom::fill(&mut seed[..]).ok()?;
        let key = <Hmac<Sha256> as KeyInit>::new_from_slice(&seed[..]).ok()?;
        Some(Self {
            key,
            capacity: capacity.max(1),
            entries: Mutex::new(HashMap::new()),
        })
    }

    fn presented(&self, key: &str) -> Zeroizing<[u8; 32]> {
        let mut mac = self.key.clone();
        mac.update(key.as_bytes());
        Zeroizing::new(mac.finalize().into_bytes().into())
    }

    /// Whether `key` verified against `stored` before (constant-time comparison).
    pub(crate) fn hit(&self, id: KeyId, key: &str, stored: &StoredHash) -> bool {
        let presented = self.presented(key);
        let Ok(entries) = self.entries.lock() else {
            return false;
        };
        entries
            .get(&id)
            .is_some_and(|e| e.stored == *stored && ct_eq(&e.presented[..], &presented[..]))
    }

    /// Records that `key` verified against `stored`.
    pub(crate) fn insert(&self, id: KeyId, key: &str, stored: &StoredHash) {
        let entry = Entry {
            stored: stored.clone(),
            presented: self.presented(key),
        };
        let Ok(mut entries) = self.entries.lock() else {
            return;
        };
        if entries.len() >= self.capacity
            && !entries.contains_key(&id)
            && let Some(victim) = entries.keys().next().copied()
        {
            entries.remove(&victim);
        }
        entries.insert(id, entry);
    }

    /// Forgets a key (after revocation, rotation or a failed verification).
    pub(crate) fn forget(&self, id: KeyId) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.remove(&id);
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.lock().map(|e| e.len()).unwrap_or(0)
    }
}
