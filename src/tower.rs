//! The tower authentication core that the axum and tonic layers share (features `axum`,
//! `tonic`): [`AuthLayer`] holds the configuration, [`AuthService`] reads the credential,
//! checks the failure throttle, verifies the key and puts the [`Verified`] proof into the
//! request's extensions, and [`ResponseFuture`] is its named response future. A protocol adds
//! only how it answers a refusal, through [`Refusal`]: `keyward::axum` with RFC 6750 HTTP
//! responses, `keyward::grpc` with gRPC statuses.
//!
//! [`Verified`]: crate::Verified

use http::Request;

use crate::audit::RequestContext;
use crate::http::AuthError;

mod future;
mod layer;
#[cfg(all(feature = "axum", feature = "rate-limit"))]
mod rate_limit;
mod service;

pub use future::ResponseFuture;
pub use layer::AuthLayer;
#[cfg(feature = "axum")]
pub(crate) use layer::DEFAULT_REALM;
#[cfg(all(feature = "axum", feature = "rate-limit"))]
pub use rate_limit::{ChargedFuture, LimitClass, RateLimit, RateLimitService, classify_by_method};
pub use service::AuthService;

/// How a protocol answers a request that the authentication core refused, and what it
/// knows of the client for audit events.
///
/// `keyward::axum::HttpRefusal` answers with RFC 6750 HTTP responses,
/// `keyward::grpc::StatusRefusal` with gRPC statuses; the mapping of an error to its class
/// comes from the `http` module in both.
pub trait Refusal<Res> {
    /// The response for `error`; `realm` names the protected service in HTTP challenges.
    fn refuse(error: &AuthError, realm: &str) -> Res;

    /// The audit context of a request: by default its `x-request-id` header alone (the axum
    /// and gRPC refusals add their channel).
    fn context<B>(request: &Request<B>) -> RequestContext {
        request_id_context(request)
    }
}

/// A context carrying the request's `x-request-id` header (at most 128 characters).
pub(crate) fn request_id_context<B>(request: &Request<B>) -> RequestContext {
    let ctx = RequestContext::new();
    match request
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
    {
        Some(id) => ctx.request_id(id.chars().take(128).collect::<String>()),
        None => ctx,
    }
}

/// The client address of a request from `peer`: its `X-Forwarded-For` lines read through
/// `proxies` (see [`TrustedProxies::client_addr`](crate::network::TrustedProxies::client_addr)),
/// `None` when the hop that decides cannot be read.
pub(crate) fn client_behind(
    proxies: &crate::network::TrustedProxies,
    peer: std::net::IpAddr,
    headers: &http::HeaderMap,
) -> Option<std::net::IpAddr> {
    let lines = headers.get_all("x-forwarded-for");
    proxies.client_addr(peer, lines.iter().map(http::HeaderValue::as_bytes))
}

/// The service to call now, leaving a clone in its place: the clone that was polled ready
/// is the one that must be called (tower's readiness contract).
pub(crate) fn take_ready<Svc: Clone>(inner: &mut Svc) -> Svc {
    let clone = inner.clone();
    core::mem::replace(inner, clone)
}
