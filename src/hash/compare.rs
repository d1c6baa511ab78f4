//! Constant-time comparison of digests.
//!
//! Every digest check of the crate goes through [`ct_eq`]: the HMAC-SHA-256 tag of a
//! presented key against the stored one, Argon2id output against the stored output, the
//! Argon2 cache's keyed digest against the remembered one, and the dummy comparison of
//! [`Hasher::verify_absent`](super::Hasher::verify_absent).

use subtle::ConstantTimeEq;

/// Whether `a` and `b` are equal, in time that depends only on their lengths (which are
/// public: every digest of one kind has the same length).
///
/// How: unequal lengths return `false` at once. Otherwise both inputs are read as
/// little-endian 8-byte words (a shorter tail byte by byte), and `x ^ y` of every pair is
/// OR-ed into one 64-bit accumulator, which passes through [`core::hint::black_box`] after
/// every word, so the optimizer can neither see a partial result nor turn the loop into an
/// early exit or a `memcmp`. The accumulator is then compared with zero by `subtle`'s
/// `u64::ct_eq`, and that one [`subtle::Choice`] is converted to `bool` once, at the end.
/// There is no branch and no memory address that depends on the bytes: every word of both
/// inputs is read, whatever matches. `black_box` is a best-effort barrier (as is the volatile
/// read `subtle` uses); the timing bench (`cargo bench --bench timing`) checks the result.
///
/// Why not `subtle`'s slice `ct_eq` directly: it puts a barrier (a volatile read) on every
/// byte, which made `fast hash/keyward fast verify` (BENCHMARKS.md, Hot path: "fast verify",
/// target ≤ 1.5x raw HMAC-SHA256) about 1.5x slower when measured for issue 19; folding a
/// word at a time needs one barrier per 8 bytes and a single `subtle` comparison.
pub(crate) fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut diff = 0u64;
    let (wa, wb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (wa.remainder(), wb.remainder());
    for (x, y) in wa.zip(wb) {
        let x = u64::from_le_bytes(x.try_into().unwrap_or_default());
        let y = u64::from_le_bytes(y.try_into().unwrap_or_default());
        diff = core::hint::black_box(diff | (x ^ y));
    }
    for (x, y) in ra.iter().zip(rb) {
        diff = core::hint::black_box(diff | u64::from(x ^ y));
    }
    bool::from(diff.ct_eq(&0))
}

#[cfg(test)]
mod tests {
    use super::ct_eq;

    #[test]
    fn equal_and_unequal_at_every_position() {
        for len in [0usize, 1, 7, 8, 9, 16, 31, 32, 33, 64] {
            let a: Vec<u8> = (0..len)
                .map(|i| u8::try_from(i % 251).unwrap_or(0))
                .collect();
            assert!(ct_eq(&a, &a.clone()), "len {len}");
            for at in 0..len {
                for bit in 0..8 {
                    let mut b = a.clone();
                    b[at] ^= 1 << bit;
                    assert!(!ct_eq(&a, &b), "len {len}, byte {at}, bit {bit}");
                }
            }
        }
    }

    #[test]
    fn different_lengths_are_unequal() {
        assert!(!ct_eq(&[1, 2, 3], &[1, 2]));
        assert!(!ct_eq(&[], &[0]));
        assert!(!ct_eq(&[0; 32], &[0; 33]));
    }
}
