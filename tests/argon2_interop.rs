//! Argon2id interoperability with argon2-cffi, both ways: argon2-cffi verifies the hashes
//! keyward makes, and keyward verifies the hashes argon2-cffi makes.
//!
//! The Python side is `tests/argon2_interop.py`, run with `python3`. The test fails (it never
//! passes silently) when Python or argon2-cffi is missing; `.ci/run` installs argon2-cffi
//! with `pip install argon2-cffi` before the tests.

use std::io::Write;
use std::process::{Command, Stdio};

use keyward::{ApiKey, Argon2Params, HashAlgorithm, Hasher, KeyFormat, Mismatch, StoredHash};

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/argon2_interop.py");

/// Fails with an actionable message unless `python3` can import argon2-cffi.
fn require_argon2_cffi() {
    let out = Command::new("python3")
        .args(["-c", "import argon2"])
        .output()
        .unwrap_or_else(|e| {
            panic!("python3 is needed for the Argon2 interop test and could not run: {e}")
        });
    assert!(
        out.status.success(),
        "argon2-cffi is not importable from python3; run `pip install argon2-cffi` \
         (stderr: {})",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs the script with `mode`, feeding `input` on stdin; returns its stdout lines.
fn python(mode: &str, input: &str) -> Vec<String> {
    require_argon2_cffi();
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
fn argon2_cffi_verifies_keyward_hashes() {
    let params = [
        Argon2Params::DEFAULT,
        Argon2Params::new(64, 1, 1).expect("valid"),
        Argon2Params::new(256, 3, 2).expect("valid"),
        Argon2Params::new(1024, 1, 4).expect("valid"),
    ];
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
fn keyward_verifies_argon2_cffi_hashes() {
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
