//! Stored hashes through the public API: golden vectors for HMAC-SHA256 and Argon2id computed
//! outside keyward, a table of malformed hash strings with their exact errors, property tests
//! of the parser, rehash decisions, pepper rotation, the opaque mismatch, the Argon2
//! verification cache and redacted `Debug` output.
//!
//! Provenance of the vectors: every digest below was computed with Python's standard library
//! (`hmac`, `hashlib`, `base64`) or argon2-cffi 25.1 (`argon2.low_level.hash_secret`), and
//! every key checksum with `zlib.crc32`, never with keyward:
//!
//! ```text
//! import zlib, hmac, hashlib, base64
//! from argon2.low_level import hash_secret, Type
//! B62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
//! def cs(body):
//!     n = zlib.crc32(body.encode()); s = ""
//!     for _ in range(6): s = B62[n % 62] + s; n //= 62
//!     return s
//! def key(prefix, body): return f"{prefix}_{body}{cs(body)}"
//! def b64(b): return base64.b64encode(b).decode().rstrip("=")
//! hmac_digest = b64(hmac.new(bytes(range(32)), key.encode(), hashlib.sha256).digest())
//! argon2 = hash_secret(key.encode(), salt, t, m, p, hash_len, Type.ID).decode()
//! ```

use std::collections::BTreeMap;

use keyward::{
    Hasher, KeyFormat, Pepper, StoredHash,
    hash::{
        ARGON2_OUTPUT_LEN, ARGON2_SALT_LEN, Argon2Params, Argon2ParamsError, HashAlgorithm,
        HashParseError, MAX_STORED_HASH_LEN, Mismatch, PepperError, PepperId, PepperIdError,
    },
    key::parse_any,
};
use proptest::prelude::*;

/// A default-shaped `tak` key (12 id characters, 32 secret characters).
const KEY_TAK: &str = "tak_bUiB7xK2pQ9mZk3VnR8sLq2WtY6uHd0cFj4gXe1aPo7M2VzXeN";
/// `KEY_TAK` with the last secret character changed (`M` to `N`) and its checksum recomputed.
const KEY_TAK_CHANGED: &str = "tak_bUiB7xK2pQ9mZk3VnR8sLq2WtY6uHd0cFj4gXe1aPo7N0IdhTF";
/// A key with a two-part prefix and a 48-character body.
const KEY_LIVE: &str = "sk_live_0000000000000123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ0uUDpR";
/// `KEY_LIVE` with the last secret character changed (`Z` to `z`) and its checksum recomputed.
const KEY_LIVE_CHANGED: &str = "sk_live_0000000000000123456789ABCDEFGHIJKLMNOPQRSTUVWXYz0C7oZd";

/// The pepper of the HMAC vectors: id `k1`, bytes 0x00 to 0x1f.
const PEPPER_K1: &str = "k1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
/// A 64-byte pepper with a dotted id: bytes 0x20 to 0x5f.
const PEPPER_LONG: &str = "2026-11.b:ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj9AQUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVpbXF1eXw==";

/// Small Argon2 parameters so that most tests run fast.
fn small() -> Argon2Params {
    Argon2Params::new(64, 1, 1).expect("valid small params")
}

fn k1_bytes() -> Vec<u8> {
    (0u8..32).collect()
}

fn pepper_k1() -> Pepper {
    Pepper::new("k1", k1_bytes()).expect("32-byte pepper")
}

fn pepper(id: &str, fill: u8) -> Pepper {
    Pepper::new(id, [fill; 32]).expect("32-byte pepper")
}

fn stored(s: &str) -> StoredHash {
    s.parse()
        .unwrap_or_else(|e| panic!("{s:?} should parse: {e}"))
}

// ---------------------------------------------------------------------------------------------
// Golden vectors

/// What a golden vector must parse to, field by field.
struct Vector {
    key: &'static str,
    changed: &'static str,
    hash: &'static str,
    algorithm: HashAlgorithm,
    pepper_id: Option<&'static str>,
    params: Option<(u32, u32, u32)>,
    salt_len: usize,
    digest_len: usize,
}

const HMAC_VECTORS: [Vector; 3] = [
    Vector {
        key: KEY_TAK,
        changed: KEY_TAK_CHANGED,
        hash: "$hmac-sha256$pid=k1$GPO/wXplk6TnSaxjNykgAo38qe03cXfN8cMHeVm7p1k",
        algorithm: HashAlgorithm::HmacSha256,
        pepper_id: Some("k1"),
        params: None,
        salt_len: 0,
        digest_len: 32,
    },
    Vector {
        key: KEY_LIVE,
        changed: KEY_LIVE_CHANGED,
        hash: "$hmac-sha256$pid=k1$03F4rpZLdslTtrqf0gnv6FIIYpr3KntmPbJmqxOua5o",
        algorithm: HashAlgorithm::HmacSha256,
        pepper_id: Some("k1"),
        params: None,
        salt_len: 0,
        digest_len: 32,
    },
    Vector {
        key: KEY_TAK,
        changed: KEY_TAK_CHANGED,
        hash: "$hmac-sha256$pid=2026-11.b$SwkbKxjeZRUzyIQOvoqWNdfgxk0/gh2Cj5VlQRpHkPc",
        algorithm: HashAlgorithm::HmacSha256,
        pepper_id: Some("2026-11.b"),
        params: None,
        salt_len: 0,
        digest_len: 32,
    },
];

/// Salts: `keyward-salt-001` (16 bytes), `8bytesal` (8 bytes), `keyward-salt-002`.
const ARGON2_SMALL_VECTORS: [Vector; 2] = [
    Vector {
        key: KEY_TAK,
        changed: KEY_TAK_CHANGED,
        hash: "$argon2id$v=19$m=64,t=1,p=1$a2V5d2FyZC1zYWx0LTAwMQ$nK2vF6TQGfullu8QsrFr1VYJDp024me8MecUsfkHgwQ",
        algorithm: HashAlgorithm::Argon2id,
        pepper_id: None,
        params: Some((64, 1, 1)),
        salt_len: 16,
        digest_len: 32,
    },
    Vector {
        key: KEY_LIVE,
        changed: KEY_LIVE_CHANGED,
        hash: "$argon2id$v=19$m=256,t=2,p=2$OGJ5dGVzYWw$39x2pVmBwXkkA+uCgPcrSw",
        algorithm: HashAlgorithm::Argon2id,
        pepper_id: None,
        params: Some((256, 2, 2)),
        salt_len: 8,
        digest_len: 16,
    },
];

const ARGON2_DEFAULT_VECTOR: Vector = Vector {
    key: KEY_TAK,
    changed: KEY_TAK_CHANGED,
    hash: "$argon2id$v=19$m=19456,t=2,p=1$a2V5d2FyZC1zYWx0LTAwMg$KLttysdmsfiOJ8NN8QQRLODr9Htcv4zCYmEjVDHeXcw",
    algorithm: HashAlgorithm::Argon2id,
    pepper_id: None,
    params: Some((19_456, 2, 1)),
    salt_len: 16,
    digest_len: 32,
};

/// Parses a vector, checks every field, re-prints it and verifies the key (and not the
/// changed key) with `hasher`.
fn check_vector(v: &Vector, hasher: &Hasher) {
    let h = stored(v.hash);
    assert_eq!(h.algorithm(), v.algorithm, "{}", v.hash);
    assert_eq!(
        h.pepper_id().map(PepperId::as_str),
        v.pepper_id,
        "{}",
        v.hash
    );
    assert_eq!(
        h.argon2_params()
            .map(|p| (p.m_cost(), p.t_cost(), p.p_cost())),
        v.params,
        "{}",
        v.hash
    );
    assert_eq!(h.salt_len(), v.salt_len, "{}", v.hash);
    assert_eq!(h.digest_len(), v.digest_len, "{}", v.hash);
    assert_eq!(h.to_string(), v.hash);
    assert_eq!(stored(&h.to_string()), h);

    let key = parse_any(v.key).expect("vector key is well formed");
    let changed = parse_any(v.changed).expect("changed key is well formed");
    assert_eq!(key.key_id(), changed.key_id(), "only the secret differs");
    assert_eq!(hasher.verify(&key, &h), Ok(()), "{} should verify", v.key);
    assert_eq!(hasher.verify(&changed, &h), Err(Mismatch), "{}", v.changed);
}

#[test]
fn hmac_vectors_parse_print_and_verify() {
    let long = Pepper::from_text(PEPPER_LONG).expect("64-byte pepper");
    let hasher = Hasher::fast(pepper_k1())
        .accept_pepper(long)
        .expect("distinct ids");
    for v in &HMAC_VECTORS {
        check_vector(v, &hasher);
    }
}

#[test]
fn fast_hasher_reproduces_the_hmac_vectors() {
    let hasher = Hasher::fast(pepper_k1());
    for v in &HMAC_VECTORS[..2] {
        let key = parse_any(v.key).expect("well formed");
        let h = hasher.hash(&key).expect("hmac cannot fail");
        assert_eq!(h.to_string(), v.hash);
        assert!(!hasher.needs_rehash(&h));
    }
    let long = Hasher::fast(Pepper::from_text(PEPPER_LONG).expect("valid text form"));
    let key = parse_any(HMAC_VECTORS[2].key).expect("well formed");
    assert_eq!(
        long.hash(&key).expect("hmac").to_string(),
        HMAC_VECTORS[2].hash
    );
}

#[test]
fn argon2_vectors_parse_print_and_verify() {
    // Verification uses the parameters in the stored hash, whatever the current setting.
    let hasher = Hasher::argon2(Argon2Params::DEFAULT);
    for v in &ARGON2_SMALL_VECTORS {
        check_vector(v, &hasher);
    }
    // A fast hasher verifies Argon2 hashes too (that is how keys migrate between algorithms).
    check_vector(&ARGON2_SMALL_VECTORS[0], &Hasher::fast(pepper_k1()));
}

#[test]
fn argon2_vector_with_owasp_defaults() {
    let v = &ARGON2_DEFAULT_VECTOR;
    let hasher = Hasher::argon2(Argon2Params::DEFAULT);
    check_vector(v, &hasher);
    assert_eq!(
        stored(v.hash).argon2_params(),
        Some(Argon2Params::DEFAULT),
        "the vector uses OWASP's parameters"
    );
    assert!(!hasher.needs_rehash(&stored(v.hash)));
}

#[test]
fn argon2_hasher_makes_standard_strings() {
    let hasher = Hasher::argon2(small());
    let key = parse_any(KEY_TAK).expect("well formed");
    let a = hasher.hash(&key).expect("argon2");
    let b = hasher.hash(&key).expect("argon2");
    assert!(a.to_string().starts_with("$argon2id$v=19$m=64,t=1,p=1$"));
    assert_eq!((a.salt_len(), a.digest_len()), (16, 32));
    assert_ne!(a, b, "every hash has a fresh salt");
    assert_eq!(hasher.verify(&key, &a), Ok(()));
    assert_eq!(hasher.verify(&key, &b), Ok(()));
    assert!(!hasher.needs_rehash(&a));
}

#[test]
fn stored_hashes_serialize_as_their_string() {
    for v in HMAC_VECTORS.iter().chain(&ARGON2_SMALL_VECTORS) {
        let h = stored(v.hash);
        let json = serde_json::to_string(&h).expect("serializes");
        assert_eq!(json, format!("\"{}\"", v.hash));
        let back: StoredHash = serde_json::from_str(&json).expect("deserializes");
        assert_eq!(back, h);
    }
    let bad: Result<StoredHash, _> = serde_json::from_str("\"$argon2i$v=19\"");
    assert!(bad.is_err());
}

// ---------------------------------------------------------------------------------------------
// Malformed hash strings

const CANONICAL: &str = "a canonical decimal number, in the order m, t, p";

fn invalid_param(name: &'static str, expected: &'static str) -> HashParseError {
    HashParseError::InvalidParam { name, expected }
}

fn length(field: &'static str, found: usize, min: usize, max: usize) -> HashParseError {
    HashParseError::Length {
        field,
        found,
        min,
        max,
    }
}

#[test]
fn malformed_hash_strings_have_exact_errors() {
    const SALT: &str = "a2V5d2FyZC1zYWx0LTAwMQ";
    const DIGEST: &str = "nK2vF6TQGfullu8QsrFr1VYJDp024me8MecUsfkHgwQ";
    const HMAC: &str = "GPO/wXplk6TnSaxjNykgAo38qe03cXfN8cMHeVm7p1k";
    let a = |params: &str| format!("$argon2id$v=19${params}${SALT}${DIGEST}");
    let too_long = format!("$hmac-sha256$pid=k1${}", "A".repeat(MAX_STORED_HASH_LEN));
    let salt_err = HashParseError::Base64 { field: "salt" };
    let digest_err = HashParseError::Base64 { field: "digest" };
    let (salt_min, salt_max) = (*ARGON2_SALT_LEN.start(), *ARGON2_SALT_LEN.end());
    let (out_min, out_max) = (*ARGON2_OUTPUT_LEN.start(), *ARGON2_OUTPUT_LEN.end());

    let table: Vec<(String, HashParseError)> = vec![
        (String::new(), HashParseError::Empty),
        (too_long, HashParseError::TooLong),
        (
            format!("argon2id$v=19$m=64,t=1,p=1${SALT}${DIGEST}"),
            HashParseError::MissingDollar,
        ),
        (
            format!(" {}", a("m=64,t=1,p=1")),
            HashParseError::MissingDollar,
        ),
        ("$".into(), HashParseError::UnsupportedAlgorithm),
        (
            format!("$argon2i$v=19$m=64,t=1,p=1${SALT}${DIGEST}"),
            HashParseError::UnsupportedAlgorithm,
        ),
        (
            format!("$argon2d$v=19$m=64,t=1,p=1${SALT}${DIGEST}"),
            HashParseError::UnsupportedAlgorithm,
        ),
        (
            format!("$Argon2id$v=19$m=64,t=1,p=1${SALT}${DIGEST}"),
            HashParseError::UnsupportedAlgorithm,
        ),
        (
            "$2b$10$N9qo8uLOickgx2ZMRZoMyeIjZAgcfl7p92ldGxad68LJZdL17lhWy".into(),
            HashParseError::UnsupportedAlgorithm,
        ),
        (
            format!("$hmac-sha512$pid=k1${HMAC}"),
            HashParseError::UnsupportedAlgorithm,
        ),
        (
            format!("$argon2id$v=16$m=64,t=1,p=1${SALT}${DIGEST}"),
            HashParseError::UnsupportedVersion,
        ),
        (
            format!("$argon2id$v=019$m=64,t=1,p=1${SALT}${DIGEST}"),
            HashParseError::UnsupportedVersion,
        ),
        (
            // The pre-1.3 form without a version field.
            format!("$argon2id$m=64,t=1,p=1${SALT}${DIGEST}"),
            HashParseError::FieldCount {
                expected: 4,
                found: 3,
            },
        ),
        (
            "$argon2id".into(),
            HashParseError::FieldCount {
                expected: 4,
                found: 0,
            },
        ),
        (
            format!("{}$", a("m=64,t=1,p=1")),
            HashParseError::FieldCount {
                expected: 4,
                found: 5,
            },
        ),
        (
            format!("{}${DIGEST}", a("m=64,t=1,p=1")),
            HashParseError::FieldCount {
                expected: 4,
                found: 5,
            },
        ),
        (
            format!("$hmac-sha256$pid=k1${HMAC}$"),
            HashParseError::FieldCount {
                expected: 2,
                found: 3,
            },
        ),
        (
            "$hmac-sha256$pid=k1".into(),
            HashParseError::FieldCount {
                expected: 2,
                found: 1,
            },
        ),
        (a("t=1,m=64,p=1"), invalid_param("m", CANONICAL)),
        (a("m=64,p=1,t=1"), invalid_param("t", CANONICAL)),
        (a("m=064,t=1,p=1"), invalid_param("m", CANONICAL)),
        (a("m=64,t=01,p=1"), invalid_param("t", CANONICAL)),
        (a("m=+64,t=1,p=1"), invalid_param("m", CANONICAL)),
        (a("m=,t=1,p=1"), invalid_param("m", CANONICAL)),
        (a("m=64,t=1"), invalid_param("p", CANONICAL)),
        (a("M=64,t=1,p=1"), invalid_param("m", CANONICAL)),
        (a("m=4294967296,t=1,p=1"), invalid_param("m", CANONICAL)),
        (a("m=99999999999,t=1,p=1"), invalid_param("m", CANONICAL)),
        (
            a("m=64,t=1,p=1,keyid=abc"),
            invalid_param("params", "exactly m, t and p, in that order"),
        ),
        (
            a("m=64,t=1,p=1,data=YWJj"),
            invalid_param("params", "exactly m, t and p, in that order"),
        ),
        (
            a("m=1048577,t=1,p=1"),
            HashParseError::Argon2Params(Argon2ParamsError::MCost { found: 1_048_577 }),
        ),
        (
            a("m=15,t=1,p=2"),
            HashParseError::Argon2Params(Argon2ParamsError::MCost { found: 15 }),
        ),
        (
            a("m=64,t=0,p=1"),
            HashParseError::Argon2Params(Argon2ParamsError::TCost { found: 0 }),
        ),
        (
            a("m=64,t=65,p=1"),
            HashParseError::Argon2Params(Argon2ParamsError::TCost { found: 65 }),
        ),
        (
            a("m=64,t=1,p=0"),
            HashParseError::Argon2Params(Argon2ParamsError::PCost { found: 0 }),
        ),
        (
            format!("$argon2id$v=19$m=64,t=1,p=1${SALT}==${DIGEST}"),
            salt_err,
        ),
        (
            format!("$argon2id$v=19$m=64,t=1,p=1${SALT}${DIGEST}="),
            digest_err,
        ),
        (format!("$hmac-sha256$pid=k1${HMAC}="), digest_err),
        (
            format!("$argon2id$v=19$m=64,t=1,p=1$a2V5d2FyZC1z!WxwLTAwMQ${DIGEST}"),
            salt_err,
        ),
        (
            // URL-safe base64 is not the PHC encoding.
            format!(
                "$argon2id$v=19$m=64,t=1,p=1${SALT}$nK2vF6TQGfullu8QsrFr1VYJDp024me8MecUsfkHgw_"
            ),
            digest_err,
        ),
        (
            format!("$argon2id$v=19$m=64,t=1,p=1${SALT}${DIGEST}\n"),
            digest_err,
        ),
        (
            format!("$argon2id$v=19$m=64,t=1,p=1$sälz${DIGEST}"),
            salt_err,
        ),
        (
            // Non-canonical: the last character carries set padding bits.
            "$hmac-sha256$pid=k1$GPO/wXplk6TnSaxjNykgAo38qe03cXfN8cMHeVm7p1l".into(),
            digest_err,
        ),
        (
            // `shortsa`: 7 bytes.
            format!("$argon2id$v=19$m=64,t=1,p=1$c2hvcnRzYQ${DIGEST}"),
            length("salt", 7, salt_min, salt_max),
        ),
        (
            format!("$argon2id$v=19$m=64,t=1,p=1${SALT}$"),
            length("digest", 0, out_min, out_max),
        ),
        (
            // 15 bytes of `x`.
            format!("$argon2id$v=19$m=64,t=1,p=1${SALT}$eHh4eHh4eHh4eHh4eHh4"),
            length("digest", 15, out_min, out_max),
        ),
        (
            // 65 bytes of `z`.
            format!(
                "$argon2id$v=19$m=64,t=1,p=1${SALT}$enp6enp6enp6enp6enp6enp6enp6enp6enp6enp6enp6enp6enp6enp6enp6enp6enp6enp6enp6enp6enp6eno"
            ),
            length("digest", 65, out_min, out_max),
        ),
        (
            // 31 bytes of `y`.
            "$hmac-sha256$pid=k1$eXl5eXl5eXl5eXl5eXl5eXl5eXl5eXl5eXl5eXl5eQ".into(),
            length("digest", 31, 32, 32),
        ),
        (
            // 64 zero bytes.
            format!("$hmac-sha256$pid=k1${}", "A".repeat(86)),
            length("digest", 64, 32, 32),
        ),
        (
            format!("$hmac-sha256$k1${HMAC}"),
            invalid_param("pid", "pid=<pepper id>"),
        ),
        (
            format!("$hmac-sha256$keyid=k1${HMAC}"),
            invalid_param("pid", "pid=<pepper id>"),
        ),
        (
            format!("$hmac-sha256$pid=K1${HMAC}"),
            HashParseError::PepperId(PepperIdError::InvalidCharacter),
        ),
        (
            format!("$hmac-sha256$pid=-k1${HMAC}"),
            HashParseError::PepperId(PepperIdError::InvalidCharacter),
        ),
        (
            format!("$hmac-sha256$pid=k_1${HMAC}"),
            HashParseError::PepperId(PepperIdError::InvalidCharacter),
        ),
        (
            format!("$hmac-sha256$pid=${HMAC}"),
            HashParseError::PepperId(PepperIdError::Length),
        ),
        (
            format!("$hmac-sha256$pid={}${HMAC}", "k".repeat(33)),
            HashParseError::PepperId(PepperIdError::Length),
        ),
    ];

    for (input, expected) in &table {
        assert_eq!(
            input.parse::<StoredHash>(),
            Err(*expected),
            "input {input:?}"
        );
        // Every error has a message, and no message repeats the input's digest.
        let message = expected.to_string();
        assert!(!message.is_empty());
        assert!(!message.contains(DIGEST) && !message.contains(HMAC));
    }
}

#[test]
fn length_limit_is_exact() {
    let at_limit = format!(
        "$hmac-sha256$pid={}$",
        "k".repeat(MAX_STORED_HASH_LEN - "$hmac-sha256$pid=$".len())
    );
    assert_eq!(at_limit.len(), MAX_STORED_HASH_LEN);
    // Not too long: the parser gets to the pepper id.
    assert_eq!(
        at_limit.parse::<StoredHash>(),
        Err(HashParseError::PepperId(PepperIdError::Length))
    );
    let over = format!("{at_limit}A");
    assert_eq!(over.parse::<StoredHash>(), Err(HashParseError::TooLong));
}

#[test]
fn error_messages_name_the_limit() {
    assert_eq!(
        HashParseError::TooLong.to_string(),
        format!("stored hash too long (maximum {MAX_STORED_HASH_LEN} characters)")
    );
    assert_eq!(
        length("digest", 31, 32, 32).to_string(),
        "digest has 31 bytes (expected 32 to 32)"
    );
}

// ---------------------------------------------------------------------------------------------
// Property tests

fn valid_hashes() -> Vec<&'static str> {
    HMAC_VECTORS
        .iter()
        .chain(&ARGON2_SMALL_VECTORS)
        .chain([&ARGON2_DEFAULT_VECTOR])
        .map(|v| v.hash)
        .collect()
}

/// A valid hash string with one edit: a character replaced, inserted or removed.
fn mutated_hash() -> impl Strategy<Value = String> {
    let pieces = prop::sample::select(vec![
        "$",
        "=",
        ",",
        "0",
        "9",
        "A",
        "/",
        "+",
        "-",
        ".",
        "m=",
        "t=",
        "p=",
        "v=19",
        "pid=",
        "k1",
        "\n",
        "é",
        "\0",
        "argon2id",
        "hmac-sha256",
        "==",
    ]);
    (
        prop::sample::select(valid_hashes()),
        any::<prop::sample::Index>(),
        0u8..3,
        pieces,
    )
        .prop_map(|(s, at, op, piece)| {
            let mut s = s.to_owned();
            let i = at.index(s.len() + 1);
            match op {
                0 => s.insert_str(i.min(s.len()), piece),
                1 if i < s.len() => {
                    s.remove(i);
                }
                _ if i < s.len() => s.replace_range(i..=i, piece),
                _ => s.push_str(piece),
            }
            s
        })
}

/// Strings shaped like PHC strings, to reach deep into the parser.
fn phc_like() -> impl Strategy<Value = String> {
    "\\$(argon2id|hmac-sha256|argon2i|[a-z0-9-]{0,12})(\\$[a-z0-9=,.+/A-Z-]{0,24}){0,5}"
}

fn check_roundtrip(s: &str) -> Result<(), TestCaseError> {
    if let Ok(h) = s.parse::<StoredHash>() {
        prop_assert_eq!(h.to_string(), s);
        prop_assert!(s.len() <= MAX_STORED_HASH_LEN);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(10_000))]

    #[test]
    fn parsing_arbitrary_strings_never_panics(s in any::<String>()) {
        check_roundtrip(&s)?;
    }

    #[test]
    fn parsing_phc_like_strings_round_trips(s in phc_like()) {
        check_roundtrip(&s)?;
    }

    #[test]
    fn parsing_mutated_hashes_round_trips(s in mutated_hash()) {
        check_roundtrip(&s)?;
    }
}

// ---------------------------------------------------------------------------------------------
// Rehash decisions

#[test]
fn needs_rehash_compares_with_the_current_setting() {
    let fast_hash = stored(HMAC_VECTORS[0].hash);
    let small_hash = stored(ARGON2_SMALL_VECTORS[0].hash);
    let default_hash = stored(ARGON2_DEFAULT_VECTOR.hash);

    // The fast hasher on k1: current pepper means no rehash, Argon2 means another algorithm.
    let fast = Hasher::fast(pepper_k1());
    assert!(!fast.needs_rehash(&fast_hash));
    assert!(fast.needs_rehash(&small_hash));
    assert!(fast.needs_rehash(&default_hash));

    // k1 accepted but k2 current: k1 is retiring.
    let rotated = Hasher::fast(pepper("k2", 2))
        .accept_pepper(pepper_k1())
        .expect("distinct ids");
    assert!(rotated.needs_rehash(&fast_hash));
    // A pepper that is not even accepted also needs a rehash (it cannot verify anyway).
    assert!(rotated.needs_rehash(&stored(HMAC_VECTORS[2].hash)));

    // Argon2 with OWASP parameters: weaker parameters and the other algorithm need a rehash.
    let argon = Hasher::argon2(Argon2Params::DEFAULT);
    assert!(!argon.needs_rehash(&default_hash));
    assert!(argon.needs_rehash(&small_hash));
    assert!(argon.needs_rehash(&fast_hash));
    let (salt, digest) = (
        "a2V5d2FyZC1zYWx0LTAwMg",
        "KLttysdmsfiOJ8NN8QQRLODr9Htcv4zCYmEjVDHeXcw",
    );
    for (params, weaker) in [
        ("m=19456,t=1,p=1", true),
        ("m=19455,t=2,p=1", true),
        ("m=65536,t=1,p=4", true),
        ("m=19456,t=2,p=4", false),
        ("m=65536,t=3,p=4", false),
    ] {
        let h = stored(&format!("$argon2id$v=19${params}${salt}${digest}"));
        assert_eq!(argon.needs_rehash(&h), weaker, "{params}");
    }
    // Stronger parameters than current are kept.
    let strong = Hasher::argon2(small());
    assert!(!strong.needs_rehash(&default_hash));
    // A short salt or digest is upgraded even with the same parameters.
    let short = stored(ARGON2_SMALL_VECTORS[1].hash);
    let same = Hasher::argon2(Argon2Params::new(256, 2, 2).expect("valid"));
    assert!(same.needs_rehash(&short), "8-byte salt and 16-byte digest");
}

// ---------------------------------------------------------------------------------------------
// Peppers

#[test]
fn pepper_rotation_scenario() {
    let old = pepper_k1;
    let new = || pepper("k2", 0xa5);
    let key = parse_any(KEY_TAK).expect("well formed");
    let on_old = stored(HMAC_VECTORS[0].hash);

    // Step 1: instance A accepts the new pepper while the old one stays current.
    let a = Hasher::fast(old()).accept_pepper(new()).expect("distinct");
    assert_eq!(a.current_pepper().map(PepperId::as_str), Some("k1"));
    // Step 2: instance B makes the new pepper current (and still accepts the old one).
    let b = Hasher::fast(new()).accept_pepper(old()).expect("distinct");
    assert_eq!(b.current_pepper().map(PepperId::as_str), Some("k2"));

    // A key rehashed on B verifies on A, so no instance locks it out.
    let on_new = b.hash(&key).expect("hmac");
    assert_eq!(on_new.pepper_id().map(PepperId::as_str), Some("k2"));
    assert_eq!(a.verify(&key, &on_new), Ok(()));
    assert_eq!(b.verify(&key, &on_new), Ok(()));
    assert!(!b.needs_rehash(&on_new));

    // The old hash verifies on B while the old pepper is accepted, and is due for a rehash.
    assert_eq!(b.verify(&key, &on_old), Ok(()));
    assert!(b.needs_rehash(&on_old));

    // The census shows what still depends on k1 before it is dropped.
    let never_used = stored(HMAC_VECTORS[1].hash);
    let argon = stored(ARGON2_SMALL_VECTORS[0].hash);
    let all = [on_new.clone(), on_old.clone(), never_used, argon];
    let census = Hasher::census(&all);
    let k1 = PepperId::new("k1").expect("valid id");
    let k2 = PepperId::new("k2").expect("valid id");
    let expected: BTreeMap<Option<PepperId>, usize> =
        [(Some(k1.clone()), 2), (Some(k2), 1), (None, 1)].into();
    assert_eq!(census, expected);

    // Step 4: once k1 is dropped, hashes on it no longer verify.
    let c = Hasher::fast(new());
    assert_eq!(c.verify(&key, &on_old), Err(Mismatch));
    assert_eq!(c.verify(&key, &on_new), Ok(()));
    assert_eq!(Hasher::census(&all).get(&Some(k1)), Some(&2));
}

#[test]
fn duplicate_pepper_ids_are_refused() {
    let err = Hasher::fast(pepper_k1())
        .accept_pepper(pepper("k1", 9))
        .expect_err("duplicate id");
    assert_eq!(
        err,
        keyward::hash::HashConfigError::DuplicatePepper(PepperId::new("k1").expect("valid"))
    );
}

#[test]
fn short_or_missing_peppers_are_typed_errors() {
    assert_eq!(
        Pepper::new("k1", [0u8; 16]).map(|_| ()),
        Err(PepperError::Length { found: 16 })
    );
    assert_eq!(
        Pepper::new("k1", [0u8; 31]).map(|_| ()),
        Err(PepperError::Length { found: 31 })
    );
    assert_eq!(
        Pepper::new("k1", [0u8; 0]).map(|_| ()),
        Err(PepperError::Length { found: 0 })
    );
    assert_eq!(
        Pepper::new("K1", [0u8; 32]).map(|_| ()),
        Err(PepperError::Id(PepperIdError::InvalidCharacter))
    );
    assert_eq!(
        Pepper::from_text("k1:not base64!").map(|_| ()),
        Err(PepperError::Base64)
    );
    assert_eq!(
        Pepper::from_text("").map(|_| ()),
        Err(PepperError::Length { found: 0 })
    );
    // 16 bytes, well-formed base64: too short, not a base64 error.
    assert_eq!(
        Pepper::from_text("k1:AAECAwQFBgcICQoLDA0ODw==").map(|_| ()),
        Err(PepperError::Length { found: 16 })
    );
    // A trailing newline (as from `openssl rand -base64 32 > file`) is not trimmed silently.
    assert_eq!(
        Pepper::from_text(&format!("{PEPPER_K1}\n")).map(|_| ()),
        Err(PepperError::Base64)
    );
    assert!(
        PepperError::Missing
            .to_string()
            .contains("no pepper configured")
    );
}

#[test]
fn pepper_text_forms_agree_with_the_bytes() {
    let key = parse_any(KEY_TAK).expect("well formed");
    for text in [PEPPER_K1, PEPPER_K1.trim_end_matches('=')] {
        let p = Pepper::from_text(text).expect("valid text form");
        assert_eq!(p.id().as_str(), "k1");
        let h = Hasher::fast(p).hash(&key).expect("hmac");
        assert_eq!(h.to_string(), HMAC_VECTORS[0].hash);
    }
    let unnamed =
        Pepper::from_text("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=").expect("valid text form");
    assert_eq!(unnamed.id().as_str(), "default");
    let random = Pepper::random("r1").expect("os randomness");
    assert_eq!(random.id().as_str(), "r1");
}

// ---------------------------------------------------------------------------------------------
// The opaque mismatch

#[test]
fn every_failure_is_the_same_mismatch() {
    let key = parse_any(KEY_TAK).expect("well formed");
    let wrong = parse_any(KEY_TAK_CHANGED).expect("well formed");
    let fast = Hasher::fast(pepper_k1());

    let wrong_secret = fast.verify(&wrong, &stored(HMAC_VECTORS[0].hash));
    // The right key, but the hash names a pepper this hasher does not know.
    let unknown_pepper = fast.verify(&key, &stored(HMAC_VECTORS[2].hash));
    // Same digest, relabelled with an unknown pepper id.
    let relabelled = fast.verify(
        &key,
        &stored("$hmac-sha256$pid=k9$GPO/wXplk6TnSaxjNykgAo38qe03cXfN8cMHeVm7p1k"),
    );
    let argon_wrong = fast.verify(&wrong, &stored(ARGON2_SMALL_VECTORS[0].hash));
    // An Argon2 hasher without peppers cannot check an HMAC hash at all.
    let no_pepper = Hasher::argon2(small()).verify(&key, &stored(HMAC_VECTORS[0].hash));
    // Another key's hash.
    let other_key = fast.verify(&key, &stored(HMAC_VECTORS[1].hash));

    let results = [
        wrong_secret,
        unknown_pepper,
        relabelled,
        argon_wrong,
        no_pepper,
        other_key,
    ];
    for r in &results {
        assert_eq!(*r, Err(Mismatch));
        assert_eq!(
            r.map_err(|e| e.to_string()),
            Err("the key does not match the stored hash".to_owned())
        );
        assert_eq!(format!("{r:?}"), "Err(Mismatch)");
    }
}

#[test]
fn verify_absent_runs_for_every_setting() {
    // It returns nothing to assert on; this checks it completes for each configuration.
    let key = parse_any(KEY_TAK).expect("well formed");
    Hasher::fast(pepper_k1()).verify_absent(&key);
    Hasher::argon2(small()).verify_absent(&key);
}

// ---------------------------------------------------------------------------------------------
// The Argon2 verification cache

fn cache_len(hasher: &Hasher) -> String {
    let debug = format!("{hasher:?}");
    let start = debug.find("cache: ").expect("Debug shows the cache") + "cache: ".len();
    debug[start..].trim_end_matches([' ', '}']).to_owned()
}

#[test]
fn cache_serves_only_the_same_key_and_hash() {
    let hasher = Hasher::argon2(small()).with_verify_cache(8);
    assert_eq!(cache_len(&hasher), "Some(0)");
    let key = parse_any(KEY_TAK).expect("well formed");
    let h = stored(ARGON2_SMALL_VECTORS[0].hash);

    assert_eq!(hasher.verify(&key, &h), Ok(()));
    assert_eq!(cache_len(&hasher), "Some(1)");
    assert_eq!(
        hasher.verify(&key, &h),
        Ok(()),
        "second verify, from the cache"
    );
    assert_eq!(cache_len(&hasher), "Some(1)");

    // Another secret under the same key id fails, cached entry or not.
    let same_id = parse_any(KEY_TAK_CHANGED).expect("well formed");
    assert_eq!(same_id.key_id(), key.key_id());
    assert_eq!(hasher.verify(&same_id, &h), Err(Mismatch));
    // A failure forgets the entry; the right key still verifies (and is cached again).
    assert_eq!(cache_len(&hasher), "Some(0)");
    assert_eq!(hasher.verify(&key, &h), Ok(()));
    assert_eq!(cache_len(&hasher), "Some(1)");
}

#[test]
fn cache_misses_when_the_stored_hash_changes() {
    let hasher = Hasher::argon2(small()).with_verify_cache(8);
    let key = parse_any(KEY_TAK).expect("well formed");
    let h = stored(ARGON2_SMALL_VECTORS[0].hash);
    assert_eq!(hasher.verify(&key, &h), Ok(()));

    // The key was regenerated under the same id: its stored hash is now another key's.
    let regenerated = parse_any(KEY_TAK_CHANGED).expect("well formed");
    let h2 = hasher.hash(&regenerated).expect("argon2");
    assert_eq!(hasher.verify(&key, &h2), Err(Mismatch), "old key, new hash");
    assert_eq!(hasher.verify(&regenerated, &h2), Ok(()));

    // The same key rehashed (fresh salt): verifies by computing, and the entry is replaced.
    let rehashed = hasher.hash(&key).expect("argon2");
    assert_eq!(hasher.verify(&key, &rehashed), Ok(()));
    assert_eq!(hasher.verify(&key, &h), Ok(()));

    // A stored hash with the cached digest but another salt is a different hash: the cache
    // must not vouch for it, and Argon2 over the new salt does not match.
    let digest = ARGON2_SMALL_VECTORS[0]
        .hash
        .rsplit('$')
        .next()
        .expect("digest field");
    let other_salt = stored(&format!(
        "$argon2id$v=19$m=64,t=1,p=1$a2V5d2FyZC1zYWx0LTAwMg${digest}"
    ));
    assert_eq!(hasher.verify(&key, &h), Ok(()), "cached");
    assert_eq!(hasher.verify(&key, &other_salt), Err(Mismatch));
    let other_params = stored(&format!(
        "$argon2id$v=19$m=72,t=1,p=1$a2V5d2FyZC1zYWx0LTAwMQ${digest}"
    ));
    assert_eq!(hasher.verify(&key, &h), Ok(()), "cached");
    assert_eq!(hasher.verify(&key, &other_params), Err(Mismatch));
}

#[test]
fn cache_is_bounded() {
    const CAPACITY: usize = 4;
    let hasher = Hasher::argon2(small()).with_verify_cache(CAPACITY);
    let format = KeyFormat::new(["tak"]).expect("valid prefix");
    for i in 0..(3 * CAPACITY) {
        let key = format.generate().expect("os randomness");
        let h = hasher.hash(&key.as_parsed()).expect("argon2");
        assert_eq!(hasher.verify(&key.as_parsed(), &h), Ok(()));
        assert_eq!(hasher.verify(&key.as_parsed(), &h), Ok(()));
        assert_eq!(
            cache_len(&hasher),
            format!("Some({})", (i + 1).min(CAPACITY))
        );
    }
}

#[test]
fn cache_does_not_apply_to_hmac_or_when_off() {
    let key = parse_any(KEY_TAK).expect("well formed");
    let fast = Hasher::fast(pepper_k1()).with_verify_cache(8);
    assert_eq!(fast.verify(&key, &stored(HMAC_VECTORS[0].hash)), Ok(()));
    assert_eq!(cache_len(&fast), "Some(0)");
    let off = Hasher::argon2(small());
    assert_eq!(
        off.verify(&key, &stored(ARGON2_SMALL_VECTORS[0].hash)),
        Ok(())
    );
    assert_eq!(cache_len(&off), "None");
}

#[test]
fn forget_cached_drops_the_entry() {
    let hasher = Hasher::argon2(small()).with_verify_cache(8);
    let key = parse_any(KEY_TAK).expect("well formed");
    let h = stored(ARGON2_SMALL_VECTORS[0].hash);
    assert_eq!(hasher.verify(&key, &h), Ok(()));
    assert_eq!(cache_len(&hasher), "Some(1)");
    hasher.forget_cached(key.key_id());
    assert_eq!(cache_len(&hasher), "Some(0)");
}

// ---------------------------------------------------------------------------------------------
// Debug output

#[test]
fn debug_never_shows_pepper_bytes_or_digests() {
    let bytes = k1_bytes();
    let forms = [
        "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8".to_owned(),
        format!("{bytes:?}"),
        bytes.iter().map(|b| format!("{b:02x}")).collect::<String>(),
        "[0, 1, 2".to_owned(),
    ];
    let p = Pepper::from_text(PEPPER_K1).expect("valid");
    let hasher = Hasher::fast(pepper_k1())
        .accept_pepper(pepper("k2", 0x1f))
        .expect("distinct")
        .with_verify_cache(4);
    for debug in [
        format!("{p:?}"),
        format!("{hasher:?}"),
        format!("{hasher:#?}"),
    ] {
        for form in &forms {
            assert!(!debug.contains(form.as_str()), "{debug} shows {form}");
        }
        assert!(debug.contains("k1"), "the id is shown: {debug}");
    }
    assert_eq!(
        format!("{p:?}"),
        r#"Pepper { id: PepperId(k1), secret: "<redacted>" }"#
    );

    for v in HMAC_VECTORS.iter().chain(&ARGON2_SMALL_VECTORS) {
        let h = stored(v.hash);
        let debug = format!("{h:?}");
        let mut fields = v.hash.rsplit('$');
        let digest = fields.next().expect("digest");
        assert!(!debug.contains(digest), "{debug}");
        if h.algorithm() == HashAlgorithm::Argon2id {
            let salt = fields.next().expect("salt");
            assert!(!debug.contains(salt), "{debug}");
            assert!(debug.contains("Argon2id"), "{debug}");
        } else {
            assert!(debug.contains(v.pepper_id.expect("hmac has a pepper")));
        }
    }
}
