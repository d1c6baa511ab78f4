//! Property tests for the key format: no input makes parsing panic, every error agrees with
//! the input it describes, generated keys round-trip, and single-character substitutions and
//! adjacent transpositions are always caught.
//!
//! Expected checksums are computed with a CRC-32 and base62 encoder written here, not with
//! keyward's.

use std::convert::Infallible;

use keyward::{
    KeyFormat,
    key::{ParseError, ParsedKey, parse_any},
};
use proptest::prelude::*;
use proptest::sample::Index;
use rand_core::{TryCryptoRng, TryRng};

const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
/// `parse_any`: a 32-character prefix, `_`, 128 body characters and 6 checksum characters.
const MAX_ANY: usize = 32 + 1 + 128 + 6;
const CASES: u32 = 10_000;

/// CRC-32 (IEEE 802.3, reflected, polynomial 0xEDB88320), bit by bit.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// Six base62 digits of the body's CRC-32, most significant first, zero padded.
fn expected_checksum(body: &[u8]) -> String {
    let mut n = crc32(body);
    let mut out = [b'0'; 6];
    for slot in out.iter_mut().rev() {
        *slot = BASE62[(n % 62) as usize];
        n /= 62;
    }
    String::from_utf8(out.to_vec()).expect("base62 is ASCII")
}

fn is_base62(c: char) -> bool {
    c.is_ascii_alphanumeric()
}

#[test]
fn reference_checksum_matches_github_vectors() {
    assert_eq!(
        expected_checksum(b"M7H4jxUDDWHP4kZ6A4dxlQYsQIWJuq"),
        "11T4V4"
    );
    assert_eq!(
        expected_checksum(b"zQWBuTSOoRi4A9spHcVY5ncnsDkxkJ"),
        "0mLq17"
    );
    assert_eq!(
        crc32(b"123456789"),
        0xCBF4_3926,
        "the standard CRC-32 check value"
    );
}

/// Replays proptest's bytes, then counts upwards, so that every stream eventually yields
/// usable bytes and a failing case is reproducible and shrinkable.
#[derive(Debug)]
struct ReplayRng {
    bytes: Vec<u8>,
    next: usize,
}

impl ReplayRng {
    fn new(bytes: Vec<u8>) -> Self {
        Self { bytes, next: 0 }
    }
}

impl TryRng for ReplayRng {
    type Error = Infallible;
    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        let mut b = [0; 4];
        self.try_fill_bytes(&mut b)?;
        Ok(u32::from_le_bytes(b))
    }
    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        let mut b = [0; 8];
        self.try_fill_bytes(&mut b)?;
        Ok(u64::from_le_bytes(b))
    }
    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Infallible> {
        for b in dst {
            // Truncation intended: after the replay, the counter cycles through all bytes.
            *b = self
                .bytes
                .get(self.next)
                .copied()
                .unwrap_or(self.next as u8);
            self.next += 1;
        }
        Ok(())
    }
}
impl TryCryptoRng for ReplayRng {}

// ---------------------------------------------------------------------------------------------
// Strategies

fn prefix() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z][a-z0-9]{0,6}(_[a-z0-9]{1,5}){0,2}",
        "[a-z][a-z0-9]{0,31}",
        Just("sk".to_owned()),
        Just("sk_live".to_owned()),
    ]
}

/// A valid format: one to three distinct prefixes and any allowed lengths.
fn format() -> impl Strategy<Value = KeyFormat> {
    (
        prop::collection::btree_set(prefix(), 1..=3),
        11usize..=32,
        22usize..=128,
    )
        .prop_map(|(prefixes, id_len, secret_len)| {
            KeyFormat::new(prefixes)
                .and_then(|f| f.with_id_len(id_len))
                .and_then(|f| f.with_secret_len(secret_len))
                .expect("the strategy only builds valid formats")
        })
}

/// A format, a prefix index into it, and random bytes for the generator.
fn generated() -> impl Strategy<Value = (KeyFormat, usize, Vec<u8>)> {
    (
        format(),
        any::<Index>(),
        prop::collection::vec(any::<u8>(), 0..400),
    )
        .prop_map(|(format, index, bytes)| {
            let index = index.index(format.prefixes().len());
            (format, index, bytes)
        })
}

/// Characters that parsers find interesting, mixed with arbitrary ones.
fn tricky_char() -> impl Strategy<Value = char> {
    prop_oneof![
        4 => any::<char>(),
        4 => prop::sample::select(BASE62.iter().map(|&b| char::from(b)).collect::<Vec<_>>()),
        1 => prop::char::range('\0', '\u{1f}'),
        1 => prop::sample::select(vec![
            '_', '-', ' ', '\n', '\r', '\t', '\u{7f}', '\u{85}', '\u{a0}', '\u{200b}',
            '\u{2028}', '\u{3000}', '\u{feff}', 'é', 'Ζ', '🔑', '\u{10ffff}',
        ]),
    ]
}

fn tricky_string(max: usize) -> impl Strategy<Value = String> {
    prop::collection::vec(tricky_char(), 0..max).prop_map(String::from_iter)
}

// ---------------------------------------------------------------------------------------------
// Laws every result must obey, whatever the input

/// Checks a parse result against the input: an `Ok` is a well-formed key with a correct
/// checksum and an accepted prefix; an error describes something true of the input.
fn check_result(
    input: &str,
    result: Result<ParsedKey<'_>, ParseError>,
    accepted: &dyn Fn(&str, usize) -> bool,
    max: usize,
) {
    let chars: Vec<char> = input.chars().collect();
    match result {
        Ok(parsed) => {
            assert_eq!(parsed.expose_secret(), input);
            assert!(accepted(parsed.prefix(), parsed.prefix_index()));
            let tail = &input[parsed.prefix().len() + 1..];
            assert!(tail.chars().all(is_base62));
            let (body, sum) = tail.split_at(tail.len() - 6);
            assert_eq!(sum, expected_checksum(body.as_bytes()));
            assert_eq!(
                input,
                format!(
                    "{}_{}{}{sum}",
                    parsed.prefix(),
                    parsed.key_id(),
                    parsed.expose_secret_part()
                )
            );
            assert!(input.len() <= max);
        }
        Err(error) => {
            let _ = error.to_string();
            match error {
                ParseError::Empty => assert!(input.is_empty()),
                ParseError::LeadingWhitespace => assert!(chars[0].is_whitespace()),
                ParseError::TrailingWhitespace => {
                    assert!(chars[chars.len() - 1].is_whitespace());
                }
                ParseError::TooLong { max: reported } => {
                    assert_eq!(reported, max);
                    assert!(chars.len() > max);
                }
                ParseError::EmbeddedNewline { position } => {
                    assert!(matches!(chars[position], '\n' | '\r'));
                }
                ParseError::InvalidCharacter {
                    character,
                    position,
                } => {
                    assert_eq!(chars[position], character);
                    assert!(!is_base62(character) && character != '_');
                }
                ParseError::WrongLength { expected, found } => {
                    assert_eq!(found, chars.len());
                    assert!(!(expected.0..=expected.1).contains(&found));
                    assert!(found <= max);
                }
                ParseError::MissingPrefix => assert!(!input.contains('_')),
                ParseError::UnknownPrefix | ParseError::ChecksumMismatch => {}
                _ => panic!("a parse error this test does not know: {error:?}"),
            }
            // Whitespace at either end is always reported as such, before anything else.
            if let (Some(first), Some(last)) = (chars.first(), chars.last()) {
                if first.is_whitespace() {
                    assert_eq!(error, ParseError::LeadingWhitespace);
                } else if last.is_whitespace() {
                    assert_eq!(error, ParseError::TrailingWhitespace);
                }
            }
        }
    }
}

/// Runs `input` through a fixed-prefix format, a multi-prefix format, a random-ish format and
/// `parse_any`, checking every result.
fn check_everywhere(input: &str, extra: Option<&KeyFormat>) {
    let tak = KeyFormat::new(["tak"]).expect("valid");
    let multi = KeyFormat::new(["sk_live", "sk_test", "sk"]).expect("valid");
    for format in [Some(&tak), Some(&multi), extra].into_iter().flatten() {
        let accepted =
            |p: &str, i: usize| format.prefixes().get(i).is_some_and(|q| q.as_str() == p);
        check_result(input, format.parse(input), &accepted, format.max_len());
    }
    let any_prefix = |p: &str, i: usize| i == 0 && keyward::key::Prefix::new(p).is_ok();
    check_result(input, parse_any(input), &any_prefix, MAX_ANY);
}

// ---------------------------------------------------------------------------------------------
// Parsing never panics

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES))]

    #[test]
    fn arbitrary_unicode_never_panics(input in any::<String>()) {
        check_everywhere(&input, None);
    }

    #[test]
    fn arbitrary_characters_and_controls_never_panic(input in tricky_string(240)) {
        check_everywhere(&input, None);
    }

    #[test]
    fn arbitrary_bytes_as_lossy_utf8_never_panic(
        bytes in prop::collection::vec(any::<u8>(), 0..240),
    ) {
        check_everywhere(&String::from_utf8_lossy(&bytes), None);
    }

    /// `prefix_body` with a body of base62 characters, its last six sometimes replaced by the
    /// right checksum: the expected result is computed exactly.
    #[test]
    fn near_valid_shapes_give_the_expected_result(
        prefix in prefix(),
        len in prop_oneof![Just(50usize), 0usize..=200, 22usize..=134],
        seed in prop::collection::vec(0usize..62, 200),
        fix_checksum in any::<bool>(),
    ) {
        let mut tail: String = seed[..len].iter().map(|&i| char::from(BASE62[i])).collect();
        if fix_checksum && len >= 6 {
            let sum = expected_checksum(&tail.as_bytes()[..len - 6]);
            tail.replace_range(len - 6.., &sum);
        }
        let input = format!("{prefix}_{tail}");
        let total = input.len();
        let checksum_ok = len >= 6 && tail[len - 6..] == expected_checksum(&tail.as_bytes()[..len - 6]);

        let format = KeyFormat::new([prefix.as_str()]).expect("valid prefix");
        let max = format.max_len();
        let expected = if total > max {
            Err(ParseError::TooLong { max })
        } else if len != 50 {
            Err(ParseError::WrongLength { expected: (max, max), found: total })
        } else if checksum_ok {
            Ok(prefix.as_str())
        } else {
            Err(ParseError::ChecksumMismatch)
        };
        prop_assert_eq!(format.parse(&input).map(|p| p.prefix()), expected);

        let base = prefix.len() + 1 + 6;
        let expected_any = if total > MAX_ANY {
            Err(ParseError::TooLong { max: MAX_ANY })
        } else if !(22..=134).contains(&len) {
            Err(ParseError::WrongLength { expected: (base + 16, base + 128), found: total })
        } else if checksum_ok {
            Ok(prefix.as_str())
        } else {
            Err(ParseError::ChecksumMismatch)
        };
        prop_assert_eq!(parse_any(&input).map(|p| p.prefix()), expected_any);
        check_everywhere(&input, Some(&format));
    }

    /// A generated key after a few random edits (replace, insert, delete, swap).
    #[test]
    fn mutated_keys_never_panic(
        (format, index, bytes) in generated(),
        edits in prop::collection::vec((0u8..4, any::<Index>(), tricky_char()), 1..4),
    ) {
        let key = format.generate_with_rng(index, &mut ReplayRng::new(bytes)).expect("generate");
        let mut chars: Vec<char> = key.expose_secret().chars().collect();
        for (kind, at, c) in edits {
            match kind {
                0 if !chars.is_empty() => {
                    let i = at.index(chars.len());
                    chars[i] = c;
                }
                1 => chars.insert(at.index(chars.len() + 1), c),
                2 if !chars.is_empty() => {
                    chars.remove(at.index(chars.len()));
                }
                _ if chars.len() >= 2 => {
                    let i = at.index(chars.len() - 1);
                    chars.swap(i, i + 1);
                }
                _ => {}
            }
        }
        let input: String = chars.into_iter().collect();
        check_everywhere(&input, Some(&format));
    }
}

proptest! {
    // Each case builds a megabyte, so a handful of cases; the deterministic 1 MB cases are in
    // tests/key_format.rs.
    #![proptest_config(ProptestConfig::with_cases(16))]

    /// Inputs of about 1 MB are refused by length (or by whitespace at either end) without
    /// looking at the rest.
    #[test]
    fn megabyte_inputs_are_too_long(
        head in tricky_string(16),
        fill in tricky_char(),
        tail in tricky_string(16),
        extra in 0usize..4096,
    ) {
        let target = (1 << 20) + extra;
        let mut input = head;
        let fill = fill.to_string();
        input.push_str(&fill.repeat(target / fill.len()));
        input.push_str(&tail);
        let first = input.chars().next().expect("non-empty");
        let last = input.chars().next_back().expect("non-empty");
        let tak = KeyFormat::new(["tak"]).expect("valid");
        let expect = |max| -> Result<&str, ParseError> {
            if first.is_whitespace() {
                Err(ParseError::LeadingWhitespace)
            } else if last.is_whitespace() {
                Err(ParseError::TrailingWhitespace)
            } else {
                Err(ParseError::TooLong { max })
            }
        };
        prop_assert_eq!(tak.parse(&input).map(|p| p.prefix()), expect(tak.max_len()));
        prop_assert_eq!(parse_any(&input).map(|p| p.prefix()), expect(MAX_ANY));
    }
}

// ---------------------------------------------------------------------------------------------
// Round trip and error detection

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES))]

    /// parse(expose_secret()) gives back the prefix, its index, the key id and the secret.
    #[test]
    fn generated_keys_round_trip((format, index, bytes) in generated()) {
        let key = format.generate_with_rng(index, &mut ReplayRng::new(bytes)).expect("generate");
        let full = key.expose_secret();
        let prefix = format.prefixes()[index].as_str();
        prop_assert_eq!(key.prefix(), prefix);
        prop_assert_eq!(full.len(), prefix.len() + 1 + format.tail_len());

        let parsed = format.parse(full).expect("a generated key parses");
        prop_assert_eq!(parsed.prefix(), prefix);
        prop_assert_eq!(parsed.prefix_index(), index);
        prop_assert_eq!(parsed.key_id(), key.id());
        prop_assert_eq!(parsed.key_id().len(), format.id_len());
        prop_assert_eq!(parsed.expose_secret_part(), key.expose_secret_part());
        prop_assert_eq!(parsed.expose_secret_part().len(), format.secret_len());
        prop_assert_eq!(parsed.expose_secret(), full);
        prop_assert_eq!(parsed.preview(), key.preview());

        let view = key.as_parsed();
        prop_assert_eq!(view.prefix(), prefix);
        prop_assert_eq!(view.prefix_index(), index);
        prop_assert_eq!(view.key_id(), key.id());
        prop_assert_eq!(view.expose_secret_part(), key.expose_secret_part());

        // The checksum agrees with the reference implementation.
        let tail = &full[prefix.len() + 1..];
        let (body, sum) = tail.split_at(tail.len() - 6);
        prop_assert_eq!(sum, expected_checksum(body.as_bytes()));

        // parse_any takes bodies of 16 to 128 characters and the first 12 as the id.
        let any = parse_any(full);
        if body.len() <= 128 {
            let any = any.expect("within parse_any's range");
            prop_assert_eq!(any.prefix(), prefix);
            prop_assert_eq!(any.key_id().to_string(), &body[..12]);
        } else {
            prop_assert!(any.is_err());
        }
    }

    /// The same through the operating system's generator.
    #[test]
    fn os_generated_keys_round_trip(format in format(), index in any::<Index>()) {
        let prefix = format.prefixes()[index.index(format.prefixes().len())].as_str();
        let key = format.generate_with_prefix(prefix).expect("generate");
        let parsed = format.parse(key.expose_secret()).expect("a generated key parses");
        prop_assert_eq!(parsed.prefix(), prefix);
        prop_assert_eq!(parsed.key_id(), key.id());
        prop_assert_eq!(parsed.expose_secret_part(), key.expose_secret_part());
    }

    /// Any one character after the prefix replaced by any other is rejected. For base62
    /// replacements this is guaranteed, not probable: CRC-32 detects every error burst of at
    /// most 32 bits (a changed body byte is an 8-bit burst), and six fixed-width base62 digits
    /// encode a u32 injectively (a changed checksum character is a different value).
    #[test]
    fn single_substitutions_are_rejected(
        (format, index, bytes) in generated(),
        at in any::<Index>(),
        with in tricky_char(),
    ) {
        let key = format.generate_with_rng(index, &mut ReplayRng::new(bytes)).expect("generate");
        let full = key.expose_secret();
        let start = key.prefix().len() + 1;
        let position = start + at.index(full.len() - start);
        prop_assume!(!full[position..].starts_with(with));
        let mut input = full.to_owned();
        input.replace_range(position..=position, with.encode_utf8(&mut [0; 4]));
        let last = full.len() - 1;

        let result = format.parse(&input).map(|p| p.prefix());
        if is_base62(with) {
            prop_assert_eq!(result, Err(ParseError::ChecksumMismatch));
        } else if with.is_whitespace() && position == last {
            prop_assert_eq!(result, Err(ParseError::TrailingWhitespace));
        } else if with == '\n' || with == '\r' {
            prop_assert_eq!(result, Err(ParseError::EmbeddedNewline { position }));
        } else if with == '_' {
            // The last `_` now ends a longer prefix the format does not accept.
            prop_assert!(result.is_err());
        } else {
            prop_assert_eq!(
                result,
                Err(ParseError::InvalidCharacter { character: with, position })
            );
        }
    }

    /// Two different adjacent characters after the prefix swapped: a burst of at most 16 bits
    /// in the body, or a different checksum value, or both.
    #[test]
    fn adjacent_transpositions_are_rejected(
        (format, index, bytes) in generated(),
        at in any::<Index>(),
    ) {
        let key = format.generate_with_rng(index, &mut ReplayRng::new(bytes)).expect("generate");
        let full = key.expose_secret().as_bytes();
        let start = key.prefix().len() + 1;
        let i = start + at.index(full.len() - start - 1);
        prop_assume!(full[i] != full[i + 1]);
        let mut swapped = full.to_vec();
        swapped.swap(i, i + 1);
        let input = String::from_utf8(swapped).expect("ASCII");
        prop_assert_eq!(
            format.parse(&input).map(|p| p.prefix()),
            Err(ParseError::ChecksumMismatch)
        );
    }

    /// Whitespace around a key and line breaks inside it are named, never trimmed.
    #[test]
    fn whitespace_and_line_breaks_are_named(
        (format, index, bytes) in generated(),
        ws in prop::sample::select(vec![
            " ", "\t", "\n", "\r\n", "\r", "\u{a0}", "\u{85}", "\u{2028}", "\u{3000}", "  \n",
        ]),
        brk in prop::sample::select(vec!["\n", "\r\n", "\r"]),
        at in any::<Index>(),
    ) {
        let key = format.generate_with_rng(index, &mut ReplayRng::new(bytes)).expect("generate");
        let full = key.expose_secret();
        let leading = format!("{ws}{full}");
        prop_assert_eq!(
            format.parse(&leading).map(|p| p.prefix()),
            Err(ParseError::LeadingWhitespace)
        );
        let trailing = format!("{full}{ws}");
        prop_assert_eq!(
            format.parse(&trailing).map(|p| p.prefix()),
            Err(ParseError::TrailingWhitespace)
        );
        let position = 1 + at.index(full.len() - 1);
        let wrapped = format!("{}{brk}{}", &full[..position], &full[position..]);
        prop_assert_eq!(
            format.parse(&wrapped).map(|p| p.prefix()),
            Err(ParseError::EmbeddedNewline { position })
        );
    }
}
