//! Key parsing on arbitrary text: no panic, and whatever parses is well formed.
#![no_main]

use std::sync::LazyLock;

use keyward::{KeyFormat, key::{CHECKSUM_LEN, ParseError, ParsedKey, checksum, parse_any}};
use libfuzzer_sys::fuzz_target;

static FORMATS: LazyLock<[KeyFormat; 2]> = LazyLock::new(|| {
    let other = KeyFormat::new(["ab"]).and_then(|f| f.with_id_len(16)?.with_secret_len(22));
    [
        KeyFormat::new(["tak", "sk_live", "sk_test", "ghp"]).expect("format"),
        other.expect("format"),
    ]
});

/// A parsed key is the input, cut at the separator, with a matching checksum.
fn check(input: &str, key: &ParsedKey<'_>) -> usize {
    assert_eq!(key.expose_secret(), input);
    let body = input
        .strip_prefix(key.prefix())
        .and_then(|rest| rest.strip_prefix('_'))
        .and_then(|rest| rest.get(..rest.len() - CHECKSUM_LEN))
        .expect("prefix_ then body then checksum");
    assert_eq!(
        checksum(body.as_bytes()),
        input.as_bytes()[input.len() - CHECKSUM_LEN..]
    );
    assert!(body.starts_with(key.key_id().as_str()));
    assert!(body.ends_with(key.expose_secret_part()));
    assert!(body.bytes().all(|b| b.is_ascii_alphanumeric()));
    key.key_id().as_str().len()
}

fuzz_target!(|data: &[u8]| {
    let input = String::from_utf8_lossy(data);
    let any = parse_any(&input);
    if let Ok(key) = &any {
        assert_eq!(check(&input, key), 12);
    }
    for format in FORMATS.iter() {
        match format.parse(&input) {
            Ok(key) => {
                assert_eq!(check(&input, &key), format.id_len());
                assert_eq!(input.len(), key.prefix().len() + 1 + format.tail_len());
                assert_eq!(format.prefixes()[key.prefix_index()].as_str(), key.prefix());
                // Every key of a format is also a key of unknown origin.
                assert_eq!(any.map(|k| k.prefix()), Ok(key.prefix()));
            }
            // The character named is never a secret (base62) one.
            Err(ParseError::InvalidCharacter { character, .. }) => {
                assert!(!character.is_ascii_alphanumeric());
            }
            Err(_) => {}
        }
    }
});
