//! The base62 alphabet `0-9A-Za-z` shared by key ids, secrets and checksums.

/// The 62 characters, in digit order.
pub(crate) const BASE62: &[u8; 62] =
    b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// `n` as exactly `N` base62 digits (the crate `base62`, alphabet `0-9A-Za-z`), most
/// significant first, zero padded; `None` when `n` needs more than `N` digits.
pub(crate) fn encode_padded<const N: usize>(n: u128) -> Option<[u8; N]> {
    // base62 writes at most 22 digits (u128::MAX); a larger `N` only adds padding.
    let mut digits = [b'0'; 22];
    let written = base62::encode_bytes(n, &mut digits).ok()?;
    let pad = N.checked_sub(written)?;
    let mut out = [b'0'; N];
    out[pad..].copy_from_slice(&digits[..written]);
    Some(out)
}

/// Whether every byte is in `0-9A-Za-z`, checked without a branch per byte so the compiler
/// can vectorize it.
///
/// Kept out of line on purpose: inlined into [`KeyFormat::parse`](crate::KeyFormat::parse),
/// its dozen vector constants stay live across the CRC call (which clobbers every vector
/// register) and cost more reloads and moves than the call does. Both choices are for
/// BENCHMARKS.md, Hot path: "reject a bad checksum" (target ≤ 2x CRC-32 of the body) and
/// "parse a valid key", which check all 50 characters after the prefix here.
#[inline(never)]
pub(crate) fn all_base62(bytes: &[u8]) -> bool {
    const LANES: usize = 16;
    let Some(last) = bytes.last_chunk::<LANES>() else {
        return bytes.iter().fold(true, |ok, &b| ok & is_base62(b));
    };
    // Whole 16-byte blocks, then the last 16 bytes (overlapping the previous block): every
    // byte is checked, always in full vectors, with no scalar tail loop. Failures are
    // accumulated with byte arithmetic rather than short-circuiting, so there is no
    // data-dependent branch.
    let mut bad = invalid_in(last);
    for block in bytes.chunks_exact(LANES) {
        bad |= invalid_in(block.try_into().unwrap_or(last));
    }
    bad == 0
}

/// Non-zero when some byte of `block` is outside the alphabet: a reduction over a fixed-size
/// array, which the compiler turns into a few vector instructions and one mask move.
#[inline(always)]
fn invalid_in(block: &[u8; 16]) -> u8 {
    block
        .iter()
        .fold(0u8, |acc, &b| acc | u8::from(!is_base62(b)))
}

#[inline]
const fn is_base62(b: u8) -> bool {
    // Each range check shifts its range to the bottom of the signed bytes (-128 up) and
    // compares once, signed: one add and one signed compare per range, which vector units
    // have (there is no unsigned byte compare in SSE2). `b | 0x20` folds `A-Z` onto `a-z` and
    // no other byte onto `a-z`, so two range checks cover the three ranges.
    let digit = (b.wrapping_add(0x80 - b'0') as i8) < i8::MIN + 10;
    let letter = ((b | 0x20).wrapping_add(0x80 - b'a') as i8) < i8::MIN + 26;
    digit | letter
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
