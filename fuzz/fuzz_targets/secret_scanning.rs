//! The secret-scanning receiver behind a valid signature: the target signs its input with
//! a test key (P-256, the key list's only key), so every input reaches the JSON handling.
//! No panic; the answer is 200 with a JSON array of labels, one per reported token, or
//! 400 with a JSON error; never 401 (the signature is valid) or 503 (the store is up).
//!
//! `@KEY@` in the input is replaced by a key the manager issued, so inputs can report a
//! real key and reach the revocation path.
#![no_main]

use std::future::Future;
use std::pin::pin;
use std::sync::LazyLock;
use std::task::{Context, Poll, Waker};

use base64ct::{Base64, Encoding};
use keyward::leak::scanning::{PublicKeys, ScanningOrigin, ScanningReceiver};
use keyward::{Hasher, IssueRequest, KeyFormat, KeyManager, MemoryStore, Pepper, RequestContext};
use libfuzzer_sys::fuzz_target;
use p256::ecdsa::signature::Signer;
use p256::ecdsa::{Signature, SigningKey};

/// Polls a future to completion: the memory store and the key list never wait.
fn block_on<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(out) = future.as_mut().poll(&mut cx) {
            return out;
        }
    }
}

struct Fixture {
    receiver: ScanningReceiver<MemoryStore, PublicKeys>,
    signing: SigningKey,
    key: String,
}

const KEY_ID: &str = "fuzz-key";

static FIXTURE: LazyLock<Fixture> = LazyLock::new(|| {
    let mut scalar = [0u8; 32];
    scalar[0] = 1;
    scalar[31] = 7;
    let signing = SigningKey::from_slice(&scalar).expect("scalar");
    // SubjectPublicKeyInfo of id-ecPublicKey / prime256v1, then the uncompressed point.
    const SPKI_PREFIX: [u8; 26] = [
        0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06,
        0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
    ];
    let mut der = SPKI_PREFIX.to_vec();
    der.extend_from_slice(signing.verifying_key().to_sec1_point(false).as_bytes());
    let b64 = Base64::encode_string(&der);
    let lines: Vec<&str> = b64
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).expect("ascii"))
        .collect();
    let pem = format!(
        "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
        lines.join("\n")
    );
    let list = format!(
        r#"{{"public_keys": [{{"key_identifier": "{KEY_ID}", "key": {}, "is_current": true}}]}}"#,
        serde_json_string(&pem)
    );
    let keys = PublicKeys::from_json(list.as_bytes()).expect("key list");
    let manager = KeyManager::new(
        MemoryStore::new(),
        KeyFormat::new(["tak"]).expect("format"),
        Hasher::fast(Pepper::new("k1", [9u8; 32]).expect("pepper")),
    );
    let issued = block_on(manager.issue(IssueRequest::new("ci", "user_1"), &RequestContext::new()))
        .expect("issue");
    let key = issued.key.expose_secret().to_owned();
    Fixture {
        receiver: ScanningReceiver::new(manager, keys, ScanningOrigin::github()),
        signing,
        key,
    }
});

/// A JSON string literal of `s` (PEM has only newlines to escape).
fn serde_json_string(s: &str) -> String {
    format!("\"{}\"", s.replace('\n', "\\n"))
}

fuzz_target!(|input: &[u8]| {
    let f = &*FIXTURE;
    let body = match std::str::from_utf8(input) {
        Ok(text) if text.contains("@KEY@") => text.replace("@KEY@", &f.key).into_bytes(),
        _ => input.to_vec(),
    };
    let signature: Signature = f.signing.sign(&body);
    let headers = [
        ("Github-Public-Key-Identifier", KEY_ID.as_bytes().to_vec()),
        (
            "Github-Public-Key-Signature",
            Base64::encode_string(signature.to_der().as_bytes()).into_bytes(),
        ),
    ];
    let response = block_on(f.receiver.handle(&headers, &body, &RequestContext::new()));
    match response.status {
        200 => {
            let labels: Vec<serde_json::Value> =
                serde_json::from_slice(&response.body).expect("a JSON array");
            assert_eq!(labels.len(), response.verdicts.len());
            assert!(!String::from_utf8_lossy(&response.body).contains(&f.key));
        }
        400 | 413 => {
            let error: serde_json::Value =
                serde_json::from_slice(&response.body).expect("a JSON error");
            assert!(error["error"].is_string());
        }
        other => panic!("a validly signed body answered {other}: {:?}", response.error),
    }
});
