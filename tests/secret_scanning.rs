//! The secret-scanning receiver (feature `secret-scanning`): GitHub's published signed
//! requests verify and their tampered forms do not; requests signed with a local P-256 key
//! pair revoke exactly the genuine keys, with the right labels and audit events; every bad
//! request gets its status and revokes nothing; the key cache refreshes on an unknown
//! identifier at most once per interval.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use base64ct::{Base64, Encoding};
use keyward::leak::scanning::{
    CachedKeys, DEFAULT_MAX_BODY, KeyListError, PublicKeys, ScanningError, ScanningKey,
    ScanningOrigin, ScanningReceiver, ScanningResponse, SignatureError,
};
use keyward::{
    Hasher, IssueRequest, KeyFormat, KeyId, KeyManager, Pepper, RequestContext,
    audit::{AuditEvent, AuditKind, AuditLog},
    clock::FakeClock,
    leak::LEAKED_REASON,
    manager::VerifyError,
    policy::Expiry,
    record::KeyStatus,
};
use p256::ecdsa::signature::Signer;
use p256::ecdsa::{Signature, SigningKey};
use serde_json::Value;
use time::{Duration, macros::datetime};

const VECTORS: &str = include_str!("vectors/github-secret-scanning.json");
const FOREIGN: &str = "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";

// ---------------------------------------------------------------------------------------
// Published vectors

struct SignedRequest {
    key_identifier: String,
    signature: String,
    body: String,
}

fn published() -> (PublicKeys, Vec<SignedRequest>) {
    let keys = PublicKeys::from_json(VECTORS.as_bytes()).expect("published key list parses");
    let doc: Value = serde_json::from_str(VECTORS).expect("json");
    let requests = doc["signed_requests"]
        .as_array()
        .expect("requests")
        .iter()
        .map(|r| {
            assert_eq!(r["valid"], Value::Bool(true));
            SignedRequest {
                key_identifier: r["key_identifier"].as_str().expect("id").to_owned(),
                signature: r["signature"].as_str().expect("sig").to_owned(),
                body: r["body"].as_str().expect("body").to_owned(),
            }
        })
        .collect();
    (keys, requests)
}

#[test]
fn published_vectors_verify() {
    let (keys, requests) = published();
    assert_eq!(keys.len(), 2);
    assert_eq!(requests.len(), 3);
    for r in &requests {
        let key = keys.get(&r.key_identifier).expect("published key");
        assert_eq!(
            key.verify(r.body.as_bytes(), r.signature.as_bytes()),
            Ok(()),
            "{}",
            r.body
        );
    }
}

#[test]
fn published_vectors_altered_by_one_byte_do_not_verify() {
    let (keys, requests) = published();
    for r in &requests {
        let key = keys.get(&r.key_identifier).expect("published key");
        let body = r.body.as_bytes();
        for i in 0..body.len() {
            let mut altered = body.to_vec();
            altered[i] ^= 0x01;
            assert_ne!(altered, body);
            assert_eq!(
                key.verify(&altered, r.signature.as_bytes()),
                Err(SignatureError::Mismatch),
                "byte {i} of {}",
                r.body
            );
        }
        let mut longer = body.to_vec();
        longer.push(b' ');
        assert!(key.verify(&longer, r.signature.as_bytes()).is_err());
        assert!(
            key.verify(&body[..body.len() - 1], r.signature.as_bytes())
                .is_err()
        );
    }
}

#[test]
fn published_vectors_reserialized_do_not_verify() {
    let (keys, requests) = published();
    for r in &requests {
        let key = keys.get(&r.key_identifier).expect("published key");
        let value: Value = serde_json::from_str(&r.body).expect("json body");
        // The same JSON value, written out again in other ways.
        let pretty = serde_json::to_vec_pretty(&value).expect("pretty");
        let spaced = r.body.replace(',', ", ").into_bytes();
        let reordered = {
            let items: Vec<Value> = value.as_array().expect("array").clone();
            let mut out = b"[".to_vec();
            for item in items {
                let obj = item.as_object().expect("object");
                let mut fields: Vec<(&String, &Value)> = obj.iter().collect();
                fields.reverse();
                out.push(b'{');
                let inner: Vec<String> = fields
                    .iter()
                    .map(|(k, v)| format!("{}:{}", Value::from(k.as_str()), v))
                    .collect();
                out.extend_from_slice(inner.join(",").as_bytes());
                out.push(b'}');
            }
            out.push(b']');
            out
        };
        for variant in [pretty, spaced, reordered] {
            let reparsed: Value = serde_json::from_slice(&variant).expect("still json");
            assert_eq!(reparsed, value, "same JSON value");
            assert_ne!(variant, r.body.as_bytes(), "different bytes");
            assert_eq!(
                key.verify(&variant, r.signature.as_bytes()),
                Err(SignatureError::Mismatch)
            );
        }
    }
}

#[test]
fn published_signatures_do_not_cross_keys_or_survive_bit_flips() {
    let (keys, requests) = published();
    for r in &requests {
        let other = keys
            .iter()
            .find(|k| k.identifier() != r.key_identifier)
            .expect("another key");
        assert!(
            other
                .verify(r.body.as_bytes(), r.signature.as_bytes())
                .is_err()
        );
        let key = keys.get(&r.key_identifier).expect("key");
        let mut der = Base64::decode_vec(&r.signature).expect("base64");
        let last = der.len() - 1;
        der[last] ^= 0x01;
        let flipped = Base64::encode_string(&der);
        assert!(key.verify(r.body.as_bytes(), flipped.as_bytes()).is_err());
        assert_eq!(
            key.verify(r.body.as_bytes(), b"not base64!"),
            Err(SignatureError::Malformed)
        );
        assert_eq!(
            key.verify(r.body.as_bytes(), &[b'A'; 4096]),
            Err(SignatureError::Malformed)
        );
        assert_eq!(
            key.verify(r.body.as_bytes(), b""),
            Err(SignatureError::Malformed)
        );
    }
}

#[tokio::test]
async fn published_requests_through_the_receiver() {
    let (keys, requests) = published();
    let f = Fixture::new(keys);
    for r in &requests {
        let headers = [
            ("Github-Public-Key-Identifier", r.key_identifier.as_bytes()),
            ("Github-Public-Key-Signature", r.signature.as_bytes()),
        ];
        let response = f.receiver.handle(&headers, r.body.as_bytes(), &f.ctx).await;
        assert_eq!(response.status, 200, "{}", body_text(&response));
        let labels = json(&response);
        let labels = labels.as_array().expect("array");
        assert_eq!(labels.len(), 1);
        assert_eq!(labels[0]["label"], "false_positive");
        let token = serde_json::from_str::<Value>(&r.body).expect("json")[0]["token"]
            .as_str()
            .expect("token")
            .to_owned();
        assert!(!body_text(&response).contains(&token));

        let mut altered = r.body.clone().into_bytes();
        altered[3] ^= 0x20;
        let response = f.receiver.handle(&headers, &altered, &f.ctx).await;
        assert_eq!(response.status, 401);
    }
    // "some_token", the token of the first two documented requests.
    let response = f
        .receiver
        .handle(
            &[
                (
                    "Github-Public-Key-Identifier",
                    requests[0].key_identifier.as_bytes(),
                ),
                (
                    "Github-Public-Key-Signature",
                    requests[0].signature.as_bytes(),
                ),
            ],
            requests[0].body.as_bytes(),
            &f.ctx,
        )
        .await;
    assert_eq!(
        json(&response)[0],
        serde_json::json!({
            "token_hash": "9a45520a1213f15016d2d768b5fb3d904492a44ee274b44d4de8803e00fb536a",
            "token_type": "some_type",
            "label": "false_positive",
        })
    );
}

#[test]
fn key_lists_are_checked() {
    assert!(matches!(
        PublicKeys::from_json(b"[]"),
        Err(KeyListError::Malformed(_))
    ));
    assert!(matches!(
        PublicKeys::from_json(br#"{"public_keys": [{"key_identifier": "a", "key": "nope"}]}"#),
        Err(KeyListError::InvalidKey { index: 0 })
    ));
    let pem = Pair::new(1).pem();
    let list = format!(
        r#"{{"public_keys": [{{"key_identifier": "a", "key": {pem:?}}}, {{"key_identifier": "", "key": {pem:?}}}]}}"#
    );
    assert!(matches!(
        PublicKeys::from_json(list.as_bytes()),
        Err(KeyListError::InvalidIdentifier { index: 1 })
    ));
    let many: Vec<String> = (0..=PublicKeys::MAX_KEYS)
        .map(|i| format!(r#"{{"key_identifier": "k{i}", "key": {pem:?}}}"#))
        .collect();
    let list = format!(r#"{{"public_keys": [{}]}}"#, many.join(","));
    assert!(matches!(
        PublicKeys::from_json(list.as_bytes()),
        Err(KeyListError::TooMany)
    ));
    let key = ScanningKey::from_pem("k", &pem, true).expect("key");
    assert!(key.is_current());
    assert_eq!(key.identifier(), "k");
}

// ---------------------------------------------------------------------------------------
// A local key pair, a manager, a receiver

/// A P-256 key pair derived from fixed bytes, with an identifier.
struct Pair {
    signing: SigningKey,
    id: String,
}

impl Pair {
    fn new(seed: u8) -> Self {
        let mut bytes = [0u8; 32];
        bytes[0] = 0x01;
        bytes[31] = seed;
        Self {
            signing: SigningKey::from_slice(&bytes).expect("valid scalar"),
            id: format!("local-key-{seed}"),
        }
    }

    fn sign(&self, body: &[u8]) -> String {
        let signature: Signature = self.signing.sign(body);
        Base64::encode_string(signature.to_der().as_bytes())
    }

    /// The SubjectPublicKeyInfo PEM, built by hand: the fixed DER prefix of an
    /// id-ecPublicKey / prime256v1 SPKI, then the uncompressed point.
    fn pem(&self) -> String {
        const SPKI_PREFIX: [u8; 26] = [
            0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06,
            0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
        ];
        let point = self.signing.verifying_key().to_sec1_point(false);
        let mut der = SPKI_PREFIX.to_vec();
        der.extend_from_slice(point.as_bytes());
        let b64 = Base64::encode_string(&der);
        let lines: Vec<&str> = b64
            .as_bytes()
            .chunks(64)
            .map(|c| std::str::from_utf8(c).expect("ascii"))
            .collect();
        format!(
            "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
            lines.join("\n")
        )
    }

    fn key_list(pairs: &[&Pair]) -> String {
        let entries: Vec<Value> = pairs
            .iter()
            .map(
                |p| serde_json::json!({"key_identifier": p.id, "key": p.pem(), "is_current": true}),
            )
            .collect();
        serde_json::json!({ "public_keys": entries }).to_string()
    }

    fn keys(pairs: &[&Pair]) -> PublicKeys {
        PublicKeys::from_json(Self::key_list(pairs).as_bytes()).expect("key list")
    }

    fn headers(&self, body: &[u8]) -> Vec<(&'static str, Vec<u8>)> {
        vec![
            ("Github-Public-Key-Identifier", self.id.clone().into_bytes()),
            ("Github-Public-Key-Signature", self.sign(body).into_bytes()),
        ]
    }
}

/// A store that can be switched off (the crate's own test helper).
type Flaky = keyward::testing::FlakyStore;

struct Fixture<K> {
    receiver: ScanningReceiver<Flaky, K>,
    store: Flaky,
    clock: FakeClock,
    audit: AuditLog,
    ctx: RequestContext,
}

fn manager(store: Flaky, clock: &FakeClock, audit: &AuditLog) -> KeyManager<Flaky> {
    KeyManager::new(
        store,
        KeyFormat::new(["tak"]).expect("format"),
        Hasher::fast(Pepper::new("k1", [7u8; 32]).expect("pepper")),
    )
    .with_clock(clock.clone())
    .with_audit(audit.clone())
}

impl<K: keyward::leak::scanning::PublicKeySource> Fixture<K> {
    fn with_origin(keys: K, origin: ScanningOrigin) -> Self {
        let store = Flaky::default();
        let clock = FakeClock::new(datetime!(2026-03-01 12:00 UTC));
        let audit = AuditLog::new();
        let receiver = ScanningReceiver::new(manager(store.clone(), &clock, &audit), keys, origin);
        Self {
            receiver,
            store,
            clock,
            audit,
            ctx: RequestContext::new().actor("github-secret-scanning"),
        }
    }

    fn new(keys: K) -> Self {
        Self::with_origin(keys, ScanningOrigin::github())
    }

    async fn issue(&self, name: &str, expiry: Expiry) -> (String, KeyId) {
        let issued = self
            .receiver
            .manager()
            .issue(
                IssueRequest::new(name, "user_1")
                    .tenant("acme")
                    .expiry(expiry),
                &self.ctx,
            )
            .await
            .expect("issue");
        let _ = self.audit.take();
        (issued.key.expose_secret().to_owned(), issued.key.id())
    }

    async fn status(&self, id: &KeyId) -> KeyStatus {
        self.receiver
            .manager()
            .get(id)
            .await
            .expect("record")
            .status
    }

    async fn send(&self, pair: &Pair, body: &[u8]) -> ScanningResponse {
        self.receiver
            .handle(&pair.headers(body), body, &self.ctx)
            .await
    }
}

/// Request headers as name and value pairs.
type HeaderList = Vec<(&'static str, Vec<u8>)>;

fn json(response: &ScanningResponse) -> Value {
    serde_json::from_slice(&response.body).expect("response body is JSON")
}

fn body_text(response: &ScanningResponse) -> String {
    String::from_utf8(response.body.clone()).expect("utf-8")
}

fn alert(token: &str, source: &str) -> Value {
    serde_json::json!({
        "token": token,
        "type": "keyward_api_key",
        "url": "https://github.com/octo/repo/blob/abc/.env",
        "source": source,
    })
}

fn sha256_hex(s: &str) -> String {
    // The verdict's hash, through the public API: a report of the token alone.
    keyward::leak::LeakReport::new(s, "t").token_hash()
}

fn kinds(events: &[AuditEvent]) -> Vec<&'static str> {
    events.iter().map(|e| e.kind.name()).collect()
}

// ---------------------------------------------------------------------------------------
// Signed requests that mix genuine keys, wrong secrets, foreign tokens and revoked keys

#[tokio::test]
async fn mixed_alert_labels_revocations_and_audit() {
    let pair = Pair::new(1);
    let f = Fixture::new(Pair::keys(&[&pair]));
    let (genuine, genuine_id) = f.issue("deploy", Expiry::Default).await;
    let (wrong, wrong_id) = f.issue("other", Expiry::Default).await;
    let (revoked, revoked_id) = f.issue("old", Expiry::Default).await;
    f.receiver
        .manager()
        .revoke(&revoked_id, Some("offboarding"), &f.ctx)
        .await
        .expect("revoke");
    let _ = f.audit.take();
    let wrong_secret = keyward::testing::same_id_wrong_secret(&wrong);

    let body = serde_json::to_vec(&serde_json::json!([
        alert(&genuine, "Commit"),
        alert(&wrong_secret, "commit"),
        alert(FOREIGN, "npm"),
        alert(&revoked, "CONTENT"),
    ]))
    .expect("body");
    let response = f.send(&pair, &body).await;
    assert_eq!(response.status, 200, "{}", body_text(&response));
    assert!(response.error.is_none());

    let labels = json(&response);
    let expected = [
        (&genuine, "true_positive"),
        (&wrong_secret, "false_positive"),
        (&FOREIGN.to_owned(), "false_positive"),
        (&revoked, "true_positive"),
    ];
    let labels = labels.as_array().expect("array");
    assert_eq!(labels.len(), expected.len());
    for (item, (token, label)) in labels.iter().zip(expected) {
        assert_eq!(item["label"], label, "{item}");
        assert_eq!(item["token_type"], "keyward_api_key");
        assert_eq!(item["token_hash"], sha256_hex(token));
        assert_eq!(
            item.as_object().expect("object").len(),
            3,
            "only token_hash, token_type, label: {item}"
        );
    }
    let text = body_text(&response);
    for token in [&genuine, &wrong_secret, &revoked] {
        assert!(!text.contains(token.as_str()), "response repeats a token");
    }

    // The verdicts carry what the application needs to tell the owner.
    assert_eq!(response.verdicts.len(), 4);
    let told = response.verdicts[0].record.as_ref().expect("record");
    assert_eq!(
        (told.owner.as_str(), told.name.as_str()),
        ("user_1", "deploy")
    );
    assert!(response.verdicts[0].revoked_now);
    assert!(!response.verdicts[3].revoked_now);

    assert_eq!(f.status(&genuine_id).await, KeyStatus::Revoked);
    assert_eq!(f.status(&wrong_id).await, KeyStatus::Active);
    assert_eq!(f.status(&revoked_id).await, KeyStatus::Revoked);
    assert!(matches!(
        f.receiver.manager().verify(&genuine, &f.ctx).await,
        Err(VerifyError::Revoked)
    ));
    assert!(f.receiver.manager().verify(&wrong, &f.ctx).await.is_ok());
    let _ = f.audit.take();

    // Replay is harmless: same answer, nothing revoked twice.
    let again = f.send(&pair, &body).await;
    assert_eq!(again.status, 200);
    assert_eq!(again.body, response.body);
    assert!(again.verdicts.iter().all(|v| !v.revoked_now));
    assert!(
        !kinds(&f.audit.take()).contains(&"revoked"),
        "no second revocation"
    );
}

#[tokio::test]
async fn audit_events_of_a_mixed_alert() {
    let pair = Pair::new(1);
    let f = Fixture::new(Pair::keys(&[&pair]));
    let (genuine, genuine_id) = f.issue("deploy", Expiry::Default).await;
    let (revoked, revoked_id) = f.issue("old", Expiry::Default).await;
    let (wrong, _) = f.issue("other", Expiry::Default).await;
    f.receiver
        .manager()
        .revoke(&revoked_id, None, &f.ctx)
        .await
        .expect("revoke");
    let _ = f.audit.take();
    let body = serde_json::to_vec(&serde_json::json!([
        alert(&genuine, "Commit"),
        alert(&keyward::testing::same_id_wrong_secret(&wrong), "commit"),
        alert(FOREIGN, "npm"),
        {"token": revoked, "type": "keyward_api_key", "url": ""},
    ]))
    .expect("body");
    assert_eq!(f.send(&pair, &body).await.status, 200);

    let events = f.audit.take();
    assert_eq!(
        kinds(&events),
        ["revoked", "leak_reported", "leak_reported"]
    );
    assert_eq!(
        events[0].kind,
        AuditKind::Revoked {
            reason: Some(LEAKED_REASON.to_owned())
        }
    );
    assert_eq!(events[0].key_id, Some(genuine_id));
    assert_eq!(
        events[1].kind,
        AuditKind::LeakReported {
            token_type: "keyward_api_key".to_owned(),
            url: Some("https://github.com/octo/repo/blob/abc/.env".to_owned()),
            source: Some("commit".to_owned()),
            scanner: Some("github".to_owned()),
            revoked: true,
        }
    );
    assert_eq!(events[1].key_id, Some(genuine_id));
    assert_eq!(
        events[2].kind,
        AuditKind::LeakReported {
            token_type: "keyward_api_key".to_owned(),
            url: None,
            source: None,
            scanner: Some("github".to_owned()),
            revoked: false,
        }
    );
    assert_eq!(events[2].key_id, Some(revoked_id));
    for e in &events {
        assert_eq!(e.owner.as_deref(), Some("user_1"));
        assert_eq!(e.context.actor.as_deref(), Some("github-secret-scanning"));
        let json = serde_json::to_string(e).expect("json");
        assert!(!json.contains(&genuine) && !json.contains(&revoked));
    }
}

#[tokio::test]
async fn disabled_expired_and_in_grace_keys_are_true_positives() {
    let pair = Pair::new(1);
    let f = Fixture::new(Pair::keys(&[&pair]));
    let (disabled, disabled_id) = f.issue("disabled", Expiry::Default).await;
    f.receiver
        .manager()
        .disable(&disabled_id, &f.ctx)
        .await
        .expect("disable");
    let (expired, expired_id) = f.issue("expired", Expiry::After(Duration::hours(1))).await;
    let (old, old_id) = f.issue("rotated", Expiry::Default).await;
    f.receiver
        .manager()
        .rotate(&old_id, Duration::days(7), &f.ctx)
        .await
        .expect("rotate");
    f.clock.advance(Duration::hours(2));

    let body = serde_json::to_vec(&serde_json::json!([
        alert(&disabled, "commit"),
        alert(&expired, "commit"),
        alert(&old, "commit"),
    ]))
    .expect("body");
    let response = f.send(&pair, &body).await;
    assert_eq!(response.status, 200);
    for item in json(&response).as_array().expect("array") {
        assert_eq!(item["label"], "true_positive");
    }
    for id in [disabled_id, expired_id, old_id] {
        assert_eq!(f.status(&id).await, KeyStatus::Revoked);
    }
}

#[tokio::test]
async fn empty_array_is_200_empty_array() {
    let pair = Pair::new(1);
    let f = Fixture::new(Pair::keys(&[&pair]));
    let response = f.send(&pair, b"[]").await;
    assert_eq!(response.status, 200);
    assert_eq!(response.body, b"[]");
    assert!(f.audit.take().is_empty());
}

// ---------------------------------------------------------------------------------------
// Bad requests: 401, 400, 413, 503, and nothing revoked

#[tokio::test]
async fn unauthenticated_requests_are_401_and_revoke_nothing() {
    let pair = Pair::new(1);
    let stranger = Pair::new(2);
    let f = Fixture::new(Pair::keys(&[&pair]));
    let (key, id) = f.issue("deploy", Expiry::Default).await;
    let body = serde_json::to_vec(&serde_json::json!([alert(&key, "commit")])).expect("body");
    let good_sig = pair.sign(&body);
    let id_header = "Github-Public-Key-Identifier";
    let sig_header = "Github-Public-Key-Signature";

    let cases: Vec<(&str, HeaderList)> = vec![
        ("no headers", vec![]),
        (
            "no signature",
            vec![(id_header, pair.id.clone().into_bytes())],
        ),
        (
            "no identifier",
            vec![(sig_header, good_sig.clone().into_bytes())],
        ),
        (
            "empty signature",
            vec![
                (id_header, pair.id.clone().into_bytes()),
                (sig_header, vec![]),
            ],
        ),
        (
            "signature not base64",
            vec![
                (id_header, pair.id.clone().into_bytes()),
                (sig_header, b"%%%".to_vec()),
            ],
        ),
        (
            "signature of another body",
            vec![
                (id_header, pair.id.clone().into_bytes()),
                (sig_header, pair.sign(b"[]").into_bytes()),
            ],
        ),
        ("signed by an unknown key", stranger.headers(&body)),
        (
            "signed by an unknown key that claims a known identifier",
            vec![
                (id_header, pair.id.clone().into_bytes()),
                (sig_header, stranger.sign(&body).into_bytes()),
            ],
        ),
        (
            "identifier not printable",
            vec![
                (id_header, b"local-key-1\xff".to_vec()),
                (sig_header, good_sig.clone().into_bytes()),
            ],
        ),
        (
            "repeated signature",
            vec![
                (id_header, pair.id.clone().into_bytes()),
                (sig_header, good_sig.clone().into_bytes()),
                (sig_header, good_sig.clone().into_bytes()),
            ],
        ),
        (
            "GitLab's headers on a GitHub receiver",
            vec![
                ("Gitlab-Public-Key-Identifier", pair.id.clone().into_bytes()),
                ("Gitlab-Public-Key-Signature", good_sig.clone().into_bytes()),
            ],
        ),
    ];
    for (name, headers) in &cases {
        let response = f.receiver.handle(headers, &body, &f.ctx).await;
        assert_eq!(response.status, 401, "{name}: {}", body_text(&response));
        assert_eq!(json(&response)["error"], "unauthorized", "{name}");
        assert!(!body_text(&response).contains(&key), "{name}");
        assert!(response.verdicts.is_empty());
    }
    assert_eq!(f.status(&id).await, KeyStatus::Active);
    assert!(f.audit.take().is_empty());

    // Header names match without regard to case; the good request then revokes.
    let lower = vec![
        ("github-public-key-identifier", pair.id.clone().into_bytes()),
        ("GITHUB-PUBLIC-KEY-SIGNATURE", good_sig.into_bytes()),
    ];
    assert_eq!(f.receiver.handle(&lower, &body, &f.ctx).await.status, 200);
    assert_eq!(f.status(&id).await, KeyStatus::Revoked);
}

#[tokio::test]
async fn signed_bodies_of_the_wrong_shape_are_400() {
    let pair = Pair::new(1);
    let f = Fixture::new(Pair::keys(&[&pair]));
    let (key, id) = f.issue("deploy", Expiry::Default).await;
    let token_in_bad_body = format!(r#"[{{"token": "{key}", "type": 7}}]"#);
    // The type is echoed in the answer and kept in audit events: a key there, or anything
    // but a short identifier, makes the body malformed (found by the secret_scanning fuzz
    // target: a type holding the key came back in the 200 answer).
    let key_as_type = format!(r#"[{{"token": "{key}", "type": "{key}"}}]"#);
    let key_in_type = format!(r#"[{{"token": "{key}", "type": "key~~{key}_key"}}]"#);
    let long_type = format!(r#"[{{"token": "{key}", "type": "{}"}}]"#, "t".repeat(49));
    let bodies: Vec<&[u8]> = vec![
        key_as_type.as_bytes(),
        key_in_type.as_bytes(),
        long_type.as_bytes(),
        br#"[{"token": "x", "type": ""}]"#,
        br#"[{"token": "x", "type": "has space"}]"#,
        b"",
        b"not json",
        b"{}",
        br#"{"token": "x", "type": "y"}"#,
        b"[1]",
        b"[null]",
        br#"[{"type": "keyward_api_key"}]"#,
        br#"[{"token": "x"}]"#,
        br#"[{"token": 5, "type": "x"}]"#,
        br#"[{"token": "x", "type": "y", "url": 3}]"#,
        b"[{\"token\": \"x\", \"type\": \"y\"}] trailing",
        b"\xff\xfe",
        token_in_bad_body.as_bytes(),
    ];
    for body in bodies {
        let response = f.send(&pair, body).await;
        assert_eq!(response.status, 400, "{:?}", String::from_utf8_lossy(body));
        assert_eq!(json(&response)["error"], "bad_request");
        assert!(
            !body_text(&response).contains(&key),
            "error repeats the token"
        );
        assert!(matches!(response.error, Some(ScanningError::MalformedBody)));
        assert!(!format!("{:?}", response.error).contains(&key));
    }
    assert_eq!(f.status(&id).await, KeyStatus::Active);
    // Unknown extra fields and a null url are accepted.
    let body = format!(r#"[{{"token": "{key}", "type": "t", "url": null, "extra": [1]}}]"#);
    assert_eq!(f.send(&pair, body.as_bytes()).await.status, 200);
    assert_eq!(f.status(&id).await, KeyStatus::Revoked);
}

#[tokio::test]
async fn oversized_bodies_are_413_before_anything_else() {
    let pair = Pair::new(1);
    let f = Fixture::new(Pair::keys(&[&pair]));
    assert_eq!(f.receiver.max_body(), DEFAULT_MAX_BODY);
    assert_eq!(DEFAULT_MAX_BODY, 1024 * 1024);
    let big = vec![b' '; DEFAULT_MAX_BODY + 1];
    let response = f.send(&pair, &big).await;
    assert_eq!(response.status, 413);
    assert_eq!(json(&response)["error"], "payload_too_large");
    // Unsigned, too: the size is checked first.
    let response = f.receiver.handle(&[("a", "b")], &big, &f.ctx).await;
    assert_eq!(response.status, 413);
    // At the limit it is read (and here, being blank, is not JSON).
    let exact = vec![b' '; DEFAULT_MAX_BODY];
    assert_eq!(f.send(&pair, &exact).await.status, 400);

    let small = ScanningReceiver::new(
        manager(Flaky::default(), &f.clock, &f.audit),
        Pair::keys(&[&pair]),
        ScanningOrigin::github(),
    )
    .with_max_body(8);
    let body = br#"[{"token":"x","type":"y"}]"#;
    let response = small.handle(&pair.headers(body), body, &f.ctx).await;
    assert_eq!(response.status, 413);
    assert!(body_text(&response).contains("maximum 8 bytes"));
    assert_eq!(
        small
            .handle(&pair.headers(b"[]"), b"[]", &f.ctx)
            .await
            .status,
        200
    );
}

#[tokio::test]
async fn store_failure_is_503_and_a_retry_revokes() {
    let pair = Pair::new(1);
    let f = Fixture::new(Pair::keys(&[&pair]));
    let (key, id) = f.issue("deploy", Expiry::Default).await;
    let body = serde_json::to_vec(&serde_json::json!([alert(&key, "commit")])).expect("body");
    f.store.set_down(true);
    let response = f.send(&pair, &body).await;
    assert_eq!(response.status, 503);
    assert_eq!(json(&response)["error"], "unavailable");
    assert!(!body_text(&response).contains(&key));
    assert!(response.verdicts.is_empty(), "no labels without the store");
    f.store.set_down(false);
    assert_eq!(f.status(&id).await, KeyStatus::Active);
    let response = f.send(&pair, &body).await;
    assert_eq!(response.status, 200);
    assert_eq!(json(&response)[0]["label"], "true_positive");
    assert_eq!(f.status(&id).await, KeyStatus::Revoked);
}

#[tokio::test]
async fn arbitrary_bytes_never_panic() {
    let pair = Pair::new(1);
    let f = Fixture::new(Pair::keys(&[&pair]));
    // A small deterministic generator (xorshift) instead of a dependency.
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for _ in 0..300 {
        let len = (next() % 200) as usize;
        let body: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        let sig: Vec<u8> = (0..(next() % 120) as usize).map(|_| next() as u8).collect();
        let id: Vec<u8> = (0..(next() % 300) as usize).map(|_| next() as u8).collect();
        let headers = vec![
            ("Github-Public-Key-Identifier", id),
            ("Github-Public-Key-Signature", sig),
        ];
        let response = f.receiver.handle(&headers, &body, &f.ctx).await;
        assert_eq!(response.status, 401);
        // Signed garbage is 400 (or 200 for the rare valid JSON array).
        let response = f.send(&pair, &body).await;
        assert!(matches!(response.status, 200 | 400), "{}", response.status);
    }
}

// ---------------------------------------------------------------------------------------
// Origins and header maps

#[tokio::test]
async fn gitlab_origin_uses_its_headers_and_has_no_source() {
    let pair = Pair::new(1);
    let f = Fixture::with_origin(Pair::keys(&[&pair]), ScanningOrigin::gitlab());
    let (key, id) = f.issue("deploy", Expiry::Default).await;
    let body = format!(
        r#"[{{"type": "keyward_api_key", "token": "{key}", "url": "https://gitlab.example.com/r/-/raw/abc/f.java"}}]"#
    );
    // GitHub's headers are not GitLab's.
    let response = f.send(&pair, body.as_bytes()).await;
    assert_eq!(response.status, 401);
    let signature = pair.sign(body.as_bytes());
    let headers = [
        ("Gitlab-Public-Key-Identifier", pair.id.as_str()),
        ("Gitlab-Public-Key-Signature", signature.as_str()),
    ];
    let response = f.receiver.handle(&headers, body.as_bytes(), &f.ctx).await;
    assert_eq!(response.status, 200, "{}", body_text(&response));
    assert_eq!(json(&response)[0]["label"], "true_positive");
    assert_eq!(f.status(&id).await, KeyStatus::Revoked);
    let events = f.audit.take();
    assert!(events.iter().any(|e| matches!(
        &e.kind,
        AuditKind::LeakReported { scanner: Some(s), source: None, .. } if s == "gitlab"
    )));
}

#[test]
fn origins() {
    let github = ScanningOrigin::github();
    assert_eq!(github.name(), "github");
    assert_eq!(
        github.key_identifier_header(),
        "Github-Public-Key-Identifier"
    );
    assert_eq!(github.signature_header(), "Github-Public-Key-Signature");
    assert_eq!(
        github.keys_url(),
        Some("https://api.github.com/meta/public_keys/secret_scanning")
    );
    let gitlab = ScanningOrigin::gitlab();
    assert_eq!(
        gitlab.key_identifier_header(),
        "Gitlab-Public-Key-Identifier"
    );
    assert_eq!(gitlab.signature_header(), "Gitlab-Public-Key-Signature");
    assert_eq!(gitlab.keys_url(), None);
    let custom = ScanningOrigin::custom("acme", "X-Acme-Key", "X-Acme-Sig")
        .with_keys_url("https://acme.example/keys");
    assert_eq!(custom.keys_url(), Some("https://acme.example/keys"));
}

#[tokio::test]
async fn http_header_map_works_as_headers() {
    use axum::http::{HeaderMap, HeaderValue};
    let pair = Pair::new(1);
    let f = Fixture::new(Pair::keys(&[&pair]));
    let (key, id) = f.issue("deploy", Expiry::Default).await;
    let body = serde_json::to_vec(&serde_json::json!([alert(&key, "commit")])).expect("body");
    let mut map = HeaderMap::new();
    map.insert(
        "github-public-key-identifier",
        HeaderValue::from_str(&pair.id).expect("value"),
    );
    map.insert(
        "github-public-key-signature",
        HeaderValue::from_str(&pair.sign(&body)).expect("value"),
    );
    assert_eq!(f.receiver.handle(&map, &body, &f.ctx).await.status, 200);
    assert_eq!(f.status(&id).await, KeyStatus::Revoked);
    // A repeated header is refused.
    map.append(
        "github-public-key-signature",
        HeaderValue::from_static("MEUCIQ=="),
    );
    assert_eq!(f.receiver.handle(&map, &body, &f.ctx).await.status, 401);
}

// ---------------------------------------------------------------------------------------
// The key cache: refresh on an unknown identifier, at most once per interval

type Fetched = Result<Vec<u8>, Box<dyn std::error::Error + Send + Sync>>;

/// What the fake key endpoint serves, and how often it was asked.
#[derive(Clone, Default)]
struct Endpoint {
    list: Arc<Mutex<Option<String>>>,
    calls: Arc<AtomicUsize>,
}

impl Endpoint {
    fn serve(&self, list: Option<String>) {
        *self.list.lock().expect("lock") = list;
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    fn fetcher(&self) -> impl Fn() -> std::future::Ready<Fetched> + Send + Sync + 'static {
        let endpoint = self.clone();
        move || {
            endpoint.calls.fetch_add(1, Ordering::SeqCst);
            let list = endpoint.list.lock().expect("lock").clone();
            std::future::ready(match list {
                Some(list) => Ok(list.into_bytes()),
                None => Err("connection refused".into()),
            })
        }
    }
}

#[tokio::test]
async fn unknown_identifier_refreshes_within_the_rate_limit() {
    let old = Pair::new(1);
    let new = Pair::new(2);
    let endpoint = Endpoint::default();
    endpoint.serve(Some(Pair::key_list(&[&old])));
    let clock = FakeClock::new(datetime!(2026-03-01 12:00 UTC));
    let keys = CachedKeys::new(endpoint.fetcher())
        .with_clock(clock.clone())
        .with_refresh_interval(Duration::minutes(5));
    let f = Fixture::new(keys);

    // First request: the cache is empty, so it fetches once, finds the key, verifies.
    assert_eq!(f.send(&old, b"[]").await.status, 200);
    assert_eq!(endpoint.calls(), 1);
    // Known key: no fetch.
    assert_eq!(f.send(&old, b"[]").await.status, 200);
    assert_eq!(endpoint.calls(), 1);

    // The scanner rotates to a key the endpoint does not list yet... (the first fetch was at
    // 12:00, so the interval forbids another one now).
    assert_eq!(f.send(&new, b"[]").await.status, 401);
    assert_eq!(endpoint.calls(), 1, "rate limited");
    clock.advance(Duration::minutes(5));
    // ...one refresh is attempted, the key is still unknown: 401.
    let response = f.send(&new, b"[]").await;
    assert_eq!(response.status, 401);
    assert!(matches!(response.error, Some(ScanningError::UnknownKey)));
    assert_eq!(endpoint.calls(), 2);
    // Now it is published, but the last attempt was just now: no fetch, still 401.
    endpoint.serve(Some(Pair::key_list(&[&old, &new])));
    clock.advance(Duration::minutes(4));
    assert_eq!(f.send(&new, b"[]").await.status, 401);
    assert_eq!(endpoint.calls(), 2, "at most one refresh per interval");
    // After the interval the next unknown identifier refreshes and verifies.
    clock.advance(Duration::minutes(1));
    assert_eq!(f.send(&new, b"[]").await.status, 200);
    assert_eq!(endpoint.calls(), 3);
    assert_eq!(f.receiver.keys().keys().len(), 2);

    // Made-up identifiers cannot make it hammer the endpoint.
    for i in 0..20 {
        let stranger = Pair::new(100 + i);
        assert_eq!(f.send(&stranger, b"[]").await.status, 401);
    }
    assert_eq!(endpoint.calls(), 3);

    // A failed fetch is 503 (the scanner retries) and keeps the known keys.
    clock.advance(Duration::minutes(5));
    endpoint.serve(None);
    let response = f.send(&Pair::new(9), b"[]").await;
    assert_eq!(response.status, 503);
    assert_eq!(endpoint.calls(), 4);
    assert_eq!(f.send(&old, b"[]").await.status, 200);
    // An invalid list is refused the same way.
    clock.advance(Duration::minutes(5));
    endpoint.serve(Some("{\"public_keys\": 1}".to_owned()));
    assert_eq!(f.send(&Pair::new(9), b"[]").await.status, 503);
    assert_eq!(f.send(&new, b"[]").await.status, 200);
}

#[tokio::test]
async fn cached_keys_start_from_a_given_list_and_refresh_replaces_it() {
    let old = Pair::new(1);
    let new = Pair::new(2);
    let endpoint = Endpoint::default();
    endpoint.serve(Some(Pair::key_list(&[&new])));
    let clock = FakeClock::new(datetime!(2026-03-01 12:00 UTC));
    let keys = CachedKeys::new(endpoint.fetcher())
        .with_clock(clock.clone())
        .with_keys(Pair::keys(&[&old]));
    let f = Fixture::new(Arc::new(keys));
    assert_eq!(f.send(&old, b"[]").await.status, 200);
    assert_eq!(endpoint.calls(), 0);
    assert_eq!(f.send(&new, b"[]").await.status, 200);
    assert_eq!(endpoint.calls(), 1);
    // The refreshed list no longer has the old key: retired keys stop verifying.
    assert_eq!(f.send(&old, b"[]").await.status, 401);
}
