//! `KeyManager::revoke_leaked` through the public API: genuine keys are revoked whatever
//! their state, everything else is a false positive that changes nothing, replays are
//! harmless, store failures fail closed, and the audit log says where each key leaked.

use keyward::{
    Hasher, IssueRequest, KeyFormat, KeyId, KeyManager, KeyStore, MemoryStore, Pepper,
    RequestContext,
    audit::{AuditEvent, AuditKind, AuditLog},
    clock::FakeClock,
    leak::{LEAKED_REASON, LeakError, LeakLabel, LeakReport},
    manager::VerifyError,
    policy::Expiry,
    record::KeyStatus,
};
use time::{Duration, macros::datetime};

struct Fixture<S> {
    manager: KeyManager<S>,
    clock: FakeClock,
    audit: AuditLog,
    ctx: RequestContext,
}

fn fixture_on<S: KeyStore>(store: S) -> Fixture<S> {
    let clock = FakeClock::new(datetime!(2026-03-01 12:00 UTC));
    let audit = AuditLog::new();
    let manager = KeyManager::new(
        store,
        KeyFormat::new(["tak"]).expect("format"),
        Hasher::fast(Pepper::new("k1", [7u8; 32]).expect("pepper")),
    )
    .with_clock(clock.clone())
    .with_audit(audit.clone());
    Fixture {
        manager,
        clock,
        audit,
        ctx: RequestContext::new().actor("secret-scanning"),
    }
}

fn fixture() -> Fixture<MemoryStore> {
    fixture_on(MemoryStore::new())
}

impl<S: KeyStore> Fixture<S> {
    /// Issues a key and returns its plaintext and id; the audit log is emptied.
    async fn issue(&self, name: &str, expiry: Expiry) -> (String, KeyId) {
        let issued = self
            .manager
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
        self.manager.get(id).await.expect("record").status
    }
}

fn report(token: &str) -> LeakReport {
    LeakReport::new(token, "keyward_api_key")
        .url("https://github.com/octo/repo/blob/main/.env")
        .source("commit")
        .scanner("github")
}

fn leak_events(events: &[AuditEvent]) -> Vec<&AuditEvent> {
    events
        .iter()
        .filter(|e| matches!(e.kind, AuditKind::LeakReported { .. }))
        .collect()
}

fn revoked_events(events: &[AuditEvent]) -> Vec<&AuditEvent> {
    events
        .iter()
        .filter(|e| matches!(e.kind, AuditKind::Revoked { .. }))
        .collect()
}

#[tokio::test]
async fn genuine_key_is_revoked_with_url_and_source_on_record() {
    let f = fixture();
    let (key, id) = f.issue("ci", Expiry::Default).await;
    let verdicts = f
        .manager
        .revoke_leaked(&[report(&key)], &f.ctx)
        .await
        .expect("processed");
    assert_eq!(verdicts.len(), 1);
    let v = &verdicts[0];
    assert_eq!(v.label, LeakLabel::TruePositive);
    assert!(v.revoked_now);
    assert_eq!(v.key_id(), Some(id));
    assert_eq!(v.token_type, "keyward_api_key");
    let record = v.record.as_ref().expect("record for the owner");
    assert_eq!(record.owner, "user_1");
    assert_eq!(record.tenant.as_deref(), Some("acme"));
    assert_eq!(record.name, "ci");
    assert_eq!(record.status, KeyStatus::Revoked);

    assert_eq!(f.status(&id).await, KeyStatus::Revoked);
    let refused = f.manager.verify(&key, &f.ctx).await;
    assert!(matches!(refused, Err(VerifyError::Revoked)), "{refused:?}");

    // The verification above added a failure event; look at the first two.
    let events = f.audit.take();
    assert_eq!(
        events[0].kind,
        AuditKind::Revoked {
            reason: Some(LEAKED_REASON.to_owned())
        }
    );
    assert_eq!(
        events[1].kind,
        AuditKind::LeakReported {
            token_type: "keyward_api_key".to_owned(),
            url: Some("https://github.com/octo/repo/blob/main/.env".to_owned()),
            source: Some("commit".to_owned()),
            scanner: Some("github".to_owned()),
            revoked: true,
        }
    );
    for e in &events[..2] {
        assert_eq!(e.key_id, Some(id));
        assert_eq!(e.owner.as_deref(), Some("user_1"));
        assert_eq!(e.context.actor.as_deref(), Some("secret-scanning"));
        assert_eq!(e.at, datetime!(2026-03-01 12:00 UTC));
    }
    assert_eq!(events[1].kind.name(), "leak_reported");
    let json = serde_json::to_string(&events[1]).expect("json");
    assert!(json.contains(r#""type":"leak_reported""#), "{json}");
    assert!(!json.contains(&key), "audit event must not contain the key");
}

#[tokio::test]
async fn token_hash_is_lowercase_hex_sha256_of_the_token() {
    let f = fixture();
    let verdicts = f
        .manager
        .revoke_leaked(&[LeakReport::new("some_token", "some_type")], &f.ctx)
        .await
        .expect("processed");
    // printf some_token | sha256sum
    assert_eq!(
        verdicts[0].token_hash,
        "9a45520a1213f15016d2d768b5fb3d904492a44ee274b44d4de8803e00fb536a"
    );
    assert_eq!(verdicts[0].label, LeakLabel::FalsePositive);
    assert_eq!(verdicts[0].label.as_str(), "false_positive");
}

#[tokio::test]
async fn false_positives_change_nothing() {
    let f = fixture();
    let (key, id) = f.issue("ci", Expiry::Default).await;
    let unknown = f.manager.format().generate().expect("generate");
    let tokens = [
        // Same id, valid checksum, different secret: must never revoke by id alone.
        keyward::testing::same_id_wrong_secret(&key),
        // Not ours at all.
        "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".to_owned(),
        // Ours in form, unknown id.
        unknown.expose_secret().to_owned(),
        // Our key with a broken checksum (the last character replaced by another one: a
        // fixed replacement would equal the real character once in 62 runs).
        broken_checksum(&key),
        // The key with a trailing newline, as a scanner might cut it.
        format!("{key}\n"),
        String::new(),
        "\u{0}\u{ffff}".to_owned(),
    ];
    let reports: Vec<LeakReport> = tokens.iter().map(|t| report(t)).collect();
    let verdicts = f
        .manager
        .revoke_leaked(&reports, &f.ctx)
        .await
        .expect("processed");
    assert_eq!(verdicts.len(), tokens.len());
    for v in &verdicts {
        assert_eq!(v.label, LeakLabel::FalsePositive);
        assert!(!v.revoked_now);
        assert!(v.record.is_none());
    }
    assert_eq!(f.status(&id).await, KeyStatus::Active);
    assert!(f.audit.take().is_empty(), "false positives emit nothing");
    assert!(f.manager.verify(&key, &f.ctx).await.is_ok());
}

#[tokio::test]
async fn already_revoked_key_is_a_true_positive_without_second_revocation() {
    let f = fixture();
    let (key, id) = f.issue("ci", Expiry::Default).await;
    f.manager
        .revoke(&id, Some("offboarding"), &f.ctx)
        .await
        .expect("revoke");
    let _ = f.audit.take();
    let verdicts = f
        .manager
        .revoke_leaked(&[report(&key)], &f.ctx)
        .await
        .expect("processed");
    assert_eq!(verdicts[0].label, LeakLabel::TruePositive);
    assert!(!verdicts[0].revoked_now);
    assert_eq!(verdicts[0].key_id(), Some(id));
    let events = f.audit.take();
    assert!(revoked_events(&events).is_empty());
    let leaks = leak_events(&events);
    assert_eq!(leaks.len(), 1);
    assert!(matches!(
        leaks[0].kind,
        AuditKind::LeakReported { revoked: false, .. }
    ));
}

#[tokio::test]
async fn replay_is_harmless() {
    let f = fixture();
    let (a, a_id) = f.issue("a", Expiry::Default).await;
    let (b, b_id) = f.issue("b", Expiry::Default).await;
    let batch = || {
        vec![
            report(&a),
            report("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"),
            report(&keyward::testing::same_id_wrong_secret(&b)),
        ]
    };
    let first = f
        .manager
        .revoke_leaked(&batch(), &f.ctx)
        .await
        .expect("first");
    let after_first = f.audit.take();
    let second = f
        .manager
        .revoke_leaked(&batch(), &f.ctx)
        .await
        .expect("replay");
    let after_second = f.audit.take();

    let labels = |v: &[keyward::leak::LeakVerdict]| v.iter().map(|v| v.label).collect::<Vec<_>>();
    assert_eq!(labels(&first), labels(&second));
    assert_eq!(
        labels(&first),
        [
            LeakLabel::TruePositive,
            LeakLabel::FalsePositive,
            LeakLabel::FalsePositive
        ]
    );
    assert!(first[0].revoked_now);
    assert!(!second[0].revoked_now);
    assert_eq!(revoked_events(&after_first).len(), 1);
    assert!(revoked_events(&after_second).is_empty());
    assert_eq!(f.status(&a_id).await, KeyStatus::Revoked);
    assert_eq!(f.status(&b_id).await, KeyStatus::Active);
}

#[tokio::test]
async fn same_token_twice_in_one_batch_is_revoked_once() {
    let f = fixture();
    let (key, _) = f.issue("ci", Expiry::Default).await;
    let verdicts = f
        .manager
        .revoke_leaked(&[report(&key), report(&key)], &f.ctx)
        .await
        .expect("processed");
    assert!(verdicts.iter().all(|v| v.label == LeakLabel::TruePositive));
    assert_eq!(
        verdicts.iter().filter(|v| v.revoked_now).count(),
        1,
        "one revocation"
    );
    assert_eq!(revoked_events(&f.audit.take()).len(), 1);
}

#[tokio::test]
async fn disabled_expired_and_in_grace_keys_are_revoked() {
    let f = fixture();
    let (disabled, disabled_id) = f.issue("disabled", Expiry::Default).await;
    f.manager
        .disable(&disabled_id, &f.ctx)
        .await
        .expect("disable");
    let (expired, expired_id) = f.issue("expired", Expiry::After(Duration::hours(1))).await;
    let (rotated, rotated_id) = f.issue("rotated", Expiry::Default).await;
    let successor = f
        .manager
        .rotate(&rotated_id, Duration::days(1), &f.ctx)
        .await
        .expect("rotate");
    f.clock.advance(Duration::hours(2));
    let _ = f.audit.take();
    // The old key of the rotation still works in its grace period; the expired one not.
    assert!(f.manager.verify(&rotated, &f.ctx).await.is_ok());
    assert!(matches!(
        f.manager.verify(&expired, &f.ctx).await,
        Err(VerifyError::Expired)
    ));
    let _ = f.audit.take();

    let verdicts = f
        .manager
        .revoke_leaked(
            &[report(&disabled), report(&expired), report(&rotated)],
            &f.ctx,
        )
        .await
        .expect("processed");
    for v in &verdicts {
        assert_eq!(v.label, LeakLabel::TruePositive);
        assert!(v.revoked_now);
    }
    for id in [disabled_id, expired_id, rotated_id] {
        assert_eq!(f.status(&id).await, KeyStatus::Revoked);
    }
    let events = f.audit.take();
    assert_eq!(revoked_events(&events).len(), 3);
    assert_eq!(leak_events(&events).len(), 3);
    assert!(matches!(
        f.manager.verify(&rotated, &f.ctx).await,
        Err(VerifyError::Revoked)
    ));
    // Only the leaked value is revoked; the successor was never reported.
    assert!(
        f.manager
            .verify(successor.key.expose_secret(), &f.ctx)
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn empty_url_is_not_recorded_and_missing_fields_are_fine() {
    let f = fixture();
    let (key, _) = f.issue("ci", Expiry::Default).await;
    let mut r = LeakReport::new(key.as_str(), "t");
    r.url = Some(String::new());
    f.manager.revoke_leaked(&[r], &f.ctx).await.expect("ok");
    let events = f.audit.take();
    assert_eq!(
        leak_events(&events)[0].kind,
        AuditKind::LeakReported {
            token_type: "t".to_owned(),
            url: None,
            source: None,
            scanner: None,
            revoked: true,
        }
    );
}

#[tokio::test]
async fn empty_batch_is_empty() {
    let f = fixture();
    let verdicts = f.manager.revoke_leaked(&[], &f.ctx).await.expect("ok");
    assert!(verdicts.is_empty());
}

/// A store that can be switched off (the crate's own test helper).
type Flaky = keyward::testing::FlakyStore;

#[tokio::test]
async fn store_failure_fails_closed_and_a_retry_completes() {
    let store = Flaky::default();
    let f = fixture_on(store.clone());
    let (key, id) = f.issue("ci", Expiry::Default).await;
    store.set_down(true);
    let err = f
        .manager
        .revoke_leaked(
            &[
                report("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"),
                report(&key),
            ],
            &f.ctx,
        )
        .await
        .expect_err("store down");
    assert!(matches!(err, LeakError::Store(_)), "{err:?}");
    assert!(!err.to_string().contains(&key));
    assert!(f.audit.take().is_empty());
    store.set_down(false);
    assert_eq!(f.status(&id).await, KeyStatus::Active, "nothing half done");

    let verdicts = f
        .manager
        .revoke_leaked(&[report(&key)], &f.ctx)
        .await
        .expect("retry");
    assert!(verdicts[0].revoked_now);
    assert_eq!(f.status(&id).await, KeyStatus::Revoked);
}

#[test]
fn report_debug_shows_no_token() {
    let r = report("tak_0123456789abcdefSECRETSECRET");
    let debug = format!("{r:?}");
    assert!(!debug.contains("SECRETSECRET"), "{debug}");
    assert!(debug.contains("token_hash"));
}

/// The key with its last checksum character replaced by a different one.
fn broken_checksum(key: &str) -> String {
    let (head, last) = key.split_at(key.len() - 1);
    let replacement = if last == "x" { "y" } else { "x" };
    format!("{head}{replacement}")
}
