//! Importing keys of another system and verifying their legacy tokens: digests computed by
//! Python's hashlib (known answers in tests/interop/legacy_sha256_vectors.json, made by
//! tests/interop/make_legacy_vectors.py; with `KEYWARD_TEST_INTEROP=1` the script runs and
//! checks the committed file) and keys made by the real `prefixed-api-key` crate import and
//! verify; wrong and tampered tokens are refused; the first use upgrades the hash and the
//! key still verifies; reruns change nothing; refused imports and failed batch inserts
//! write nothing (memory, SQLite, and PostgreSQL when `KEYWARD_TEST_POSTGRES_URL` is set);
//! and a legacy token never verifies as a keyward key nor the other way round.

#[path = "interop/live.rs"]
mod live;

use std::sync::Arc;

use keyward::audit::{AuditKind, AuditLog};
use keyward::hash::{ForeignScheme, HashAlgorithm};
use keyward::key::LegacyFormats;
use keyward::manager::{ImportError, ImportLine, ImportLineError, VerifyError};
use keyward::store::StoreError;
use keyward::{
    Hasher, IssueRequest, KeyFormat, KeyManager, KeyStore, MemoryStore, Pepper, RequestContext,
    ScopeCatalog, testing,
};
use prefixed_api_key::PrefixedApiKeyController;
use proptest::prelude::*;
use serde_json::Value;

const VECTORS: &str = include_str!("interop/legacy_sha256_vectors.json");
const MAKE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/interop/make_legacy_vectors.py"
);

fn vectors() -> Value {
    serde_json::from_str(VECTORS).expect("vectors are JSON")
}

fn legacy() -> LegacyFormats {
    LegacyFormats::new()
        .sha256("old_sk")
        .and_then(|f| f.prefixed_api_key("acme"))
        .and_then(|f| f.prefixed_api_key("mycompany"))
        .expect("legacy formats")
}

fn manager_on<S: KeyStore>(store: S) -> KeyManager<S> {
    KeyManager::new(
        store,
        KeyFormat::new(["tak"]).expect("format"),
        Hasher::fast(Pepper::new("k1", [7u8; 32]).expect("pepper")),
    )
    .with_legacy(legacy())
    .expect("disjoint prefixes")
}

fn manager() -> KeyManager<MemoryStore> {
    manager_on(MemoryStore::new())
}

fn lines(texts: &[String]) -> Vec<ImportLine> {
    texts
        .iter()
        .map(|t| ImportLine::parse(t).expect("valid line"))
        .collect()
}

/// The import lines and tokens of the known answers: every `sha256` vector twice, once
/// with its hex line and once (into another manager) with its base64 digest.
fn known_answers() -> (Vec<String>, Vec<String>, Vec<String>) {
    let v = vectors();
    let mut hex = Vec::new();
    let mut b64 = Vec::new();
    let mut tokens = Vec::new();
    for entry in v["sha256"].as_array().expect("sha256 list") {
        let line = entry["line"].as_str().expect("line").to_owned();
        let mut obj: Value = serde_json::from_str(&line).expect("line is JSON");
        obj["sha256"] = entry["sha256_base64"].clone();
        b64.push(obj.to_string());
        hex.push(line);
        tokens.push(entry["token"].as_str().expect("token").to_owned());
    }
    for entry in v["prefixed_api_key"].as_array().expect("pak list") {
        let line = entry["line"].as_str().expect("line").to_owned();
        hex.push(line.clone());
        b64.push(line);
        tokens.push(entry["token"].as_str().expect("token").to_owned());
    }
    (hex, b64, tokens)
}

/// `token` with one body character changed (its last before any `=` padding).
fn tampered(token: &str) -> String {
    let mut bytes = token.as_bytes().to_vec();
    let i = bytes
        .iter()
        .rposition(|&b| b != b'=')
        .expect("a body character");
    bytes[i] = if bytes[i] == b'a' { b'b' } else { b'a' };
    String::from_utf8(bytes).expect("ASCII")
}

#[tokio::test]
async fn hashlib_digests_import_and_verify_in_hex_and_base64() {
    let (hex, b64, tokens) = known_answers();
    for texts in [hex, b64] {
        let manager = manager();
        let ctx = RequestContext::new();
        let summary = manager.import(&lines(&texts), &ctx).await.expect("import");
        assert_eq!((summary.imported(), summary.skipped()), (texts.len(), 0));
        for token in &tokens {
            let verified = manager.verify(token, &ctx).await.expect(token);
            assert!(
                verified
                    .record()
                    .scopes
                    .allows(&"read".parse().expect("scope"))
            );
            let wrong = manager
                .verify(&tampered(token), &ctx)
                .await
                .expect_err(token);
            assert!(matches!(wrong, VerifyError::Invalid), "{token}: {wrong:?}");
        }
    }
}

#[test]
fn live_known_answers_are_current() {
    if live::enabled("live_known_answers_are_current", "hashlib", "python3") {
        live::check_known_answers(MAKE);
    }
}

#[tokio::test]
async fn prefixed_api_key_crate_keys_import_and_verify() {
    let controller = PrefixedApiKeyController::configure()
        .prefix("mycompany".to_owned())
        .seam_defaults()
        .finalize()
        .expect("controller");
    let manager = manager();
    let ctx = RequestContext::new();
    let mut keys = Vec::new();
    let mut texts = Vec::new();
    for n in 0..5 {
        let (pak, long_hash) = controller.generate_key_and_hash();
        texts.push(
            serde_json::json!({
                "prefixed_api_key": {
                    "prefix": pak.prefix(),
                    "short_token": pak.short_token(),
                    "long_token_sha256": long_hash,
                },
                "name": format!("pak {n}"), "owner": "user_1", "scopes": ["read"],
            })
            .to_string(),
        );
        keys.push(pak);
    }
    manager.import(&lines(&texts), &ctx).await.expect("import");
    for pak in &keys {
        let token = pak.to_string();
        assert!(controller.check_hash(pak, &controller.long_token_hashed(pak)));
        manager.verify(&token, &ctx).await.expect("verifies");
        // Another short token with the right long token is refused: the short token is
        // bound into the stored digest.
        let other_short = format!(
            "{}_{}x_{}",
            pak.prefix(),
            pak.short_token(),
            pak.long_token()
        );
        assert!(matches!(
            manager.verify(&other_short, &ctx).await,
            Err(VerifyError::Invalid)
        ));
        assert!(matches!(
            manager.verify(&tampered(&token), &ctx).await,
            Err(VerifyError::Invalid)
        ));
    }
}

#[tokio::test]
async fn first_use_upgrades_the_hash_and_the_key_still_verifies() {
    let (hex, _, tokens) = known_answers();
    let audit = AuditLog::new();
    let manager = manager().with_audit(audit.clone());
    let ctx = RequestContext::new();
    manager
        .import(&lines(&hex[..1]), &ctx)
        .await
        .expect("import");
    let token = &tokens[0];
    let store = manager.store().clone();
    let listed = |_: &KeyManager<MemoryStore>| {
        let store = store.clone();
        async move {
            store
                .list(
                    &keyward::store::ListFilter::All,
                    keyward::store::Page::first(10),
                )
                .await
        }
    };
    let before = listed(&manager).await.expect("list");
    assert_eq!(before.len(), 1);
    assert!(before[0].hash.is_foreign());
    assert_eq!(
        before[0].hash.algorithm(),
        HashAlgorithm::Foreign(ForeignScheme::Sha256)
    );
    assert_eq!(before[0].prefix.as_str(), "legacy");
    assert_eq!(before[0].id.len(), 22);

    let first = manager.verify(token, &ctx).await.expect("first use");
    let after = listed(&manager).await.expect("list");
    assert!(!after[0].hash.is_foreign(), "upgraded on first use");
    assert_eq!(after[0].hash.algorithm(), HashAlgorithm::HmacSha256);
    assert_eq!(after[0].id, before[0].id, "the id stays");
    assert_eq!(after[0].version, before[0].version + 1);
    let second = manager.verify(token, &ctx).await.expect("still verifies");
    assert_eq!(first.key_id(), second.key_id());
    assert!(matches!(
        manager.verify(&tampered(token), &ctx).await,
        Err(VerifyError::Invalid)
    ));
    let kinds: Vec<AuditKind> = audit.events().into_iter().map(|e| e.kind).collect();
    assert!(kinds.contains(&AuditKind::Imported));
    assert!(kinds.contains(&AuditKind::Rehashed));
    // An imported key verified and upgraded under one pepper keeps working after the
    // pepper is rotated (the old one still accepted).
    let rotated = KeyManager::new(
        manager.store().clone(),
        KeyFormat::new(["tak"]).expect("format"),
        Hasher::fast(Pepper::new("k2", [8u8; 32]).expect("pepper"))
            .accept_pepper(Pepper::new("k1", [7u8; 32]).expect("pepper"))
            .expect("distinct ids"),
    )
    .with_legacy(legacy())
    .expect("legacy");
    rotated.verify(token, &ctx).await.expect("after rotation");
}

#[tokio::test]
async fn unknown_and_wrong_tokens_are_refused_alike() {
    let (hex, _, tokens) = known_answers();
    let manager = manager();
    let ctx = RequestContext::new();
    manager.import(&lines(&hex), &ctx).await.expect("import");
    for bad in [
        "old_sk_never-imported".to_owned(),
        tampered(&tokens[1]),
        format!("{}x", tokens[0]),
        "acme_BRTRKFsL_51FwqftsmMDHHbJAMEXXHCgH".to_owned(),
    ] {
        let err = manager.verify(&bad, &ctx).await.expect_err(&bad);
        assert!(matches!(err, VerifyError::Invalid), "{bad}: {err:?}");
        assert_eq!(err.to_string(), "invalid key");
    }
    // Without the legacy format, the same token is malformed, not looked up.
    let plain = KeyManager::new(
        manager.store().clone(),
        KeyFormat::new(["tak"]).expect("format"),
        Hasher::fast(Pepper::new("k1", [7u8; 32]).expect("pepper")),
    );
    assert!(matches!(
        plain.verify(&tokens[0], &ctx).await,
        Err(VerifyError::Malformed(_))
    ));
    // Another pepper derives other ids: nothing is found.
    let other = KeyManager::new(
        manager.store().clone(),
        KeyFormat::new(["tak"]).expect("format"),
        Hasher::fast(Pepper::new("k1", [9u8; 32]).expect("pepper")),
    )
    .with_legacy(legacy())
    .expect("legacy");
    assert!(matches!(
        other.verify(&tokens[0], &ctx).await,
        Err(VerifyError::Invalid)
    ));
}

#[tokio::test]
async fn a_rerun_changes_nothing() {
    let (hex, _, _) = known_answers();
    let manager = manager();
    let ctx = RequestContext::new();
    manager.import(&lines(&hex), &ctx).await.expect("import");
    let page = keyward::store::Page::first(100);
    let before = manager
        .store()
        .list(&keyward::store::ListFilter::All, page)
        .await
        .expect("list");
    let again = manager.import(&lines(&hex), &ctx).await.expect("rerun");
    assert_eq!((again.imported(), again.skipped()), (0, hex.len()));
    let after = manager
        .store()
        .list(&keyward::store::ListFilter::All, page)
        .await
        .expect("list");
    assert_eq!(before, after);
}

/// After a pepper rotation, a rerun of the same file must not give a revoked key a second
/// record under the new pepper's id: it skips every line, and the revoked token stays
/// refused.
#[tokio::test]
async fn a_rerun_after_a_pepper_rotation_does_not_revive_a_revoked_key() {
    let (hex, _, tokens) = known_answers();
    let store = MemoryStore::new();
    let ctx = RequestContext::new();
    let before = manager_on(store.clone());
    before.import(&lines(&hex), &ctx).await.expect("import");
    let token = &tokens[0];
    let id = before.verify(token, &ctx).await.expect("verifies").key_id();
    before
        .revoke(&id, Some("leaked"), &ctx)
        .await
        .expect("revoke");
    let rotated = KeyManager::new(
        store,
        KeyFormat::new(["tak"]).expect("format"),
        Hasher::fast(Pepper::new("k2", [8u8; 32]).expect("pepper"))
            .accept_pepper(Pepper::new("k1", [7u8; 32]).expect("pepper"))
            .expect("two peppers"),
    )
    .with_legacy(legacy())
    .expect("disjoint prefixes");
    let again = rotated.import(&lines(&hex), &ctx).await.expect("rerun");
    assert_eq!((again.imported(), again.skipped()), (0, hex.len()));
    let refused = rotated.verify(token, &ctx).await.expect_err("revoked");
    assert!(matches!(refused, VerifyError::Revoked), "{refused:?}");
}

#[tokio::test]
async fn refused_lines_are_all_reported_and_nothing_is_written() {
    let (hex, _, _) = known_answers();
    let catalog = ScopeCatalog::builder()
        .scopes(["read"])
        .strict(true)
        .build()
        .expect("catalog");
    let manager = manager().with_catalog(catalog);
    let mut texts = hex.clone();
    let mut unknown: Value = serde_json::from_str(&hex[1]).expect("JSON");
    unknown["scopes"] = serde_json::json!(["billing:write"]);
    texts[1] = unknown.to_string();
    texts.push(hex[0].clone());
    let err = manager
        .import(&lines(&texts), &RequestContext::new())
        .await
        .expect_err("refused");
    let ImportError::Refused(list) = err else {
        panic!("refused lines expected, got {err:?}");
    };
    assert_eq!(list.len(), 2);
    assert!(matches!(list[0], (2, ImportLineError::Catalog(_))));
    assert!(matches!(list[1], (n, ImportLineError::Repeated(1)) if n == texts.len()));
    let listed = manager
        .store()
        .list(
            &keyward::store::ListFilter::All,
            keyward::store::Page::first(10),
        )
        .await
        .expect("list");
    assert!(listed.is_empty(), "nothing written");
}

/// A batch with an id that exists already inserts none of its records.
async fn insert_all_is_all_or_nothing(store: &impl KeyStore) {
    let existing = testing::record("owner_a");
    store.insert(existing.clone()).await.expect("insert");
    let fresh = testing::record("owner_b");
    let err = store
        .insert_all(vec![fresh.clone(), existing.clone()])
        .await
        .expect_err("duplicate");
    assert!(matches!(err, StoreError::Duplicate(id) if id == existing.id));
    assert!(store.get(&fresh.id).await.expect("get").is_none());
    let other = testing::record("owner_c");
    store
        .insert_all(vec![fresh.clone(), other.clone()])
        .await
        .expect("insert_all");
    assert!(store.get(&fresh.id).await.expect("get").is_some());
    assert!(store.get(&other.id).await.expect("get").is_some());
}

#[tokio::test]
async fn memory_insert_all_is_atomic() {
    insert_all_is_all_or_nothing(&MemoryStore::new()).await;
}

#[cfg(feature = "sqlite")]
#[tokio::test]
async fn sqlite_insert_all_is_atomic() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("k.db").display());
    let store = keyward::store::AnyStore::open(&url).await.expect("open");
    insert_all_is_all_or_nothing(&store).await;
}

#[cfg(feature = "postgres")]
#[tokio::test]
async fn postgres_insert_all_is_atomic() {
    let Ok(url) = std::env::var("KEYWARD_TEST_POSTGRES_URL") else {
        eprintln!("postgres_insert_all_is_atomic SKIPPED: KEYWARD_TEST_POSTGRES_URL is not set");
        return;
    };
    let schema = format!(
        "keyward_import_{}_{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos())
    );
    let admin = sqlx::PgPool::connect(&url).await.expect("connect");
    sqlx::query(&format!("CREATE SCHEMA {schema}"))
        .execute(&admin)
        .await
        .expect("schema");
    let sep = if url.contains('?') { '&' } else { '?' };
    let scoped = format!("{url}{sep}options%5Bsearch_path%5D={schema}");
    let store = keyward::store::AnyStore::open(&scoped).await.expect("open");
    insert_all_is_all_or_nothing(&store).await;
    let _ = sqlx::query(&format!("DROP SCHEMA {schema} CASCADE"))
        .execute(&admin)
        .await;
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime")
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// A legacy token never parses as a keyward key, and verifies (once imported) as the
    /// imported key only; a keyward key never parses as a legacy token, and importing the
    /// SHA-256 of a keyward key's string does not change what that key verifies as.
    #[test]
    fn legacy_tokens_and_keys_never_cross(body in "[A-Za-z0-9._~+/-]{1,60}={0,2}") {
        let manager = manager();
        let ctx = RequestContext::new();
        let token = format!("old_sk_{body}");
        let rt = runtime();
        rt.block_on(async {
            let issued = manager
                .issue(IssueRequest::new("own", "user_1"), &ctx)
                .await
                .expect("issue");
            let key = issued.key.expose_secret().to_owned();
            let digest = |s: &str| {
                use sha2::Digest as _;
                let d = sha2::Sha256::digest(s.as_bytes());
                d.iter().map(|b| format!("{b:02x}")).collect::<String>()
            };
            let texts = [
                serde_json::json!({"sha256": digest(&token), "name": "l", "owner": "user_2", "scopes": []}).to_string(),
                serde_json::json!({"sha256": digest(&key), "name": "k", "owner": "user_3", "scopes": []}).to_string(),
            ];
            manager.import(&lines(&texts), &ctx).await.expect("import");
            let legacy_key = manager.verify(&token, &ctx).await.expect("legacy verifies");
            prop_assert_eq!(legacy_key.record().owner.as_str(), "user_2");
            prop_assert_ne!(legacy_key.key_id(), issued.record.id);
            let own = manager.verify(&key, &ctx).await.expect("key verifies");
            prop_assert_eq!(own.key_id(), issued.record.id);
            prop_assert_eq!(own.record().owner.as_str(), "user_1");
            // Each body under the other prefix verifies as nothing: the legacy body as a
            // keyward key (its checksum, if any, is not over this prefix's key) and the
            // keyward key's body as a legacy token (not the digest that was imported).
            let key_body = key.strip_prefix("tak_").expect("keyward prefix");
            for swapped in [format!("tak_{body}"), format!("old_sk_{key_body}")] {
                prop_assert!(
                    manager.verify(&swapped, &ctx).await.is_err(),
                    "{} verified", swapped
                );
            }
            Ok(())
        })?;
    }
}

#[test]
fn overlapping_prefixes_are_refused() {
    let base = || {
        KeyManager::new(
            MemoryStore::new(),
            KeyFormat::new(["tak"]).expect("format"),
            Hasher::fast(Pepper::new("k1", [7u8; 32]).expect("pepper")),
        )
    };
    for prefix in ["tak", "tak_old"] {
        let formats = LegacyFormats::new().sha256(prefix).expect("valid");
        assert!(base().with_legacy(formats).is_err(), "{prefix}");
    }
    // A prefix that does not overlap is accepted.
    let disjoint = LegacyFormats::new().sha256("old_sk").expect("valid");
    assert!(base().with_legacy(disjoint).is_ok());
    let _ = Arc::new(base());
}

#[tokio::test]
async fn a_leaked_legacy_token_is_revoked() {
    use keyward::leak::{LeakLabel, LeakReport};
    use keyward::record::KeyStatus;

    let (hex, _, tokens) = known_answers();
    let manager = manager();
    let ctx = RequestContext::new();
    manager.import(&lines(&hex), &ctx).await.expect("import");
    let reports = [
        LeakReport::new(tokens[0].as_str(), "legacy"),
        LeakReport::new(tampered(&tokens[1]), "legacy"),
        LeakReport::new(tokens[tokens.len() - 1].as_str(), "legacy"),
    ];
    let verdicts = manager
        .revoke_leaked(&reports, &ctx)
        .await
        .expect("handled");
    let labels: Vec<LeakLabel> = verdicts.iter().map(|v| v.label).collect();
    assert_eq!(
        labels,
        [
            LeakLabel::TruePositive,
            LeakLabel::FalsePositive,
            LeakLabel::TruePositive
        ]
    );
    for token in [&tokens[0], &tokens[tokens.len() - 1]] {
        assert!(matches!(
            manager.verify(token, &ctx).await,
            Err(VerifyError::Revoked)
        ));
    }
    let untouched = manager
        .verify(&tokens[1], &ctx)
        .await
        .expect("not reported");
    assert_eq!(untouched.record().status, KeyStatus::Active);
}

/// Rotating an imported key gives a key of the format, with the format's prefix (not the
/// imported key's preview prefix), and the old legacy token keeps working for the grace.
#[tokio::test]
async fn rotating_an_imported_key_gives_a_key_of_the_format() {
    let manager = manager();
    let ctx = RequestContext::new();
    let token = "old_sk_4eC39HqLyjWDarjtT1zdp7dc";
    let line = r#"{"sha256": "4eca4620f636b52e351ebafd892b93e11add9d62bd0a5ed53c6140af7c40b42a", "name": "ci", "owner": "user_1", "scopes": ["read"]}"#;
    manager
        .import(&lines(&[line.to_owned()]), &ctx)
        .await
        .expect("import");
    let old = manager.verify(token, &ctx).await.expect("legacy verifies");
    assert_eq!(old.record().prefix.as_str(), "legacy");
    let rotated = manager
        .rotate(&old.key_id(), time::Duration::minutes(5), &ctx)
        .await
        .expect("rotate");
    assert_eq!(rotated.record.prefix.as_str(), "tak");
    assert!(rotated.record.preview().starts_with("tak_"));
    let new = manager
        .verify(rotated.key.expose_secret(), &ctx)
        .await
        .expect("the new key verifies");
    assert_eq!(new.record().prefix.as_str(), "tak");
    assert!(
        manager.verify(token, &ctx).await.is_ok(),
        "within the grace"
    );
}
