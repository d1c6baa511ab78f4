//! The key checksum: CRC-32 of the body, written as six base62 digits.
//!
//! This is the checksum GitHub puts at the end of its tokens: CRC-32 (IEEE, the one zlib and
//! `crc32fast` compute) over the ASCII bytes of the body, encoded in base62 with the alphabet
//! `0-9A-Za-z`, most significant digit first, left-padded with `0` to exactly
//! [`CHECKSUM_LEN`] characters. `u32::MAX` needs six base62 digits, so the width is exact.

/// Number of characters of the checksum at the end of every key.
pub const CHECKSUM_LEN: usize = 6;

/// Computes the six checksum characters of `body` (the random part of a key, without the
/// prefix and without the checksum itself).
///
/// ```
/// // The body of GitHub's documented example token 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
/// assert_eq!(&keyward::key::checksum(b"M7H4jxUDDWHP4kZ6A4dxlQYsQIWJuq"), b"11T4V4");
/// ```
#[must_use]
pub fn checksum(body: &[u8]) -> [u8; CHECKSUM_LEN] {
    encode(crc32fast::hash(body))
}

/// Whether the six checksum characters `presented` (already known to be base62) encode the
/// CRC-32 of `body`, computed by `crc` (a fresh hasher, see [`Crc32`]). Decoding the presented
/// digits is cheaper than encoding the computed CRC, which keeps rejection of a mistyped key
/// close to the cost of the CRC itself.
#[inline]
pub(crate) fn matches(crc: &Crc32, body: &[u8], presented: &[u8]) -> bool {
    let Ok(digits) = <&[u8; CHECKSUM_LEN]>::try_from(presented) else {
        return false;
    };
    decode(digits) == u64::from(crc.hash(body))
}

/// A CRC-32 engine chosen once: `crc32fast::hash` detects the CPU's features (PCLMULQDQ,
/// SSE4.1, AVX2, …) on every call, which cost as much as the rest of a key's parse outside
/// the CRC when the notes under BENCHMARKS.md's "Parse: rejecting a bad checksum" were
/// written; a [`KeyFormat`](crate::KeyFormat) keeps one fresh hasher and copies it. It buys
/// BENCHMARKS.md, Hot path: "reject a bad checksum" (target ≤ 2x CRC-32 of the body) and
/// "parse a valid key".
#[derive(Clone)]
pub(crate) struct Crc32(crc32fast::Hasher);

impl Crc32 {
    /// Detects the CPU's features and picks the fastest implementation.
    pub(crate) fn new() -> Self {
        Self(crc32fast::Hasher::new())
    }

    /// CRC-32 (IEEE) of `bytes`, the same value as `crc32fast::hash(bytes)`.
    #[inline]
    pub(crate) fn hash(&self, bytes: &[u8]) -> u32 {
        let mut hasher = self.0.clone();
        hasher.update(bytes);
        hasher.finalize()
    }
}

impl Default for Crc32 {
    fn default() -> Self {
        Self::new()
    }
}

impl core::fmt::Debug for Crc32 {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("Crc32")
    }
}

// Always equal, on purpose: `KeyFormat` derives `PartialEq` and holds a `Crc32`, and every
// `Crc32` computes the same function (CRC-32/IEEE): which implementation the CPU check picked
// is a cache, not part of a format's identity (`crc32fast::Hasher` has no `PartialEq`).
impl PartialEq for Crc32 {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for Crc32 {}

/// The value of six base62 digits (each already known to be in `0-9A-Za-z`, or the result
/// is discarded by the caller).
///
/// All six at once in one 64-bit word (SWAR), with no branch and no table: the digits are a
/// function of the secret (the CRC covers it), so they must not choose a memory address (a
/// table lookup did show in the timing test, as a difference of a few hundredths of a
/// nanosecond between keys). Wrapping arithmetic keeps it total for any bytes.
///
/// For BENCHMARKS.md, Hot path: "parse a valid key" and "reject a bad checksum": a branchless
/// digit-by-digit loop measured about 20% slower on the first (median of three runs for
/// issue 19) and no different on the second, within the noise of a shared machine.
#[inline]
fn decode(d: &[u8; CHECKSUM_LEN]) -> u64 {
    // One in each of the six low bytes.
    const ONES: u64 = 0x0000_0101_0101_0101;
    const HIGH: u64 = ONES * 0x80;
    const EVEN: u64 = 0x0000_00FF_00FF_00FF;
    let mut word = [0u8; 8];
    word[..CHECKSUM_LEN].copy_from_slice(d);
    // The first (most significant) digit in the lowest byte.
    let x = u64::from_le_bytes(word);
    // Per byte, for bytes below 0x80 (no carry between bytes): 1 from ':' up (past '9'),
    // 1 from '[' up (past 'Z').
    let past_9 = (x.wrapping_add(ONES * (0x80 - u64::from(b':'))) & HIGH) >> 7;
    let past_z = (x.wrapping_add(ONES * (0x80 - u64::from(b'['))) & HIGH) >> 7;
    // '0'..='9' -> 0..=9, 'A'..='Z' -> 10..=35, 'a'..='z' -> 36..=61: letters sit 7 past
    // '9' + 1, lowercase 6 more past 'Z' + 1.
    let v = x
        .wrapping_sub(ONES * u64::from(b'0'))
        .wrapping_sub(past_9.wrapping_mul(7))
        .wrapping_sub(past_z.wrapping_mul(6));
    // Pairs of digits in 16-bit lanes (at most 61 * 62 + 61 = 3,843), then the three pairs.
    let pairs = (v & EVEN).wrapping_mul(62).wrapping_add((v >> 8) & EVEN);
    let (p0, p1, p2) = (
        pairs & 0xFFFF,
        (pairs >> 16) & 0xFFFF,
        (pairs >> 32) & 0xFFFF,
    );
    p0.wrapping_mul(3_844)
        .wrapping_add(p1)
        .wrapping_mul(3_844)
        .wrapping_add(p2)
}

/// Writes `crc` as exactly six base62 digits, most significant first, zero padded.
fn encode(crc: u32) -> [u8; CHECKSUM_LEN] {
    // `u32::MAX` < 62^6, so six digits always suffice; the fallback keeps this total
    // without a panic path.
    crate::key::alphabet::encode_padded(u128::from(crc)).unwrap_or([0; CHECKSUM_LEN])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pads_small_values_with_zeros() {
        assert_eq!(&encode(0), b"000000");
        assert_eq!(&encode(61), b"00000z");
        assert_eq!(&encode(62), b"000010");
        assert_eq!(&encode(u32::MAX), b"4gfFC3");
    }

    #[test]
    fn github_vectors() {
        assert_eq!(&checksum(b"M7H4jxUDDWHP4kZ6A4dxlQYsQIWJuq"), b"11T4V4");
        assert_eq!(&checksum(b"zQWBuTSOoRi4A9spHcVY5ncnsDkxkJ"), b"0mLq17");
    }

    #[test]
    fn matches_agrees_with_encode() {
        let crc = &Crc32::new();
        let body = b"M7H4jxUDDWHP4kZ6A4dxlQYsQIWJuq";
        assert!(matches(crc, body, b"11T4V4"));
        assert!(!matches(crc, body, b"11T4V3"));
        assert!(!matches(crc, body, b"11T4V"));
        // A checksum above u32::MAX (non-canonical) never matches.
        assert!(!matches(crc, body, b"zzzzzz"));
        assert!(matches(crc, b"zQWBuTSOoRi4A9spHcVY5ncnsDkxkJ", b"0mLq17"));
        for i in 0..2000u32 {
            let body = format!("body{i}");
            assert!(
                matches(crc, body.as_bytes(), &checksum(body.as_bytes())),
                "{body}"
            );
        }
    }

    #[test]
    fn decode_agrees_with_the_alphabet() {
        // Every digit in every position, against the position in the alphabet.
        for (value, &c) in crate::key::alphabet::BASE62.iter().enumerate() {
            for pos in 0..CHECKSUM_LEN {
                let mut d = [b'0'; CHECKSUM_LEN];
                d[pos] = c;
                let weight = 62u64.pow(u32::try_from(CHECKSUM_LEN - 1 - pos).unwrap_or(0));
                assert_eq!(decode(&d), value as u64 * weight, "{} at {pos}", c as char);
            }
        }
        assert_eq!(decode(b"zzzzzz"), 62u64.pow(6) - 1);
        assert_eq!(decode(&encode(u32::MAX)), u64::from(u32::MAX));
    }

    #[test]
    fn agrees_with_base62_decode() {
        for crc in [
            1u32,
            7,
            3_844,
            238_327,
            14_776_335,
            916_132_831,
            4_000_000_000,
        ] {
            let enc = encode(crc);
            assert_eq!(base62::decode(enc).ok(), Some(u128::from(crc)));
        }
    }
}
