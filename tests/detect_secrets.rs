//! The detect-secrets plugin in `contrib/secret-scanning/keyward_plugin.py`, run through the
//! real detect-secrets: a valid key standing alone on a line is flagged, the same key with a
//! wrong checksum is not, and the plugin's pattern agrees with `KeyFormat::regex()`. The
//! gitleaks rule's pattern is checked against the same keys.
//!
//! A plain `cargo test` needs no Python: the known-answer tests check the findings that
//! detect-secrets gave with the plugin, recorded in `tests/interop/detect_secrets_vectors.json`
//! by `tests/interop/make_detect_secrets_vectors.py`, against what keyward expects. Each builds
//! its scan input from the recorded keys as the live test does and refuses a recorded case
//! made from another input; a test fails when the plugin or the gitleaks rule changed after
//! the file was made. With `KEYWARD_TEST_INTEROP=1` (set by `.ci/run` after
//! `pip install detect-secrets`) the `live_*` tests also run `python3 -m detect_secrets` on
//! fresh keys and check that the committed file is still what the installed detect-secrets
//! gives; with the variable set, a missing detect-secrets fails them. Without it they only
//! print that they were skipped.

#[path = "interop/live.rs"]
mod live;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use keyward::{ApiKey, KeyFormat, key::parse_any};
use serde::Deserialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

const CONTRIB: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/contrib/secret-scanning");
const MAKE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/interop/make_detect_secrets_vectors.py"
);
const VECTORS: &str = include_str!("interop/detect_secrets_vectors.json");
const PLUGIN_SOURCE: &str = include_str!("../contrib/secret-scanning/keyward_plugin.py");
const GITLEAKS_SOURCE: &str = include_str!("../contrib/secret-scanning/gitleaks.toml");
const SECRET_TYPE: &str = "keyward API key";
const REMAKE: &str = "run `python3 tests/interop/make_detect_secrets_vectors.py` \
                      (needs `pip install detect-secrets`) and review the difference";

// ----- The checks, each on a scanner: recorded findings or detect-secrets itself -----

/// A scan input: file names and texts, in the order they are given to detect-secrets.
type Files = [(&'static str, String)];

/// Where the plugin's findings come from.
enum Scanner<'a> {
    /// The findings recorded in `tests/interop/detect_secrets_vectors.json`.
    Recorded(&'a Vectors),
    /// `python3 -m detect_secrets scan --plugin keyward_plugin.py`, now.
    Live,
}

impl Scanner<'_> {
    /// The plugin's findings on `files` with `env` set, as (file name, line number) pairs in
    /// order. `case` names the scan: its recorded answer, or its scratch directory.
    fn scan(&self, case: &str, files: &Files, env: &[(&str, &str)]) -> Vec<(String, u64)> {
        match self {
            Self::Recorded(vectors) => vectors.findings(case, files, env),
            Self::Live => live_scan(case, files, env),
        }
    }
}

/// `key` with its last character replaced by another base62 character: the checksum no
/// longer matches.
fn wrong_checksum(key: &str) -> String {
    let (head, last) = key.split_at(key.len() - 1);
    let other = if last == "0" { "1" } else { "0" };
    format!("{head}{other}")
}

/// A valid `prefix` key alone on a line is flagged; the same key with a wrong checksum is not.
fn valid_and_wrong(scanner: &Scanner<'_>, prefix: &str, good: &str) {
    let bad = wrong_checksum(good);
    assert!(parse_any(good).is_ok());
    assert!(parse_any(&bad).is_err(), "{bad} must have a wrong checksum");
    let files = [
        ("valid.txt", format!("deploy notes\n{good}\nend\n")),
        ("wrong.txt", format!("deploy notes\n{bad}\nend\n")),
    ];
    assert_eq!(
        scanner.scan(&format!("valid_and_wrong/{prefix}"), &files, &[]),
        [("valid.txt".to_owned(), 2)],
        "{prefix}: only the valid key is reported"
    );
}

/// Truncated, extended and upper-cased `tak` keys are not flagged; a key embedded between
/// non-word characters is.
fn look_alikes(scanner: &Scanner<'_>, good: &str) {
    let text = format!(
        "{}\n{good}x\n{}\nmy-{good}-suffix\n",
        &good[..good.len() - 1],
        good.replace("tak_", "TAK_"),
    );
    let files = [("look_alikes.txt", text)];
    // `my-{key}-suffix` is a key between non-word characters: found. The others are not keys.
    assert_eq!(
        scanner.scan("look_alikes", &files, &[]),
        [("look_alikes.txt".to_owned(), 4)]
    );
}

/// Every key of a file is found, and none of the same keys with a wrong checksum.
fn many(scanner: &Scanner<'_>, keys: &[&str]) {
    let mut text = String::new();
    for key in keys {
        text.push_str(key);
        text.push('\n');
        text.push_str(&wrong_checksum(key));
        text.push('\n');
    }
    let found = scanner.scan("many", &[("many.txt", text)], &[]);
    let expected: Vec<(String, u64)> = (0..keys.len() as u64)
        .map(|i| ("many.txt".to_owned(), 2 * i + 1))
        .collect();
    assert_eq!(found, expected);
}

/// `KEYWARD_PREFIXES` and `KEYWARD_TAIL_LENGTHS` choose what is found: `tak` and `live` have
/// the default shape, `long` a 40-character secret (58 characters after the `_`).
fn configured(scanner: &Scanner<'_>, tak: &str, live: &str, long: &str) {
    let files = [("keys.txt", format!("{tak}\n{live}\n{long}\n"))];
    let line = |n: u64| ("keys.txt".to_owned(), n);
    assert_eq!(
        scanner.scan("configured/default", &files, &[]),
        [line(1), line(2)]
    );
    assert_eq!(
        scanner.scan(
            "configured/prefixes",
            &files,
            &[("KEYWARD_PREFIXES", "sk_live")]
        ),
        [line(2)]
    );
    assert_eq!(
        scanner.scan(
            "configured/tail_lengths",
            &files,
            &[("KEYWARD_TAIL_LENGTHS", "58")]
        ),
        [line(3)]
    );
    assert_eq!(
        scanner.scan(
            "configured/both",
            &files,
            &[
                ("KEYWARD_PREFIXES", "tak"),
                ("KEYWARD_TAIL_LENGTHS", "50,58")
            ]
        ),
        [line(1), line(3)]
    );
}

/// The plugin's `build_regex(prefixes, [tail length])`, given by `plugin_regex`, is
/// `KeyFormat::regex()` for the same prefixes and lengths.
fn plugin_pattern(plugin_regex: impl Fn(&[&str], usize) -> String) {
    for (prefixes, secret_len) in [
        (vec!["tak"], 32),
        (vec!["sk_live", "sk_test"], 32),
        (vec!["acme"], 22),
    ] {
        let format = KeyFormat::new(prefixes.iter().copied())
            .and_then(|f| f.with_secret_len(secret_len))
            .expect("valid format");
        let plugin = plugin_regex(&prefixes, format.tail_len());
        // Python needs a non-capturing group where KeyFormat::regex() writes a plain one.
        assert_eq!(plugin.replace("(?:", "("), format.regex());
    }
}

/// The gitleaks rule, whose matches in each input `gitleaks_matches` gives, finds the keys
/// `good` (prefixes `tak`, `sk_live`, `acme_test`) whole and nothing in a truncated, an
/// extended or an upper-cased key.
fn gitleaks_rule(gitleaks_matches: impl Fn(&[&str]) -> Vec<Option<String>>, good: [&str; 3]) {
    let tak = good[0];
    let short = &tak[..tak.len() - 1];
    let long = format!("{tak}A");
    let upper = tak.replace("tak_", "Tak_");
    let found = gitleaks_matches(&[good[0], good[1], good[2], short, &long, &upper]);
    let found: Vec<Option<&str>> = found.iter().map(Option::as_deref).collect();
    assert_eq!(
        found,
        [
            Some(good[0]),
            Some(good[1]),
            Some(good[2]),
            None,
            None,
            None
        ]
    );
}

// ----- Known answers (tests/interop/detect_secrets_vectors.json) -----

#[derive(Deserialize)]
struct Vectors {
    sources: BTreeMap<String, String>,
    keys: Keys,
    scans: Vec<RecordedScan>,
    plugin_regex: Vec<RecordedRegex>,
    gitleaks: RecordedGitleaks,
}

#[derive(Deserialize)]
struct Keys {
    tak: String,
    sk_live: String,
    tak_secret_40: String,
    acme_test: String,
    many: Vec<String>,
}

#[derive(Deserialize)]
struct RecordedScan {
    name: String,
    files: Vec<RecordedFile>,
    env: BTreeMap<String, String>,
    findings: Vec<(String, u64)>,
}

#[derive(Deserialize)]
struct RecordedFile {
    name: String,
    lines: Vec<String>,
}

#[derive(Deserialize)]
struct RecordedRegex {
    prefixes: Vec<String>,
    tail_length: usize,
    regex: String,
}

#[derive(Deserialize)]
struct RecordedGitleaks {
    inputs: Vec<String>,
    matches: Vec<Option<String>>,
}

impl Vectors {
    /// The recorded findings of the scan `case`, whose recorded input must be `files` and
    /// `env` exactly.
    fn findings(&self, case: &str, files: &Files, env: &[(&str, &str)]) -> Vec<(String, u64)> {
        let recorded = self
            .scans
            .iter()
            .find(|s| s.name == case)
            .unwrap_or_else(|| panic!("no recorded scan named {case:?}: {REMAKE}"));
        let recorded_files: Vec<(&str, String)> = recorded
            .files
            .iter()
            .map(|f| {
                (
                    f.name.as_str(),
                    f.lines.iter().map(|l| format!("{l}\n")).collect(),
                )
            })
            .collect();
        let files: Vec<(&str, String)> = files.iter().map(|(n, t)| (*n, t.clone())).collect();
        assert!(
            recorded_files == files,
            "the recorded input of scan {case:?} is not the one this test builds: {REMAKE}"
        );
        let env: BTreeMap<String, String> = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        assert_eq!(
            recorded.env, env,
            "the recorded environment of scan {case:?}: {REMAKE}"
        );
        let mut found = recorded.findings.clone();
        found.sort();
        found
    }
}

fn vectors() -> Vectors {
    serde_json::from_str(VECTORS).expect("tests/interop/detect_secrets_vectors.json parses")
}

/// `key`, after checking that `format` parses it: the recorded keys are keyward keys.
fn checked<'a>(format: &KeyFormat, key: &'a str) -> &'a str {
    if let Err(e) = format.parse(key) {
        panic!("recorded key {key:?} is not a valid key of its format: {e}");
    }
    key
}

fn sha256_hex(text: &str) -> String {
    Sha256::digest(text.replace("\r\n", "\n").as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[test]
fn known_answers_were_made_from_the_current_contrib_files() {
    let v = vectors();
    for (path, source) in [
        ("contrib/secret-scanning/keyward_plugin.py", PLUGIN_SOURCE),
        ("contrib/secret-scanning/gitleaks.toml", GITLEAKS_SOURCE),
    ] {
        assert_eq!(
            v.sources.get(path).map(String::as_str),
            Some(sha256_hex(source).as_str()),
            "{path} changed after tests/interop/detect_secrets_vectors.json was made: {REMAKE}"
        );
    }
}

#[test]
fn flags_a_valid_key_alone_on_a_line_and_ignores_a_wrong_checksum() {
    let v = vectors();
    let format = KeyFormat::new(["tak", "sk_live"]).expect("valid prefixes");
    let scanner = Scanner::Recorded(&v);
    valid_and_wrong(&scanner, "tak", checked(&format, &v.keys.tak));
    valid_and_wrong(&scanner, "sk_live", checked(&format, &v.keys.sk_live));
}

#[test]
fn ignores_truncated_extended_and_embedded_look_alikes() {
    let v = vectors();
    let format = KeyFormat::new(["tak"]).expect("valid prefix");
    look_alikes(&Scanner::Recorded(&v), checked(&format, &v.keys.tak));
}

#[test]
fn finds_every_key_of_a_file_whatever_its_checksum_value() {
    let v = vectors();
    let format = KeyFormat::new(["tak"]).expect("valid prefix");
    let keys: Vec<&str> = v.keys.many.iter().map(|k| checked(&format, k)).collect();
    // Many keys, chosen so that checksums with leading zeros and every last character are
    // exercised.
    assert_eq!(keys.len(), 200);
    let checksums: Vec<&str> = keys.iter().map(|k| &k[k.len() - 6..]).collect();
    let last: std::collections::BTreeSet<char> =
        checksums.iter().filter_map(|c| c.chars().last()).collect();
    assert_eq!(last.len(), 62, "every last character: {last:?}");
    assert!(
        checksums.iter().any(|c| c.starts_with("000")),
        "a checksum with three leading zeros"
    );
    many(&Scanner::Recorded(&v), &keys);
}

#[test]
fn prefixes_and_lengths_are_configurable() {
    let v = vectors();
    let format = KeyFormat::new(["tak", "sk_live"]).expect("valid prefixes");
    let long = KeyFormat::new(["tak"])
        .and_then(|f| f.with_secret_len(40))
        .expect("valid lengths");
    configured(
        &Scanner::Recorded(&v),
        checked(&format, &v.keys.tak),
        checked(&format, &v.keys.sk_live),
        checked(&long, &v.keys.tak_secret_40),
    );
}

#[test]
fn the_plugin_pattern_is_key_format_regex() {
    let v = vectors();
    plugin_pattern(|prefixes, tail_len| {
        v.plugin_regex
            .iter()
            .find(|r| r.prefixes == prefixes && r.tail_length == tail_len)
            .unwrap_or_else(|| panic!("no recorded regex for {prefixes:?}, {tail_len}: {REMAKE}"))
            .regex
            .clone()
    });
}

#[test]
fn the_gitleaks_rule_matches_keys_and_only_keys_shapes() {
    let v = vectors();
    let format = KeyFormat::new(["tak", "sk_live", "acme_test"]).expect("valid prefixes");
    let good = [&v.keys.tak, &v.keys.sk_live, &v.keys.acme_test].map(|k| checked(&format, k));
    gitleaks_rule(
        |inputs| {
            assert_eq!(
                v.gitleaks.inputs, inputs,
                "the recorded gitleaks inputs are not the ones this test builds: {REMAKE}"
            );
            v.gitleaks.matches.clone()
        },
        good,
    );
}

// ----- Live: detect-secrets itself (KEYWARD_TEST_INTEROP=1) -----

/// Whether the live check `test` runs (see `tests/interop/live.rs`).
fn live(test: &str) -> bool {
    live::enabled(test, "detect_secrets", "detect-secrets")
}

fn plugin() -> String {
    format!("{CONTRIB}/keyward_plugin.py")
}

/// A fresh directory of this scan's own under Cargo's temporary directory.
fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("detect_secrets")
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create scratch directory");
    dir
}

/// Runs `detect-secrets scan --plugin keyward_plugin.py` on `files` with `env` set, and
/// returns the plugin's findings as (file name, line number) pairs, in order.
///
/// detect-secrets skips files outside its working directory, so it runs in the files'
/// directory and gets their names.
fn live_scan(case: &str, files: &Files, env: &[(&str, &str)]) -> Vec<(String, u64)> {
    let dir = scratch(case);
    for (name, text) in files {
        std::fs::write(dir.join(name), text).expect("write scan input");
    }
    let mut cmd = Command::new("python3");
    cmd.args(["-m", "detect_secrets", "scan", "--plugin"])
        .arg(plugin())
        .args(files.iter().map(|(name, _)| name))
        .current_dir(&dir)
        .env("PYTHONDONTWRITEBYTECODE", "1")
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

/// Runs a Python snippet with the plugin importable; returns its stdout, trimmed.
fn python(code: &str, args: &[&str]) -> String {
    let out = Command::new("python3")
        .args(["-c", code])
        .args(args)
        .env("PYTHONPATH", CONTRIB)
        .env("PYTHONDONTWRITEBYTECODE", "1")
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

fn generate(format: &KeyFormat, prefix: &str) -> ApiKey {
    format
        .generate_with_prefix(prefix)
        .expect("the OS random generator works")
}

#[test]
fn live_known_answers_are_current() {
    if live("live_known_answers_are_current") {
        live::check_known_answers(MAKE);
    }
}

#[test]
fn live_flags_a_valid_key_alone_on_a_line_and_ignores_a_wrong_checksum() {
    if !live("live_flags_a_valid_key_alone_on_a_line_and_ignores_a_wrong_checksum") {
        return;
    }
    let format = KeyFormat::new(["tak", "sk_live"]).expect("valid prefixes");
    for prefix in ["tak", "sk_live"] {
        let key = generate(&format, prefix);
        valid_and_wrong(&Scanner::Live, prefix, key.expose_secret());
    }
}

#[test]
fn live_ignores_truncated_extended_and_embedded_look_alikes() {
    if !live("live_ignores_truncated_extended_and_embedded_look_alikes") {
        return;
    }
    let format = KeyFormat::new(["tak"]).expect("valid prefix");
    look_alikes(&Scanner::Live, generate(&format, "tak").expose_secret());
}

#[test]
fn live_finds_every_key_of_a_file_whatever_its_checksum_value() {
    if !live("live_finds_every_key_of_a_file_whatever_its_checksum_value") {
        return;
    }
    // Many keys, so checksums with leading zeros and every last character are exercised.
    let format = KeyFormat::new(["tak"]).expect("valid prefix");
    let keys: Vec<ApiKey> = (0..200).map(|_| generate(&format, "tak")).collect();
    let keys: Vec<&str> = keys.iter().map(ApiKey::expose_secret).collect();
    many(&Scanner::Live, &keys);
}

#[test]
fn live_prefixes_and_lengths_are_configurable() {
    if !live("live_prefixes_and_lengths_are_configurable") {
        return;
    }
    let format = KeyFormat::new(["tak", "sk_live"]).expect("valid prefixes");
    let tak = generate(&format, "tak");
    let live = generate(&format, "sk_live");
    let long = KeyFormat::new(["tak"])
        .and_then(|f| f.with_secret_len(40))
        .expect("valid lengths");
    let long = generate(&long, "tak");
    configured(
        &Scanner::Live,
        tak.expose_secret(),
        live.expose_secret(),
        long.expose_secret(),
    );
}

#[test]
fn live_the_plugin_pattern_is_key_format_regex() {
    if !live("live_the_plugin_pattern_is_key_format_regex") {
        return;
    }
    plugin_pattern(|prefixes, tail_len| {
        python(
            "import sys, keyward_plugin as k; \
             print(k.build_regex(sys.argv[1].split(','), [int(sys.argv[2])]))",
            &[&prefixes.join(","), &tail_len.to_string()],
        )
    });
}

#[test]
fn live_the_gitleaks_rule_matches_keys_and_only_keys_shapes() {
    if !live("live_the_gitleaks_rule_matches_keys_and_only_keys_shapes") {
        return;
    }
    let format = KeyFormat::new(["tak", "sk_live", "acme_test"]).expect("valid prefixes");
    let keys = ["tak", "sk_live", "acme_test"].map(|p| generate(&format, p));
    gitleaks_rule(
        |inputs| {
            let mut args = vec![format!("{CONTRIB}/gitleaks.toml")];
            args.extend(inputs.iter().map(|s| (*s).to_owned()));
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let out = python(
                "import re, sys, tomllib\n\
                 rules = tomllib.load(open(sys.argv[1], 'rb'))['rules']\n\
                 pattern = re.compile(rules[0]['regex'], re.ASCII)\n\
                 for s in sys.argv[2:]:\n\
                 \x20   m = pattern.search(s)\n\
                 \x20   print(m.group(rules[0]['secretGroup']) if m else '-')",
                &args,
            );
            out.lines()
                .map(|l| (l != "-").then(|| l.to_owned()))
                .collect()
        },
        keys.each_ref().map(ApiKey::expose_secret),
    );
}
