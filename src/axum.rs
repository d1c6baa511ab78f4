//! axum and tower integration (feature `axum`): a layer that verifies the key of every
//! request and puts the [`Verified`] proof into the request's extensions, an extractor for
//! that proof, a per-route scope requirement, and RFC 6750 error responses.
//!
//! The layer is the shared tower core ([`AuthLayer`]) answering refusals with
//! [`HttpRefusal`]; the `http` module decides every status, challenge and header.
//!
//! ```
//! use axum::{Router, routing::get};
//! use keyward::{Hasher, KeyFormat, KeyManager, MemoryStore, Pepper, Verified};
//! use keyward::axum::{KeywardLayer, RequireScope};
//!
//! async fn tickets(key: Verified) -> String {
//!     format!("tickets visible to {}", key.owner())
//! }
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let manager = KeyManager::new(MemoryStore::new(), KeyFormat::new(["tak"])?, Hasher::fast(Pepper::random("k1")?));
//! let app: Router = Router::new()
//!     .route("/tickets", get(tickets).route_layer(RequireScope::new("read".parse()?)))
//!     .layer(KeywardLayer::new(manager).realm("tickets"));
//! # Ok(()) }
//! ```

use core::task::{Context, Poll};
use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::response::{IntoResponse, Response};
use http::Request;
use http::request::Parts;
use tower_layer::Layer;
use tower_service::Service;

use crate::audit::{Channel, RequestContext};
use crate::http::BearerError;
use crate::http::{AuthError, ErrorResponse};
use crate::network::TrustedProxies;
use crate::scope::Scope;
use crate::tower::request_id_context;
use crate::verified::Verified;

pub use crate::tower::{AuthLayer, AuthService, Refusal, ResponseFuture};
#[cfg(feature = "rate-limit")]
#[cfg_attr(docsrs, doc(cfg(feature = "rate-limit")))]
pub use crate::tower::{
    ChargedFuture, LimitClass, RateLimit, RateLimitService, classify_by_method,
};

/// A tower layer that verifies the key of every request and answers failures with RFC 6750
/// HTTP responses.
///
/// On success the [`Verified`] proof goes into the request's extensions (extract it with
/// `Verified` as a handler argument); on failure the request never reaches the handler and
/// the client gets the RFC 6750 response. The `Authorization` header is marked sensitive so
/// that tower-http's and hyper's logging leave it out. The [`RequestContext`] of audit events
/// carries the client address (from axum's `ConnectInfo<SocketAddr>`, when the server
/// provides it), the `x-request-id` header and the channel `http` (another with
/// [`AuthLayer::channel`]).
pub type KeywardLayer<S> = AuthLayer<S, HttpRefusal>;

/// The service made by [`KeywardLayer`].
pub type KeywardService<S, Svc> = AuthService<S, Svc, HttpRefusal>;

/// Answers refusals as RFC 6750 HTTP responses ([`error_response`]), and reads the client
/// address from axum's `ConnectInfo<SocketAddr>` ([`request_context`]).
#[derive(Debug, Clone, Copy, Default)]
#[non_exhaustive]
pub struct HttpRefusal;

impl Refusal<Response> for HttpRefusal {
    fn refuse(error: &AuthError, realm: &str) -> Response {
        error_response(error, realm)
    }

    fn context<B>(request: &Request<B>) -> RequestContext {
        request_context(request)
    }
}

#[cfg(feature = "rate-limit")]
impl<S: crate::store::KeyStore + 'static> AuthLayer<S, HttpRefusal> {
    /// Throttles clients whose keys fail to verify (by client address, from axum's
    /// `ConnectInfo`): once a client has spent its budget of failures it gets 429 until it
    /// may retry, before any key is looked up, so guessing stays expensive.
    #[cfg_attr(docsrs, doc(cfg(feature = "rate-limit")))]
    #[must_use]
    pub fn throttle_failures<L: crate::limit::Limiter + 'static>(
        self,
        throttle: Arc<crate::limit::FailureThrottle<L>>,
    ) -> Self {
        self.with_failures(throttle)
    }
}

impl IntoResponse for AuthError {
    fn into_response(self) -> Response {
        error_response(&self, crate::tower::DEFAULT_REALM)
    }
}

/// Builds the HTTP response for `error` with `realm` in the challenge.
#[must_use]
pub fn error_response(error: &AuthError, realm: &str) -> Response {
    ErrorResponse::new(error, realm).to_http()
}

/// The audit context of a request: client address, request id, and channel `http`.
#[must_use]
pub fn request_context<B>(req: &Request<B>) -> RequestContext {
    let ctx = request_id_context(req).channel(Channel::HTTP);
    match req.extensions().get::<ConnectInfo<SocketAddr>>() {
        Some(ConnectInfo(addr)) => ctx.client_addr(addr.ip()),
        None => ctx,
    }
}

/// The audit context of a request that may come through `proxies`: as [`request_context`],
/// but when the connection's peer is a trusted proxy the client address is read from
/// `X-Forwarded-For` through them (none when the hop that decides cannot be read) (see [`KeywardLayer::trusted_proxies`](AuthLayer::trusted_proxies)).
#[must_use]
pub fn request_context_behind<B>(req: &Request<B>, proxies: &TrustedProxies) -> RequestContext {
    let mut ctx = request_context(req);
    if let Some(peer) = ctx.client_addr {
        ctx.client_addr = crate::tower::client_behind(proxies, peer, req.headers());
    }
    ctx
}

impl<St: Send + Sync> FromRequestParts<St> for Verified {
    type Rejection = AuthError;

    async fn from_request_parts(parts: &mut Parts, _state: &St) -> Result<Self, Self::Rejection> {
        // Without the layer there is no proof: answer as for missing credentials.
        parts
            .extensions
            .get::<Verified>()
            .cloned()
            .ok_or(AuthError::Credentials(BearerError::Missing))
    }
}

/// A route layer that refuses requests whose verified key lacks a scope (403
/// `insufficient_scope` naming it). Put it inside a [`KeywardLayer`].
#[derive(Debug, Clone)]
pub struct RequireScope {
    scope: Arc<Scope>,
}

impl RequireScope {
    /// Requires `scope`.
    #[must_use]
    pub fn new(scope: Scope) -> Self {
        Self {
            scope: Arc::new(scope),
        }
    }
}

impl<Svc> Layer<Svc> for RequireScope {
    type Service = RequireScopeService<Svc>;

    fn layer(&self, inner: Svc) -> Self::Service {
        RequireScopeService {
            scope: Arc::clone(&self.scope),
            inner,
        }
    }
}

/// The service made by [`RequireScope`].
#[derive(Debug, Clone)]
pub struct RequireScopeService<Svc> {
    scope: Arc<Scope>,
    inner: Svc,
}

impl<Svc, B> Service<Request<B>> for RequireScopeService<Svc>
where
    Svc: Service<Request<B>, Response = Response>,
{
    type Response = Response;
    type Error = Svc::Error;
    type Future = ResponseFuture<Svc::Future, Response>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let decision = match req.extensions().get::<Verified>() {
            None => Err(AuthError::Credentials(BearerError::Missing)),
            Some(v) => v.authorize(&self.scope, None).map_err(AuthError::from),
        };
        match decision {
            Ok(()) => ResponseFuture::calling(self.inner.call(req)),
            Err(e) => ResponseFuture::refused(e.into_response()),
        }
    }
}
