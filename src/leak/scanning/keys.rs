//! The scanner's public keys: parsing its key list, verifying a signature, and where keys
//! come from (a fixed list, or a cache refreshed on an unknown identifier).

use core::fmt;
use core::future::Future;
use std::error::Error as StdError;
use std::sync::{Arc, Mutex, PoisonError};

use base64ct::{Base64, Encoding};
use p256::ecdsa::signature::Verifier;
use p256::ecdsa::{DerSignature, VerifyingKey};
use p256::pkcs8::DecodePublicKey;
use serde::Deserialize;
use time::{Duration, OffsetDateTime};

use crate::clock::{Clock, SystemClock};

/// The longest key identifier accepted, in bytes (GitHub's are 64 hex digits).
const MAX_IDENTIFIER_LEN: usize = 256;
/// The longest signature header accepted, in bytes (a DER P-256 signature has at most 72
/// bytes, 96 in base64).
const MAX_SIGNATURE_LEN: usize = 128;

/// One public key of a scanner: its identifier and an ECDSA P-256 key.
#[derive(Clone, PartialEq, Eq)]
pub struct ScanningKey {
    identifier: String,
    key: VerifyingKey,
    is_current: bool,
}

/// A signature did not verify, or is not a base64 ASN.1 DER ECDSA signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SignatureError {
    /// Not base64, too long, or not an ASN.1 DER ECDSA P-256 signature.
    #[error("signature is not a base64 ASN.1 DER ECDSA P-256 signature")]
    Malformed,
    /// Well formed, but not a signature of this body by this key.
    #[error("signature does not match the body")]
    Mismatch,
}

impl ScanningKey {
    /// A key from its identifier and its SubjectPublicKeyInfo PEM (`-----BEGIN PUBLIC
    /// KEY-----`), the form GitHub and GitLab publish.
    ///
    /// # Errors
    /// [`KeyListError::InvalidIdentifier`] for an empty, overlong or non-printable
    /// identifier, [`KeyListError::InvalidKey`] for anything but a P-256 public key.
    pub fn from_pem(
        identifier: impl Into<String>,
        pem: &str,
        is_current: bool,
    ) -> Result<Self, KeyListError> {
        let identifier = identifier.into();
        if !valid_identifier(identifier.as_bytes()) {
            return Err(KeyListError::InvalidIdentifier { index: 0 });
        }
        let key = VerifyingKey::from_public_key_pem(pem)
            .map_err(|_| KeyListError::InvalidKey { index: 0 })?;
        Ok(Self {
            identifier,
            key,
            is_current,
        })
    }

    /// The identifier requests name in their key-identifier header.
    #[must_use]
    pub fn identifier(&self) -> &str {
        &self.identifier
    }

    /// Whether the scanner marks this key as the one it signs with now. Keys that are not
    /// current still verify while they are listed.
    #[must_use]
    pub fn is_current(&self) -> bool {
        self.is_current
    }

    /// Verifies `signature` (base64 of an ASN.1 DER ECDSA P-256 / SHA-256 signature, as in
    /// the signature header) over `body`, the raw request bytes.
    ///
    /// # Errors
    /// [`SignatureError::Malformed`] or [`SignatureError::Mismatch`].
    pub fn verify(&self, body: &[u8], signature: &[u8]) -> Result<(), SignatureError> {
        if signature.len() > MAX_SIGNATURE_LEN {
            return Err(SignatureError::Malformed);
        }
        let mut buf = [0u8; MAX_SIGNATURE_LEN];
        let der = Base64::decode(signature, &mut buf).map_err(|_| SignatureError::Malformed)?;
        let signature = DerSignature::try_from(der).map_err(|_| SignatureError::Malformed)?;
        self.key
            .verify(body, &signature)
            .map_err(|_| SignatureError::Mismatch)
    }
}

impl fmt::Debug for ScanningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScanningKey")
            .field("identifier", &self.identifier)
            .field("is_current", &self.is_current)
            .finish_non_exhaustive()
    }
}

/// A key identifier as accepted from a header or a key list: 1 to 256 printable ASCII
/// characters.
pub(crate) fn valid_identifier(id: &[u8]) -> bool {
    !id.is_empty() && id.len() <= MAX_IDENTIFIER_LEN && id.iter().all(u8::is_ascii_graphic)
}

/// Why a public key list was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyListError {
    /// Not JSON of the shape `{"public_keys": [{"key_identifier", "key", "is_current"}]}`.
    #[error(
        "public key list is not JSON of the shape {{\"public_keys\": [{{\"key_identifier\", \"key\", \"is_current\"}}]}}"
    )]
    Malformed(#[source] Box<dyn StdError + Send + Sync>),
    /// More keys than [`PublicKeys::MAX_KEYS`].
    #[error("too many public keys (maximum {})", PublicKeys::MAX_KEYS)]
    TooMany,
    /// A key identifier is empty, longer than 256 bytes or not printable ASCII.
    #[error("public key {index}: identifier must have 1 to 256 printable ASCII characters")]
    InvalidIdentifier {
        /// Position in the list.
        index: usize,
    },
    /// A key is not an ECDSA P-256 public key in SubjectPublicKeyInfo PEM.
    #[error("public key {index} is not an ECDSA P-256 SubjectPublicKeyInfo PEM")]
    InvalidKey {
        /// Position in the list.
        index: usize,
    },
}

/// A fixed list of a scanner's public keys; also the simplest [`PublicKeySource`].
///
/// ```
/// let keys = keyward::leak::scanning::PublicKeys::from_json(br#"{"public_keys": [{
///     "key_identifier": "bcb53661c06b4728e59d897fb6165d5c9cda0fd9cdf9d09ead458168deb7518c",
///     "key": "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEYAGMWO8XgCamYKMJS6jc/qgvSlAd\nAjPuDPRcXU22YxgBrz+zoN19MzuRyW87qEt9/AmtoNP5GrobzUvQSyJFVw==\n-----END PUBLIC KEY-----\n",
///     "is_current": true
/// }]}"#)?;
/// assert_eq!(keys.len(), 1);
/// assert!(keys.get("bcb53661c06b4728e59d897fb6165d5c9cda0fd9cdf9d09ead458168deb7518c").is_some());
/// # Ok::<(), keyward::leak::scanning::KeyListError>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PublicKeys {
    keys: Vec<ScanningKey>,
}

#[derive(Deserialize)]
struct KeyList {
    public_keys: Vec<KeyEntry>,
}

#[derive(Deserialize)]
struct KeyEntry {
    key_identifier: String,
    key: String,
    #[serde(default)]
    is_current: bool,
}

impl PublicKeys {
    /// The most keys a list may hold.
    pub const MAX_KEYS: usize = 64;

    /// An empty list.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Parses a key list as GitHub and GitLab publish it:
    /// `{"public_keys": [{"key_identifier", "key", "is_current"}]}` (other fields are
    /// ignored; `is_current` may be missing). Every key must be a P-256 SPKI PEM key.
    ///
    /// # Errors
    /// [`KeyListError`] naming the first problem.
    pub fn from_json(json: &[u8]) -> Result<Self, KeyListError> {
        let list: KeyList =
            serde_json::from_slice(json).map_err(|e| KeyListError::Malformed(Box::new(e)))?;
        if list.public_keys.len() > Self::MAX_KEYS {
            return Err(KeyListError::TooMany);
        }
        let mut keys = Vec::with_capacity(list.public_keys.len());
        for (index, entry) in list.public_keys.into_iter().enumerate() {
            let key = ScanningKey::from_pem(entry.key_identifier, &entry.key, entry.is_current)
                .map_err(|e| match e {
                    KeyListError::InvalidIdentifier { .. } => {
                        KeyListError::InvalidIdentifier { index }
                    }
                    _ => KeyListError::InvalidKey { index },
                })?;
            keys.push(key);
        }
        Ok(Self { keys })
    }

    /// Adds a key (a later key with the same identifier is never consulted).
    ///
    /// # Errors
    /// [`KeyListError::TooMany`] when the list is full.
    pub fn push(&mut self, key: ScanningKey) -> Result<(), KeyListError> {
        if self.keys.len() >= Self::MAX_KEYS {
            return Err(KeyListError::TooMany);
        }
        self.keys.push(key);
        Ok(())
    }

    /// The key with this identifier.
    #[must_use]
    pub fn get(&self, identifier: &str) -> Option<&ScanningKey> {
        self.keys.iter().find(|k| k.identifier == identifier)
    }

    /// The keys, in list order.
    pub fn iter(&self) -> impl Iterator<Item = &ScanningKey> {
        self.keys.iter()
    }

    /// How many keys.
    #[must_use]
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether there are none.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

/// The key source could not answer (a fetch failed, or fetched an invalid list). The
/// receiver answers 503 so that the scanner retries.
#[derive(Debug, thiserror::Error)]
#[error("scanner public keys unavailable")]
pub struct KeySourceError(#[source] Box<dyn StdError + Send + Sync>);

impl KeySourceError {
    /// An error caused by `source`.
    pub fn new(source: impl Into<Box<dyn StdError + Send + Sync>>) -> Self {
        Self(source.into())
    }
}

/// Where the receiver finds the key a request names.
///
/// Implemented by [`PublicKeys`] (fixed), [`CachedKeys`] (refreshed on an unknown
/// identifier) and `Arc<T>`. The future is `Send`, so the receiver works in multi-threaded
/// runtimes; the receiver is generic over its source.
pub trait PublicKeySource: Send + Sync + 'static {
    /// The key with this identifier; `Ok(None)` when the source does not know it (after a
    /// refresh, if the source refreshes).
    fn key(
        &self,
        identifier: &str,
    ) -> impl Future<Output = Result<Option<ScanningKey>, KeySourceError>> + Send;
}

impl PublicKeySource for PublicKeys {
    async fn key(&self, identifier: &str) -> Result<Option<ScanningKey>, KeySourceError> {
        Ok(self.get(identifier).cloned())
    }
}

impl<T: PublicKeySource> PublicKeySource for Arc<T> {
    fn key(
        &self,
        identifier: &str,
    ) -> impl Future<Output = Result<Option<ScanningKey>, KeySourceError>> + Send {
        (**self).key(identifier)
    }
}

/// Fetches a scanner's current key list (the JSON body of, for GitHub,
/// `GET https://api.github.com/meta/public_keys/secret_scanning`). The application brings
/// its own HTTP client; a closure returning such a future is a fetcher too.
pub trait KeyFetcher: Send + Sync + 'static {
    /// The key list's bytes.
    fn fetch(
        &self,
    ) -> impl Future<Output = Result<Vec<u8>, Box<dyn StdError + Send + Sync>>> + Send;
}

impl<F, Fut> KeyFetcher for F
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Vec<u8>, Box<dyn StdError + Send + Sync>>> + Send,
{
    fn fetch(
        &self,
    ) -> impl Future<Output = Result<Vec<u8>, Box<dyn StdError + Send + Sync>>> + Send {
        self()
    }
}

/// A key source that fetches the scanner's key list when a request names an unknown key,
/// at most once per interval (default [`CachedKeys::DEFAULT_REFRESH_INTERVAL`]), so that
/// requests with made-up identifiers cannot make it hammer the scanner. Failed attempts
/// count too. A refresh replaces the whole list, so retired keys disappear.
///
/// ```
/// use keyward::leak::scanning::CachedKeys;
/// let keys = CachedKeys::new(|| async {
///     // The application's HTTP client fetches the scanner's key list here.
///     Ok::<_, Box<dyn std::error::Error + Send + Sync>>(br#"{"public_keys": []}"#.to_vec())
/// })
/// .with_refresh_interval(time::Duration::minutes(5));
/// # let _ = keys;
/// ```
pub struct CachedKeys<F> {
    fetcher: F,
    clock: Arc<dyn Clock>,
    interval: Duration,
    state: Mutex<CacheState>,
}

struct CacheState {
    keys: Arc<PublicKeys>,
    last_attempt: Option<OffsetDateTime>,
}

impl<F: KeyFetcher> CachedKeys<F> {
    /// The default minimum time between two fetches.
    pub const DEFAULT_REFRESH_INTERVAL: Duration = Duration::minutes(1);

    /// An empty cache that fetches through `fetcher` on the first request, using the system
    /// clock.
    pub fn new(fetcher: F) -> Self {
        Self {
            fetcher,
            clock: Arc::new(SystemClock),
            interval: Self::DEFAULT_REFRESH_INTERVAL,
            state: Mutex::new(CacheState {
                keys: Arc::new(PublicKeys::new()),
                last_attempt: None,
            }),
        }
    }

    /// Starts with `keys` (for example a list shipped with the application).
    #[must_use]
    pub fn with_keys(self, keys: PublicKeys) -> Self {
        self.lock().keys = Arc::new(keys);
        self
    }

    /// Sets the clock that paces refreshes (tests use [`FakeClock`](crate::clock::FakeClock); an
    /// application may pass the manager's clock).
    #[must_use]
    pub fn with_clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// Sets the minimum time between two fetches.
    #[must_use]
    pub fn with_refresh_interval(mut self, interval: Duration) -> Self {
        self.interval = interval;
        self
    }

    /// The keys known now.
    #[must_use]
    pub fn keys(&self) -> Arc<PublicKeys> {
        Arc::clone(&self.lock().keys)
    }

    /// Fetches the key list now if the interval allows; `Ok(false)` when it does not.
    ///
    /// # Errors
    /// [`KeySourceError`] when the fetch fails or the list is invalid; the known keys stay.
    pub async fn refresh(&self) -> Result<bool, KeySourceError> {
        {
            let mut state = self.lock();
            let now = self.clock.now();
            if state
                .last_attempt
                .is_some_and(|at| now - at < self.interval)
            {
                return Ok(false);
            }
            state.last_attempt = Some(now);
        }
        let bytes = self.fetcher.fetch().await.map_err(KeySourceError)?;
        let keys = PublicKeys::from_json(&bytes).map_err(KeySourceError::new)?;
        self.lock().keys = Arc::new(keys);
        Ok(true)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, CacheState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl<F: KeyFetcher> PublicKeySource for CachedKeys<F> {
    async fn key(&self, identifier: &str) -> Result<Option<ScanningKey>, KeySourceError> {
        if let Some(key) = self.keys().get(identifier) {
            return Ok(Some(key.clone()));
        }
        if !self.refresh().await? {
            return Ok(None);
        }
        Ok(self.keys().get(identifier).cloned())
    }
}

impl<F> fmt::Debug for CachedKeys<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        f.debug_struct("CachedKeys")
            .field("keys", &state.keys)
            .field("last_attempt", &state.last_attempt)
            .field("interval", &self.interval)
            .finish_non_exhaustive()
    }
}
