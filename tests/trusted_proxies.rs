//! `AuthLayer::trusted_proxies`: `X-Forwarded-For` decides the client address (IP
//! allowlists, audit events) only when the connection comes from a trusted proxy; without
//! the option, and from any other peer, the header is ignored.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, StatusCode, header};
use axum::routing::get;
use keyward::audit::{AuditEvent, AuditKind, AuditSink};
use keyward::axum::KeywardLayer;
use keyward::network::{Networks, TrustedProxies};
use keyward::{Hasher, IssueRequest, KeyFormat, KeyManager, MemoryStore, Pepper, RequestContext};
use tower::ServiceExt;

/// The client addresses of the audit events of successful verifications.
#[derive(Default)]
struct Clients(Mutex<Vec<Option<IpAddr>>>);

impl AuditSink for Clients {
    fn record(&self, event: &AuditEvent) {
        if matches!(event.kind, AuditKind::Verified) {
            self.0.lock().expect("lock").push(event.context.client_addr);
        }
    }
}

struct App {
    key: String,
    plain: Router,
    proxied: Router,
    clients: Arc<Clients>,
}

async fn app() -> App {
    app_with(Networks::only(["198.51.100.0/24"]).expect("networks")).await
}

/// As [`app`], with a key usable from anywhere (so every request reaches its handler).
async fn app_without_allowlist() -> App {
    app_with(Networks::any()).await
}

/// The routes behind the layer, with one key usable from `networks`.
async fn app_with(networks: Networks) -> App {
    let clients = Arc::new(Clients::default());
    let manager = Arc::new(
        KeyManager::new(
            MemoryStore::new(),
            KeyFormat::new(["tak"]).expect("format"),
            Hasher::fast(Pepper::new("k1", [7u8; 32]).expect("pepper")),
        )
        .with_audit(Arc::clone(&clients)),
    );
    let issued = manager
        .issue(
            IssueRequest::new("ci", "user_1").allowed_networks(networks),
            &RequestContext::new(),
        )
        .await
        .expect("issue");
    // `/client` answers the client address of the context the layer verified the key in.
    let route = || {
        Router::new().route("/", get(|| async { "ok" })).route(
            "/client",
            get(|ctx: axum::Extension<RequestContext>| async move {
                ctx.client_addr.map(|a| a.to_string()).unwrap_or_default()
            }),
        )
    };
    let layer = KeywardLayer::new(Arc::clone(&manager));
    App {
        key: issued.key.expose_secret().to_owned(),
        plain: route().layer(layer.clone()),
        proxied: route()
            .layer(layer.trusted_proxies(TrustedProxies::new(["10.0.0.0/8"]).expect("proxies"))),
        clients,
    }
}

async fn call(router: &Router, key: &str, peer: &str, forwarded: &[&str]) -> StatusCode {
    let lines: Vec<&[u8]> = forwarded.iter().map(|l| l.as_bytes()).collect();
    call_raw(router, key, peer, &lines).await
}

/// As [`call`], with header lines given as bytes (which need not be text).
async fn call_raw(router: &Router, key: &str, peer: &str, forwarded: &[&[u8]]) -> StatusCode {
    let mut req = Request::get("/").header(header::AUTHORIZATION, format!("Bearer {key}"));
    for value in forwarded {
        let value = header::HeaderValue::from_bytes(value).expect("header bytes");
        req = req.header("x-forwarded-for", value);
    }
    let mut req = req.body(Body::empty()).expect("request");
    let peer: IpAddr = peer.parse().expect("address");
    req.extensions_mut()
        .insert(ConnectInfo(SocketAddr::from((peer, 4000))));
    router
        .clone()
        .oneshot(req)
        .await
        .expect("infallible")
        .status()
}

#[tokio::test]
async fn forwarded_for_counts_only_from_trusted_proxies() {
    let app = app().await;
    let key = app.key.as_str();
    // Without trusted proxies the header is ignored: the peer is the client.
    assert_eq!(
        call(&app.plain, key, "10.1.2.3", &["198.51.100.7"]).await,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        call(&app.plain, key, "198.51.100.7", &["10.9.9.9"]).await,
        StatusCode::OK
    );
    // Behind a trusted proxy, the first untrusted hop from the right is the client.
    assert_eq!(
        call(&app.proxied, key, "10.1.2.3", &["198.51.100.7"]).await,
        StatusCode::OK
    );
    assert_eq!(
        call(
            &app.proxied,
            key,
            "10.1.2.3",
            &["203.0.113.1, 198.51.100.7, 10.0.0.5"]
        )
        .await,
        StatusCode::OK
    );
    // Several header lines are one list, in order.
    assert_eq!(
        call(&app.proxied, key, "10.1.2.3", &["198.51.100.7", "10.0.0.5"]).await,
        StatusCode::OK
    );
    // A client cannot claim an allowed address by prepending it: the last hop wins.
    assert_eq!(
        call(
            &app.proxied,
            key,
            "10.1.2.3",
            &["198.51.100.7, 203.0.113.1"]
        )
        .await,
        StatusCode::FORBIDDEN
    );
    // A peer that is not a trusted proxy is the client, whatever it claims.
    assert_eq!(
        call(&app.proxied, key, "203.0.113.1", &["198.51.100.7"]).await,
        StatusCode::FORBIDDEN
    );
    // A trusted proxy that names nobody: the proxy itself is the client.
    assert_eq!(
        call(&app.proxied, key, "10.1.2.3", &[]).await,
        StatusCode::FORBIDDEN
    );
    // A client's line that is not text does not hide the hop its proxy appended (nginx's
    // $proxy_add_x_forwarded_for appends to the client's own line).
    assert_eq!(
        call_raw(&app.proxied, key, "10.1.2.3", &[b"\xff\xfe, 198.51.100.7"]).await,
        StatusCode::OK
    );
    assert_eq!(
        call_raw(&app.proxied, key, "10.1.2.3", &[b"\xff, 203.0.113.1"]).await,
        StatusCode::FORBIDDEN
    );
    // A hop that decides but cannot be read: the client is unknown, so the allowlist
    // refuses (never judged by the proxy's address).
    for unreadable in [&b"unknown"[..], b"\xff", b"198.51.100.7,,10.0.0.5"] {
        assert_eq!(
            call_raw(&app.proxied, key, "10.1.2.3", &[unreadable]).await,
            StatusCode::FORBIDDEN,
            "{unreadable:?}"
        );
    }
    // Ports and bracketed IPv6 forms are addresses.
    assert_eq!(
        call(&app.proxied, key, "10.1.2.3", &["198.51.100.7:4711"]).await,
        StatusCode::OK
    );
    // Audit events carry the address the decision used.
    let seen = app.clients.0.lock().expect("lock").clone();
    let expected: Vec<Option<IpAddr>> = vec![Some("198.51.100.7".parse().expect("address")); 6];
    assert_eq!(seen, expected);
}

#[tokio::test]
async fn handlers_get_the_context_the_key_was_verified_in() {
    let app = app().await;
    let mut req = Request::get("/client")
        .header(header::AUTHORIZATION, format!("Bearer {}", app.key))
        .header("x-forwarded-for", "198.51.100.7")
        .body(Body::empty())
        .expect("request");
    req.extensions_mut()
        .insert(ConnectInfo(SocketAddr::from(([10, 1, 2, 3], 4000))));
    let response = app.proxied.clone().oneshot(req).await.expect("infallible");
    assert_eq!(response.status(), StatusCode::OK);
    let body = axum::body::to_bytes(response.into_body(), 1024)
        .await
        .expect("body");
    assert_eq!(&body[..], b"198.51.100.7");
    // An unreadable hop that decides: the client is unknown (not the proxy's address).
    let app = app_without_allowlist().await;
    for (forwarded, expected) in [
        (&b"unknown"[..], &b""[..]),
        (b"\xff", b""),
        (b"[2001:db8::1]:443", b"2001:db8::1"),
        (b"198.51.100.7", b"198.51.100.7"),
    ] {
        let mut req = Request::get("/client")
            .header(header::AUTHORIZATION, format!("Bearer {}", app.key))
            .header(
                "x-forwarded-for",
                header::HeaderValue::from_bytes(forwarded).expect("header bytes"),
            )
            .body(Body::empty())
            .expect("request");
        req.extensions_mut()
            .insert(ConnectInfo(SocketAddr::from(([10, 1, 2, 3], 4000))));
        let response = app.proxied.clone().oneshot(req).await.expect("infallible");
        assert_eq!(response.status(), StatusCode::OK, "{forwarded:?}");
        let body = axum::body::to_bytes(response.into_body(), 1024)
            .await
            .expect("body");
        assert_eq!(&body[..], expected, "{forwarded:?}");
    }
}
