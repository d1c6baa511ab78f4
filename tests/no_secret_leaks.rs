//! A full flow with every tracing level on, the tracing audit sink and the in-memory audit
//! log, and the Debug output of every public type involved: no key secret appears anywhere.

use std::io::Write;
use std::sync::{Arc, Mutex};

use keyward::{
    Hasher, IssueRequest, KeyFormat, KeyManager, MemoryStore, Pepper, RequestContext,
    audit::{AuditLog, TracingAudit},
    clock::FakeClock,
    manager::VerifyError,
};
use time::{Duration, macros::datetime};

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("capture").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

struct Both(AuditLog, TracingAudit);
impl keyward::audit::AuditSink for Both {
    fn record(&self, event: &keyward::audit::AuditEvent) {
        self.0.record(event);
        self.1.record(event);
    }
}

#[tokio::test]
async fn no_secret_in_logs_audit_or_debug() {
    let capture = Capture::default();
    let writer = capture.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let audit = AuditLog::new();
    let clock = FakeClock::new(datetime!(2026-05-01 0:00 UTC));
    let manager = KeyManager::new(
        MemoryStore::new(),
        KeyFormat::new(["tak"]).expect("format"),
        Hasher::fast(Pepper::new("k1", [9u8; 32]).expect("pepper")),
    )
    .with_clock(clock.clone())
    .with_audit(Both(audit.clone(), TracingAudit));
    let ctx = RequestContext::new().actor("admin");

    let mut debug = Vec::new();
    let issued = manager
        .issue(
            IssueRequest::new("k", "u").scopes("read".parse().expect("scope")),
            &ctx,
        )
        .await
        .expect("issue");
    let mut secrets = vec![issued.key.expose_secret_part().to_owned()];
    debug.push(format!(
        "{issued:?} {:?} {} {:?}",
        issued.key, issued.key, issued.record
    ));
    let verified = manager
        .verify(issued.key.expose_secret(), &ctx)
        .await
        .expect("verify");
    debug.push(format!("{verified:?}"));
    debug.push(format!("{:?}", issued.key.as_parsed()));
    debug.push(format!(
        "{:?}",
        manager
            .format()
            .parse(issued.key.expose_secret())
            .expect("parse")
    ));
    let mut tampered = issued.key.expose_secret().to_owned();
    let last = tampered.pop().expect("non-empty key");
    tampered.push(if last == 'x' { 'y' } else { 'x' });
    let e = manager.verify(&tampered, &ctx).await.expect_err("tampered");
    debug.push(format!("{e:?} {e}"));
    let rotated = manager
        .rotate(&issued.key.id(), Duration::minutes(5), &ctx)
        .await
        .expect("rotate");
    secrets.push(rotated.key.expose_secret_part().to_owned());
    debug.push(format!("{rotated:?}"));
    clock.advance(Duration::minutes(6));
    let e = manager
        .verify(issued.key.expose_secret(), &ctx)
        .await
        .expect_err("expired");
    assert!(matches!(e, VerifyError::Expired));
    debug.push(format!("{e:?} {e}"));
    manager
        .revoke(&rotated.key.id(), Some("test"), &ctx)
        .await
        .expect("revoke");
    let e = manager
        .verify(rotated.key.expose_secret(), &ctx)
        .await
        .expect_err("revoked");
    debug.push(format!("{e:?} {e} {manager:?} {:?}", manager.hasher()));
    debug.push(format!(
        "{:?}",
        manager.get(&rotated.key.id()).await.expect("get")
    ));

    let logs = String::from_utf8(capture.0.lock().expect("capture").clone()).expect("utf8");
    assert!(
        logs.contains("keyward audit event"),
        "tracing output was captured: {logs}"
    );
    let events = format!("{:?}", audit.events());
    let json = serde_json::to_string(&audit.events()).expect("audit events serialize");
    for secret in &secrets {
        assert!(!logs.contains(secret.as_str()), "secret in tracing output");
        assert!(!events.contains(secret.as_str()), "secret in audit events");
        assert!(
            !json.contains(secret.as_str()),
            "secret in serialized audit events"
        );
        for d in &debug {
            assert!(
                !d.contains(secret.as_str()),
                "secret in Debug/Display output: {d}"
            );
        }
    }
}

/// The Argon2id path: a key issued under the fast hash is verified by a manager whose hasher
/// is Argon2id with the verification cache, so it is rehashed, then hits the cache, fails,
/// rotates and is revoked; at each tracing level from ERROR to TRACE, nothing carries a secret.
#[tokio::test]
async fn argon2_cache_and_rehash_leak_nothing_at_any_level() {
    use keyward::hash::{Argon2Params, HashAlgorithm};
    use tracing::Level;

    for level in [
        Level::ERROR,
        Level::WARN,
        Level::INFO,
        Level::DEBUG,
        Level::TRACE,
    ] {
        let capture = Capture::default();
        let writer = capture.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(level)
            .with_writer(move || writer.clone())
            .finish();
        let _guard = tracing::subscriber::set_default(subscriber);

        let pepper = || Pepper::new("k1", [3u8; 32]).expect("pepper");
        let store = MemoryStore::new();
        let format = KeyFormat::new(["tak"]).expect("format");
        let audit = AuditLog::new();
        let fast = KeyManager::new(store.clone(), format.clone(), Hasher::fast(pepper()));
        let argon = Hasher::argon2(Argon2Params::new(8, 1, 1).expect("params"))
            .accept_pepper(pepper())
            .expect("pepper")
            .with_verify_cache(16);
        let manager =
            KeyManager::new(store, format, argon).with_audit(Both(audit.clone(), TracingAudit));
        let ctx = RequestContext::new().actor("admin");

        let issued = fast
            .issue(IssueRequest::new("k", "u"), &ctx)
            .await
            .expect("issue");
        let id = issued.key.id();
        let mut secrets = vec![issued.key.expose_secret_part().to_owned()];
        let mut debug = vec![format!("{:?}", issued.record.hash)];
        for _ in 0..2 {
            let verified = manager
                .verify(issued.key.expose_secret(), &ctx)
                .await
                .expect("verify (rehash, then cache hit)");
            debug.push(format!("{verified:?}"));
        }
        let record = manager.get(&id).await.expect("get");
        assert_eq!(record.hash.algorithm(), HashAlgorithm::Argon2id, "rehashed");
        debug.push(format!("{record:?} {} {:?}", record.hash, manager.hasher()));
        let mut tampered = issued.key.expose_secret().to_owned();
        let last = tampered.pop().expect("non-empty key");
        tampered.push(if last == 'x' { 'y' } else { 'x' });
        let e = manager.verify(&tampered, &ctx).await.expect_err("tampered");
        debug.push(format!("{e:?} {e}"));
        let rotated = manager
            .rotate(&id, Duration::minutes(5), &ctx)
            .await
            .expect("rotate");
        secrets.push(rotated.key.expose_secret_part().to_owned());
        debug.push(format!("{rotated:?} {:?}", rotated.record.hash));
        manager
            .revoke(&rotated.key.id(), Some("test"), &ctx)
            .await
            .expect("revoke");
        let e = manager
            .verify(rotated.key.expose_secret(), &ctx)
            .await
            .expect_err("revoked");
        debug.push(format!("{e:?} {e} {manager:?}"));

        let logs = String::from_utf8(capture.0.lock().expect("capture").clone()).expect("utf8");
        assert_eq!(
            logs.contains("keyward audit event"),
            level >= Level::WARN,
            "audit events reach tracing at {level} and above only when enabled: {logs}"
        );
        let events = format!("{:?}", audit.events());
        assert!(events.contains("Rehashed"), "{events}");
        let json = serde_json::to_string(&audit.events()).expect("audit events serialize");
        for secret in &secrets {
            assert!(
                !logs.contains(secret.as_str()),
                "secret in tracing at {level}"
            );
            assert!(!events.contains(secret.as_str()), "secret in audit events");
            assert!(!json.contains(secret.as_str()), "secret in audit JSON");
            for d in &debug {
                assert!(!d.contains(secret.as_str()), "secret in Debug/Display: {d}");
            }
        }
    }
}
