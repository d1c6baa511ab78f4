//! Stored-hash parsing on arbitrary text: no panic, and `Display` writes back exactly the
//! string that parsed.
#![no_main]

use std::sync::LazyLock;

use keyward::{Hasher, KeyFormat, Pepper, StoredHash};
use libfuzzer_sys::fuzz_target;

static HASHER: LazyLock<Hasher> =
    LazyLock::new(|| Hasher::fast(Pepper::new("k1", [9u8; 32]).expect("pepper")));
static FORMAT: LazyLock<KeyFormat> = LazyLock::new(|| KeyFormat::new(["tak"]).expect("format"));
const KEY: &str = "tak_bUiB7xK2pQ9mZk3VnR8sLq2WtY6uHd0cFj4gXe1aPo7M2VzXeN";

fuzz_target!(|input: &str| {
    let Ok(stored) = input.parse::<StoredHash>() else {
        return;
    };
    assert_eq!(stored.to_string(), input);
    assert_eq!(input.parse::<StoredHash>().as_ref(), Ok(&stored));
    let _ = HASHER.needs_rehash(&stored);
    // Verifying against any parsed hash is total; Argon2 only when it is cheap.
    let cheap = stored
        .argon2_params()
        .is_none_or(|p| u64::from(p.m_cost()) * u64::from(p.t_cost()) <= 256);
    if cheap {
        let key = FORMAT.parse(KEY).expect("golden key");
        let _ = HASHER.verify(&key, &stored);
    }
});
