//! The gRPC layer (feature `tonic`) answers with gRPC statuses and hands handlers the proof.

use std::convert::Infallible;
use std::sync::Arc;

use keyward::grpc::{GrpcAuthLayer, authorize, verified};
use keyward::{
    Hasher, IssueRequest, KeyFormat, KeyManager, MemoryStore, Pepper, RequestContext, Verified,
    http::AuthError,
};
use tower::{Layer, ServiceExt};

fn grpc_status(r: &http::Response<tonic::body::Body>) -> Option<&str> {
    r.headers().get("grpc-status").and_then(|v| v.to_str().ok())
}

async fn call(
    manager: &Arc<KeyManager<MemoryStore>>,
    auth: Option<&str>,
) -> http::Response<tonic::body::Body> {
    let inner = tower::service_fn(|req: http::Request<()>| async move {
        let owner = req
            .extensions()
            .get::<Verified>()
            .map(|v| v.owner().to_owned())
            .unwrap_or_default();
        let mut response = http::Response::new(tonic::body::Body::default());
        response
            .headers_mut()
            .insert("x-owner", owner.parse().expect("header"));
        Ok::<_, Infallible>(response)
    });
    let service = GrpcAuthLayer::new(Arc::clone(manager)).layer(inner);
    let mut req = http::Request::builder()
        .uri("/tickets.Tickets/List")
        .header("content-type", "application/grpc");
    if let Some(a) = auth {
        req = req.header("authorization", a);
    }
    service
        .oneshot(req.body(()).expect("request"))
        .await
        .expect("infallible")
}

#[tokio::test]
async fn statuses_and_the_proof() {
    let manager = Arc::new(KeyManager::new(
        MemoryStore::new(),
        KeyFormat::new(["tak"]).expect("format"),
        Hasher::fast(Pepper::new("k1", [4u8; 32]).expect("pepper")),
    ));
    let ctx = RequestContext::new();
    let issued = manager
        .issue(IssueRequest::new("k", "grpc-owner"), &ctx)
        .await
        .expect("issue");
    let key = issued.key.expose_secret();

    let ok = call(&manager, Some(&format!("Bearer {key}"))).await;
    assert_eq!(grpc_status(&ok), None, "the call reached the service");
    assert_eq!(ok.headers().get("x-owner").expect("owner"), "grpc-owner");

    assert_eq!(
        grpc_status(&call(&manager, None).await),
        Some("16"),
        "UNAUTHENTICATED"
    );
    assert_eq!(
        grpc_status(&call(&manager, Some("Bearer tak_nope")).await),
        Some("16")
    );
    manager
        .revoke(&issued.key.id(), None, &ctx)
        .await
        .expect("revoke");
    let revoked = call(&manager, Some(&format!("Bearer {key}"))).await;
    assert_eq!(grpc_status(&revoked), Some("16"));
    let message = revoked
        .headers()
        .get("grpc-message")
        .expect("message")
        .to_str()
        .expect("ascii");
    assert!(!message.contains(&key[4..]), "never the key");

    let s = keyward::grpc::status(&AuthError::Unavailable);
    assert_eq!(s.code(), tonic::Code::Unavailable);
    let s = keyward::grpc::status(&AuthError::RateLimited {
        retry_after: std::time::Duration::from_millis(2500),
    });
    assert_eq!(s.code(), tonic::Code::ResourceExhausted);
    assert_eq!(s.metadata().get("retry-after").expect("retry-after"), "3");
}

#[tokio::test]
async fn handlers_authorize_from_the_proof() {
    let proof = keyward::testing::Fixture::new()
        .verified("alice", "read")
        .await;
    let mut request = tonic::Request::new(());
    request.extensions_mut().insert(proof);
    assert!(authorize(&request, &"read".parse().expect("scope"), None).is_ok());
    let denied =
        authorize(&request, &"tickets:write".parse().expect("scope"), None).expect_err("denied");
    assert_eq!(denied.code(), tonic::Code::PermissionDenied);
    assert!(denied.message().contains("tickets:write"));
    assert_eq!(
        verified(&tonic::Request::new(()))
            .expect_err("no proof")
            .code(),
        tonic::Code::Unauthenticated
    );
}

#[tokio::test]
async fn audit_events_say_grpc() {
    use keyward::audit::{AuditKind, AuditLog, Channel};
    let log = AuditLog::new();
    let manager = Arc::new(
        KeyManager::new(
            MemoryStore::new(),
            KeyFormat::new(["tak"]).expect("format"),
            Hasher::fast(Pepper::new("k1", [4u8; 32]).expect("pepper")),
        )
        .with_audit(log.clone()),
    );
    let issued = manager
        .issue(IssueRequest::new("k", "grpc-owner"), &RequestContext::new())
        .await
        .expect("issue");
    let _ = log.take();
    let ok = call(
        &manager,
        Some(&format!("Bearer {}", issued.key.expose_secret())),
    )
    .await;
    assert_eq!(grpc_status(&ok), None);
    let events = log.take();
    let verified = events
        .iter()
        .find(|e| matches!(e.kind, AuditKind::Verified))
        .expect("a verified event");
    assert_eq!(verified.context.channel, Some(Channel::GRPC));
}
