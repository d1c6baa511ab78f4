//! [`AuthService`]: read the credential, throttle, verify, insert the proof, call inner.

use core::fmt;
use core::marker::PhantomData;
use core::task::{Context, Poll};
use std::sync::Arc;

use http::header::{AUTHORIZATION, Entry, HOST};
use http::{HeaderMap, HeaderValue, Request};
use tower_service::Service;

use super::future::ResponseFuture;
use super::layer::Config;
use super::{Refusal, client_behind, take_ready};
use crate::http::AuthError;
use crate::http::{BearerError, CredentialSource, RequestParts, WorkspaceSource, admits_workspace};
use crate::manager::VerifyError;
use crate::store::KeyStore;

/// The service made by [`AuthLayer`](super::AuthLayer).
pub struct AuthService<S, Svc, P> {
    config: Arc<Config<S>>,
    inner: Svc,
    protocol: PhantomData<fn() -> P>,
}

impl<S, Svc, P> AuthService<S, Svc, P> {
    pub(crate) fn new(config: Arc<Config<S>>, inner: Svc) -> Self {
        Self {
            config,
            inner,
            protocol: PhantomData,
        }
    }
}

impl<S, Svc: Clone, P> Clone for AuthService<S, Svc, P> {
    fn clone(&self) -> Self {
        Self::new(Arc::clone(&self.config), self.inner.clone())
    }
}

impl<S, Svc, P> fmt::Debug for AuthService<S, Svc, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthService")
            .field("realm", &self.config.realm)
            .finish_non_exhaustive()
    }
}

/// The key in the request's headers, as `source` says where to find it.
fn credential<'h>(
    source: &CredentialSource,
    headers: &'h HeaderMap,
) -> Result<&'h str, BearerError> {
    source.extract(|name| headers.get_all(name).iter().map(HeaderValue::as_bytes))
}

/// The workspace `req` names, as `source` reads it.
fn workspace_of<B>(source: &WorkspaceSource, req: &Request<B>) -> Option<String> {
    let headers = req.headers();
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let host = headers
        .get(HOST)
        .and_then(|v| v.to_str().ok())
        .or_else(|| req.uri().authority().map(http::uri::Authority::as_str));
    source.resolve(&RequestParts::new(host, req.uri().path(), &header))
}

impl<S, Svc, P, B> Service<Request<B>> for AuthService<S, Svc, P>
where
    S: KeyStore + 'static,
    Svc: Service<Request<B>> + Clone + Send + 'static,
    Svc::Future: Send,
    Svc::Response: Send + 'static,
    P: Refusal<Svc::Response> + 'static,
    B: Send + 'static,
{
    type Response = Svc::Response;
    type Error = Svc::Error;
    type Future = ResponseFuture<Svc::Future, Svc::Response>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        if let Entry::Occupied(mut entry) = req.headers_mut().entry(AUTHORIZATION) {
            for value in entry.iter_mut() {
                value.set_sensitive(true);
            }
        }
        let mut ctx = P::context(&req);
        if let (Some(proxies), Some(peer)) = (&self.config.proxies, ctx.client_addr) {
            ctx.client_addr = client_behind(proxies, peer, req.headers());
        }
        if let Some(channel) = &self.config.channel {
            ctx.channel = Some(channel.clone());
        }
        // A blocked client is refused before any key is looked up, so that a correct guess
        // does not get through a block.
        if let Some(retry_after) = self.config.blocked(&ctx) {
            let error = AuthError::RateLimited { retry_after };
            return ResponseFuture::refused(P::refuse(&error, &self.config.realm));
        }
        if let Err(e) = credential(&self.config.source, req.headers()) {
            return ResponseFuture::refused(P::refuse(&e.into(), &self.config.realm));
        }
        let workspace = self
            .config
            .workspace
            .as_ref()
            .and_then(|source| workspace_of(source, &req));
        let config = Arc::clone(&self.config);
        let mut inner = take_ready(&mut self.inner);
        ResponseFuture::checking(async move {
            let verified = match credential(&config.source, req.headers()) {
                Ok(token) => config
                    .manager
                    .verify(token, &ctx)
                    .await
                    .map_err(AuthError::from)
                    .and_then(|proof| {
                        // Another workspace's key is answered as an unknown key.
                        if admits_workspace(&proof, workspace.as_deref()) {
                            Ok(proof)
                        } else {
                            Err(AuthError::Verify(VerifyError::Invalid))
                        }
                    }),
                Err(e) => Err(e.into()),
            };
            match verified {
                Ok(proof) => {
                    // The context the key was verified in (client address through any
                    // trusted proxies, request id, channel) goes along for handlers.
                    req.extensions_mut().insert(proof);
                    req.extensions_mut().insert(ctx);
                    Ok(inner.call(req))
                }
                Err(e) => {
                    config.record_failure(&ctx, &e).await;
                    Err(P::refuse(&e, &config.realm))
                }
            }
        })
    }
}
