//! The import-line parser (`keytool import`'s JSON lines) on arbitrary text: no panic; no
//! message repeats the line's digest; a line that parses is checked by the manager
//! without writing, and the same line twice is refused as a repeat.
#![no_main]

use std::sync::LazyLock;

use keyward::manager::{ImportError, ImportLine, ImportLineError};
use keyward::{Hasher, KeyFormat, KeyManager, MemoryStore, Pepper};
use libfuzzer_sys::fuzz_target;

static MANAGER: LazyLock<KeyManager<MemoryStore>> = LazyLock::new(|| {
    KeyManager::new(
        MemoryStore::new(),
        KeyFormat::new(["tak"]).expect("format"),
        Hasher::fast(Pepper::new("k1", [9u8; 32]).expect("pepper")),
    )
});

/// Every message of `e` and its causes, joined.
fn messages(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// The digest fields of a line that is a JSON object, as written: those of 40 hex or base64
/// characters or more (a real digest has 43 to 64), since a shorter string may occur in a
/// message by chance (`long_token_sha256` is a field name).
fn digests(input: &str) -> Vec<String> {
    let Ok(serde_json::Value::Object(fields)) = serde_json::from_str(input) else {
        return Vec::new();
    };
    let nested = fields.get("prefixed_api_key");
    [
        fields.get("sha256"),
        nested.and_then(|p| p.get("long_token_sha256")),
    ]
    .into_iter()
    .filter_map(|value| value?.as_str())
    .filter(|d| {
        d.len() >= 40
            && d.bytes().all(|b| b.is_ascii_alphanumeric() || b"+/=_-".contains(&b))
    })
    .map(str::to_owned)
    .collect()
}

fuzz_target!(|input: &str| {
    let line = match ImportLine::parse(input) {
        Ok(line) => line,
        Err(e) => {
            let text = messages(&e);
            for digest in digests(input) {
                assert!(!text.contains(&digest), "a message repeats the digest: {text}");
            }
            return;
        }
    };
    assert!(!line.name().is_empty() && !line.owner().is_empty());
    assert!(MANAGER.check_import(std::slice::from_ref(&line)).is_ok());
    match MANAGER.check_import(&[line.clone(), line]) {
        Err(ImportError::Refused(list)) => {
            assert!(matches!(list[..], [(2, ImportLineError::Repeated(1))]));
        }
        other => panic!("a repeated line must be refused, got {other:?}"),
    }
});
