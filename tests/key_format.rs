//! The key format through the public API: golden vectors, one test per parse error, prefixes,
//! configurable lengths, the quality of generated keys (distinct, uniform) and secret hygiene.

use std::collections::HashSet;
use std::convert::Infallible;

use keyward::{
    KeyFormat, KeyId,
    key::{FormatError, GenerateError, ParseError, PrefixError, parse_any},
};
use rand_core::{TryCryptoRng, TryRng};

/// GitHub's documented example tokens (30-character bodies); the second checksum is
/// zero-padded.
const GITHUB_VALID: [(&str, &str, &str, &str); 2] = [
    // (token, key id = first 12 body characters, rest of the body, checksum)
    (
        "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",
        "M7H4jxUDDWHP",
        "4kZ6A4dxlQYsQIWJuq",
        "11T4V4",
    ),
    (
        "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",
        "zQWBuTSOoRi4",
        "A9spHcVY5ncnsDkxkJ",
        "0mLq17",
    ),
];
/// The first vector with its last checksum character changed.
const GITHUB_BAD: &str = "ghp_M7H4jxUDDWHP4kZ6A4dxlQYsQIWJuq11T4V3";

/// A default-shaped `tak` key whose checksum was computed with Python's `zlib.crc32`, not with
/// keyward.
const GOLDEN: &str = "tak_bUiB7xK2pQ9mZk3VnR8sLq2WtY6uHd0cFj4gXe1aPo7M2VzXeN";
const GOLDEN_ID: &str = "bUiB7xK2pQ9m";
const GOLDEN_SECRET: &str = "Zk3VnR8sLq2WtY6uHd0cFj4gXe1aPo7M";
/// `tak`: 3 + 1 + 12 + 32 + 6.
const TAK_LEN: usize = 54;

const BASE62: &str = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

fn tak() -> KeyFormat {
    KeyFormat::new(["tak"]).expect("tak is a valid prefix")
}

/// `GOLDEN` with the character at `position` replaced by `with`.
fn golden_with(position: usize, with: &str) -> String {
    let mut s = String::from(GOLDEN);
    s.replace_range(position..=position, with);
    s
}

// ---------------------------------------------------------------------------------------------
// Golden vectors

#[test]
fn github_vectors_are_valid() {
    for (token, id, secret, sum) in GITHUB_VALID {
        let parsed = parse_any(token).expect("documented GitHub token is valid");
        assert_eq!(parsed.prefix(), "ghp");
        assert_eq!(parsed.prefix_index(), 0);
        assert_eq!(parsed.key_id().as_str(), id);
        assert_eq!(parsed.expose_secret_part(), secret);
        assert_eq!(parsed.expose_secret(), token);
        let body = format!("{id}{secret}");
        assert_eq!(&keyward::key::checksum(body.as_bytes()), sum.as_bytes());
    }
}

#[test]
fn github_vector_with_wrong_checksum_is_rejected() {
    assert_eq!(
        parse_any(GITHUB_BAD).map(|p| p.prefix()),
        Err(ParseError::ChecksumMismatch)
    );
}

#[test]
fn github_shape_is_not_a_keyward_format() {
    // GitHub's 18 secret characters (about 107 bits) are below keyward's 128-bit floor, so the
    // vectors go through `parse_any` and a `KeyFormat` cannot describe them.
    let format = KeyFormat::new(["ghp"]).expect("valid prefix");
    assert_eq!(
        format.clone().with_secret_len(18),
        Err(FormatError::SecretLength { found: 18 })
    );
    assert_eq!(
        format.parse(GITHUB_VALID[0].0).map(|p| p.prefix()),
        Err(ParseError::WrongLength {
            expected: (54, 54),
            found: 40
        })
    );
}

#[test]
fn golden_key_parses_field_by_field() {
    let parsed = tak().parse(GOLDEN).expect("golden key is valid");
    assert_eq!(parsed.prefix(), "tak");
    assert_eq!(parsed.prefix_index(), 0);
    assert_eq!(parsed.key_id().as_str(), GOLDEN_ID);
    assert_eq!(parsed.expose_secret_part(), GOLDEN_SECRET);
    assert_eq!(parsed.expose_secret(), GOLDEN);
    assert_eq!(parsed.preview(), "tak_bUiB…");
    // Within parse_any's range too, with the same split.
    let any = parse_any(GOLDEN).expect("valid for parse_any");
    assert_eq!(any.key_id().as_str(), GOLDEN_ID);
    assert_eq!(any.expose_secret_part(), GOLDEN_SECRET);
}

// ---------------------------------------------------------------------------------------------
// One test per parse error, with exact values

#[test]
fn error_empty() {
    assert_eq!(tak().parse("").map(|p| p.prefix()), Err(ParseError::Empty));
    assert_eq!(parse_any("").map(|p| p.prefix()), Err(ParseError::Empty));
}

#[test]
fn error_too_long() {
    let format = tak();
    assert_eq!(format.max_len(), TAK_LEN);
    let cases = [
        format!("{GOLDEN}x"),
        format!("{GOLDEN}{GOLDEN}"),
        "a".repeat(TAK_LEN + 1),
        // Non-ASCII counts in characters: 55 of them.
        "é".repeat(TAK_LEN + 1),
    ];
    for input in &cases {
        assert_eq!(
            format.parse(input).map(|p| p.prefix()),
            Err(ParseError::TooLong { max: TAK_LEN }),
            "{input:?}"
        );
    }
    // parse_any: 32-character prefix, `_`, 128 body characters and 6 checksum characters.
    let max_any = 32 + 1 + 128 + 6;
    assert_eq!(
        parse_any(&"a".repeat(max_any + 1)).map(|p| p.prefix()),
        Err(ParseError::TooLong { max: max_any })
    );
    let megabyte = "k".repeat(1 << 20);
    assert_eq!(
        format.parse(&megabyte).map(|p| p.prefix()),
        Err(ParseError::TooLong { max: TAK_LEN })
    );
    assert_eq!(
        parse_any(&megabyte).map(|p| p.prefix()),
        Err(ParseError::TooLong { max: max_any })
    );
}

#[test]
fn error_too_long_message_names_the_limit() {
    assert_eq!(
        ParseError::TooLong { max: 54 }.to_string(),
        "key too long (maximum 54 characters)"
    );
}

#[test]
fn error_leading_whitespace() {
    for ws in [" ", "\t", "\n", "\r\n", "\u{a0}", "\u{2003}", "\u{3000}"] {
        let input = format!("{ws}{GOLDEN}");
        assert_eq!(
            tak().parse(&input).map(|p| p.prefix()),
            Err(ParseError::LeadingWhitespace),
            "{input:?}"
        );
        assert_eq!(
            parse_any(&input).map(|p| p.prefix()),
            Err(ParseError::LeadingWhitespace)
        );
    }
    // Leading whitespace is reported before anything else, even on a huge input.
    let huge = format!(" {}", "x".repeat(1 << 20));
    assert_eq!(
        tak().parse(&huge).map(|p| p.prefix()),
        Err(ParseError::LeadingWhitespace)
    );
}

#[test]
fn error_trailing_whitespace() {
    // "\n" and "\r\n" are what `read_line` and Windows clipboards leave; U+00A0 comes from
    // web pages; nothing is ever trimmed.
    for ws in [
        "\n", "\r\n", "\r", " ", "\t", "\u{a0}", "\u{2028}", "\u{3000}",
    ] {
        let input = format!("{GOLDEN}{ws}");
        assert_eq!(
            tak().parse(&input).map(|p| p.prefix()),
            Err(ParseError::TrailingWhitespace),
            "{input:?}"
        );
        assert_eq!(
            parse_any(&input).map(|p| p.prefix()),
            Err(ParseError::TrailingWhitespace)
        );
    }
    let gh = format!("{}\n", GITHUB_VALID[0].0);
    assert_eq!(
        parse_any(&gh).map(|p| p.prefix()),
        Err(ParseError::TrailingWhitespace)
    );
}

#[test]
fn error_embedded_newline_replacing_a_character() {
    assert_eq!(
        tak().parse(&golden_with(10, "\n")).map(|p| p.prefix()),
        Err(ParseError::EmbeddedNewline { position: 10 })
    );
    assert_eq!(
        tak().parse(&golden_with(1, "\r")).map(|p| p.prefix()),
        Err(ParseError::EmbeddedNewline { position: 1 })
    );
}

/// Regression: a key wrapped onto two lines (a line break inserted, not substituted) used to
/// be reported as `TooLong` by fixed-length formats.
#[test]
fn error_embedded_newline_in_a_wrapped_key() {
    for brk in ["\n", "\r\n", "\r"] {
        for at in [1, 4, 30, TAK_LEN - 1] {
            let input = format!("{}{brk}{}", &GOLDEN[..at], &GOLDEN[at..]);
            assert_eq!(
                tak().parse(&input).map(|p| p.prefix()),
                Err(ParseError::EmbeddedNewline { position: at }),
                "{input:?}"
            );
            assert_eq!(
                parse_any(&input).map(|p| p.prefix()),
                Err(ParseError::EmbeddedNewline { position: at }),
                "{input:?}"
            );
        }
    }
    let gh = GITHUB_VALID[1].0;
    let wrapped = format!("{}\r\n{}", &gh[..20], &gh[20..]);
    assert_eq!(
        parse_any(&wrapped).map(|p| p.prefix()),
        Err(ParseError::EmbeddedNewline { position: 20 })
    );
    // Longer than a line break can explain: too long.
    let two_keys = format!("{GOLDEN}\n{GOLDEN}");
    assert_eq!(
        tak().parse(&two_keys).map(|p| p.prefix()),
        Err(ParseError::TooLong { max: TAK_LEN })
    );
}

#[test]
fn error_missing_prefix() {
    let no_separator = GOLDEN.replacen('_', "", 1);
    assert_eq!(
        tak().parse(&no_separator).map(|p| p.prefix()),
        Err(ParseError::MissingPrefix)
    );
    assert_eq!(
        parse_any(&no_separator).map(|p| p.prefix()),
        Err(ParseError::MissingPrefix)
    );
    assert_eq!(
        tak().parse("tak").map(|p| p.prefix()),
        Err(ParseError::MissingPrefix)
    );
}

#[test]
fn error_unknown_prefix() {
    for input in [
        GOLDEN.replacen("tak", "tok", 1),
        GOLDEN.replacen("tak", "TAK", 1),
        format!("sk_{}", &GOLDEN[4..]),
        format!("_{}", &GOLDEN[4..]),
        format!("ta_{}", &GOLDEN[4..]),
    ] {
        assert_eq!(
            tak().parse(&input).map(|p| p.prefix()),
            Err(ParseError::UnknownPrefix),
            "{input:?}"
        );
    }
    // parse_any accepts any valid prefix, so only invalid ones are unknown.
    for prefix in ["Ghp", "1ghp", "gh-p", "ghp_", "", &"a".repeat(33)] {
        let input = format!("{prefix}_{}", &GITHUB_VALID[0].0[4..]);
        assert_eq!(
            parse_any(&input).map(|p| p.prefix()),
            Err(ParseError::UnknownPrefix),
            "{input:?}"
        );
    }
    let other_prefix = format!("xyz_{}", &GITHUB_VALID[0].0[4..]);
    assert_eq!(
        parse_any(&other_prefix).map(|p| p.prefix()),
        Ok("xyz"),
        "the checksum covers the body only"
    );
}

#[test]
fn error_invalid_character() {
    let cases: [(&str, char, usize); 8] = [
        ("-", '-', 4),
        (" ", ' ', 20),
        ("+", '+', 53),
        ("\0", '\0', 30),
        ("\u{7f}", '\u{7f}', 16),
        ("\t", '\t', 17),
        // Non-ASCII in a key of the right length in characters (regression: used to be
        // `TooLong` because the length was compared in bytes).
        ("é", 'é', 12),
        // A Greek capital zeta standing in for `Z`.
        ("Ζ", 'Ζ', 16),
    ];
    for (with, character, position) in cases {
        let input = golden_with(position, with);
        assert_eq!(input.chars().count(), TAK_LEN);
        assert_eq!(
            tak().parse(&input).map(|p| p.prefix()),
            Err(ParseError::InvalidCharacter {
                character,
                position
            }),
            "{input:?}"
        );
        assert_eq!(
            parse_any(&input).map(|p| p.prefix()),
            Err(ParseError::InvalidCharacter {
                character,
                position
            }),
            "{input:?}"
        );
    }
    // An emoji (4 bytes) in a short parse_any input: position in characters, not bytes.
    let input = format!("{}🔑{}", &GITHUB_VALID[0].0[..9], &GITHUB_VALID[0].0[10..]);
    assert_eq!(
        parse_any(&input).map(|p| p.prefix()),
        Err(ParseError::InvalidCharacter {
            character: '🔑',
            position: 9
        })
    );
}

#[test]
fn error_wrong_length() {
    let format = tak();
    let short = &GOLDEN[..TAK_LEN - 1];
    assert_eq!(
        format.parse(short).map(|p| p.prefix()),
        Err(ParseError::WrongLength {
            expected: (TAK_LEN, TAK_LEN),
            found: TAK_LEN - 1
        })
    );
    assert_eq!(
        format.parse("tak_").map(|p| p.prefix()),
        Err(ParseError::WrongLength {
            expected: (TAK_LEN, TAK_LEN),
            found: 4
        })
    );
    // parse_any: a body of 16 to 128 characters plus 6 of checksum, after `ghp_`.
    let base = "ghp_".len() + 6;
    let too_short = format!("ghp_{}", "a".repeat(6 + 15));
    assert_eq!(
        parse_any(&too_short).map(|p| p.prefix()),
        Err(ParseError::WrongLength {
            expected: (base + 16, base + 128),
            found: too_short.len()
        })
    );
    let too_long_body = format!("ghp_{}", "a".repeat(6 + 129));
    assert_eq!(
        parse_any(&too_long_body).map(|p| p.prefix()),
        Err(ParseError::WrongLength {
            expected: (base + 16, base + 128),
            found: too_long_body.len()
        })
    );
    assert_eq!(
        ParseError::WrongLength {
            expected: (54, 54),
            found: 53
        }
        .to_string(),
        "wrong key length: 53 characters, expected 54"
    );
    assert_eq!(
        ParseError::WrongLength {
            expected: (26, 138),
            found: 25
        }
        .to_string(),
        "wrong key length: 25 characters, expected 26 to 138"
    );
}

#[test]
fn error_checksum_mismatch() {
    let last = TAK_LEN - 1;
    for (position, with) in [(last, "M"), (4, "c"), (20, "0")] {
        let input = golden_with(position, with);
        assert_ne!(input, GOLDEN);
        assert_eq!(
            tak().parse(&input).map(|p| p.prefix()),
            Err(ParseError::ChecksumMismatch),
            "{input:?}"
        );
    }
    // Two adjacent characters swapped.
    let swapped = format!(
        "{}{}{}{}",
        &GOLDEN[..5],
        &GOLDEN[6..7],
        &GOLDEN[5..6],
        &GOLDEN[7..]
    );
    assert_eq!(
        tak().parse(&swapped).map(|p| p.prefix()),
        Err(ParseError::ChecksumMismatch)
    );
}

/// CRC-32 detects every error burst of at most 32 bits, so changing one body byte is always
/// detected; and six fixed-width base62 digits encode a `u32` injectively, so changing one
/// checksum character is too. Checked exhaustively for the golden key.
#[test]
fn every_single_character_substitution_is_detected() {
    let format = tak();
    let mut tried = 0;
    for position in "tak_".len()..TAK_LEN {
        for with in BASE62.chars() {
            if GOLDEN[position..].starts_with(with) {
                continue;
            }
            let input = golden_with(position, with.encode_utf8(&mut [0; 4]));
            assert_eq!(
                format.parse(&input).map(|p| p.prefix()),
                Err(ParseError::ChecksumMismatch),
                "{input}"
            );
            tried += 1;
        }
    }
    assert_eq!(tried, 50 * 61);
}

#[test]
fn error_messages_never_contain_the_key() {
    let inputs = [
        format!("{GOLDEN}x"),
        format!(" {GOLDEN}"),
        format!("{GOLDEN}\n"),
        golden_with(10, "\n"),
        GOLDEN.replacen('_', "", 1),
        GOLDEN.replacen("tak", "tok", 1),
        golden_with(30, "-"),
        GOLDEN[..TAK_LEN - 1].to_owned(),
        golden_with(TAK_LEN - 1, "M"),
    ];
    for input in &inputs {
        let error = tak().parse(input).expect_err("every input is malformed");
        let message = format!("{error} {error:?}");
        for needle in [GOLDEN_ID, GOLDEN_SECRET, &GOLDEN_SECRET[..8]] {
            assert!(!message.contains(needle), "{message}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Prefixes

#[test]
fn multi_prefix_format_reports_which_matched() {
    let format = KeyFormat::new(["sk_live", "sk_test"]).expect("valid prefixes");
    assert_eq!(format.max_len(), 7 + 1 + 50);
    assert_eq!(format.regex(), r"\b(sk_live|sk_test)_[0-9A-Za-z]{50}\b");

    let live = format.generate().expect("generate");
    assert_eq!(live.prefix(), "sk_live");
    let parsed = format.parse(live.expose_secret()).expect("valid");
    assert_eq!((parsed.prefix(), parsed.prefix_index()), ("sk_live", 0));
    assert_eq!(parsed.key_id(), live.id());

    let test = format.generate_with_prefix("sk_test").expect("generate");
    assert_eq!(test.prefix(), "sk_test");
    let parsed = format.parse(test.expose_secret()).expect("valid");
    assert_eq!((parsed.prefix(), parsed.prefix_index()), ("sk_test", 1));
    assert_eq!(test.as_parsed().prefix_index(), 1);

    assert!(matches!(
        format.generate_with_prefix("sk_prod"),
        Err(GenerateError::UnknownPrefix)
    ));
    let prod = live.expose_secret().replacen("sk_live", "sk_prod", 1);
    assert_eq!(
        format.parse(&prod).map(|p| p.prefix()),
        Err(ParseError::UnknownPrefix)
    );
}

#[test]
fn overlapping_prefixes_parse_both_kinds() {
    for order in [["sk", "sk_live"], ["sk_live", "sk"]] {
        let format = KeyFormat::new(order).expect("valid prefixes");
        for (index, prefix) in order.iter().enumerate() {
            for _ in 0..50 {
                let key = format.generate_with_prefix(prefix).expect("generate");
                assert_eq!(key.expose_secret().len(), prefix.len() + 1 + 50);
                let parsed = format.parse(key.expose_secret()).expect("valid");
                assert_eq!(parsed.prefix(), *prefix);
                assert_eq!(parsed.prefix_index(), index);
                assert_eq!(parsed.key_id(), key.id());
                assert_eq!(parsed.expose_secret_part(), key.expose_secret_part());
            }
        }
    }
    // A format with only one of them refuses the other (length is checked first).
    let short_only = KeyFormat::new(["sk"]).expect("valid");
    let live = KeyFormat::new(["sk_live"]).expect("valid");
    let live_key = live.generate().expect("generate");
    let short_key = short_only.generate().expect("generate");
    assert_eq!(
        short_only
            .parse(live_key.expose_secret())
            .map(|p| p.prefix()),
        Err(ParseError::TooLong { max: 53 })
    );
    assert_eq!(
        live.parse(short_key.expose_secret()).map(|p| p.prefix()),
        Err(ParseError::UnknownPrefix)
    );
}

#[test]
fn format_construction_errors() {
    assert_eq!(
        KeyFormat::new(Vec::<&str>::new()),
        Err(FormatError::NoPrefix)
    );
    assert_eq!(
        KeyFormat::new(["tak", "tak"]),
        Err(FormatError::DuplicatePrefix)
    );
    assert_eq!(
        KeyFormat::new(["Tak"]),
        Err(FormatError::Prefix(PrefixError::BadStart))
    );
    assert_eq!(
        KeyFormat::new(["tak_"]),
        Err(FormatError::Prefix(PrefixError::EmptyPart { position: 3 }))
    );
}

// ---------------------------------------------------------------------------------------------
// Configurable lengths

#[test]
fn length_bounds() {
    assert_eq!(keyward::key::MIN_KEY_ID_LEN, 11);
    assert_eq!(keyward::key::MAX_KEY_ID_LEN, 32);
    assert_eq!(KeyFormat::MIN_SECRET_LEN, 22);
    assert_eq!(KeyFormat::MAX_SECRET_LEN, 128);
    for bad in [0, 10, 33, usize::MAX] {
        assert_eq!(
            tak().with_id_len(bad),
            Err(FormatError::IdLength { found: bad })
        );
    }
    for bad in [0, 21, 129, usize::MAX] {
        assert_eq!(
            tak().with_secret_len(bad),
            Err(FormatError::SecretLength { found: bad })
        );
    }
    for ok in [11, 12, 32] {
        assert_eq!(tak().with_id_len(ok).map(|f| f.id_len()), Ok(ok));
    }
    for ok in [22, 32, 128] {
        assert_eq!(tak().with_secret_len(ok).map(|f| f.secret_len()), Ok(ok));
    }
    assert_eq!(
        FormatError::SecretLength { found: 21 }.to_string(),
        "secret length 21 out of bounds (22 to 128 characters; 22 carry 128 bits)"
    );
}

#[test]
fn configured_lengths_generate_and_parse() {
    for (id_len, secret_len) in [(11, 22), (12, 32), (20, 64), (32, 128)] {
        let format = tak()
            .with_id_len(id_len)
            .and_then(|f| f.with_secret_len(secret_len))
            .expect("lengths in bounds");
        assert_eq!(format.tail_len(), id_len + secret_len + 6);
        assert_eq!(format.max_len(), 4 + id_len + secret_len + 6);
        let key = format.generate().expect("generate");
        assert_eq!(key.expose_secret().len(), format.max_len());
        assert_eq!(key.id().len(), id_len);
        assert_eq!(key.expose_secret_part().len(), secret_len);
        let parsed = format.parse(key.expose_secret()).expect("valid");
        assert_eq!(parsed.key_id(), key.id());
        assert_eq!(parsed.expose_secret_part(), key.expose_secret_part());
        // A key of one shape is the wrong length for another.
        if (id_len, secret_len) != (12, 32) {
            let found = key.expose_secret().len();
            let expected = tak().max_len();
            let result = tak().parse(key.expose_secret()).map(|p| p.prefix());
            let want = if found > expected {
                ParseError::TooLong { max: expected }
            } else {
                ParseError::WrongLength {
                    expected: (expected, expected),
                    found,
                }
            };
            assert_eq!(result, Err(want));
        }
    }
    // The same characters split differently: a longer id takes characters from the secret.
    let wide_id = tak()
        .with_id_len(20)
        .and_then(|f| f.with_secret_len(24))
        .expect("lengths in bounds");
    let parsed = wide_id
        .parse(GOLDEN)
        .expect("same total length, same checksum");
    assert_eq!(parsed.key_id().as_str(), &GOLDEN[4..24]);
    assert_eq!(parsed.expose_secret_part(), &GOLDEN[24..48]);
}

// ---------------------------------------------------------------------------------------------
// Generation

/// Replays a fixed byte pattern forever.
#[derive(Debug)]
struct PatternRng(&'static [u8], usize);

impl TryRng for PatternRng {
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
            *b = self.0[self.1 % self.0.len()];
            self.1 += 1;
        }
        Ok(())
    }
}
impl TryCryptoRng for PatternRng {}

/// A generator that always fails.
#[derive(Debug)]
struct BrokenRng;

#[derive(Debug)]
struct Broken;

impl std::fmt::Display for Broken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("entropy source unplugged")
    }
}
impl std::error::Error for Broken {}

impl TryRng for BrokenRng {
    type Error = Broken;
    fn try_next_u32(&mut self) -> Result<u32, Broken> {
        Err(Broken)
    }
    fn try_next_u64(&mut self) -> Result<u64, Broken> {
        Err(Broken)
    }
    fn try_fill_bytes(&mut self, _: &mut [u8]) -> Result<(), Broken> {
        Err(Broken)
    }
}
impl TryCryptoRng for BrokenRng {}

/// The documented mapping: a byte's low six bits give the character when below 62, otherwise
/// the byte is discarded (no `% 62`, which would favour `0`-`7`). Expected keys computed with
/// Python's `zlib.crc32`.
#[test]
fn generation_uses_low_six_bits_and_rejects_62_and_63() {
    // 62, 63, 255, 126, 127, 190, 191, 254 are rejected; 0 -> '0', 61 -> 'z', 64 -> '0',
    // 1 -> '1'. With `% 62`, 62 would give '0' and 255 would give '7'.
    const PATTERN: &[u8] = &[62, 63, 255, 0, 61, 64, 126, 127, 190, 191, 254, 1];
    let key = tak()
        .generate_with_rng(0, &mut PatternRng(PATTERN, 0))
        .expect("generate");
    assert_eq!(
        key.expose_secret(),
        "tak_0z010z010z010z010z010z010z010z010z010z010z013IChwD"
    );
    let long = KeyFormat::new(["sk_live"])
        .and_then(|f| f.with_id_len(32))
        .and_then(|f| f.with_secret_len(128))
        .expect("valid format");
    let key = long
        .generate_with_rng(0, &mut PatternRng(PATTERN, 0))
        .expect("generate");
    assert_eq!(
        key.expose_secret(),
        format!("sk_live_{}22dw8b", "0z01".repeat(40))
    );
    // Three rejected bytes for every usable one: generation keeps drawing.
    let key = tak()
        .generate_with_rng(0, &mut PatternRng(&[0xff, 0xfe, 0xbf, 0x07], 0))
        .expect("generate");
    assert!(key.expose_secret_part().bytes().all(|b| b == b'7'));
}

#[test]
fn generation_errors() {
    let err = tak()
        .generate_with_rng(0, &mut BrokenRng)
        .expect_err("the generator fails");
    assert!(matches!(err, GenerateError::Rng(_)));
    let source = std::error::Error::source(&err).expect("the rng error is the source");
    assert_eq!(source.to_string(), "entropy source unplugged");
    assert!(matches!(
        tak().generate_with_rng(1, &mut PatternRng(&[0], 0)),
        Err(GenerateError::UnknownPrefix)
    ));
}

#[test]
fn two_thousand_generated_keys_are_distinct() {
    let format = tak();
    let mut keys = HashSet::new();
    let mut ids = HashSet::new();
    for _ in 0..2_000 {
        let key = format.generate().expect("generate");
        assert!(format.parse(key.expose_secret()).is_ok());
        ids.insert(key.id());
        keys.insert(key.expose_secret().to_owned());
    }
    assert_eq!(keys.len(), 2_000);
    assert_eq!(ids.len(), 2_000);
}

/// Pearson's chi-square statistic of `counts` against a uniform distribution.
fn chi_square(counts: &[u64]) -> f64 {
    let total: u64 = counts.iter().sum();
    let expected = total as f64 / counts.len() as f64;
    counts
        .iter()
        .map(|&c| {
            let d = c as f64 - expected;
            d * d / expected
        })
        .sum()
}

/// Critical values of the chi-square distribution with 61 degrees of freedom (62 symbols),
/// computed with the regularized upper incomplete gamma function: P(X > 128.52) = 1e-6 and
/// P(X > 144.47) = 1e-8. With a uniform generator the aggregate test fails once in a million
/// runs, and the 44 per-position tests together (Bonferroni) fewer than once in two million.
const CHI2_61_P1E6: f64 = 128.52;
const CHI2_61_P1E8: f64 = 144.47;

fn symbol_index(b: u8) -> usize {
    BASE62
        .bytes()
        .position(|c| c == b)
        .expect("generated characters are base62")
}

/// The body characters (id and secret, not the checksum, which is not uniform) of 2,000
/// default keys: 88,000 draws, about 1,419 expected per symbol.
#[test]
fn generated_characters_are_uniform() {
    let format = tak();
    let body_len = format.id_len() + format.secret_len();
    let mut overall = [0u64; 62];
    let mut per_position = vec![[0u64; 62]; body_len];
    for _ in 0..2_000 {
        let key = format.generate().expect("generate");
        let body = &key.expose_secret().as_bytes()[4..4 + body_len];
        for (position, &b) in body.iter().enumerate() {
            let symbol = symbol_index(b);
            overall[symbol] += 1;
            per_position[position][symbol] += 1;
        }
    }
    let statistic = chi_square(&overall);
    assert!(
        statistic < CHI2_61_P1E6,
        "chi-square {statistic:.1} over 62 symbols (critical {CHI2_61_P1E6}): {overall:?}"
    );
    // 2,000 draws per position, about 32 expected per cell.
    for (position, counts) in per_position.iter().enumerate() {
        let statistic = chi_square(counts);
        assert!(
            statistic < CHI2_61_P1E8,
            "position {position}: chi-square {statistic:.1} (critical {CHI2_61_P1E8})"
        );
    }
}

/// The uniformity test can fail: `byte % 62` over uniform bytes (8 symbols at 5/256, the
/// others at 4/256), at the same sample size, is far beyond the critical value.
#[test]
fn chi_square_detects_modulo_bias() {
    let mut counts = [0u64; 62];
    // 344 passes over all 256 byte values: 88,064 draws.
    for _ in 0..344 {
        for byte in 0..=255u8 {
            counts[usize::from(byte % 62)] += 1;
        }
    }
    let statistic = chi_square(&counts);
    assert!(statistic > 4.0 * CHI2_61_P1E6, "{statistic}");
    // And an exactly uniform count gives zero.
    assert!(chi_square(&[1_419; 62]).abs() < 1e-9);
}

// ---------------------------------------------------------------------------------------------
// Secret hygiene, key ids and previews

#[test]
fn debug_and_display_never_show_the_secret() {
    let format = KeyFormat::new(["sk_live", "sk_test"]).expect("valid");
    for _ in 0..20 {
        let key = format.generate().expect("generate");
        let secret = key.expose_secret_part();
        let parsed = format.parse(key.expose_secret()).expect("valid");
        let shown = [
            format!("{key:?}"),
            format!("{key:#?}"),
            format!("{key}"),
            format!("{parsed:?}"),
            format!("{parsed:#?}"),
            format!("{:?}", key.as_parsed()),
        ];
        for s in &shown {
            assert!(!s.contains(secret), "{s}");
            assert!(!s.contains(key.expose_secret()), "{s}");
            // Not even a recognisable stretch of it.
            for window in secret.as_bytes().windows(6) {
                let window = std::str::from_utf8(window).expect("ascii");
                assert!(!s.contains(window), "{s} contains {window}");
            }
        }
        assert_eq!(format!("{key}"), key.preview());
        assert_eq!(format!("{key:?}"), format!("ApiKey({})", key.preview()));
        assert!(format!("{parsed:?}").contains("<redacted>"));
    }
    let gh = parse_any(GITHUB_VALID[0].0).expect("valid");
    let shown = format!("{gh:?}");
    assert!(!shown.contains(GITHUB_VALID[0].2), "{shown}");
}

#[test]
fn preview_is_prefix_and_four_id_characters() {
    let key = tak().generate().expect("generate");
    let id = key.id();
    let expected = format!("tak_{}…", &id.as_str()[..4]);
    assert_eq!(key.preview(), expected);
    assert_eq!(key.as_parsed().preview(), expected);
    assert_eq!(key.preview().chars().count(), "tak_".len() + 4 + 1);
    assert!(
        key.expose_secret()
            .starts_with(&expected[..expected.len() - '…'.len_utf8()])
    );
    assert_eq!(
        parse_any(GITHUB_VALID[1].0).expect("valid").preview(),
        "ghp_zQWB…"
    );
    assert_eq!(
        KeyFormat::new(["sk_live"])
            .expect("valid")
            .generate()
            .expect("generate")
            .preview()
            .chars()
            .count(),
        "sk_live_".len() + 4 + 1
    );
}

#[test]
fn key_id_serde_round_trip() {
    let key = tak().generate().expect("generate");
    let id = key.id();
    let json = serde_json::to_string(&id).expect("serialize");
    assert_eq!(json, format!("\"{id}\""));
    let back: KeyId = serde_json::from_str(&json).expect("deserialize");
    assert_eq!(back, id);
    assert_eq!(back.to_string().parse::<KeyId>(), Ok(id));

    let golden: KeyId = serde_json::from_str(&format!("\"{GOLDEN_ID}\"")).expect("valid id");
    assert_eq!(golden, tak().parse(GOLDEN).expect("valid").key_id());
    for bad in ["\"short\"", "\"bUiB7xK2pQ9_\"", "\"bUiB7xK2pQ9é\"", "42"] {
        assert!(serde_json::from_str::<KeyId>(bad).is_err(), "{bad}");
    }
}
