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

fuzz_target!(|input: &str| {
    let line = match ImportLine::parse(input) {
        Ok(line) => line,
        Err(e) => {
            let _ = e.to_string();
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
