//! Receiving secret-scanning alerts (feature `secret-scanning`): GitHub's secret scanning
//! partner programme and GitLab's leaked-credential notifications POST the tokens they
//! found in public places, signed with ECDSA P-256 / SHA-256. [`ScanningReceiver`] checks
//! the signature over the raw body, then hands the tokens to
//! [`KeyManager::revoke_leaked`](crate::KeyManager::revoke_leaked), which revokes the
//! genuine keys, and answers with the labels the scanner expects.
//!
//! It is framework-agnostic: give it the request's headers (anything implementing
//! [`Headers`], such as `http::HeaderMap` with the `axum` feature, or a slice of pairs) and
//! the body bytes, and send back the [`ScanningResponse`]'s status and JSON body.
//!
//! ```
//! use keyward::leak::scanning::{PublicKeys, ScanningOrigin, ScanningReceiver};
//! use keyward::{Hasher, KeyFormat, KeyManager, MemoryStore, Pepper, RequestContext};
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let manager = KeyManager::new(MemoryStore::new(), KeyFormat::new(["tak"])?, Hasher::fast(Pepper::random("k1")?));
//! // GitHub's key list (https://api.github.com/meta/public_keys/secret_scanning), here empty.
//! let keys = PublicKeys::from_json(br#"{"public_keys": []}"#)?;
//! let receiver = ScanningReceiver::new(manager, keys, ScanningOrigin::github());
//! let headers: [(&str, &[u8]); 0] = [];
//! let response = receiver.handle(&headers, b"[]", &RequestContext::new()).await;
//! assert_eq!(response.status, 401); // unsigned: nothing is looked at
//! # Ok(()) }
//! ```
//!
//! Public keys come from a [`PublicKeySource`]: [`PublicKeys`], a fixed list, or
//! [`CachedKeys`], which fetches the scanner's key list through the application's
//! [`KeyFetcher`] when a request names a key it does not know (keys rotate), at most once
//! per interval. The trait uses `impl Future + Send` (like [`KeyStore`](crate::KeyStore)),
//! so the receiver is generic over its key source rather than holding a trait object.

mod keys;
mod receiver;

pub use keys::{
    CachedKeys, KeyFetcher, KeyListError, KeySourceError, PublicKeySource, PublicKeys, ScanningKey,
    SignatureError,
};
pub use receiver::{
    DEFAULT_MAX_BODY, Headers, MAX_TOKEN_TYPE_LEN, ScanningError, ScanningOrigin, ScanningReceiver,
    ScanningResponse,
};
