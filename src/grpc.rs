//! gRPC (feature `tonic`): a tower layer for tonic servers that verifies the key sent as
//! `authorization: Bearer <key>` metadata, puts the [`Verified`] proof into the request's
//! extensions, and answers failures with gRPC statuses: `UNAUTHENTICATED` (no, malformed or
//! refused key), `PERMISSION_DENIED` (missing scope or resource), `RESOURCE_EXHAUSTED`
//! (rate limited) and `UNAVAILABLE` (store down; never authenticated).
//!
//! tonic's own interceptors are synchronous and cannot wait for the key store, so this is a
//! layer: `Server::builder().layer(GrpcAuthLayer::new(manager))`. Handlers read the proof
//! with [`verified`] and check scopes with [`authorize`].
//!
//! ```
//! use keyward::grpc::GrpcAuthLayer;
//! use keyward::{Hasher, KeyFormat, KeyManager, MemoryStore, Pepper};
//!
//! let manager = KeyManager::new(MemoryStore::new(), KeyFormat::new(["tak"])?, Hasher::fast(Pepper::random("k1")?));
//! let layer = GrpcAuthLayer::new(manager); // tonic::transport::Server::builder().layer(layer)
//! # let _ = layer;
//! # Ok::<(), keyward::Error>(())
//! ```

use tonic::Status;

use crate::audit::{Channel, RequestContext};
use crate::http::BearerError;
use crate::http::{AuthError, ErrorKind};
use crate::scope::{Resource, Scope};
use crate::verified::Verified;

pub use crate::tower::{AuthLayer, AuthService, Refusal, ResponseFuture};

/// A tower layer for tonic servers that verifies every call's key with a
/// [`KeyManager`](crate::KeyManager) and answers failures with gRPC statuses.
pub type GrpcAuthLayer<S> = AuthLayer<S, StatusRefusal>;

/// The service made by [`GrpcAuthLayer`].
pub type GrpcAuthService<S, Svc> = AuthService<S, Svc, StatusRefusal>;

/// Answers refusals with gRPC statuses ([`status`]) in an HTTP response of any body type.
#[derive(Debug, Clone, Copy, Default)]
#[non_exhaustive]
pub struct StatusRefusal;

impl<B: Default> Refusal<http::Response<B>> for StatusRefusal {
    fn refuse(error: &AuthError, _realm: &str) -> http::Response<B> {
        status(error).into_http()
    }

    fn context<R>(request: &http::Request<R>) -> RequestContext {
        crate::tower::request_id_context(request).channel(Channel::GRPC)
    }
}

/// The gRPC status for an authentication or authorization failure, from the class the
/// `http` module gives the error. The message never contains the key; a rate-limit status
/// carries `retry-after` metadata in seconds.
#[must_use]
pub fn status(error: &AuthError) -> Status {
    let message = error.public_message();
    match error.kind() {
        ErrorKind::Unauthorized | ErrorKind::InvalidRequest | ErrorKind::InvalidToken => {
            Status::unauthenticated(message)
        }
        ErrorKind::InsufficientScope | ErrorKind::NetworkNotAllowed => {
            Status::permission_denied(message)
        }
        ErrorKind::Unavailable => Status::unavailable(message),
        ErrorKind::RateLimited => {
            let mut status = Status::resource_exhausted(message);
            let secs = error.retry_after_secs().map(|s| s.to_string().parse());
            if let Some(Ok(v)) = secs {
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
