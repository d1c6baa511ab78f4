//! [`AuthLayer`]: the configuration of the authentication core.

use core::fmt;
use core::marker::PhantomData;
use std::sync::Arc;

use tower_layer::Layer;

use super::service::AuthService;
use crate::audit::{Channel, RequestContext};
use crate::http::AuthError;
use crate::http::{CredentialSource, WorkspaceSource};
use crate::manager::KeyManager;
use crate::network::TrustedProxies;
use crate::store::KeyStore;

/// The realm named in challenges unless the layer sets another.
pub(crate) const DEFAULT_REALM: &str = "api";

/// A tower [`Layer`] that verifies the key of every request with a [`KeyManager`].
///
/// On success the [`Verified`](crate::Verified) proof goes into the request's extensions,
/// and so does the [`RequestContext`] it was verified in (client address, through any
/// [trusted proxies](AuthLayer::trusted_proxies), request id, channel), for handlers that
/// emit audit events of their own;
/// on failure the request never reaches the inner service and the client gets the
/// protocol's refusal (`P`, a [`Refusal`](super::Refusal)). The `Authorization` header is
/// marked sensitive so that tower-http's and hyper's logging leave it out.
///
/// Use it as `keyward::axum::KeywardLayer` (RFC 6750 HTTP answers) or
/// `keyward::grpc::GrpcAuthLayer` (gRPC statuses).
pub struct AuthLayer<S, P> {
    config: Arc<Config<S>>,
    protocol: PhantomData<fn() -> P>,
}

/// What every service made by one layer shares.
pub(crate) struct Config<S> {
    pub(crate) manager: Arc<KeyManager<S>>,
    pub(crate) realm: String,
    pub(crate) source: CredentialSource,
    pub(crate) workspace: Option<WorkspaceSource>,
    /// Proxies whose `X-Forwarded-For` is believed; `None` ignores the header.
    pub(crate) proxies: Option<TrustedProxies>,
    /// Overrides the channel of the protocol's request context.
    pub(crate) channel: Option<Channel>,
    #[cfg(feature = "rate-limit")]
    failures: Option<Arc<dyn FailureGate>>,
}

impl<S> Clone for Config<S> {
    fn clone(&self) -> Self {
        Self {
            manager: Arc::clone(&self.manager),
            realm: self.realm.clone(),
            source: self.source.clone(),
            workspace: self.workspace.clone(),
            proxies: self.proxies.clone(),
            channel: self.channel.clone(),
            #[cfg(feature = "rate-limit")]
            failures: self.failures.clone(),
        }
    }
}

impl<S, P> Clone for AuthLayer<S, P> {
    fn clone(&self) -> Self {
        Self {
            config: Arc::clone(&self.config),
            protocol: PhantomData,
        }
    }
}

impl<S, P> fmt::Debug for AuthLayer<S, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthLayer")
            .field("realm", &self.config.realm)
            .field("source", &self.config.source)
            .finish_non_exhaustive()
    }
}

impl<S: KeyStore + 'static, P> AuthLayer<S, P> {
    /// A layer over `manager`, reading `Authorization: Bearer` with realm `api`.
    pub fn new(manager: impl Into<Arc<KeyManager<S>>>) -> Self {
        Self {
            config: Arc::new(Config {
                manager: manager.into(),
                realm: DEFAULT_REALM.to_owned(),
                source: CredentialSource::Bearer,
                workspace: None,
                proxies: None,
                channel: None,
                #[cfg(feature = "rate-limit")]
                failures: None,
            }),
            protocol: PhantomData,
        }
    }

    fn with(self, f: impl FnOnce(&mut Config<S>)) -> Self {
        let mut config = Config::clone(&self.config);
        f(&mut config);
        Self {
            config: Arc::new(config),
            protocol: PhantomData,
        }
    }

    /// Sets the realm named in `WWW-Authenticate` challenges (gRPC statuses name none).
    #[must_use]
    pub fn realm(self, realm: impl Into<String>) -> Self {
        let realm = realm.into();
        self.with(|c| c.realm = realm)
    }

    /// Sets where keys are read from (default: the Bearer header, or `authorization`
    /// metadata for gRPC), such as `CredentialSource::Header("x-api-key".into())`.
    #[must_use]
    pub fn credentials(self, source: CredentialSource) -> Self {
        self.with(|c| c.source = source)
    }

    /// Binds keys to the workspace the request names (see [`WorkspaceSource`]): a key whose
    /// tenant is another workspace is refused exactly as an unknown key (401
    /// `invalid_token`, gRPC `UNAUTHENTICATED`). A request naming no workspace, and a key
    /// without a tenant, are not bound.
    ///
    /// The host is the `Host` header, or the URI's authority (HTTP/2 and gRPC).
    #[must_use]
    pub fn workspace(self, source: WorkspaceSource) -> Self {
        self.with(|c| c.workspace = Some(source))
    }

    /// Believes `X-Forwarded-For` from these proxies: when the connection's peer is one of
    /// them, the client address (audit events, IP allowlists, the failure throttle) is the
    /// first address of the header, read from the right, that is not a trusted proxy (see
    /// [`TrustedProxies::client_addr`]); when that hop cannot be read the client is
    /// unknown, so a key with an IP allowlist is refused. Without this, and from any other
    /// peer, the header is ignored: anyone can send one. Name proxies only: a client inside
    /// a trusted network can name any address.
    ///
    /// ```
    /// # #[cfg(feature = "axum")] {
    /// use keyward::axum::KeywardLayer;
    /// use keyward::network::TrustedProxies;
    /// # let manager = keyward::KeyManager::new(
    /// #     keyward::MemoryStore::new(),
    /// #     keyward::KeyFormat::new(["tak"]).unwrap(),
    /// #     keyward::Hasher::fast(keyward::Pepper::new("k1", [7; 32]).unwrap()),
    /// # );
    /// // The load balancers live in 10.0.0.0/8.
    /// let layer = KeywardLayer::new(manager)
    ///     .trusted_proxies(TrustedProxies::new(["10.0.0.0/8"]).expect("valid networks"));
    /// # }
    /// ```
    #[must_use]
    pub fn trusted_proxies(self, proxies: TrustedProxies) -> Self {
        self.with(|c| c.proxies = Some(proxies))
    }

    /// Sets the channel that the audit events of these requests name, instead of the
    /// protocol's own (`http` for `keyward::axum`, `grpc` for `keyward::grpc`): an MCP
    /// endpoint served over axum says [`Channel::MCP`].
    #[must_use]
    pub fn channel(self, channel: Channel) -> Self {
        self.with(|c| c.channel = Some(channel))
    }

    /// Throttles clients whose keys fail to verify, by the client address the protocol
    /// reports (see `keyward::axum::KeywardLayer::throttle_failures`).
    #[cfg(all(feature = "axum", feature = "rate-limit"))]
    pub(crate) fn with_failures<L: crate::limit::Limiter + 'static>(
        self,
        throttle: Arc<crate::limit::FailureThrottle<L>>,
    ) -> Self {
        self.with(|c| c.failures = Some(throttle))
    }

    /// The manager.
    pub fn manager(&self) -> &Arc<KeyManager<S>> {
        &self.config.manager
    }
}

impl<S, P, Svc> Layer<Svc> for AuthLayer<S, P> {
    type Service = AuthService<S, Svc, P>;

    fn layer(&self, inner: Svc) -> Self::Service {
        AuthService::new(Arc::clone(&self.config), inner)
    }
}

impl<S> Config<S> {
    /// How long the request's client stays blocked by the failure throttle, if it is.
    #[cfg_attr(not(feature = "rate-limit"), allow(clippy::unused_self))]
    pub(crate) fn blocked(&self, ctx: &RequestContext) -> Option<core::time::Duration> {
        #[cfg(feature = "rate-limit")]
        if let (Some(gate), Some(ip)) = (&self.failures, ctx.client_addr) {
            return gate.blocked(ip);
        }
        let _ = ctx;
        None
    }

    /// Charges a failed verification to the request's client when it looks like a guess
    /// (an unknown or malformed key).
    pub(crate) async fn record_failure(&self, ctx: &RequestContext, error: &AuthError) {
        #[cfg(feature = "rate-limit")]
        if let (Some(gate), Some(ip)) = (&self.failures, ctx.client_addr)
            && is_guess(error)
        {
            gate.record(ip).await;
        }
        let _ = (ctx, error);
    }
}

/// Whether a failure looks like a guess: an unknown or malformed key (not a revoked or
/// expired one, nor an outage).
#[cfg(feature = "rate-limit")]
fn is_guess(error: &AuthError) -> bool {
    use crate::manager::VerifyError;
    matches!(
        error,
        AuthError::Verify(VerifyError::Invalid | VerifyError::Malformed(_))
    )
}

/// What [`AuthLayer`] needs of a failure throttle, object-safe (any limiter behind it).
#[cfg(feature = "rate-limit")]
trait FailureGate: Send + Sync {
    fn blocked(&self, client: std::net::IpAddr) -> Option<core::time::Duration>;
    fn record<'a>(
        &'a self,
        client: std::net::IpAddr,
    ) -> core::pin::Pin<Box<dyn Future<Output = ()> + Send + 'a>>;
}

#[cfg(feature = "rate-limit")]
impl<L: crate::limit::Limiter + 'static> FailureGate for crate::limit::FailureThrottle<L> {
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
