//! keyward beside the crates users would otherwise pick, in the same run as the primitives
//! both rest on: `prefixed-api-key` (parse; parse + hash check) and `api-keys-simplified`
//! (checksum check; verify). These crates are dev-dependencies of this benchmark only.
//!
//! The peers do not do the same work as keyward, and each bench name says what it does:
//! - prefixed-api-key's parse splits on `_` into three owned strings; it checks no alphabet,
//!   no length and no checksum. Its hash check is SHA-256 of the long token, hex encoded and
//!   compared in constant time; no lookup, no status, no expiry, no scope.
//! - api-keys-simplified's checksum is BLAKE3 over the key, hex encoded (16 characters); its
//!   verify is that checksum and Argon2id over the whole key, with no lookup either.
//!
//! `cargo bench --bench peers`

mod support;

use support::block_on;

use std::hint::black_box;

use api_keys_simplified::{
    ApiKeyManagerV0, Environment, ExposeSecret, HashConfig, KeyConfig, SecureString,
};
use criterion::{Criterion, criterion_group, criterion_main};
use hmac::{Hmac, KeyInit, Mac};
use keyward::{
    Hasher, IssueRequest, KeyFormat, KeyManager, MemoryStore, Pepper, RequestContext,
    hash::Argon2Params,
};
use prefixed_api_key::{PrefixedApiKey, PrefixedApiKeyController};
use sha2::{Digest, Sha256};

const PEPPER: [u8; 32] = [0x42; 32];

/// `key` with its last character changed: same shape, wrong checksum.
fn with_bad_last_char(key: &str) -> String {
    let mut bad = key.to_owned();
    let last = bad.pop().expect("non-empty");
    bad.push(if last == 'a' { 'b' } else { 'a' });
    bad
}

fn parse(c: &mut Criterion) {
    let format = KeyFormat::new(["tak"]).expect("format");
    let key = format.generate().expect("key");
    let valid = key.expose_secret().to_owned();
    let body = &valid[4..valid.len() - 6];
    let bad = with_bad_last_char(&valid);

    let pak = PrefixedApiKeyController::configure()
        .prefix("tak".to_owned())
        .seam_defaults()
        .finalize()
        .expect("controller")
        .generate_key()
        .to_string();

    let aks = ApiKeyManagerV0::init(
        "tak",
        KeyConfig::default(),
        // The checksum does not depend on the hash parameters; keep setup cheap.
        HashConfig::custom(8, 1, 1).expect("params"),
        std::time::Duration::ZERO,
    )
    .expect("manager");
    let aks_key = aks.generate(Environment::production()).expect("key");
    let aks_valid = SecureString::from(aks_key.key().expose_secret().to_owned());
    let aks_bad = SecureString::from(with_bad_last_char(aks_key.key().expose_secret()));
    assert!(aks.verify_checksum(&aks_valid).expect("checksum"));
    assert!(!aks.verify_checksum(&aks_bad).expect("checksum"));

    let mut g = c.benchmark_group("peers: parse");
    g.bench_function("raw crc32fast over the body", |b| {
        b.iter(|| crc32fast::hash(black_box(body.as_bytes())))
    });
    g.bench_function("keyward parse valid", |b| {
        b.iter(|| format.parse(black_box(&valid)).is_ok())
    });
    g.bench_function("keyward reject bad checksum", |b| {
        b.iter(|| format.parse(black_box(&bad)).is_err())
    });
    g.bench_function("prefixed-api-key parse (split only, no checks)", |b| {
        b.iter(|| PrefixedApiKey::from_string(black_box(&pak)).is_ok())
    });
    g.bench_function("api-keys-simplified checksum, valid (BLAKE3)", |b| {
        b.iter(|| {
            aks.verify_checksum(black_box(&aks_valid))
                .is_ok_and(|ok| ok)
        })
    });
    g.bench_function("api-keys-simplified checksum, bad (BLAKE3)", |b| {
        b.iter(|| aks.verify_checksum(black_box(&aks_bad)).is_ok_and(|ok| ok))
    });
    g.finish();
}

fn verify(c: &mut Criterion) {
    let m = KeyManager::new(
        MemoryStore::new(),
        KeyFormat::new(["tak"]).expect("format"),
        Hasher::fast(Pepper::new("k1", PEPPER).expect("pepper")),
    );
    let ctx = RequestContext::new();
    let request = IssueRequest::new("bench-key", "user_42")
        .tenant("acme")
        .scopes("read comments tickets:write".parse().expect("scopes"));
    let issued = block_on(m.issue(request, &ctx)).expect("issue");
    let key = issued.key.expose_secret().to_owned();
    let read: keyward::Scope = "read".parse().expect("scope");
    block_on(m.verify(&key, &ctx)).expect("first verify writes last_used");

    let fast = Hasher::fast(Pepper::new("k1", PEPPER).expect("pepper"));
    let format = KeyFormat::new(["tak"]).expect("format");
    let stored = fast
        .hash(&format.parse(&key).expect("parse"))
        .expect("hash");

    let controller = PrefixedApiKeyController::configure()
        .prefix("tak".to_owned())
        .seam_defaults()
        .finalize()
        .expect("controller");
    let (pak_key, pak_hash) = controller.generate_key_and_hash();
    let pak = pak_key.to_string();
    let long_token = pak_key.long_token().to_owned();

    let mut g = c.benchmark_group("peers: verify");
    g.bench_function("raw HMAC-SHA256 (key setup + MAC)", |b| {
        b.iter(|| {
            let mut mac =
                <Hmac<Sha256> as KeyInit>::new_from_slice(black_box(&PEPPER)).expect("key");
            mac.update(black_box(key.as_bytes()));
            mac.finalize().into_bytes()
        })
    });
    g.bench_function(
        "raw SHA-256 of the long token (prefixed-api-key's primitive)",
        |b| b.iter(|| Sha256::digest(black_box(long_token.as_bytes()))),
    );
    g.bench_function("keyward parse + fast verify (no lookup)", |b| {
        b.iter(|| {
            let parsed = format.parse(black_box(&key)).expect("valid");
            fast.verify(&parsed, &stored).is_ok()
        })
    });
    g.bench_function("keyward manager verify + authorize, hot record", |b| {
        b.iter(|| {
            let v = block_on(m.verify(black_box(&key), &ctx)).expect("valid");
            v.authorize(&read, None).is_ok()
        })
    });
    g.bench_function("prefixed-api-key parse + hash check (no lookup)", |b| {
        b.iter(|| {
            let parsed = PrefixedApiKey::from_string(black_box(&pak)).expect("parts");
            controller.check_hash(&parsed, &pak_hash)
        })
    });
    g.finish();
}

fn argon2id(c: &mut Criterion) {
    // Both crates verify Argon2id with m=19456 KiB, t=2, p=1 (keyward's default, which is
    // also the argon2 crate's).
    let format = KeyFormat::new(["tak"]).expect("format");
    let key = format.generate().expect("key");
    let argon = Hasher::argon2(Argon2Params::DEFAULT);
    let stored = argon.hash(&key.as_parsed()).expect("hash");

    let aks = ApiKeyManagerV0::init(
        "tak",
        KeyConfig::default(),
        HashConfig::custom(19_456, 2, 1).expect("params"),
        std::time::Duration::ZERO,
    )
    .expect("manager");
    let aks_key = aks.generate(Environment::production()).expect("key");
    let aks_hash = aks_key.expose_hash().hash().to_owned();
    let aks_presented = SecureString::from(aks_key.key().expose_secret().to_owned());
    assert_eq!(
        aks.verify(&aks_presented, &aks_hash).expect("verify"),
        api_keys_simplified::KeyStatus::Valid
    );

    let mut g = c.benchmark_group("peers: argon2id");
    // About 16 ms an iteration: 20 samples over 8 s each (instead of the command line's
    // 3 s) keep the ratio to raw Argon2id, which does the same work, within a few percent.
    g.sample_size(20);
    g.measurement_time(std::time::Duration::from_secs(8));
    g.bench_function("raw argon2id (m=19456,t=2,p=1)", |b| {
        let a = argon2::Argon2::new(
            argon2::Algorithm::Argon2id,
            argon2::Version::V0x13,
            argon2::Params::new(19_456, 2, 1, Some(32)).expect("params"),
        );
        let mut out = [0u8; 32];
        b.iter(|| {
            a.hash_password_into(
                black_box(key.expose_secret().as_bytes()),
                &[7u8; 16],
                &mut out,
            )
        })
    });
    g.bench_function("keyward parse + argon2id verify", |b| {
        b.iter(|| {
            let parsed = format.parse(black_box(key.expose_secret())).expect("valid");
            argon.verify(&parsed, &stored).is_ok()
        })
    });
    g.bench_function("api-keys-simplified verify (checksum + argon2id)", |b| {
        b.iter(|| aks.verify(black_box(&aks_presented), &aks_hash).is_ok())
    });
    g.finish();
}

criterion_group!(benches, parse, verify, argon2id);
criterion_main!(benches);
