//! axum and tower integration (feature `axum`): a layer that verifies the key of every
//! request and puts the [`Verified`] proof into the request's extensions, an extractor for
//! that proof, a per-route scope requirement, and RFC 6750 error responses.
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

use core::fmt;
use core::future::Future;
use core::pin::Pin;
use core::task::{Context, Poll};
use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::response::{IntoResponse, Response};
use http::header::{AUTHORIZATION, HeaderValue, RETRY_AFTER, WWW_AUTHENTICATE};
use http::request::Parts;
use http::{Request, StatusCode};
use tower_layer::Layer;
use tower_service::Service;

use crate::audit::RequestContext;
use crate::bearer::{BearerError, CredentialSource};
use crate::http::{AuthError, ErrorResponse};
use crate::manager::KeyManager;
use crate::scope::Scope;
use crate::store::KeyStore;
use crate::verified::Verified;

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

const DEFAULT_REALM: &str = "api";

impl IntoResponse for AuthError {
    fn into_response(self) -> Response {
        error_response(&self, DEFAULT_REALM)
    }
}

/// Builds the HTTP response for `error` with `realm` in the challenge.
#[must_use]
pub fn error_response(error: &AuthError, realm: &str) -> Response {
    let r = ErrorResponse::new(error, realm);
    let status = StatusCode::from_u16(r.status).unwrap_or(StatusCode::UNAUTHORIZED);
    let mut response = (
        status,
        [(http::header::CONTENT_TYPE, "application/json")],
        r.body(),
    )
        .into_response();
    let headers = response.headers_mut();
    if let Some(Ok(v)) = r.www_authenticate.as_deref().map(HeaderValue::from_str) {
        headers.insert(WWW_AUTHENTICATE, v);
    }
    if let Some(secs) = r.retry_after {
        headers.insert(RETRY_AFTER, HeaderValue::from(secs));
    }
    response
}

/// A tower [`Layer`] that verifies the key of every request with a [`KeyManager`].
///
/// On success the [`Verified`] proof goes into the request's extensions (extract it with
/// `Verified` as a handler argument); on failure the request never reaches the handler and
/// the client gets the RFC 6750 response. The `Authorization` header is marked sensitive so
/// that tower-http's and hyper's logging leave it out. The [`RequestContext`] of audit events
/// carries the client address (from axum's `ConnectInfo<SocketAddr>`, when the server
/// provides it) and the `x-request-id` header.
pub struct KeywardLayer<S> {
    shared: Arc<Shared<S>>,
}

struct Shared<S> {
    manager: Arc<KeyManager<S>>,
    realm: String,
    source: CredentialSource,
    #[cfg(feature = "rate-limit")]
    failures: Option<Arc<dyn rate_limit::FailureGate>>,
}

impl<S> Clone for KeywardLayer<S> {
    fn clone(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<S> fmt::Debug for KeywardLayer<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeywardLayer")
            .field("realm", &self.shared.realm)
            .field("source", &self.shared.source)
            .finish_non_exhaustive()
    }
}

impl<S: KeyStore + 'static> KeywardLayer<S> {
    /// A layer over `manager`, reading `Authorization: Bearer` with realm `api`.
    pub fn new(manager: impl Into<Arc<KeyManager<S>>>) -> Self {
        Self {
            shared: Arc::new(Shared {
                manager: manager.into(),
                realm: DEFAULT_REALM.to_owned(),
                source: CredentialSource::Bearer,
                #[cfg(feature = "rate-limit")]
                failures: None,
            }),
        }
    }

    fn with(self, f: impl FnOnce(&mut Shared<S>)) -> Self {
        let mut shared = Shared {
            manager: Arc::clone(&self.shared.manager),
            realm: self.shared.realm.clone(),
            source: self.shared.source.clone(),
            #[cfg(feature = "rate-limit")]
            failures: self.shared.failures.clone(),
        };
        f(&mut shared);
        Self {
            shared: Arc::new(shared),
        }
    }

    /// Sets the realm named in `WWW-Authenticate` challenges.
    #[must_use]
    pub fn realm(self, realm: impl Into<String>) -> Self {
        let realm = realm.into();
        self.with(|s| s.realm = realm)
    }

    /// Sets where keys are read from (default: the Bearer header).
    #[must_use]
    pub fn credentials(self, source: CredentialSource) -> Self {
        self.with(|s| s.source = source)
    }

    /// Throttles clients whose keys fail to verify (by client address, from axum's
    /// `ConnectInfo`): once a client has spent its budget of failures it gets 429 until it
    /// may retry, before any key is looked up, so guessing stays expensive.
    #[cfg(feature = "rate-limit")]
    #[cfg_attr(docsrs, doc(cfg(feature = "rate-limit")))]
    #[must_use]
    pub fn throttle_failures<L: crate::limit::Limiter + 'static>(
        self,
        throttle: Arc<crate::limit::FailureThrottle<L>>,
    ) -> Self {
        self.with(|s| s.failures = Some(throttle))
    }

    /// The manager.
    pub fn manager(&self) -> &Arc<KeyManager<S>> {
        &self.shared.manager
    }
}

impl<S, Svc> Layer<Svc> for KeywardLayer<S> {
    type Service = KeywardService<S, Svc>;

    fn layer(&self, inner: Svc) -> Self::Service {
        KeywardService {
            shared: Arc::clone(&self.shared),
            inner,
        }
    }
}

/// The service made by [`KeywardLayer`].
pub struct KeywardService<S, Svc> {
    shared: Arc<Shared<S>>,
    inner: Svc,
}

impl<S, Svc: Clone> Clone for KeywardService<S, Svc> {
    fn clone(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
            inner: self.inner.clone(),
        }
    }
}

impl<S, Svc> fmt::Debug for KeywardService<S, Svc> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeywardService")
            .field("realm", &self.shared.realm)
            .finish_non_exhaustive()
    }
}

/// The audit context of a request: client address and request id.
#[must_use]
pub fn request_context<B>(req: &Request<B>) -> RequestContext {
    let mut ctx = RequestContext::new();
    if let Some(ConnectInfo(addr)) = req.extensions().get::<ConnectInfo<SocketAddr>>() {
        ctx = ctx.client_addr(addr.ip());
    }
    if let Some(id) = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
    {
        ctx = ctx.request_id(id.chars().take(128).collect::<String>());
    }
    ctx
}

impl<S, Svc, B> Service<Request<B>> for KeywardService<S, Svc>
where
    S: KeyStore + 'static,
    Svc: Service<Request<B>, Response = Response> + Clone + Send + 'static,
    Svc::Future: Send,
    B: Send + 'static,
{
    type Response = Response;
    type Error = Svc::Error;
    type Future = BoxFuture<Result<Response, Svc::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let shared = Arc::clone(&self.shared);
        // The clone that was polled ready is the one to call.
        let clone = self.inner.clone();
        let mut inner = core::mem::replace(&mut self.inner, clone);
        Box::pin(async move {
            if let http::header::Entry::Occupied(mut entry) = req.headers_mut().entry(AUTHORIZATION)
            {
                for value in entry.iter_mut() {
                    value.set_sensitive(true);
                }
            }
            let ctx = request_context(&req);
            #[cfg(feature = "rate-limit")]
            if let (Some(gate), Some(ip)) = (&shared.failures, ctx.client_addr) {
                if let Some(retry_after) = gate.blocked(ip) {
                    return Ok(error_response(
                        &AuthError::RateLimited { retry_after },
                        &shared.realm,
                    ));
                }
            }
            let result = {
                let headers = req.headers();
                let token = shared
                    .source
                    .extract(|name| headers.get_all(name).iter().map(HeaderValue::as_bytes));
                match token {
                    Ok(token) => shared
                        .manager
                        .verify(token, &ctx)
                        .await
                        .map_err(AuthError::from),
                    Err(e) => Err(AuthError::from(e)),
                }
            };
            match result {
                Ok(verified) => {
                    req.extensions_mut().insert(verified);
                    inner.call(req).await
                }
                Err(e) => {
                    #[cfg(feature = "rate-limit")]
                    if let (Some(gate), Some(ip)) = (&shared.failures, ctx.client_addr) {
                        if matches!(
                            e,
                            AuthError::Verify(
                                crate::VerifyError::Invalid | crate::VerifyError::Malformed(_)
                            )
                        ) {
                            gate.record(ip).await;
                        }
                    }
                    Ok(error_response(&e, &shared.realm))
                }
            }
        })
    }
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
    Svc: Service<Request<B>, Response = Response> + Clone + Send + 'static,
    Svc::Future: Send,
    B: Send + 'static,
{
    type Response = Response;
    type Error = Svc::Error;
    type Future = BoxFuture<Result<Response, Svc::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let decision = match req.extensions().get::<Verified>() {
            None => Err(AuthError::Credentials(BearerError::Missing)),
            Some(v) => v.authorize(&self.scope, None).map_err(AuthError::from),
        };
        let clone = self.inner.clone();
        let mut inner = core::mem::replace(&mut self.inner, clone);
        Box::pin(async move {
            match decision {
                Ok(()) => inner.call(req).await,
                Err(e) => Ok(e.into_response()),
            }
        })
    }
}

#[cfg(feature = "rate-limit")]
pub use rate_limit::{RateLimit, RateLimitService, classify_by_method};

#[cfg(feature = "rate-limit")]
mod rate_limit {
    use super::{
        AuthError, BoxFuture, Context, Future, IntoResponse, Layer, Poll, Request, Response,
        Service,
    };
    use crate::limit::{Decision, Limiter, Subject};
    use crate::verified::Verified;
    use core::fmt;
    use http::HeaderValue;
    use std::sync::Arc;

    /// What [`KeywardLayer`](super::KeywardLayer) needs of a failure throttle, object-safe.
    pub(crate) trait FailureGate: Send + Sync {
        fn blocked(&self, client: std::net::IpAddr) -> Option<core::time::Duration>;
        fn record<'a>(
            &'a self,
            client: std::net::IpAddr,
        ) -> core::pin::Pin<Box<dyn Future<Output = ()> + Send + 'a>>;
    }

    impl<L: Limiter + 'static> FailureGate for crate::limit::FailureThrottle<L> {
        fn blocked(&self, client: std::net::IpAddr) -> Option<core::time::Duration> {
            crate::limit::FailureThrottle::blocked(self, client)
        }

        fn record<'a>(
            &'a self,
            client: std::net::IpAddr,
        ) -> core::pin::Pin<Box<dyn Future<Output = ()> + Send + 'a>> {
            Box::pin(async move {
                if let Err(e) = self.record_failure(client).await {
                    tracing::warn!(target: "keyward", error = %e, "could not count a failed verification");
                }
            })
        }
    }

    /// GET, HEAD and OPTIONS spend the `reads` limit; every other method `writes`.
    #[must_use]
    pub fn classify_by_method(method: &http::Method) -> Option<&'static str> {
        match *method {
            http::Method::GET | http::Method::HEAD | http::Method::OPTIONS => Some("reads"),
            _ => Some("writes"),
        }
    }

    /// A layer (inside [`KeywardLayer`](super::KeywardLayer)) that charges each request to
    /// its verified key's budget — only after the key verified, so forged keys cannot drain
    /// anyone's budget — and answers 429 with `Retry-After` when it is spent. Every answer
    /// carries `RateLimit-Limit`, `RateLimit-Remaining` and `RateLimit-Reset`. A limiter that
    /// cannot decide (and is configured to fail closed) gives 503.
    pub struct RateLimit<L> {
        limiter: Arc<L>,
        classify: fn(&http::Method) -> Option<&'static str>,
    }

    impl<L> Clone for RateLimit<L> {
        fn clone(&self) -> Self {
            Self {
                limiter: Arc::clone(&self.limiter),
                classify: self.classify,
            }
        }
    }

    impl<L> fmt::Debug for RateLimit<L> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.debug_struct("RateLimit").finish_non_exhaustive()
        }
    }

    impl<L: Limiter + 'static> RateLimit<L> {
        /// Charges one unit per request, of the limit named by [`classify_by_method`].
        pub fn new(limiter: Arc<L>) -> Self {
            Self {
                limiter,
                classify: classify_by_method,
            }
        }

        /// Chooses the limit per request method (`None`: not limited).
        #[must_use]
        pub fn classify(mut self, classify: fn(&http::Method) -> Option<&'static str>) -> Self {
            self.classify = classify;
            self
        }
    }

    impl<L, Svc> Layer<Svc> for RateLimit<L> {
        type Service = RateLimitService<L, Svc>;

        fn layer(&self, inner: Svc) -> Self::Service {
            RateLimitService {
                limiter: Arc::clone(&self.limiter),
                classify: self.classify,
                inner,
            }
        }
    }

    /// The service made by [`RateLimit`].
    pub struct RateLimitService<L, Svc> {
        limiter: Arc<L>,
        classify: fn(&http::Method) -> Option<&'static str>,
        inner: Svc,
    }

    impl<L, Svc: Clone> Clone for RateLimitService<L, Svc> {
        fn clone(&self) -> Self {
            Self {
                limiter: Arc::clone(&self.limiter),
                classify: self.classify,
                inner: self.inner.clone(),
            }
        }
    }

    impl<L, Svc> fmt::Debug for RateLimitService<L, Svc> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.debug_struct("RateLimitService").finish_non_exhaustive()
        }
    }

    fn add_headers(response: &mut Response, decision: &Decision) {
        for (name, value) in decision.headers() {
            response
                .headers_mut()
                .insert(name, HeaderValue::from(value));
        }
    }

    impl<L, Svc, B> Service<Request<B>> for RateLimitService<L, Svc>
    where
        L: Limiter + 'static,
        Svc: Service<Request<B>, Response = Response> + Clone + Send + 'static,
        Svc::Future: Send,
        B: Send + 'static,
    {
        type Response = Response;
        type Error = Svc::Error;
        type Future = BoxFuture<Result<Response, Svc::Error>>;

        fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            self.inner.poll_ready(cx)
        }

        fn call(&mut self, req: Request<B>) -> Self::Future {
            let limiter = Arc::clone(&self.limiter);
            let name = (self.classify)(req.method());
            let subject = req.extensions().get::<Verified>().map(Subject::key);
            let clone = self.inner.clone();
            let mut inner = core::mem::replace(&mut self.inner, clone);
            Box::pin(async move {
                let (Some(name), Some(subject)) = (name, subject) else {
                    return inner.call(req).await;
                };
                match limiter.check(&subject, name, 1).await {
                    Ok(decision @ Decision::Allowed { .. }) => {
                        let mut response = inner.call(req).await?;
                        add_headers(&mut response, &decision);
                        Ok(response)
                    }
                    Ok(decision) => {
                        let retry_after = decision.retry_after().unwrap_or_default();
                        let mut response = AuthError::RateLimited { retry_after }.into_response();
                        add_headers(&mut response, &decision);
                        Ok(response)
                    }
                    Err(e) => {
                        tracing::warn!(target: "keyward", error = %e, "rate limiter could not decide");
                        Ok(AuthError::Unavailable.into_response())
                    }
                }
            })
        }
    }
}
