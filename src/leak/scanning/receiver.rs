//! The framework-agnostic receiver: body limit, signature headers, signature, body, then
//! [`KeyManager::revoke_leaked`]. The `http` module maps every refusal to its status and body.

use std::borrow::Cow;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::keys::{KeySourceError, PublicKeySource, SignatureError, valid_identifier};
use crate::audit::RequestContext;
use crate::http::ErrorResponse;
use crate::leak::{LeakError, LeakReport, LeakVerdict};
use crate::manager::KeyManager;
use crate::store::KeyStore;

/// The default limit on the request body: 1 MiB.
pub const DEFAULT_MAX_BODY: usize = 1024 * 1024;

/// Who sends the alerts: the names of its two headers, and where it publishes its keys.
///
/// ```
/// use keyward::leak::scanning::ScanningOrigin;
/// let github = ScanningOrigin::github();
/// assert_eq!(github.signature_header(), "Github-Public-Key-Signature");
/// let mine = ScanningOrigin::custom("acme-scanner", "X-Acme-Key-Id", "X-Acme-Signature");
/// assert_eq!(mine.name(), "acme-scanner");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanningOrigin {
    name: Cow<'static, str>,
    key_identifier_header: Cow<'static, str>,
    signature_header: Cow<'static, str>,
    keys_url: Option<Cow<'static, str>>,
}

impl ScanningOrigin {
    /// GitHub's secret scanning partner programme: headers `Github-Public-Key-Identifier`
    /// and `Github-Public-Key-Signature`, keys at
    /// `https://api.github.com/meta/public_keys/secret_scanning`.
    #[must_use]
    pub const fn github() -> Self {
        Self {
            name: Cow::Borrowed("github"),
            key_identifier_header: Cow::Borrowed("Github-Public-Key-Identifier"),
            signature_header: Cow::Borrowed("Github-Public-Key-Signature"),
            keys_url: Some(Cow::Borrowed(
                "https://api.github.com/meta/public_keys/secret_scanning",
            )),
        }
    }

    /// GitLab's leaked-credential notifications: headers `Gitlab-Public-Key-Identifier` and
    /// `Gitlab-Public-Key-Signature`; GitLab gives its key endpoint on request, so there is
    /// no default URL. GitLab's reports have no `source`.
    #[must_use]
    pub const fn gitlab() -> Self {
        Self {
            name: Cow::Borrowed("gitlab"),
            key_identifier_header: Cow::Borrowed("Gitlab-Public-Key-Identifier"),
            signature_header: Cow::Borrowed("Gitlab-Public-Key-Signature"),
            keys_url: None,
        }
    }

    /// Another scanner using the same protocol with its own header names.
    #[must_use]
    pub fn custom(
        name: impl Into<String>,
        key_identifier_header: impl Into<String>,
        signature_header: impl Into<String>,
    ) -> Self {
        Self {
            name: Cow::Owned(name.into()),
            key_identifier_header: Cow::Owned(key_identifier_header.into()),
            signature_header: Cow::Owned(signature_header.into()),
            keys_url: None,
        }
    }

    /// Sets the URL of the scanner's key list (for the application's [`KeyFetcher`]).
    ///
    /// [`KeyFetcher`]: super::KeyFetcher
    #[must_use]
    pub fn with_keys_url(mut self, url: impl Into<String>) -> Self {
        self.keys_url = Some(Cow::Owned(url.into()));
        self
    }

    /// The scanner's name (`github`, `gitlab`, or the custom one), recorded in audit events.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The header naming the key that signed the request.
    #[must_use]
    pub fn key_identifier_header(&self) -> &str {
        &self.key_identifier_header
    }

    /// The header carrying the base64 signature.
    #[must_use]
    pub fn signature_header(&self) -> &str {
        &self.signature_header
    }

    /// Where the scanner publishes its key list, when known.
    #[must_use]
    pub fn keys_url(&self) -> Option<&str> {
        self.keys_url.as_deref()
    }
}

/// Request headers, as the receiver reads them: every value of a header, found by name
/// without regard to case. Implemented for slices, arrays and vectors of `(name, value)`
/// pairs, and, with the `axum` feature, for `http::HeaderMap`.
pub trait Headers {
    /// Every value of header `name` (compared ignoring ASCII case), in order.
    fn get_all<'a>(&'a self, name: &str) -> impl Iterator<Item = &'a [u8]>;
}

impl<K: AsRef<str>, V: AsRef<[u8]>> Headers for [(K, V)] {
    fn get_all<'a>(&'a self, name: &str) -> impl Iterator<Item = &'a [u8]> {
        self.iter()
            .filter(move |(k, _)| k.as_ref().eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_ref())
    }
}

impl<K: AsRef<str>, V: AsRef<[u8]>, const N: usize> Headers for [(K, V); N] {
    fn get_all<'a>(&'a self, name: &str) -> impl Iterator<Item = &'a [u8]> {
        self.as_slice().get_all(name)
    }
}

impl<K: AsRef<str>, V: AsRef<[u8]>> Headers for Vec<(K, V)> {
    fn get_all<'a>(&'a self, name: &str) -> impl Iterator<Item = &'a [u8]> {
        self.as_slice().get_all(name)
    }
}

#[cfg(feature = "axum")]
#[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
impl Headers for http::HeaderMap {
    fn get_all<'a>(&'a self, name: &str) -> impl Iterator<Item = &'a [u8]> {
        // An invalid name matches nothing (`HeaderMap::get_all` would panic on it).
        let name = http::HeaderName::from_bytes(name.as_bytes()).ok();
        name.into_iter()
            .flat_map(move |n| self.get_all(n).into_iter())
            .map(http::HeaderValue::as_bytes)
    }
}

/// Why a request was refused; [`ScanningError::status`] (in the `http` module) maps it to HTTP. Messages never
/// contain a token or a signature.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ScanningError {
    /// The body is over the limit.
    #[error("request body too large (maximum {limit} bytes)")]
    BodyTooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// The key-identifier or signature header is missing, repeated or malformed.
    #[error("missing, repeated or malformed {header} header")]
    BadHeader {
        /// The header's name.
        header: String,
    },
    /// The key source does not know the key (after one refresh attempt).
    #[error("unknown public key identifier")]
    UnknownKey,
    /// The signature is malformed or does not match the body.
    #[error(transparent)]
    Signature(#[from] SignatureError),
    /// The key source could not answer.
    #[error(transparent)]
    KeySource(#[from] KeySourceError),
    /// The signed body is not a JSON array of `{"token", "type", "url", "source"}`, or a
    /// `type` is not an identifier of 1 to [`MAX_TOKEN_TYPE_LEN`] characters `A-Z`, `a-z`,
    /// `0-9`, `_`, `-`, `.`, or is itself a key of the manager's format (the type is echoed
    /// in the answer and kept in audit events).
    #[error(
        "request body is not a JSON array of {{\"token\", \"type\", \"url\", \"source\"}} objects"
    )]
    MalformedBody,
    /// The key store failed (fail closed: the scanner retries).
    #[error(transparent)]
    Leak(#[from] LeakError),
}

/// What to answer: a status and a JSON body (`Content-Type: application/json`), plus what
/// happened, for the application's logs and owner notifications.
#[derive(Debug)]
#[non_exhaustive]
pub struct ScanningResponse {
    /// 200, 400, 401, 413 or 503.
    pub status: u16,
    /// For 200, a JSON array of `{"token_hash", "token_type", "label"}`, one per reported
    /// token in order (`label` is `true_positive` or `false_positive`; never the token); for
    /// errors `{"error": "<code>", "message": "<text>"}`.
    pub body: Vec<u8>,
    /// For 200, the verdicts (true positives carry the revoked key's record, to tell its
    /// owner).
    pub verdicts: Vec<LeakVerdict>,
    /// For errors, why.
    pub error: Option<ScanningError>,
}

impl ScanningResponse {
    fn error(error: ScanningError) -> Self {
        let answer = ErrorResponse::from(&error);
        Self {
            status: answer.status,
            body: answer.body().into_bytes(),
            verdicts: Vec::new(),
            error: Some(error),
        }
    }

    /// The `Content-Type` of every body.
    pub const CONTENT_TYPE: &'static str = "application/json";
}

/// The longest `type` a scanner may report (GitHub's are identifiers such as
/// `keyward_api_key`): shorter than a key of the default format, and a type that is a key
/// of the manager's format is refused too, so an answer that echoes the type (and the
/// audit event that keeps it) does not carry a key.
pub const MAX_TOKEN_TYPE_LEN: usize = 48;

/// Whether a reported `type` is an identifier that may be echoed and kept.
fn valid_token_type(token_type: &str) -> bool {
    (1..=MAX_TOKEN_TYPE_LEN).contains(&token_type.len())
        && token_type
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

#[derive(Serialize)]
struct LabelBody<'a> {
    token_hash: &'a str,
    token_type: &'a str,
    label: &'a str,
}

#[derive(Deserialize)]
struct Match {
    token: String,
    #[serde(rename = "type")]
    token_type: String,
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    source: Option<String>,
}

/// Receives a scanner's alerts for one [`KeyManager`].
///
/// Order of checks: body size (413), headers (401), key lookup (401, or 503 if the key
/// source fails), signature over the raw body bytes (401), and only then the JSON (400).
/// Nothing is parsed or revoked before the signature verified.
pub struct ScanningReceiver<S, K> {
    manager: Arc<KeyManager<S>>,
    keys: K,
    origin: ScanningOrigin,
    max_body: usize,
}

impl<S: KeyStore, K: PublicKeySource> ScanningReceiver<S, K> {
    /// A receiver for `origin`'s alerts, with keys from `keys`, revoking through `manager`.
    pub fn new(manager: impl Into<Arc<KeyManager<S>>>, keys: K, origin: ScanningOrigin) -> Self {
        Self {
            manager: manager.into(),
            keys,
            origin,
            max_body: DEFAULT_MAX_BODY,
        }
    }

    /// Sets the body limit in bytes (default [`DEFAULT_MAX_BODY`]). A framework should
    /// stop reading at the same limit.
    #[must_use]
    pub fn with_max_body(mut self, bytes: usize) -> Self {
        self.max_body = bytes;
        self
    }

    /// The body limit in bytes.
    #[must_use]
    pub fn max_body(&self) -> usize {
        self.max_body
    }

    /// The origin.
    #[must_use]
    pub fn origin(&self) -> &ScanningOrigin {
        &self.origin
    }

    /// The key source.
    #[must_use]
    pub fn keys(&self) -> &K {
        &self.keys
    }

    /// The manager.
    #[must_use]
    pub fn manager(&self) -> &Arc<KeyManager<S>> {
        &self.manager
    }

    /// Handles one request: `headers` and the raw `body` bytes as received. Never panics;
    /// every failure is a status in the response.
    pub async fn handle<H: Headers + ?Sized>(
        &self,
        headers: &H,
        body: &[u8],
        ctx: &RequestContext,
    ) -> ScanningResponse {
        match self.process(headers, body, ctx).await {
            Ok(verdicts) => {
                let labels: Vec<LabelBody<'_>> = verdicts
                    .iter()
                    .map(|v| LabelBody {
                        token_hash: &v.token_hash,
                        token_type: &v.token_type,
                        label: v.label.as_str(),
                    })
                    .collect();
                match serde_json::to_vec(&labels) {
                    Ok(body) => ScanningResponse {
                        status: 200,
                        body,
                        verdicts,
                        error: None,
                    },
                    // Strings always serialize; answer 503 rather than panic if not.
                    Err(e) => {
                        ScanningResponse::error(ScanningError::KeySource(KeySourceError::new(e)))
                    }
                }
            }
            Err(e) => {
                tracing::warn!(
                    target: "keyward::scanning",
                    scanner = %self.origin.name,
                    status = e.status(),
                    error = %e,
                    "secret-scanning request refused"
                );
                ScanningResponse::error(e)
            }
        }
    }

    async fn process<H: Headers + ?Sized>(
        &self,
        headers: &H,
        body: &[u8],
        ctx: &RequestContext,
    ) -> Result<Vec<LeakVerdict>, ScanningError> {
        if body.len() > self.max_body {
            return Err(ScanningError::BodyTooLarge {
                limit: self.max_body,
            });
        }
        let identifier = single(headers, &self.origin.key_identifier_header)
            .filter(|v| valid_identifier(v))
            .and_then(|v| core::str::from_utf8(v).ok())
            .ok_or_else(|| ScanningError::BadHeader {
                header: self.origin.key_identifier_header.to_string(),
            })?;
        let signature = single(headers, &self.origin.signature_header)
            .filter(|v| !v.is_empty())
            .ok_or_else(|| ScanningError::BadHeader {
                header: self.origin.signature_header.to_string(),
            })?;
        let key = self
            .keys
            .key(identifier)
            .await?
            .ok_or(ScanningError::UnknownKey)?;
        key.verify(body, signature)?;
        let matches: Vec<Match> =
            serde_json::from_slice(body).map_err(|_| ScanningError::MalformedBody)?;
        // The type is echoed in the answer and goes into audit events: only a short
        // identifier, never room for a key.
        let (format, legacy) = (self.manager.format(), &self.manager.legacy);
        if !matches.iter().all(|m| {
            valid_token_type(&m.token_type)
                && format.parse(&m.token_type).is_err()
                && legacy.parse(&m.token_type).is_err()
        }) {
            return Err(ScanningError::MalformedBody);
        }
        let reports: Vec<LeakReport> = matches
            .into_iter()
            .map(|m| {
                let mut report = LeakReport::new(m.token, m.token_type);
                report.url = m.url;
                report.source = m.source.map(|s| s.to_ascii_lowercase());
                report.scanner = Some(self.origin.name.to_string());
                report
            })
            .collect();
        Ok(self.manager.revoke_leaked(&reports, ctx).await?)
    }
}

/// The header's only value; `None` when it is absent or repeated.
fn single<'a, H: Headers + ?Sized>(headers: &'a H, name: &str) -> Option<&'a [u8]> {
    let mut values = headers.get_all(name);
    let first = values.next()?;
    match values.next() {
        Some(_) => None,
        None => Some(first),
    }
}

impl<S, K: core::fmt::Debug> core::fmt::Debug for ScanningReceiver<S, K> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ScanningReceiver")
            .field("keys", &self.keys)
            .field("origin", &self.origin)
            .field("max_body", &self.max_body)
            .finish_non_exhaustive()
    }
}
