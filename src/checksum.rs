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
/// assert_eq!(&keyward::checksum(b"M7H4jxUDDWHP4kZ6A4dxlQYsQIWJuq"), b"11T4V4");
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
/// SSE4.1, AVX2, …) on every call, which costs about as much as the rest of a key's parse
/// outside the CRC; a [`KeyFormat`](crate::KeyFormat) keeps one fresh hasher and copies it.
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

// Every `Crc32` computes the same function: the choice of implementation is not part of a
// format's identity.
impl PartialEq for Crc32 {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for Crc32 {}

/// The value of six base62 digits (each already known to be in `0-9A-Za-z`).
///
/// One table load per digit, and two independent halves of three digits, so the multiply
/// chain is short and runs beside the CRC instead of after it.
#[inline]
fn decode(d: &[u8; CHECKSUM_LEN]) -> u64 {
    let digit = |b: u8| u64::from(DIGIT_VALUE[usize::from(b)]);
    let high = digit(d[0]) * 3_844 + digit(d[1]) * 62 + digit(d[2]);
    let low = digit(d[3]) * 3_844 + digit(d[4]) * 62 + digit(d[5]);
    high * 238_328 + low
}

/// The value of each base62 digit, indexed by its byte (0 for bytes outside the alphabet,
/// which the callers have already refused).
static DIGIT_VALUE: [u8; 256] = {
    let mut table = [0u8; 256];
    let mut value = 0;
    while value < crate::alphabet::BASE62.len() {
        table[crate::alphabet::BASE62[value] as usize] = value as u8;
        value += 1;
    }
    table
};

/// Writes `crc` as exactly six base62 digits, most significant first, zero padded.
fn encode(crc: u32) -> [u8; CHECKSUM_LEN] {
    let mut out = [b'0'; CHECKSUM_LEN];
    // `u32::MAX` < 62^6, so six bytes always suffice and `encode_bytes` cannot fail; the
    // fallback keeps this total without a panic path.
    match base62::encode_bytes(crc, &mut out) {
        Ok(written) if written <= CHECKSUM_LEN => {
            out.copy_within(..written, CHECKSUM_LEN - written);
            out[..CHECKSUM_LEN - written].fill(b'0');
            out
        }
        _ => [0; CHECKSUM_LEN],
    }
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
        for (value, &c) in crate::alphabet::BASE62.iter().enumerate() {
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
