//! The axum layer and extractors answer every RFC 6750 case (driven with
//! `tower::ServiceExt::oneshot`).

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use axum::routing::get;
use keyward::axum::{KeywardLayer, RequireScope};
use keyward::{
    Hasher, IssueRequest, KeyFormat, KeyManager, MemoryStore, Pepper, RequestContext, Verified,
    clock::FakeClock, http::AuthError,
};
use time::{Duration, macros::datetime};
use tower::ServiceExt;

struct App {
    router: Router,
    manager: Arc<KeyManager<MemoryStore>>,
    clock: FakeClock,
}

async fn whoami(key: Verified) -> String {
    format!("{} {}", key.key_id(), key.owner())
}

async fn project(
    key: Verified,
    axum::extract::Path((c, p)): axum::extract::Path<(String, String)>,
) -> Result<String, AuthError> {
    let resource = format!("company:{c}/project:{p}")
        .parse()
        .map_err(|_| AuthError::Unavailable)?;
    key.authorize(&"read".parse().expect("scope"), Some(&resource))?;
    Ok("ok".to_owned())
}

fn app() -> App {
    let clock = FakeClock::new(datetime!(2026-06-01 0:00 UTC));
    let manager = Arc::new(
        KeyManager::new(
            MemoryStore::new(),
            KeyFormat::new(["tak"]).expect("format"),
            Hasher::fast(Pepper::new("k1", [5u8; 32]).expect("pepper")),
        )
        .with_clock(clock.clone()),
    );
    let router = Router::new()
        .route("/whoami", get(whoami))
        .route(
            "/write",
            get(whoami).route_layer(RequireScope::new("tickets:write".parse().expect("scope"))),
        )
        .route("/companies/{c}/projects/{p}", get(project))
        .layer(KeywardLayer::new(Arc::clone(&manager)).realm("toado"));
    App {
        router,
        manager,
        clock,
    }
}

async fn call(
    router: &Router,
    auth: &[&str],
) -> (StatusCode, Option<String>, serde_json::Value, String) {
    call_path(router, "/whoami", auth).await
}

async fn call_path(
    router: &Router,
    path: &str,
    auth: &[&str],
) -> (StatusCode, Option<String>, serde_json::Value, String) {
    let mut req = Request::builder().uri(path);
    for a in auth {
        req = req.header(header::AUTHORIZATION, *a);
    }
    let response = router
        .clone()
        .oneshot(req.body(Body::empty()).expect("request"))
        .await
        .expect("infallible");
    let status = response.status();
    let challenge = response
        .headers()
        .get(header::WWW_AUTHENTICATE)
        .map(|v| v.to_str().expect("ascii").to_owned());
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .expect("body");
    let text = String::from_utf8(bytes.to_vec()).expect("utf8");
    let json = serde_json::from_str(&text).unwrap_or(serde_json::Value::Null);
    (status, challenge, json, text)
}

async fn issue(app: &App, scopes: &str) -> String {
    let r = IssueRequest::new("k", "owner_1").scopes(scopes.parse().expect("scopes"));
    app.manager
        .issue(r, &RequestContext::new())
        .await
        .expect("issue")
        .key
        .expose_secret()
        .to_owned()
}

#[tokio::test]
async fn a_valid_key_reaches_the_handler() {
    let app = app();
    let key = issue(&app, "read").await;
    let (status, _, _, body) = call(&app.router, &[&format!("Bearer {key}")]).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.ends_with(" owner_1"), "{body}");
    let (status, _, _, _) = call(&app.router, &[&format!("bearer   {key}")]).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "scheme is case-insensitive, several spaces allowed"
    );
}

#[tokio::test]
async fn no_credentials_and_other_schemes_get_a_bare_challenge() {
    let app = app();
    for auth in [&[][..], &["Basic dXNlcjpwYXNz"][..]] {
        let (status, challenge, json, _) = call(&app.router, auth).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(challenge.as_deref(), Some(r#"Bearer realm="toado""#));
        assert_eq!(json["error"], "unauthorized");
    }
}

#[tokio::test]
async fn malformed_headers_are_bad_requests() {
    let app = app();
    let key = issue(&app, "read").await;
    let trailing = format!("Bearer {key} ");
    let two_a = format!("Bearer {key}");
    for auth in [
        vec!["Bearer "],
        vec![trailing.as_str()],
        vec![two_a.as_str(), two_a.as_str()],
        vec!["Bearer a\"b"],
    ] {
        let (status, challenge, json, _) = call(&app.router, &auth).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{auth:?}");
        assert!(
            challenge
                .expect("challenge")
                .contains(r#"error="invalid_request""#)
        );
        assert_eq!(json["error"], "invalid_request");
    }
}

#[tokio::test]
async fn bad_keys_are_invalid_tokens_and_never_echoed() {
    let app = app();
    let key = issue(&app, "read").await;
    let unknown = app.manager.format().generate().expect("key");
    let mut tampered = key.clone();
    let last = tampered.pop().expect("char");
    tampered.push(if last == 'A' { 'B' } else { 'A' });
    for presented in [
        tampered.as_str(),
        unknown.expose_secret(),
        "tak_notakey",
        "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",
    ] {
        let (status, challenge, json, text) =
            call(&app.router, &[&format!("Bearer {presented}")]).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{presented}");
        assert!(
            challenge
                .expect("challenge")
                .contains(r#"error="invalid_token""#)
        );
        assert_eq!(json["error"], "invalid_token");
        assert!(!text.contains(presented), "the key must not be echoed");
    }
}

#[tokio::test]
async fn revoked_disabled_and_expired_keys_are_refused() {
    let app = app();
    let ctx = RequestContext::new();
    let key = issue(&app, "read").await;
    let id = app.manager.format().parse(&key).expect("parse").key_id();
    app.manager.disable(&id, &ctx).await.expect("disable");
    let (status, _, json, _) = call(&app.router, &[&format!("Bearer {key}")]).await;
    assert_eq!(
        (status, json["message"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("key is disabled"))
    );
    app.manager.enable(&id, &ctx).await.expect("enable");
    app.clock.advance(Duration::days(91));
    let (status, _, json, _) = call(&app.router, &[&format!("Bearer {key}")]).await;
    assert_eq!(
        (status, json["message"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("key has expired"))
    );
    app.manager.revoke(&id, None, &ctx).await.expect("revoke");
    let (status, _, json, _) = call(&app.router, &[&format!("Bearer {key}")]).await;
    assert_eq!(
        (status, json["message"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("key is revoked"))
    );
}

#[tokio::test]
async fn missing_scope_is_insufficient_scope_naming_it() {
    let app = app();
    let key = issue(&app, "read").await;
    let (status, challenge, json, _) =
        call_path(&app.router, "/write", &[&format!("Bearer {key}")]).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let challenge = challenge.expect("challenge");
    assert!(
        challenge.contains(r#"error="insufficient_scope""#),
        "{challenge}"
    );
    assert!(
        challenge.ends_with(r#"scope="tickets:write""#),
        "{challenge}"
    );
    assert_eq!(json["error"], "insufficient_scope");
    let writer = issue(&app, "tickets:write").await;
    assert_eq!(
        call_path(&app.router, "/write", &[&format!("Bearer {writer}")])
            .await
            .0,
        StatusCode::OK
    );
}

#[tokio::test]
async fn resource_restrictions_are_enforced_per_route() {
    let app = app();
    let r = IssueRequest::new("k", "o")
        .scopes("read".parse().expect("scopes"))
        .restrictions(keyward::scope::Restrictions::only(["company:42"]).expect("restrictions"));
    let key = app
        .manager
        .issue(r, &RequestContext::new())
        .await
        .expect("issue")
        .key
        .expose_secret()
        .to_owned();
    let auth = format!("Bearer {key}");
    assert_eq!(
        call_path(&app.router, "/companies/42/projects/7", &[&auth])
            .await
            .0,
        StatusCode::OK
    );
    let (status, challenge, json, _) =
        call_path(&app.router, "/companies/4/projects/7", &[&auth]).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(
        challenge
            .expect("challenge")
            .contains("company:4/project:7")
    );
    assert_eq!(json["error"], "insufficient_scope");
}

#[tokio::test]
async fn rate_limited_and_unavailable_responses() {
    use axum::response::IntoResponse;
    let r = AuthError::RateLimited {
        retry_after: std::time::Duration::from_secs(7),
    }
    .into_response();
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        r.headers().get(header::RETRY_AFTER).expect("retry-after"),
        "7"
    );
    let r = AuthError::Unavailable.into_response();
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test]
async fn audit_events_name_the_channel_the_layer_serves() {
    use keyward::audit::{AuditKind, AuditLog, Channel};
    let log = AuditLog::new();
    let manager = Arc::new(
        KeyManager::new(
            MemoryStore::new(),
            KeyFormat::new(["tak"]).expect("format"),
            Hasher::fast(Pepper::new("k1", [5u8; 32]).expect("pepper")),
        )
        .with_audit(log.clone()),
    );
    let http = Router::new()
        .route("/whoami", get(whoami))
        .layer(KeywardLayer::new(Arc::clone(&manager)));
    let mcp = Router::new()
        .route("/whoami", get(whoami))
        .layer(KeywardLayer::new(Arc::clone(&manager)).channel(Channel::MCP));
    let key = manager
        .issue(IssueRequest::new("k", "owner_1"), &RequestContext::new())
        .await
        .expect("issue");
    let auth = format!("Bearer {}", key.key.expose_secret());
    for (router, channel) in [(http, Channel::HTTP), (mcp, Channel::MCP)] {
        let _ = log.take();
        let (status, _, _, _) = call(&router, &[&auth]).await;
        assert_eq!(status, StatusCode::OK);
        let (status, _, _, _) = call(&router, &["Bearer tak_nope"]).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        let events = log.take();
        assert!(events.iter().any(|e| matches!(e.kind, AuditKind::Verified)));
        assert!(
            events
                .iter()
                .any(|e| matches!(e.kind, AuditKind::VerifyFailed { .. }))
        );
        assert!(
            events
                .iter()
                .all(|e| e.context.channel.as_ref() == Some(&channel)),
            "{events:?}"
        );
    }
}
