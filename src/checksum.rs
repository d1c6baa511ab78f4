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
/// CRC-32 of `body`. Decoding the presented digits is cheaper than encoding the computed CRC,
/// which keeps rejection of a mistyped key close to the cost of the CRC itself.
#[inline]
pub(crate) fn matches(body: &[u8], presented: &[u8]) -> bool {
    let Ok(digits) = <&[u8; CHECKSUM_LEN]>::try_from(presented) else {
        return false;
    };
    decode(digits) == u64::from(crc32fast::hash(body))
}

/// The value of six base62 digits (each already known to be in `0-9A-Za-z`).
///
/// Branch-free, and in two independent halves of three digits, so the multiply chain is
/// short and runs beside the CRC instead of after it.
#[inline]
fn decode(d: &[u8; CHECKSUM_LEN]) -> u64 {
    #[inline]
    fn digit(b: u8) -> u64 {
        // '0'..='9' -> 0..=9, 'A'..='Z' -> 10..=35, 'a'..='z' -> 36..=61, without a branch:
        // letters sit 7 past '9'+1, lowercase 6 more past 'Z'+1.
        let v = b.wrapping_sub(b'0') - 7 * u8::from(b > b'9') - 6 * u8::from(b > b'Z');
        u64::from(v)
    }
    let high = digit(d[0]) * 3_844 + digit(d[1]) * 62 + digit(d[2]);
    let low = digit(d[3]) * 3_844 + digit(d[4]) * 62 + digit(d[5]);
    high * 238_328 + low
}

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
        let body = b"M7H4jxUDDWHP4kZ6A4dxlQYsQIWJuq";
        assert!(matches(body, b"11T4V4"));
        assert!(!matches(body, b"11T4V3"));
        assert!(!matches(body, b"11T4V"));
        // A checksum above u32::MAX (non-canonical) never matches.
        assert!(!matches(body, b"zzzzzz"));
        assert!(matches(b"zQWBuTSOoRi4A9spHcVY5ncnsDkxkJ", b"0mLq17"));
        for i in 0..2000u32 {
            let body = format!("body{i}");
            assert!(
                matches(body.as_bytes(), &checksum(body.as_bytes())),
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
