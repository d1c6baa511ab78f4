//! Argon2id interoperability with argon2-cffi, both ways: argon2-cffi verifies the hashes
//! keyward makes, and keyward verifies the hashes argon2-cffi makes.
//!
//! A plain `cargo test` needs no Python: the known-answer tests check keyward against
//! `tests/interop/argon2_cffi_vectors.json`, made by `tests/interop/make_argon2_vectors.py`
//! with argon2-cffi (hashes argon2-cffi made with fixed salts, and hashes keyward made with
//! argon2-cffi's verdicts on them). With `KEYWARD_TEST_INTEROP=1` (set by `.ci/run` after
//! `pip install argon2-cffi`) the `live_*` tests also run argon2-cffi itself through
//! `tests/argon2_interop.py`, both ways on fresh keys, and check that the committed file is
//! still what the installed argon2-cffi gives; with the variable set, a missing argon2-cffi
//! fails them. Without it they only print that they were skipped.

#[path = "interop/live.rs"]
mod live;

use std::io::Write;
use std::process::{Command, Stdio};

use base64ct::{Base64Unpadded, Encoding};
use keyward::{
    ApiKey, Hasher, KeyFormat, StoredHash,
    hash::{Argon2Params, HashAlgorithm, Mismatch},
    key::{ParsedKey, parse_any},
};
use serde::Deserialize;

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/argon2_interop.py");
const MAKE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/interop/make_argon2_vectors.py"
);
const VECTORS: &str = include_str!("interop/argon2_cffi_vectors.json");
const MODULE: &str = "argon2";
const PACKAGE: &str = "argon2-cffi";

/// The parameter sets keyward hashes with here: OWASP's (`Argon2Params::DEFAULT`) and small
/// ones with several lanes and passes.
fn params() -> [Argon2Params; 4] {
    [
        Argon2Params::DEFAULT,
        Argon2Params::new(64, 1, 1).expect("valid"),
        Argon2Params::new(256, 3, 2).expect("valid"),
        Argon2Params::new(1024, 1, 4).expect("valid"),
    ]
}

fn triple(p: Argon2Params) -> (u32, u32, u32) {
    (p.m_cost(), p.t_cost(), p.p_cost())
}

// ----- Known answers (tests/interop/argon2_cffi_vectors.json) -----

#[derive(Deserialize)]
struct Vectors {
    wrong_key: String,
    argon2_cffi: Vec<CffiHash>,
    keyward: Vec<KeywardHash>,
}

/// A hash argon2-cffi made, with argon2-cffi's verdicts on it.
#[derive(Deserialize)]
struct CffiHash {
    name: String,
    hasher: String,
    m_cost: u32,
    t_cost: u32,
    p_cost: u32,
    key: String,
    hash: String,
    argon2_cffi_verify: Verdicts,
}

/// A hash keyward made, with argon2-cffi's verdicts on it.
#[derive(Deserialize)]
struct KeywardHash {
    m_cost: u32,
    t_cost: u32,
    p_cost: u32,
    key: String,
    hash: String,
    argon2_cffi_verify: Verdicts,
}

/// argon2-cffi's `PasswordHasher.verify` with the hash's key and with the wrong key.
#[derive(Deserialize)]
struct Verdicts {
    key: String,
    wrong_key: String,
}

impl Verdicts {
    fn assert_match_then_mismatch(&self, what: &str) {
        assert_eq!(
            (self.key.as_str(), self.wrong_key.as_str()),
            ("match", "mismatch"),
            "argon2-cffi's recorded verdicts on {what} (key, wrong key)"
        );
    }
}

fn vectors() -> Vectors {
    serde_json::from_str(VECTORS).expect("tests/interop/argon2_cffi_vectors.json parses")
}

fn parsed(key: &str) -> ParsedKey<'_> {
    parse_any(key).unwrap_or_else(|e| panic!("recorded key {key:?} is a keyward key: {e}"))
}

/// The fields of a PHC string `$argon2id$v=19$m=..,t=..,p=..$<salt>$<digest>`.
fn phc_fields(hash: &str) -> [&str; 5] {
    let fields: Vec<&str> = hash.split('$').collect();
    match fields[..] {
        ["", alg, version, params, salt, digest] => [alg, version, params, salt, digest],
        _ => panic!("{hash:?} is not a PHC string with five fields"),
    }
}

/// Argon2id of `key` under the salt and parameters of the PHC string `hash`, computed with
/// the argon2 crate directly (not through keyward's hasher or its hash parser), and the
/// digest `hash` holds. Both decoded with the standard unpadded Base64 of the PHC format.
fn recompute(key: &str, hash: &str, p: Argon2Params) -> (Vec<u8>, Vec<u8>) {
    let [_, _, _, salt, digest] = phc_fields(hash);
    let salt = Base64Unpadded::decode_vec(salt).expect("a Base64 salt");
    let digest = Base64Unpadded::decode_vec(digest).expect("a Base64 digest");
    let mut out = vec![0u8; digest.len()];
    let params = argon2::Params::new(p.m_cost(), p.t_cost(), p.p_cost(), Some(out.len()))
        .expect("valid argon2 parameters");
    argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params)
        .hash_password_into(key.as_bytes(), &salt, &mut out)
        .expect("argon2 computes");
    (out, digest)
}

#[test]
fn argon2_cffi_verifies_keyward_hashes() {
    let v = vectors();
    let wrong = parsed(&v.wrong_key);

    // keyward's hashes that argon2-cffi verified when the file was made, one per parameter
    // set: keyward still gives the same verdicts on them.
    let recorded: Vec<_> = v
        .keyward
        .iter()
        .map(|e| (e.m_cost, e.t_cost, e.p_cost))
        .collect();
    assert_eq!(recorded, params().map(triple), "one recorded hash per set");
    for e in &v.keyward {
        e.argon2_cffi_verify
            .assert_match_then_mismatch(&format!("keyward's hash {}", e.hash));
        assert!(e.hash.starts_with("$argon2id$v=19$"), "{}", e.hash);
        let stored: StoredHash = e.hash.parse().expect("keyward parses its own hash");
        let hasher = Hasher::argon2(Argon2Params::DEFAULT);
        assert_eq!(
            hasher.verify(&parsed(&e.key), &stored),
            Ok(()),
            "{}",
            e.hash
        );
        assert_eq!(hasher.verify(&wrong, &stored), Err(Mismatch), "{}", e.hash);
    }

    // The hashes keyward makes now: argon2-cffi's encoding for the same parameters, and the
    // digest argon2-cffi would compute. The argon2 crate stands in for argon2-cffi on these
    // fresh salts once it gives argon2-cffi's recorded digest for the same parameters.
    for p in params() {
        let cffi = v
            .argon2_cffi
            .iter()
            .find(|e| (e.m_cost, e.t_cost, e.p_cost) == triple(p))
            .unwrap_or_else(|| panic!("an argon2-cffi hash with {:?}", triple(p)));
        let (reference, recorded) = recompute(&cffi.key, &cffi.hash, p);
        assert_eq!(reference, recorded, "argon2-cffi's {}", cffi.hash);

        let key = parsed(&cffi.key);
        let fresh = Hasher::argon2(p).hash(&key).expect("argon2").to_string();
        let (ours, theirs) = (phc_fields(&fresh), phc_fields(&cffi.hash));
        assert_eq!(ours[..3], theirs[..3], "{fresh} vs {}", cffi.hash);
        assert_eq!(
            (ours[3].len(), ours[4].len()),
            (theirs[3].len(), theirs[4].len()),
            "salt and digest lengths: {fresh} vs {}",
            cffi.hash
        );
        let (expected, digest) = recompute(&cffi.key, &fresh, p);
        assert_eq!(
            digest, expected,
            "{fresh} holds Argon2id of its key and salt"
        );
    }
}

#[test]
fn keyward_verifies_argon2_cffi_hashes() {
    let v = vectors();
    let wrong = parsed(&v.wrong_key);
    // Verification uses the parameters in the stored hash, not the hasher's.
    let hasher = Hasher::argon2(Argon2Params::DEFAULT);
    for e in &v.argon2_cffi {
        let what = format!("{} {}", e.hasher, e.hash);
        e.argon2_cffi_verify.assert_match_then_mismatch(&what);
        let stored: StoredHash = e
            .hash
            .parse()
            .unwrap_or_else(|err| panic!("argon2-cffi hash {what} should parse: {err}"));
        assert_eq!(stored.algorithm(), HashAlgorithm::Argon2id);
        let params = stored.argon2_params().expect("argon2 parameters");
        assert_eq!(triple(params), (e.m_cost, e.t_cost, e.p_cost), "{what}");
        assert_eq!((stored.salt_len(), stored.digest_len()), (16, 32), "{what}");
        assert_eq!(stored.to_string(), e.hash, "re-printed identically");
        assert_eq!(hasher.verify(&parsed(&e.key), &stored), Ok(()), "{what}");
        assert_eq!(hasher.verify(&wrong, &stored), Err(Mismatch), "{what}");
    }

    // The two hashers of tests/argon2_interop.py: OWASP's parameters and argon2-cffi's
    // defaults. OWASP parameters are current: no rehash; argon2-cffi's defaults are
    // stronger: kept too.
    let named = |name: &str| -> StoredHash {
        let e = v
            .argon2_cffi
            .iter()
            .find(|e| e.name == name)
            .unwrap_or_else(|| panic!("a hash named {name:?}"));
        e.hash.parse().expect("parsed above")
    };
    let (owasp, default) = (named("owasp"), named("argon2-cffi default"));
    let m_t_p = |s: &StoredHash| triple(s.argon2_params().expect("argon2"));
    assert_eq!(m_t_p(&owasp), (19_456, 2, 1));
    assert_eq!(m_t_p(&default), (65_536, 3, 4));
    assert!(!hasher.needs_rehash(&owasp));
    assert!(!hasher.needs_rehash(&default));
}

/// Prints keyward's hashes for `tests/interop/make_argon2_vectors.py`, which passes
/// `m,t,p<TAB>key` lines in `KEYWARD_ARGON2_VECTOR_INPUT` and reads `keyward-argon2<TAB>hash`.
#[test]
#[ignore = "run by tests/interop/make_argon2_vectors.py"]
fn keyward_hashes_for_the_vectors() {
    let input = std::env::var("KEYWARD_ARGON2_VECTOR_INPUT")
        .expect("KEYWARD_ARGON2_VECTOR_INPUT: m,t,p<TAB>key lines");
    for line in input.lines() {
        let (mtp, key) = line.split_once('\t').expect("m,t,p<TAB>key");
        let n: Vec<u32> = mtp
            .split(',')
            .map(|n| n.parse().expect("a number"))
            .collect();
        let [m, t, p] = n[..] else {
            panic!("three parameters in {mtp:?}")
        };
        let params = Argon2Params::new(m, t, p).expect("valid parameters");
        let stored = Hasher::argon2(params).hash(&parsed(key)).expect("argon2");
        println!("keyward-argon2\t{stored}");
    }
}

// ----- Live: argon2-cffi itself (KEYWARD_TEST_INTEROP=1) -----

/// Whether the live check `test` runs (see `tests/interop/live.rs`).
fn live(test: &str) -> bool {
    live::enabled(test, MODULE, PACKAGE)
}

/// Runs the script with `mode`, feeding `input` on stdin; returns its stdout lines.
fn python(mode: &str, input: &str) -> Vec<String> {
    let mut child = Command::new("python3")
        .arg(SCRIPT)
        .arg(mode)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 starts");
    child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(input.as_bytes())
        .expect("python3 reads its input");
    let out = child.wait_with_output().expect("python3 finishes");
    assert!(
        out.status.success(),
        "argon2_interop.py {mode} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .expect("UTF-8 output")
        .lines()
        .map(str::to_owned)
        .collect()
}

fn keys(n: usize) -> Vec<ApiKey> {
    let format = KeyFormat::new(["tak", "sk_live"]).expect("valid prefixes");
    (0..n)
        .map(|i| {
            let prefix = if i % 2 == 0 { "tak" } else { "sk_live" };
            format.generate_with_prefix(prefix).expect("os randomness")
        })
        .collect()
}

#[test]
fn live_known_answers_are_current() {
    if live("live_known_answers_are_current") {
        live::check_known_answers(MAKE);
    }
}

#[test]
fn live_argon2_cffi_verifies_keyward_hashes() {
    if !live("live_argon2_cffi_verifies_keyward_hashes") {
        return;
    }
    let params = params();
    let keys = keys(params.len() + 1);
    let wrong = &keys[params.len()];
    let mut input = String::new();
    let mut expected = Vec::new();
    for (p, key) in params.iter().zip(&keys) {
        let stored = Hasher::argon2(*p).hash(&key.as_parsed()).expect("argon2");
        assert!(stored.to_string().starts_with("$argon2id$v=19$"));
        input.push_str(&format!("{stored}\t{}\n", key.expose_secret()));
        expected.push("match");
        input.push_str(&format!("{stored}\t{}\n", wrong.expose_secret()));
        expected.push("mismatch");
    }
    assert_eq!(python("verify", &input), expected);
}

#[test]
fn live_keyward_verifies_argon2_cffi_hashes() {
    if !live("live_keyward_verifies_argon2_cffi_hashes") {
        return;
    }
    let keys = keys(2);
    let wrong = keys[1].as_parsed();
    let input = format!("{}\n", keys[0].expose_secret());
    let lines = python("hash", &input);
    assert_eq!(lines.len(), 2, "two hashes per key: {lines:?}");

    // Verification uses the parameters in the stored hash, not the hasher's.
    let hasher = Hasher::argon2(Argon2Params::DEFAULT);
    let key = keys[0].as_parsed();
    for (line, (m, t, p)) in lines.iter().zip([(19_456, 2, 1), (65_536, 3, 4)]) {
        let stored: StoredHash = line
            .parse()
            .unwrap_or_else(|e| panic!("argon2-cffi hash {line:?} should parse: {e}"));
        assert_eq!(stored.algorithm(), HashAlgorithm::Argon2id);
        let params = stored.argon2_params().expect("argon2 parameters");
        assert_eq!(
            (params.m_cost(), params.t_cost(), params.p_cost()),
            (m, t, p)
        );
        assert_eq!((stored.salt_len(), stored.digest_len()), (16, 32));
        assert_eq!(&stored.to_string(), line, "re-printed identically");
        assert_eq!(hasher.verify(&key, &stored), Ok(()), "{line}");
        assert_eq!(hasher.verify(&wrong, &stored), Err(Mismatch), "{line}");
    }
    // OWASP parameters are current: no rehash; argon2-cffi's defaults are stronger: kept too.
    let owasp: StoredHash = lines[0].parse().expect("parsed above");
    assert!(!hasher.needs_rehash(&owasp));
}
