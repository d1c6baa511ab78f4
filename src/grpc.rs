//! gRPC (feature `tonic`): a tower layer for tonic servers that verifies the key sent as
//! `authorization: Bearer <key>` metadata, puts the [`Verified`] proof into the request's
//! extensions, and answers failures with gRPC statuses: `UNAUTHENTICATED` (no, malformed or
//! refused key), `PERMISSION_DENIED` (missing scope or resource), `RESOURCE_EXHAUSTED`
//! (rate limited) and `UNAVAILABLE` (store down; never authenticated).
//!
//! tonic's own interceptors are synchronous and cannot wait for the key store, so this is a
//! layer: `Server::builder().layer(GrpcAuthLayer::new(manager))`. Handlers read the proof
//! with [`verified`] and check scopes with [`authorize`].

use core::fmt;
use core::future::Future;
use core::pin::Pin;
use core::task::{Context, Poll};
use std::sync::Arc;

use http::{HeaderValue, Request, Response};
use tonic::Status;
use tower_layer::Layer;
use tower_service::Service;

use crate::audit::RequestContext;
use crate::bearer::{BearerError, CredentialSource};
use crate::http::AuthError;
use crate::manager::{KeyManager, VerifyError};
use crate::scope::{Resource, Scope};
use crate::store::KeyStore;
use crate::verified::Verified;

/// The gRPC status for an authentication or authorization failure. The message never
/// contains the key; a rate-limit status carries `retry-after` metadata in seconds.
#[must_use]
pub fn status(error: &AuthError) -> Status {
    let message = error.to_string();
    match error {
        AuthError::Credentials(_) | AuthError::Verify(VerifyError::Malformed(_)) => {
            Status::unauthenticated(message)
        }
        AuthError::Verify(VerifyError::Unavailable(_)) | AuthError::Unavailable => {
            Status::unavailable(AuthError::Unavailable.to_string())
        }
        AuthError::Verify(_) => Status::unauthenticated(message),
        AuthError::Denied(_) => Status::permission_denied(message),
        AuthError::RateLimited { retry_after } => {
            let mut status = Status::resource_exhausted(message);
            let secs = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
            if let Ok(v) = secs.to_string().parse() {
                status.metadata_mut().insert("retry-after", v);
            }
            status
        }
    }
}

impl From<AuthError> for Status {
    fn from(error: AuthError) -> Self {
        status(&error)
    }
}

/// The proof the layer put into a tonic request.
///
/// # Errors
/// `UNAUTHENTICATED` when the request did not pass through [`GrpcAuthLayer`].
pub fn verified<T>(request: &tonic::Request<T>) -> Result<&Verified, Status> {
    request
        .extensions()
        .get::<Verified>()
        .ok_or_else(|| status(&AuthError::Credentials(BearerError::Missing)))
}

/// The proof, if it holds `required` (and the resource, if any).
///
/// # Errors
/// `UNAUTHENTICATED` without a proof, `PERMISSION_DENIED` naming what is missing.
pub fn authorize<'r, T>(
    request: &'r tonic::Request<T>,
    required: &Scope,
    resource: Option<&Resource>,
) -> Result<&'r Verified, Status> {
    let proof = verified(request)?;
    proof
        .authorize(required, resource)
        .map_err(|d| status(&AuthError::Denied(d)))?;
    Ok(proof)
}

/// A tower layer for tonic servers that verifies every call's key with a [`KeyManager`].
pub struct GrpcAuthLayer<S> {
    manager: Arc<KeyManager<S>>,
    source: CredentialSource,
}

impl<S> Clone for GrpcAuthLayer<S> {
    fn clone(&self) -> Self {
        Self {
            manager: Arc::clone(&self.manager),
            source: self.source.clone(),
        }
    }
}

impl<S> fmt::Debug for GrpcAuthLayer<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GrpcAuthLayer")
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

impl<S: KeyStore + 'static> GrpcAuthLayer<S> {
    /// Reads `authorization: Bearer <key>` metadata.
    pub fn new(manager: impl Into<Arc<KeyManager<S>>>) -> Self {
        Self {
            manager: manager.into(),
            source: CredentialSource::Bearer,
        }
    }

    /// Reads the key from another metadata entry (such as `x-api-key`).
    #[must_use]
    pub fn credentials(mut self, source: CredentialSource) -> Self {
        self.source = source;
        self
    }
}

impl<S, Svc> Layer<Svc> for GrpcAuthLayer<S> {
    type Service = GrpcAuthService<S, Svc>;

    fn layer(&self, inner: Svc) -> Self::Service {
        GrpcAuthService {
            manager: Arc::clone(&self.manager),
            source: self.source.clone(),
            inner,
        }
    }
}

/// The service made by [`GrpcAuthLayer`].
pub struct GrpcAuthService<S, Svc> {
    manager: Arc<KeyManager<S>>,
    source: CredentialSource,
    inner: Svc,
}

impl<S, Svc: Clone> Clone for GrpcAuthService<S, Svc> {
    fn clone(&self) -> Self {
        Self {
            manager: Arc::clone(&self.manager),
            source: self.source.clone(),
            inner: self.inner.clone(),
        }
    }
}

impl<S, Svc> fmt::Debug for GrpcAuthService<S, Svc> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GrpcAuthService").finish_non_exhaustive()
    }
}

impl<S, Svc, B, ResBody> Service<Request<B>> for GrpcAuthService<S, Svc>
where
    S: KeyStore + 'static,
    Svc: Service<Request<B>, Response = Response<ResBody>> + Clone + Send + 'static,
    Svc::Future: Send,
    B: Send + 'static,
    ResBody: Default + Send + 'static,
{
    type Response = Response<ResBody>;
    type Error = Svc::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Svc::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let manager = Arc::clone(&self.manager);
        let source = self.source.clone();
        let clone = self.inner.clone();
        let mut inner = core::mem::replace(&mut self.inner, clone);
        Box::pin(async move {
            if let http::header::Entry::Occupied(mut entry) =
                req.headers_mut().entry(http::header::AUTHORIZATION)
            {
                for value in entry.iter_mut() {
                    value.set_sensitive(true);
                }
            }
            let mut ctx = RequestContext::new();
            if let Some(id) = req
                .headers()
                .get("x-request-id")
                .and_then(|v| v.to_str().ok())
            {
                ctx = ctx.request_id(id.chars().take(128).collect::<String>());
            }
            let result = {
                let headers = req.headers();
                match source.extract(|name| headers.get_all(name).iter().map(HeaderValue::as_bytes))
                {
                    Ok(token) => manager.verify(token, &ctx).await.map_err(AuthError::from),
                    Err(e) => Err(AuthError::from(e)),
                }
            };
            match result {
                Ok(proof) => {
                    req.extensions_mut().insert(proof);
                    inner.call(req).await
                }
                Err(e) => Ok(status(&e).into_http()),
            }
        })
    }
}
