//! The `keytool` example as outside tests use it: `generate`, `check`, `hash` and `verify`,
//! their output and their exit codes.
//!
//! Cargo gives integration tests the path of `[[bin]]` targets only (`CARGO_BIN_EXE_*`), not
//! of examples, and `cargo test --test keytool` does not build examples. So the first test
//! that needs the binary runs `cargo build --example keytool --message-format=json` (with the
//! `cargo` that runs this test, in the same target directory) and takes the executable's path
//! from cargo's own report: the binary is never stale, and no path is guessed.

use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::OnceLock;

/// The key and pepper of the golden vectors in `tests/hash_vectors.rs` (computed in Python).
const KEY: &str = "tak_bUiB7xK2pQ9mZk3VnR8sLq2WtY6uHd0cFj4gXe1aPo7M2VzXeN";
/// `KEY` with one secret character changed and its checksum recomputed.
const KEY_CHANGED: &str = "tak_bUiB7xK2pQ9mZk3VnR8sLq2WtY6uHd0cFj4gXe1aPo7N0IdhTF";
const PEPPER: &str = "k1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
const HMAC_HASH: &str = "$hmac-sha256$pid=k1$GPO/wXplk6TnSaxjNykgAo38qe03cXfN8cMHeVm7p1k";
const ARGON2_HASH: &str = "$argon2id$v=19$m=64,t=1,p=1$a2V5d2FyZC1zYWx0LTAwMQ$nK2vF6TQGfullu8QsrFr1VYJDp024me8MecUsfkHgwQ";

/// Builds the example once per test process and returns its path.
fn keytool_path() -> &'static PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let out = Command::new(cargo)
            .args([
                "build",
                "--quiet",
                "--example",
                "keytool",
                "--message-format=json",
            ])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .expect("cargo runs");
        assert!(
            out.status.success(),
            "cargo build --example keytool failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
            .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == "keytool")
            .find_map(|m| m["executable"].as_str().map(PathBuf::from))
            .expect("cargo reports the keytool executable")
    })
}

/// Runs keytool with `args`, `KEYWARD_PEPPER` set to `pepper` or removed.
fn keytool(args: &[&str], pepper: Option<&str>) -> Output {
    let mut cmd = Command::new(keytool_path());
    cmd.args(args);
    match pepper {
        Some(p) => cmd.env("KEYWARD_PEPPER", p),
        None => cmd.env_remove("KEYWARD_PEPPER"),
    };
    cmd.output().expect("keytool runs")
}

fn code(out: &Output) -> i32 {
    out.status.code().expect("keytool exits normally")
}

fn stdout(out: &Output) -> String {
    String::from_utf8(out.stdout.clone()).expect("UTF-8 stdout")
}

fn stderr(out: &Output) -> String {
    String::from_utf8(out.stderr.clone()).expect("UTF-8 stderr")
}

/// Asserts an exit code, showing both streams when it differs.
fn assert_exit(out: &Output, expected: i32) {
    assert_eq!(
        code(out),
        expected,
        "stdout: {}\nstderr: {}",
        stdout(out),
        stderr(out)
    );
}

#[test]
fn generate_and_check() {
    let out = keytool(&["generate", "--prefix", "tak", "--count", "3"], None);
    assert_exit(&out, 0);
    let keys: Vec<String> = stdout(&out).lines().map(str::to_owned).collect();
    assert_eq!(keys.len(), 3);
    for key in &keys {
        let checked = keytool(&["check", key], None);
        assert_exit(&checked, 0);
        assert_eq!(stdout(&checked), format!("{}\n", &key[4..16]));
        assert_exit(&keytool(&["check", key, "--prefix", "tak"], None), 0);
        assert_exit(&keytool(&["check", key, "--prefix", "sk"], None), 1);
    }
    let bad = keytool(&["check", "tak_notakey"], None);
    assert_exit(&bad, 1);
    assert!(stdout(&bad).is_empty());
    assert!(stderr(&bad).starts_with("keytool: "), "{}", stderr(&bad));
}

#[test]
fn hash_fast_prints_the_golden_vector() {
    for args in [&["hash", KEY][..], &["hash", "--fast", KEY][..]] {
        let out = keytool(args, Some(PEPPER));
        assert_exit(&out, 0);
        assert_eq!(stdout(&out), format!("{HMAC_HASH}\n"));
    }
}

#[test]
fn hash_fast_refuses_to_run_without_a_pepper() {
    for args in [&["hash", KEY][..], &["hash", "--fast", KEY][..]] {
        for pepper in [None, Some("")] {
            let out = keytool(args, pepper);
            assert_exit(&out, 2);
            assert!(stdout(&out).is_empty(), "nothing on stdout");
            assert!(stderr(&out).contains("KEYWARD_PEPPER"), "{}", stderr(&out));
        }
    }
    // A pepper that is too short or not base64 is refused the same way.
    for bad in ["k1:AAECAwQFBgcICQoLDA0ODw==", "k1:not base64!"] {
        let out = keytool(&["hash", KEY], Some(bad));
        assert_exit(&out, 2);
        assert!(stdout(&out).is_empty());
        assert!(stderr(&out).contains("KEYWARD_PEPPER"), "{}", stderr(&out));
        assert!(!stderr(&out).contains("AAECAw"), "the pepper is not echoed");
    }
}

#[test]
fn hash_argon2_needs_no_pepper_and_verifies() {
    let out = keytool(&["hash", "--argon2", KEY], None);
    assert_exit(&out, 0);
    let hash = stdout(&out);
    let hash = hash.trim_end();
    assert!(
        hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
        "{hash}"
    );
    let ok = keytool(&["verify", KEY, hash], None);
    assert_exit(&ok, 0);
    assert_exit(&keytool(&["verify", KEY_CHANGED, hash], None), 1);
    // --argon2 and --fast together is a usage error.
    assert_exit(&keytool(&["hash", "--argon2", "--fast", KEY], None), 2);
}

#[test]
fn verify_a_hash_printed_by_hash() {
    let out = keytool(&["hash", KEY], Some(PEPPER));
    assert_exit(&out, 0);
    let hash = stdout(&out);
    let ok = keytool(&["verify", KEY, hash.trim_end()], Some(PEPPER));
    assert_exit(&ok, 0);
    assert_eq!(stdout(&ok), "match\n");
}

#[test]
fn verify_exit_codes() {
    // Match: the golden vectors.
    assert_exit(&keytool(&["verify", KEY, HMAC_HASH], Some(PEPPER)), 0);
    assert_exit(&keytool(&["verify", KEY, ARGON2_HASH], None), 0);

    // Mismatch: exit 1, nothing on stdout.
    for (key, hash) in [(KEY_CHANGED, HMAC_HASH), (KEY_CHANGED, ARGON2_HASH)] {
        let out = keytool(&["verify", key, hash], Some(PEPPER));
        assert_exit(&out, 1);
        assert!(stdout(&out).is_empty());
        assert!(stderr(&out).contains("does not match"), "{}", stderr(&out));
    }
    // Another pepper under the same id: the digest differs, a mismatch.
    let other = "k1:ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8=";
    assert_exit(&keytool(&["verify", KEY, HMAC_HASH], Some(other)), 1);

    // A malformed key cannot match: exit 1 with the parse error.
    let out = keytool(&["verify", "tak_short", HMAC_HASH], Some(PEPPER));
    assert_exit(&out, 1);
    assert!(stderr(&out).contains("key"), "{}", stderr(&out));

    // Malformed hashes: exit 2, with or without a pepper.
    for hash in [
        "",
        "hmac-sha256$pid=k1$x",
        "$hmac-sha256$pid=k1$GPO/wXplk6TnSaxjNykgAo38qe03cXfN8cMHeVm7p1",
        "$argon2i$v=19$m=64,t=1,p=1$a2V5d2FyZC1zYWx0LTAwMQ$nK2vF6TQGfullu8QsrFr1VYJDp024me8MecUsfkHgwQ",
        "$2b$10$N9qo8uLOickgx2ZMRZoMyeIjZAgcfl7p92ldGxad68LJZdL17lhWy",
    ] {
        for pepper in [Some(PEPPER), None] {
            let out = keytool(&["verify", KEY, hash], pepper);
            assert_exit(&out, 2);
            assert!(stdout(&out).is_empty());
            assert!(stderr(&out).contains("malformed hash"), "{}", stderr(&out));
        }
    }

    // An HMAC hash needs its pepper: missing, or another id, is exit 2.
    let out = keytool(&["verify", KEY, HMAC_HASH], None);
    assert_exit(&out, 2);
    assert!(stderr(&out).contains("KEYWARD_PEPPER"), "{}", stderr(&out));
    let k2 = "k2:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
    let out = keytool(&["verify", KEY, HMAC_HASH], Some(k2));
    assert_exit(&out, 2);
    assert!(stderr(&out).contains("\"k1\""), "{}", stderr(&out));
}

#[test]
fn hash_refuses_a_malformed_key() {
    let out = keytool(&["hash", "tak_short"], Some(PEPPER));
    assert_exit(&out, 1);
    assert!(stdout(&out).is_empty());
    let out = keytool(&["hash", "--argon2", &format!("{KEY}\n")], None);
    assert_exit(&out, 1);
    assert!(stderr(&out).contains("trailing"), "{}", stderr(&out));
}
