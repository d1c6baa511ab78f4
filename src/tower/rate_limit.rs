//! [`RateLimit`]: charges each verified request to its key's budget (features `axum` and
//! `rate-limit`), with `RateLimit-*` headers on every answer.

use core::fmt;
use core::future::Future;
use core::pin::Pin;
use core::task::{Context, Poll, ready};
use std::sync::Arc;

use axum::response::Response;
use http::{Method, Request};
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use super::DEFAULT_REALM;
use super::future::ResponseFuture;
use super::take_ready;
use crate::http::{AuthError, ErrorResponse, insert_rate_limit_headers};
use crate::limit::{Decision, Limiter, Subject};
use crate::verified::Verified;

/// GET, HEAD and OPTIONS spend the `reads` limit; every other method `writes`.
#[must_use]
pub fn classify_by_method(method: &Method) -> Option<&'static str> {
    match *method {
        Method::GET | Method::HEAD | Method::OPTIONS => Some("reads"),
        _ => Some("writes"),
    }
}

/// The limit a request spends, put into its extensions by a layer that knows more than the
/// method (such as an MCP endpoint, where only a `tools/call` of a writing tool is a
/// write): [`RateLimit`] charges this limit instead of asking its classifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LimitClass(pub &'static str);

/// A layer (inside `keyward::axum::KeywardLayer`) that charges each request to its
/// verified key's budget — only after the key verified, so forged keys cannot drain
/// anyone's budget — and answers 429 with `Retry-After` when it is spent. Every answer
/// carries `RateLimit-Limit`, `RateLimit-Remaining` and `RateLimit-Reset`. A limiter that
/// cannot decide (and is configured to fail closed) gives 503.
pub struct RateLimit<L> {
    limiter: Arc<L>,
    classify: fn(&Method) -> Option<&'static str>,
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

    /// Chooses the limit per request method (`None`: not limited), unless the request
    /// carries a [`LimitClass`].
    #[must_use]
    pub fn classify(mut self, classify: fn(&Method) -> Option<&'static str>) -> Self {
        self.classify = classify;
        self
    }
}

impl<L, Svc> Layer<Svc> for RateLimit<L> {
    type Service = RateLimitService<L, Svc>;

    fn layer(&self, inner: Svc) -> Self::Service {
        RateLimitService {
            layer: self.clone(),
            inner,
        }
    }
}

/// The service made by [`RateLimit`].
pub struct RateLimitService<L, Svc> {
    layer: RateLimit<L>,
    inner: Svc,
}

impl<L, Svc: Clone> Clone for RateLimitService<L, Svc> {
    fn clone(&self) -> Self {
        Self {
            layer: self.layer.clone(),
            inner: self.inner.clone(),
        }
    }
}

impl<L, Svc> fmt::Debug for RateLimitService<L, Svc> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimitService").finish_non_exhaustive()
    }
}

pin_project! {
    /// The inner service's response future; adds the `RateLimit-*` headers of the charge
    /// (if the request was charged) to its response.
    pub struct ChargedFuture<F> {
        #[pin]
        future: F,
        decision: Option<Decision>,
    }
}

impl<F, E> Future for ChargedFuture<F>
where
    F: Future<Output = Result<Response, E>>,
{
    type Output = Result<Response, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut response = ready!(this.future.poll(cx))?;
        if let Some(decision) = this.decision {
            insert_rate_limit_headers(response.headers_mut(), decision);
        }
        Poll::Ready(Ok(response))
    }
}

impl<F> fmt::Debug for ChargedFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChargedFuture")
            .field("decision", &self.decision)
            .finish_non_exhaustive()
    }
}

fn refusal(error: &AuthError) -> Response {
    ErrorResponse::new(error, DEFAULT_REALM).to_http()
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
    type Future = ResponseFuture<ChargedFuture<Svc::Future>, Response>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let name = match req.extensions().get::<LimitClass>() {
            Some(LimitClass(name)) => Some(*name),
            None => (self.layer.classify)(req.method()),
        };
        let subject = req.extensions().get::<Verified>().map(Subject::key);
        let (Some(name), Some(subject)) = (name, subject) else {
            return ResponseFuture::calling(ChargedFuture {
                future: self.inner.call(req),
                decision: None,
            });
        };
        let limiter = Arc::clone(&self.layer.limiter);
        let mut inner = take_ready(&mut self.inner);
        ResponseFuture::checking(async move {
            match limiter.check(&subject, name, 1).await {
                Ok(decision @ Decision::Allowed { .. }) => Ok(ChargedFuture {
                    future: inner.call(req),
                    decision: Some(decision),
                }),
                Ok(decision) => {
                    let retry_after = decision.retry_after().unwrap_or_default();
                    let mut response = refusal(&AuthError::RateLimited { retry_after });
                    insert_rate_limit_headers(response.headers_mut(), &decision);
                    Err(response)
                }
                Err(e) => {
                    tracing::warn!(target: "keyward", error = %e, "rate limiter could not decide");
                    Err(refusal(&AuthError::from(e)))
                }
            }
        })
    }
}
