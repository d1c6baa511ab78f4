//! The base62 alphabet `0-9A-Za-z` shared by key ids, secrets and checksums.

/// The 62 characters, in digit order.
pub(crate) const BASE62: &[u8; 62] =
    b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// Whether every byte is in `0-9A-Za-z`, checked without a branch per byte so the compiler
/// can vectorize it.
#[inline]
pub(crate) fn all_base62(bytes: &[u8]) -> bool {
    const LANES: usize = 16;
    let Some(last) = bytes.last_chunk::<LANES>() else {
        return bytes.iter().fold(true, |ok, &b| ok & is_base62(b));
    };
    // Whole 16-byte blocks, then the last 16 bytes (overlapping the previous block): every
    // byte is checked, always in full vectors, with no scalar tail loop. Failures are
    // accumulated with byte arithmetic rather than short-circuiting, so there is no
    // data-dependent branch.
    let mut bad = invalid_lanes(last);
    for block in bytes.chunks_exact(LANES) {
        let block: &[u8; LANES] = block.try_into().unwrap_or(last);
        let lanes = invalid_lanes(block);
        for (acc, lane) in bad.iter_mut().zip(lanes) {
            *acc |= lane;
        }
    }
    bad.iter().fold(0u8, |acc, &lane| acc | lane) == 0
}

/// 1 in each lane whose byte is outside the alphabet, 0 elsewhere.
#[inline]
fn invalid_lanes(block: &[u8; 16]) -> [u8; 16] {
    block.map(|b| u8::from(!is_base62(b)))
}

#[inline]
const fn is_base62(b: u8) -> bool {
    // `b | 0x20` folds `A-Z` onto `a-z` and no other byte onto `a-z`, so two range checks
    // cover the three ranges.
    (b.wrapping_sub(b'0') < 10) | ((b | 0x20).wrapping_sub(b'a') < 26)
}

/// Character position (not byte position) of the first byte outside the alphabet.
pub(crate) fn first_invalid(bytes: &[u8]) -> Option<usize> {
    let byte_pos = bytes.iter().position(|&b| !is_base62(b))?;
    // Everything before `byte_pos` is ASCII, so byte and character positions agree.
    Some(byte_pos)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alphabet_matches_predicate() {
        for b in 0..=255u8 {
            assert_eq!(is_base62(b), BASE62.contains(&b), "byte {b}");
        }
    }

    #[test]
    fn all_base62_checks_every_position_of_every_length() {
        // Short inputs (scalar path), one block, and blocks with an overlapping tail.
        for len in 0..=70 {
            let good = vec![b'a'; len];
            assert!(all_base62(&good), "len {len}");
            for pos in 0..len {
                for bad in [
                    b'_', b'-', b'@', b'[', b'`', b'{', b'/', b':', 0, 0x80, 0xff,
                ] {
                    let mut input = good.clone();
                    input[pos] = bad;
                    assert!(!all_base62(&input), "len {len}, byte {bad} at {pos}");
                }
            }
        }
    }
}
