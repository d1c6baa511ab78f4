//! Constant-time comparison of digests.

use subtle::ConstantTimeEq;

/// Whether `a` and `b` are equal, in time that depends only on their lengths (which are
/// public: every digest of one kind has the same length).
///
/// `subtle`'s slice comparison hides every byte from the optimizer (one barrier per byte,
/// about 25 ns for 32 bytes); this folds 8 bytes at a time, with a barrier per word, and
/// compares the folded difference with `subtle`. There is no early exit: every word of both
/// inputs is read.
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
