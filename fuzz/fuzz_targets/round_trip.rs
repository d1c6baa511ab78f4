//! Generate, hash, verify: with arbitrary format parameters the right key verifies, and a key
//! changed in any one character (checksum recomputed, so it still parses) does not.
#![no_main]

use std::sync::LazyLock;

use arbitrary::Arbitrary;
use keyward::{Hasher, KeyFormat, Pepper, hash::Argon2Params, key::{MAX_KEY_ID_LEN, MIN_KEY_ID_LEN, checksum}};
use libfuzzer_sys::fuzz_target;

const PREFIXES: [&str; 4] = ["sk_live", "sk_test", "tak", "a"];
const BASE62: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// Fast, Argon2id with tiny parameters (m=8 KiB, t=1, p=1), and the same with the cache.
static HASHERS: LazyLock<[Hasher; 3]> = LazyLock::new(|| {
    let tiny = Argon2Params::new(8, 1, 1).expect("params");
    [
        Hasher::fast(Pepper::new("k1", [7u8; 32]).expect("pepper")),
        Hasher::argon2(tiny),
        Hasher::argon2(tiny).with_verify_cache(64),
    ]
});

#[derive(Debug, Arbitrary)]
struct Input {
    prefix: u8,
    id_len: u8,
    secret_len: u8,
    hasher: u8,
    body: Vec<u8>,
    position: u16,
    replacement: u8,
}

/// `prefix_body` followed by the checksum of `body`.
fn key(prefix: &str, body: &[u8]) -> String {
    let mut key = format!("{prefix}_{}", String::from_utf8_lossy(body));
    key.push_str(&String::from_utf8_lossy(&checksum(body)));
    key
}

fuzz_target!(|input: Input| {
    let id_len = MIN_KEY_ID_LEN + usize::from(input.id_len) % (MAX_KEY_ID_LEN - MIN_KEY_ID_LEN + 1);
    let secret_span = KeyFormat::MAX_SECRET_LEN - KeyFormat::MIN_SECRET_LEN + 1;
    let secret_len = KeyFormat::MIN_SECRET_LEN + usize::from(input.secret_len) % secret_span;
    let format = KeyFormat::new(PREFIXES)
        .and_then(|f| f.with_id_len(id_len)?.with_secret_len(secret_len))
        .expect("lengths within bounds");
    let prefix = PREFIXES[usize::from(input.prefix) % PREFIXES.len()];
    let mut chars = input.body.iter().chain([&0u8].into_iter().cycle());
    let body: Vec<u8> = (0..id_len + secret_len)
        .map(|_| BASE62[usize::from(*chars.next().unwrap_or(&0)) % 62])
        .collect();
    let right = key(prefix, &body);
    let parsed = format.parse(&right).expect("a well-formed key parses");
    assert_eq!(parsed.key_id().as_str().as_bytes(), &body[..id_len]);
    let hasher = &HASHERS[usize::from(input.hasher) % HASHERS.len()];
    let stored = hasher.hash(&parsed).expect("hash");
    assert_eq!(hasher.verify(&parsed, &stored), Ok(()));

    // One character of the prefix or body changed, then the checksum recomputed.
    let sep = prefix.len();
    let mut unsigned = right.as_bytes()[..sep + 1 + body.len()].to_vec();
    let mut at = usize::from(input.position) % (unsigned.len() - 1);
    at += usize::from(at >= sep);
    let mut new = BASE62[usize::from(input.replacement) % 62];
    if new == unsigned[at] {
        new = BASE62[(usize::from(input.replacement) + 1) % 62];
    }
    unsigned[at] = new;
    let wrong = key(
        &String::from_utf8_lossy(&unsigned[..sep]),
        &unsigned[sep + 1..],
    );
    if let Ok(presented) = format.parse(&wrong) {
        assert!(
            hasher.verify(&presented, &stored).is_err(),
            "{wrong} verified"
        );
    }
    // The right key still verifies after a failure (and a cache forgets nothing wrongly).
    assert_eq!(hasher.verify(&parsed, &stored), Ok(()));
});
