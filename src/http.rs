//! The one place where errors become HTTP responses (RFC 6750), without a web framework:
//! status, `WWW-Authenticate` challenge, `Retry-After`, `RateLimit-*` headers, and a JSON
//! body `{"error": "<code>", "message": "<text>"}`.
//!
//! Every protocol starts from the same coarse class of an error (the way rustls maps its
//! rich errors to one TLS alert): the axum layer answers it as HTTP, the tonic layer as a
//! gRPC status, the secret-scanning receiver as its own JSON answer.
//!
//! Framework layers (`keyward::axum`, `keyward::grpc`) use it; a service on
//! another framework reads the key with [`bearer_token`] and answers with [`ErrorResponse`]:
//!
//! ```
//! use keyward::http::{AuthError, ErrorResponse, bearer_token};
//!
//! let refused = bearer_token(b"Basic dXNlcjpwYXNz").unwrap_err();
//! let response = ErrorResponse::new(&AuthError::from(refused), "tickets");
//! assert_eq!(response.status, 401);
//! assert_eq!(response.www_authenticate.as_deref(), Some(r#"Bearer realm="tickets""#));
//! ```

use core::fmt;
use core::time::Duration;

use serde::Serialize;

mod bearer;
mod workspace;

pub use bearer::{
    BearerError, CredentialSource, MAX_HEADER_LEN, bearer_token, header_token, single_value,
};

pub use workspace::{RequestParts, WorkspaceRule, WorkspaceSource, admits_workspace};

use crate::limit::LimitError;
use crate::manager::VerifyError;
use crate::scope::Denied;

mod rate_limit;
#[cfg(feature = "axum")]
mod response;
#[cfg(feature = "secret-scanning")]
mod scanning;

#[cfg(all(feature = "axum", feature = "rate-limit"))]
pub(crate) use rate_limit::insert_headers as insert_rate_limit_headers;

/// Why a request was refused, as the HTTP layer sees it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// No usable credentials in the request.
    #[error(transparent)]
    Credentials(#[from] BearerError),
    /// The presented key did not verify.
    #[error(transparent)]
    Verify(#[from] VerifyError),
    /// The key verified but may not do this.
    #[error(transparent)]
    Denied(#[from] Denied),
    /// Too many requests for this key or client.
    #[error("rate limit exceeded; retry after {} s", ceil_secs(*.retry_after))]
    RateLimited {
        /// When a retry may succeed.
        retry_after: Duration,
    },
    /// The credential store (or another dependency of authentication) is unavailable.
    #[error("authentication is temporarily unavailable")]
    Unavailable,
    /// The rate limiter could not decide (a server-side problem: answered as
    /// [`AuthError::Unavailable`], failing closed). The limiter's error is the source.
    #[error("authentication is temporarily unavailable")]
    Limit(#[from] LimitError),
}

/// Whole seconds, rounded up: retrying after the floor would still be refused.
pub(crate) fn ceil_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

/// The coarse class of an [`AuthError`]: what every protocol answers it with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ErrorKind {
    /// No Bearer credentials were sent: 401 with a bare challenge (RFC 6750 section 3.1).
    Unauthorized,
    /// Credentials sent but unusable: 400 `invalid_request`.
    InvalidRequest,
    /// The key did not verify: 401 `invalid_token`.
    InvalidToken,
    /// The key may not do this: 403 `insufficient_scope`.
    InsufficientScope,
    /// The key verified but may not be used from the client's network: 403
    /// `ip_not_allowed` (no challenge: another key would not help).
    NetworkNotAllowed,
    /// Too many requests: 429.
    RateLimited,
    /// A dependency of authentication is down: 503.
    Unavailable,
}

impl ErrorKind {
    /// The HTTP status.
    pub(crate) const fn status(self) -> u16 {
        match self {
            Self::Unauthorized | Self::InvalidToken => 401,
            Self::InvalidRequest => 400,
            Self::InsufficientScope | Self::NetworkNotAllowed => 403,
            Self::RateLimited => 429,
            Self::Unavailable => 503,
        }
    }

    /// The machine-readable code of the JSON body (and of the challenge, where RFC 6750
    /// defines one).
    pub(crate) const fn code(self) -> &'static str {
        match self {
            Self::Unauthorized => "unauthorized",
            Self::InvalidRequest => "invalid_request",
            Self::InvalidToken => "invalid_token",
            Self::InsufficientScope => "insufficient_scope",
            Self::NetworkNotAllowed => "ip_not_allowed",
            Self::RateLimited => "rate_limited",
            Self::Unavailable => "unavailable",
        }
    }
}

impl AuthError {
    /// The class every protocol answers this error with.
    pub(crate) fn kind(&self) -> ErrorKind {
        match self {
            Self::Credentials(BearerError::Missing | BearerError::OtherScheme) => {
                ErrorKind::Unauthorized
            }
            Self::Credentials(_) => ErrorKind::InvalidRequest,
            Self::Verify(VerifyError::Unavailable(_)) | Self::Unavailable | Self::Limit(_) => {
                ErrorKind::Unavailable
            }
            Self::Verify(VerifyError::NetworkNotAllowed) => ErrorKind::NetworkNotAllowed,
            Self::Verify(_) => ErrorKind::InvalidToken,
            Self::Denied(_) => ErrorKind::InsufficientScope,
            Self::RateLimited { .. } => ErrorKind::RateLimited,
        }
    }

    /// The text a client may see: an unavailable dependency is never described.
    pub(crate) fn public_message(&self) -> String {
        match self.kind() {
            ErrorKind::Unavailable => Self::Unavailable.to_string(),
            _ => self.to_string(),
        }
    }

    /// The `Retry-After` value in seconds, for a rate-limited request.
    pub(crate) fn retry_after_secs(&self) -> Option<u64> {
        match self {
            Self::RateLimited { retry_after } => Some(ceil_secs(*retry_after)),
            _ => None,
        }
    }
}

/// A framework-independent HTTP error response.
///
/// ```
/// use keyward::http::{AuthError, BearerError, ErrorResponse};
/// let r = ErrorResponse::new(&AuthError::Credentials(BearerError::Missing), "api");
/// assert_eq!(r.status, 401);
/// assert_eq!(r.www_authenticate.as_deref(), Some(r#"Bearer realm="api""#));
/// assert_eq!(r.body(), r#"{"error":"unauthorized","message":"no credentials: send the key as Authorization: Bearer <key>"}"#);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ErrorResponse {
    /// 400, 401, 403, 429 or 503 (and, for the secret-scanning receiver, 413).
    pub status: u16,
    /// The `WWW-Authenticate` header value, when the status calls for one.
    pub www_authenticate: Option<String>,
    /// The `Retry-After` header value in seconds, for 429.
    pub retry_after: Option<u64>,
    /// The machine-readable code: the RFC 6750 code where one applies, else `unauthorized`,
    /// `ip_not_allowed`, `rate_limited` or `unavailable` (and, for the secret-scanning receiver,
    /// `payload_too_large` or `bad_request`).
    pub code: &'static str,
    /// Human-readable text. Never contains the key.
    pub message: String,
}

impl ErrorResponse {
    /// Maps an error to its response. `realm` names the protected service in the challenge.
    #[must_use]
    pub fn new(error: &AuthError, realm: &str) -> Self {
        let kind = error.kind();
        let message = error.public_message();
        let realm = quoted(realm);
        let www_authenticate = match kind {
            ErrorKind::Unauthorized => Some(format!(r#"Bearer realm="{realm}""#)),
            ErrorKind::InvalidRequest | ErrorKind::InvalidToken | ErrorKind::InsufficientScope => {
                let scope = match error {
                    AuthError::Denied(Denied::MissingScope(s)) => {
                        format!(r#", scope="{}""#, quoted(s.as_str()))
                    }
                    _ => String::new(),
                };
                Some(format!(
                    r#"Bearer realm="{realm}", error="{code}", error_description="{description}"{scope}"#,
                    code = kind.code(),
                    description = quoted(&message),
                ))
            }
            ErrorKind::RateLimited | ErrorKind::Unavailable | ErrorKind::NetworkNotAllowed => None,
        };
        Self {
            status: kind.status(),
            www_authenticate,
            retry_after: error.retry_after_secs(),
            code: kind.code(),
            message,
        }
    }

    /// The JSON body: `{"error": "<code>", "message": "<text>"}`.
    #[must_use]
    pub fn body(&self) -> String {
        // Two strings always serialize.
        serde_json::to_string(&ErrorBody {
            error: self.code,
            message: &self.message,
        })
        .unwrap_or_default()
    }
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
    message: &'a str,
}

impl fmt::Display for ErrorResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {}", self.status, self.code, self.message)
    }
}

/// Makes text safe inside an RFC 6750 quoted value (`%x20-21 / %x23-5B / %x5D-7E`): `"` and
/// `\` become `'`, anything outside printable ASCII becomes `?`.
fn quoted(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '"' | '\\' => '\'',
            ' '..='~' => c,
            _ => '?',
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::parse::ParseError;

    fn scope(s: &str) -> crate::Scope {
        s.parse().expect("scope")
    }

    #[test]
    fn every_status() {
        use AuthError::{Credentials, Verify};
        let rate_limited = AuthError::RateLimited {
            retry_after: Duration::from_millis(1500),
        };
        let classes: Vec<(u16, &str, Vec<AuthError>)> = vec![
            (
                401,
                "unauthorized",
                vec![
                    Credentials(BearerError::Missing),
                    Credentials(BearerError::OtherScheme),
                ],
            ),
            (
                400,
                "invalid_request",
                vec![
                    Credentials(BearerError::Whitespace),
                    Credentials(BearerError::Multiple),
                ],
            ),
            (
                401,
                "invalid_token",
                vec![
                    Verify(VerifyError::Invalid),
                    Verify(VerifyError::Malformed(ParseError::ChecksumMismatch)),
                    Verify(VerifyError::Expired),
                ],
            ),
            (
                503,
                "unavailable",
                vec![
                    Verify(VerifyError::Unavailable("db down".into())),
                    AuthError::Unavailable,
                    AuthError::Limit(LimitError::ZeroCost),
                ],
            ),
            (
                403,
                "insufficient_scope",
                vec![AuthError::Denied(Denied::MissingScope(scope(
                    "tickets:write",
                )))],
            ),
            (429, "rate_limited", vec![rate_limited]),
            (
                403,
                "ip_not_allowed",
                vec![Verify(VerifyError::NetworkNotAllowed)],
            ),
        ];
        let cases = classes
            .into_iter()
            .flat_map(|(status, code, errors)| errors.into_iter().map(move |e| (e, status, code)));
        for (error, status, code) in cases {
            let r = ErrorResponse::new(&error, "api");
            assert_eq!((r.status, r.code), (status, code), "{error:?}");
            let body: serde_json::Value = serde_json::from_str(&r.body()).expect("json");
            assert_eq!(body["error"], code);
            if let Some(h) = &r.www_authenticate {
                assert!(h.starts_with(r#"Bearer realm="api""#), "{h}");
                let inner = h.replace(r#"=""#, "=").replace(r#"", "#, ",");
                assert!(
                    !inner.trim_end_matches('"').contains('"'),
                    "unescaped quote in {h}"
                );
                assert!(!h.contains('\\'), "{h}");
            }
        }
    }

    #[test]
    fn details() {
        let r = ErrorResponse::new(
            &AuthError::Denied(Denied::MissingScope(scope("tickets:write"))),
            "api",
        );
        assert!(
            r.www_authenticate
                .as_deref()
                .is_some_and(|h| h.ends_with(r#"scope="tickets:write""#)),
            "{r:?}"
        );
        let r = ErrorResponse::new(
            &AuthError::RateLimited {
                retry_after: Duration::from_millis(1500),
            },
            "api",
        );
        assert_eq!(r.retry_after, Some(2));
        let r = ErrorResponse::new(
            &AuthError::Verify(VerifyError::Unavailable("secret db detail".into())),
            "api",
        );
        assert!(!r.message.contains("secret db detail"));
        let weird = AuthError::Verify(VerifyError::Malformed(ParseError::InvalidCharacter {
            character: '"',
            position: 3,
        }));
        let r = ErrorResponse::new(&weird, "a\"b\\c");
        let h = r.www_authenticate.expect("challenge");
        assert!(h.starts_with(r#"Bearer realm="a'b'c""#), "{h}");
    }

    #[test]
    fn a_limiter_failure_keeps_its_cause_out_of_the_message() {
        use std::error::Error as _;
        let error = AuthError::from(LimitError::CostTooHigh { cost: 5, limit: 2 });
        assert_eq!(
            error.to_string(),
            "authentication is temporarily unavailable"
        );
        let source = error.source().map(ToString::to_string);
        assert_eq!(
            source.as_deref(),
            Some("cost 5 exceeds the rate limit of 2")
        );
        assert_eq!(ErrorResponse::new(&error, "api").message, error.to_string());
    }
}
