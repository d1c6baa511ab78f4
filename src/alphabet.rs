//! The base62 alphabet `0-9A-Za-z` shared by key ids, secrets and checksums.

/// The 62 characters, in digit order.
pub(crate) const BASE62: &[u8; 62] =
    b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// Whether every byte is in `0-9A-Za-z`, checked without a branch per byte so the compiler
/// can vectorize it.
#[inline]
pub(crate) fn all_base62(bytes: &[u8]) -> bool {
    // Count failures with byte arithmetic rather than short-circuiting, so the loop has no
    // data-dependent branch and vectorizes.
    let bad = bytes
        .iter()
        .fold(0u8, |acc, &b| acc | u8::from(!is_base62(b)));
    bad == 0
}

#[inline]
const fn is_base62(b: u8) -> bool {
    (b.wrapping_sub(b'0') < 10) | (b.wrapping_sub(b'A') < 26) | (b.wrapping_sub(b'a') < 26)
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
}
