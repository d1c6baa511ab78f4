//! The axum layers with rate limits: per-key budgets charged only after verification (429
//! with `Retry-After` and `RateLimit-*` headers), and per-client throttling of failed
//! verifications. Time comes from a fake clock, so allowances are exact.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, StatusCode, header};
use axum::routing::get;
use keyward::axum::{KeywardLayer, RateLimit};
use keyward::{
    Hasher, IssueRequest, KeyFormat, KeyManager, MemoryStore, Pepper, RequestContext,
    clock::FakeClock,
    limit::{FailureThrottle, LimitPolicy, MemoryLimiter, Rate},
};
use time::{Duration, macros::datetime};
use tower::ServiceExt;

struct App {
    router: Router,
    manager: Arc<KeyManager<MemoryStore>>,
    clock: FakeClock,
}

fn app() -> App {
    let clock = FakeClock::new(datetime!(2026-07-01 0:00 UTC));
    let manager = Arc::new(
        KeyManager::new(
            MemoryStore::new(),
            KeyFormat::new(["tak"]).expect("format"),
            Hasher::fast(Pepper::new("k1", [8u8; 32]).expect("pepper")),
        )
        .with_clock(clock.clone()),
    );
    let policy = LimitPolicy::empty()
        .limit("reads", Rate::per_minute(3).expect("rate"))
        .limit("writes", Rate::per_minute(1).expect("rate"))
        .limit(
            LimitPolicy::FAILED_VERIFICATIONS,
            Rate::per_minute(2).expect("rate"),
        );
    let limiter = Arc::new(MemoryLimiter::with_clock(policy, clock.clone()));
    let throttle = Arc::new(FailureThrottle::new(Arc::clone(&limiter)).with_clock(clock.clone()));
    let router = Router::new()
        .route("/r", get(|| async { "ok" }).post(|| async { "ok" }))
        .layer(RateLimit::new(limiter))
        .layer(KeywardLayer::new(Arc::clone(&manager)).throttle_failures(throttle));
    App {
        router,
        manager,
        clock,
    }
}

async fn call(app: &App, method: &str, key: &str, client: [u8; 4]) -> axum::response::Response {
    let mut req = Request::builder()
        .method(method)
        .uri("/r")
        .header(header::AUTHORIZATION, format!("Bearer {key}"))
        .body(Body::empty())
        .expect("request");
    req.extensions_mut()
        .insert(ConnectInfo(SocketAddr::from((client, 4000))));
    app.router.clone().oneshot(req).await.expect("infallible")
}

fn header_u64(r: &axum::response::Response, name: &str) -> Option<u64> {
    r.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
}

#[tokio::test]
async fn exact_allowance_then_429_then_the_budget_returns() {
    let app = app();
    let key = app
        .manager
        .issue(IssueRequest::new("k", "o"), &RequestContext::new())
        .await
        .expect("issue");
    let key = key.key.expose_secret();
    for remaining in [2, 1, 0] {
        let r = call(&app, "GET", key, [10, 0, 0, 1]).await;
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(header_u64(&r, "ratelimit-limit"), Some(3));
        assert_eq!(header_u64(&r, "ratelimit-remaining"), Some(remaining));
    }
    let r = call(&app, "GET", key, [10, 0, 0, 1]).await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        header_u64(&r, "retry-after"),
        Some(20),
        "one read comes back every 20 s"
    );
    // Writes have their own budget.
    assert_eq!(
        call(&app, "POST", key, [10, 0, 0, 1]).await.status(),
        StatusCode::OK
    );
    assert_eq!(
        call(&app, "POST", key, [10, 0, 0, 1]).await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    app.clock.advance(Duration::seconds(20));
    assert_eq!(
        call(&app, "GET", key, [10, 0, 0, 1]).await.status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn forged_keys_do_not_drain_a_budget_but_are_throttled_per_client() {
    let app = app();
    let key = app
        .manager
        .issue(IssueRequest::new("k", "o"), &RequestContext::new())
        .await
        .expect("issue");
    let forged = app.manager.format().generate().expect("key");
    let attacker = [203, 0, 113, 9];
    // A budget of two failures a minute: the third failure spends past it and blocks the client.
    for _ in 0..3 {
        assert_eq!(
            call(&app, "GET", forged.expose_secret(), attacker)
                .await
                .status(),
            StatusCode::UNAUTHORIZED
        );
    }
    // Blocked: refused before any lookup, even with a valid key.
    let r = call(&app, "GET", key.key.expose_secret(), attacker).await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(header_u64(&r, "retry-after").is_some_and(|s| s > 0));
    // The key's own budget is untouched, from another client.
    let r = call(&app, "GET", key.key.expose_secret(), [10, 0, 0, 2]).await;
    assert_eq!(
        (r.status(), header_u64(&r, "ratelimit-remaining")),
        (StatusCode::OK, Some(2))
    );
    app.clock.advance(Duration::seconds(30));
    assert_eq!(
        call(&app, "GET", key.key.expose_secret(), attacker)
            .await
            .status(),
        StatusCode::OK
    );
}
