//! `keytool import` as an operator runs it: a good file imports and its tokens verify, a
//! rerun changes nothing, a malformed file is refused line by line with nothing written
//! (on SQLite, and on PostgreSQL when `KEYWARD_TEST_POSTGRES_URL` is set), standard input,
//! `--catalog`, and a missing pepper.
//!
//! The first test that needs the binary builds the example with this test's store
//! features (`cargo build --example keytool --features sqlite[,postgres]`) and takes its
//! path from cargo's report, as tests/keytool.rs does.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

use keyward::key::LegacyFormats;
use keyward::store::{AnyStore, ListFilter, Page};
use keyward::{Hasher, KeyFormat, KeyManager, KeyStore, Pepper, RequestContext};
use serde_json::Value;

#[path = "support/example.rs"]
mod example;

const PEPPER: &str = "k1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
const VECTORS: &str = include_str!("interop/legacy_sha256_vectors.json");

fn keytool_path() -> &'static PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let features = if cfg!(feature = "postgres") {
            "sqlite,postgres"
        } else {
            "sqlite"
        };
        example::build("keytool", features)
    })
}

/// Runs `keytool import` with `args`, `stdin` on standard input, the test pepper set.
fn import(args: &[&str], stdin: &str, pepper: Option<&str>) -> Output {
    let mut cmd = Command::new(keytool_path());
    cmd.arg("import")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    match pepper {
        Some(p) => cmd.env("KEYWARD_PEPPER", p),
        None => cmd.env_remove("KEYWARD_PEPPER"),
    };
    let mut child = cmd.spawn().expect("keytool runs");
    // keytool may exit before reading (a missing pepper): a broken pipe is not a failure.
    let _ = child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes());
    child.wait_with_output().expect("keytool exits")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8(bytes.to_vec()).expect("UTF-8")
}

/// The known-answer import lines (hashlib digests) and their tokens.
fn good() -> (Vec<String>, Vec<String>) {
    let v: Value = serde_json::from_str(VECTORS).expect("JSON");
    let mut lines = Vec::new();
    let mut tokens = Vec::new();
    for kind in ["sha256", "prefixed_api_key"] {
        for entry in v[kind].as_array().expect("list") {
            lines.push(entry["line"].as_str().expect("line").to_owned());
            tokens.push(entry["token"].as_str().expect("token").to_owned());
        }
    }
    (lines, tokens)
}

fn write_file(dir: &tempfile::TempDir, name: &str, text: &str) -> String {
    let path = dir.path().join(name);
    std::fs::write(&path, text).expect("write");
    path.display().to_string()
}

async fn manager(url: &str) -> KeyManager<AnyStore> {
    KeyManager::new(
        AnyStore::open(url).await.expect("open"),
        KeyFormat::new(["tak"]).expect("format"),
        Hasher::fast(Pepper::from_text(PEPPER).expect("pepper")),
    )
    .with_legacy(
        LegacyFormats::new()
            .sha256("old_sk")
            .and_then(|f| f.prefixed_api_key("acme"))
            .expect("legacy"),
    )
    .expect("disjoint")
}

async fn count(url: &str) -> usize {
    let store = AnyStore::open(url).await.expect("open");
    store
        .list(&ListFilter::All, Page::first(100))
        .await
        .expect("list")
        .len()
}

/// A good file imports, its tokens verify (and upgrade), a rerun skips every line.
async fn good_file_then_rerun(url: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    let (lines, tokens) = good();
    let file = write_file(&dir, "keys.jsonl", &format!("{}\n\n", lines.join("\n")));
    let out = import(&["--database", url, &file], "", Some(PEPPER));
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        format!(
            "imported {n} keys, skipped 0 already imported ({n} lines)\n",
            n = lines.len()
        )
    );
    let again = import(&["--database", url, &file], "", Some(PEPPER));
    assert!(again.status.success(), "{}", text(&again.stderr));
    assert_eq!(
        text(&again.stdout),
        format!(
            "imported 0 keys, skipped {n} already imported ({n} lines)\n",
            n = lines.len()
        )
    );
    let manager = manager(url).await;
    let ctx = RequestContext::new();
    for token in &tokens {
        manager.verify(token, &ctx).await.expect(token);
        manager
            .verify(token, &ctx)
            .await
            .expect("after the upgrade");
    }
    assert_eq!(count(url).await, lines.len());
}

/// A file with bad lines: every one reported as `line N: reason`, exit 1, nothing written.
async fn malformed_file_writes_nothing(url: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    let (lines, _) = good();
    let file_text = [
        lines[0].as_str(),
        r#"{"sha256": "abcd", "name": "a", "owner": "u", "scopes": []}"#,
        lines[1].as_str(),
        r#"{"sha256": "4eca4620f636b52e351ebafd892b93e11add9d62bd0a5ed53c6140af7c40b42b", "name": "a", "owner": "u", "scopes": ["Not A Scope"]}"#,
        r#"{"sha256": "4eca4620f636b52e351ebafd892b93e11add9d62bd0a5ed53c6140af7c40b42c", "name": "a", "owner": "u", "scopes": [], "expires_at": "tomorrow"}"#,
        "not json",
        "",
        lines[1].as_str(),
    ]
    .join("\n");
    let file = write_file(&dir, "bad.jsonl", &file_text);
    let out = import(&["--database", url, &file], "", Some(PEPPER));
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let stderr = text(&out.stderr);
    let reported: Vec<&str> = stderr.lines().filter(|l| l.starts_with("line ")).collect();
    assert_eq!(reported.len(), 5, "{stderr}");
    assert!(reported[0].starts_with("line 2: sha256 is not a SHA-256 digest"));
    assert!(reported[1].starts_with("line 4: scopes: "));
    assert!(reported[2].starts_with("line 5: expires_at is not an RFC 3339"));
    assert!(reported[3].starts_with("line 6: not a JSON object of import fields"));
    // File line numbers, not positions among the lines that parsed (3 is the second).
    assert_eq!(
        reported[4], "line 8: the same digest as line 3 of this import",
        "{stderr}"
    );
    // Seven lines that are not blank, five refused, each counted once.
    assert!(
        stderr.contains("5 of 7 lines refused, nothing written"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("4eca4620"),
        "no digest in messages: {stderr}"
    );
    assert!(out.stdout.is_empty());
    assert_eq!(count(url).await, 0, "nothing written");
}

fn sqlite_url(dir: &tempfile::TempDir) -> String {
    format!("sqlite://{}?mode=rwc", dir.path().join("keys.db").display())
}

#[tokio::test]
async fn sqlite_good_file_and_rerun() {
    let dir = tempfile::tempdir().expect("tempdir");
    good_file_then_rerun(&sqlite_url(&dir)).await;
}

#[tokio::test]
async fn sqlite_malformed_file_writes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    malformed_file_writes_nothing(&sqlite_url(&dir)).await;
}

#[tokio::test]
async fn standard_input_catalog_and_pepper() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = sqlite_url(&dir);
    let (lines, _) = good();
    let catalog = write_file(&dir, "scopes.txt", "# declared scopes\nwrite\n");
    let out = import(
        &["--database", &url, "--catalog", &catalog, "-"],
        &lines[0],
        Some(PEPPER),
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).starts_with("line 1: unknown scopes or roles: read\n"),
        "{}",
        text(&out.stderr)
    );
    // A line the catalog refuses is counted once.
    assert!(
        text(&out.stderr).contains("1 of 1 lines refused"),
        "{}",
        text(&out.stderr)
    );
    let missing = import(&["--database", &url, "-"], &lines[0], None);
    assert_eq!(missing.status.code(), Some(2));
    assert!(text(&missing.stderr).contains("KEYWARD_PEPPER is not set"));
    let catalog = write_file(&dir, "scopes.txt", "read\n");
    let out = import(
        &["--database", &url, "--catalog", &catalog, "-"],
        &lines[0],
        Some(PEPPER),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(count(&url).await, 1);
}

/// A fresh schema's URL on the test server, or `None` (the test is skipped) without one.
#[cfg(feature = "postgres")]
async fn postgres_url() -> Option<(String, sqlx::PgPool, String)> {
    let Ok(url) = std::env::var("KEYWARD_TEST_POSTGRES_URL") else {
        eprintln!("keytool import on PostgreSQL SKIPPED: KEYWARD_TEST_POSTGRES_URL is not set");
        return None;
    };
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let schema = format!(
        "keyward_keytool_import_{}_{}",
        std::process::id(),
        N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    );
    let admin = sqlx::PgPool::connect(&url).await.expect("connect");
    sqlx::query(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
        .execute(&admin)
        .await
        .expect("drop");
    sqlx::query(&format!("CREATE SCHEMA {schema}"))
        .execute(&admin)
        .await
        .expect("schema");
    let sep = if url.contains('?') { '&' } else { '?' };
    Some((
        format!("{url}{sep}options%5Bsearch_path%5D={schema}"),
        admin,
        schema,
    ))
}

#[cfg(feature = "postgres")]
#[tokio::test]
async fn postgres_good_file_rerun_and_malformed_file() {
    let Some((url, admin, schema)) = postgres_url().await else {
        return;
    };
    malformed_file_writes_nothing(&url).await;
    good_file_then_rerun(&url).await;
    let _ = sqlx::query(&format!("DROP SCHEMA {schema} CASCADE"))
        .execute(&admin)
        .await;
}
