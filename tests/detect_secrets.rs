//! The detect-secrets plugin in `contrib/secret-scanning/keyward_plugin.py`, run through the
//! real detect-secrets: a valid key standing alone on a line is flagged, the same key with a
//! wrong checksum is not, and the plugin's pattern agrees with `KeyFormat::regex()`. The
//! gitleaks rule's pattern is checked against the same keys.
//!
//! Runs `python3 -m detect_secrets`. The test fails (it never passes silently) when Python or
//! detect-secrets is missing; `.ci/run` installs it with `pip install detect-secrets`.

use std::path::{Path, PathBuf};
use std::process::Command;

use keyward::{ApiKey, KeyFormat, parse_any};
use serde_json::Value;

const CONTRIB: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/contrib/secret-scanning");
const SECRET_TYPE: &str = "keyward API key";

fn plugin() -> String {
    format!("{CONTRIB}/keyward_plugin.py")
}

/// A fresh directory of this test's own under Cargo's temporary directory.
fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("detect_secrets")
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create scratch directory");
    dir
}

/// Fails with an actionable message unless `python3` can import detect-secrets.
fn require_detect_secrets() {
    let out = Command::new("python3")
        .args(["-c", "import detect_secrets"])
        .output()
        .unwrap_or_else(|e| {
            panic!("python3 is needed for the detect-secrets test and could not run: {e}")
        });
    assert!(
        out.status.success(),
        "detect-secrets is not importable from python3; run `pip install detect-secrets` \
         (stderr: {})",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs `detect-secrets scan --plugin keyward_plugin.py` on `files` with `env` set, and
/// returns the plugin's findings as (file name, line number) pairs, in order.
///
/// detect-secrets skips files outside its working directory, so it runs in the files'
/// directory and gets their names.
fn scan(files: &[&Path], env: &[(&str, &str)]) -> Vec<(String, u64)> {
    require_detect_secrets();
    let dir = files[0].parent().expect("files are in a scratch directory");
    let mut cmd = Command::new("python3");
    cmd.args(["-m", "detect_secrets", "scan", "--plugin"])
        .arg(plugin())
        .args(files.iter().map(|f| f.file_name().expect("a file name")))
        .current_dir(dir)
        .env_remove("KEYWARD_PREFIXES")
        .env_remove("KEYWARD_TAIL_LENGTHS");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("detect-secrets runs");
    assert!(
        out.status.success(),
        "detect-secrets scan failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).expect("detect-secrets prints JSON");
    assert!(
        report["plugins_used"]
            .as_array()
            .expect("plugins_used is a list")
            .iter()
            .any(|p| p["name"] == "KeywardDetector"),
        "the keyward plugin was not loaded: {report}"
    );
    let mut found = Vec::new();
    for (file, results) in report["results"].as_object().expect("results is an object") {
        for r in results.as_array().expect("a list of findings") {
            if r["type"] == SECRET_TYPE {
                let name = Path::new(file)
                    .file_name()
                    .expect("a file name")
                    .to_string_lossy()
                    .into_owned();
                found.push((name, r["line_number"].as_u64().expect("a line number")));
            }
        }
    }
    found.sort();
    found
}

/// `key` with its last character replaced by another base62 character: the checksum no
/// longer matches.
fn wrong_checksum(key: &str) -> String {
    let (head, last) = key.split_at(key.len() - 1);
    let other = if last == "0" { "1" } else { "0" };
    format!("{head}{other}")
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write scan input");
    path
}

fn generate(format: &KeyFormat, prefix: &str) -> ApiKey {
    format
        .generate_with_prefix(prefix)
        .expect("the OS random generator works")
}

#[test]
fn flags_a_valid_key_alone_on_a_line_and_ignores_a_wrong_checksum() {
    let format = KeyFormat::new(["tak", "sk_live"]).expect("valid prefixes");
    let dir = scratch("valid_and_wrong");
    for prefix in ["tak", "sk_live"] {
        let key = generate(&format, prefix);
        let good = key.expose_secret();
        let bad = wrong_checksum(good);
        assert!(parse_any(good).is_ok());
        assert!(parse_any(&bad).is_err(), "{bad} must have a wrong checksum");

        let valid = write(&dir, "valid.txt", &format!("deploy notes\n{good}\nend\n"));
        let wrong = write(&dir, "wrong.txt", &format!("deploy notes\n{bad}\nend\n"));
        assert_eq!(
            scan(&[&valid, &wrong], &[]),
            [("valid.txt".to_owned(), 2)],
            "{prefix}: only the valid key is reported"
        );
    }
}

#[test]
fn ignores_truncated_extended_and_embedded_look_alikes() {
    let format = KeyFormat::new(["tak"]).expect("valid prefix");
    let key = generate(&format, "tak");
    let good = key.expose_secret();
    let dir = scratch("look_alikes");
    let text = format!(
        "{}\n{good}x\n{}\nmy-{good}-suffix\n",
        &good[..good.len() - 1],
        good.replace("tak_", "TAK_"),
    );
    let file = write(&dir, "look_alikes.txt", &text);
    // `my-{key}-suffix` is a key between non-word characters: found. The others are not keys.
    assert_eq!(scan(&[&file], &[]), [("look_alikes.txt".to_owned(), 4)]);
}

#[test]
fn finds_every_key_of_a_file_whatever_its_checksum_value() {
    // Many keys, so checksums with leading zeros and every last character are exercised.
    let format = KeyFormat::new(["tak"]).expect("valid prefix");
    let keys: Vec<ApiKey> = (0..200).map(|_| generate(&format, "tak")).collect();
    let mut text = String::new();
    for key in &keys {
        text.push_str(key.expose_secret());
        text.push('\n');
        text.push_str(&wrong_checksum(key.expose_secret()));
        text.push('\n');
    }
    let dir = scratch("many");
    let file = write(&dir, "many.txt", &text);
    let found = scan(&[&file], &[]);
    let expected: Vec<(String, u64)> = (0..200)
        .map(|i| ("many.txt".to_owned(), 2 * i + 1))
        .collect();
    assert_eq!(found, expected);
}

#[test]
fn prefixes_and_lengths_are_configurable() {
    let format = KeyFormat::new(["tak", "sk_live"]).expect("valid prefixes");
    let tak = generate(&format, "tak");
    let live = generate(&format, "sk_live");
    let long = KeyFormat::new(["tak"])
        .and_then(|f| f.with_secret_len(40))
        .expect("valid lengths");
    let long = generate(&long, "tak");
    let dir = scratch("configured");
    let file = write(
        &dir,
        "keys.txt",
        &format!(
            "{}\n{}\n{}\n",
            tak.expose_secret(),
            live.expose_secret(),
            long.expose_secret()
        ),
    );
    let line = |n: u64| ("keys.txt".to_owned(), n);
    assert_eq!(scan(&[&file], &[]), [line(1), line(2)]);
    assert_eq!(
        scan(&[&file], &[("KEYWARD_PREFIXES", "sk_live")]),
        [line(2)]
    );
    assert_eq!(scan(&[&file], &[("KEYWARD_TAIL_LENGTHS", "58")]), [line(3)]);
    assert_eq!(
        scan(
            &[&file],
            &[
                ("KEYWARD_PREFIXES", "tak"),
                ("KEYWARD_TAIL_LENGTHS", "50,58")
            ]
        ),
        [line(1), line(3)]
    );
}

/// Runs a Python snippet with the plugin importable; returns its stdout, trimmed.
fn python(code: &str, args: &[&str]) -> String {
    require_detect_secrets();
    let out = Command::new("python3")
        .args(["-c", code])
        .args(args)
        .env("PYTHONPATH", CONTRIB)
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "python3 failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .expect("UTF-8 output")
        .trim()
        .to_owned()
}

#[test]
fn the_plugin_pattern_is_key_format_regex() {
    for (prefixes, secret_len) in [
        (vec!["tak"], 32),
        (vec!["sk_live", "sk_test"], 32),
        (vec!["acme"], 22),
    ] {
        let format = KeyFormat::new(prefixes.iter().copied())
            .and_then(|f| f.with_secret_len(secret_len))
            .expect("valid format");
        let plugin = python(
            "import sys, keyward_plugin as k; \
             print(k.build_regex(sys.argv[1].split(','), [int(sys.argv[2])]))",
            &[&prefixes.join(","), &format.tail_len().to_string()],
        );
        // Python needs a non-capturing group where KeyFormat::regex() writes a plain one.
        assert_eq!(plugin.replace("(?:", "("), format.regex());
    }
}

#[test]
fn the_gitleaks_rule_matches_keys_and_only_keys_shapes() {
    let format = KeyFormat::new(["tak", "sk_live", "acme_test"]).expect("valid prefixes");
    let keys: Vec<ApiKey> = ["tak", "sk_live", "acme_test"]
        .into_iter()
        .map(|p| generate(&format, p))
        .collect();
    let good: Vec<&str> = keys.iter().map(ApiKey::expose_secret).collect();
    let tak = good[0];
    let short = &tak[..tak.len() - 1];
    let long = format!("{tak}A");
    let upper = tak.replace("tak_", "Tak_");
    let out = python(
        "import re, sys, tomllib\n\
         rules = tomllib.load(open(sys.argv[1], 'rb'))['rules']\n\
         pattern = re.compile(rules[0]['regex'], re.ASCII)\n\
         for s in sys.argv[2:]:\n\
         \x20   m = pattern.search(s)\n\
         \x20   print(m.group(rules[0]['secretGroup']) if m else '-')",
        &[
            &format!("{CONTRIB}/gitleaks.toml"),
            good[0],
            good[1],
            good[2],
            short,
            &long,
            &upper,
        ],
    );
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines, [good[0], good[1], good[2], "-", "-", "-"]);
}
