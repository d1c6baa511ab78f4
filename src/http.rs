//! The one place where errors become HTTP responses (RFC 6750), without a web framework:
//! status, `WWW-Authenticate` challenge, `Retry-After`, and a JSON body
//! `{"error": "<code>", "message": "<text>"}`.

use core::fmt;
use core::time::Duration;

use crate::bearer::BearerError;
use crate::manager::VerifyError;
use crate::scope::Denied;

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
    #[error("rate limit exceeded; retry after {} s", retry_after_secs(*.retry_after))]
    RateLimited {
        /// When a retry may succeed.
        retry_after: Duration,
    },
    /// The credential store (or another dependency of authentication) is unavailable.
    #[error("authentication is temporarily unavailable")]
    Unavailable,
}

fn retry_after_secs(d: Duration) -> u64 {
    // Round up: retrying after the floor would still be refused.
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

/// A framework-independent HTTP error response.
///
/// ```
/// use keyward::{AuthError, BearerError, ErrorResponse};
/// let r = ErrorResponse::new(&AuthError::Credentials(BearerError::Missing), "api");
/// assert_eq!(r.status, 401);
/// assert_eq!(r.www_authenticate.as_deref(), Some(r#"Bearer realm="api""#));
/// assert_eq!(r.body(), r#"{"error":"unauthorized","message":"no credentials: send the key as Authorization: Bearer <key>"}"#);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ErrorResponse {
    /// 400, 401, 403, 429 or 503.
    pub status: u16,
    /// The `WWW-Authenticate` header value, when the status calls for one.
    pub www_authenticate: Option<String>,
    /// The `Retry-After` header value in seconds, for 429.
    pub retry_after: Option<u64>,
    /// The machine-readable code: the RFC 6750 code where one applies, else `unauthorized`,
    /// `rate_limited` or `unavailable`.
    pub code: &'static str,
    /// Human-readable text. Never contains the key.
    pub message: String,
}

impl ErrorResponse {
    /// Maps an error to its response. `realm` names the protected service in the challenge.
    #[must_use]
    pub fn new(error: &AuthError, realm: &str) -> Self {
        let realm = quoted(realm);
        let message = error.to_string();
        let challenge = |code: &str, extra: &str| {
            let description = quoted(&message);
            Some(format!(
                r#"Bearer realm="{realm}", error="{code}", error_description="{description}"{extra}"#
            ))
        };
        match error {
            AuthError::Credentials(BearerError::Missing | BearerError::OtherScheme) => Self {
                status: 401,
                www_authenticate: Some(format!(r#"Bearer realm="{realm}""#)),
                retry_after: None,
                code: "unauthorized",
                message,
            },
            AuthError::Credentials(_) => Self {
                status: 400,
                www_authenticate: challenge("invalid_request", ""),
                retry_after: None,
                code: "invalid_request",
                message,
            },
            AuthError::Verify(VerifyError::Unavailable(_)) | AuthError::Unavailable => Self {
                status: 503,
                www_authenticate: None,
                retry_after: None,
                code: "unavailable",
                message: AuthError::Unavailable.to_string(),
            },
            AuthError::Verify(_) => Self {
                status: 401,
                www_authenticate: challenge("invalid_token", ""),
                retry_after: None,
                code: "invalid_token",
                message,
            },
            AuthError::Denied(denied) => {
                let scope = match denied {
                    Denied::MissingScope(s) => format!(r#", scope="{}""#, quoted(s.as_str())),
                    _ => String::new(),
                };
                Self {
                    status: 403,
                    www_authenticate: challenge("insufficient_scope", &scope),
                    retry_after: None,
                    code: "insufficient_scope",
                    message,
                }
            }
            AuthError::RateLimited { retry_after } => Self {
                status: 429,
                www_authenticate: None,
                retry_after: Some(retry_after_secs(*retry_after)),
                code: "rate_limited",
                message,
            },
        }
    }

    /// The JSON body: `{"error": "<code>", "message": "<text>"}`.
    #[must_use]
    pub fn body(&self) -> String {
        serde_json::json!({ "error": self.code, "message": self.message }).to_string()
    }
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
    use crate::parse::ParseError;

    fn scope(s: &str) -> crate::Scope {
        s.parse().expect("scope")
    }

    #[test]
    fn every_status() {
        let cases: Vec<(AuthError, u16, &str)> = vec![
            (
                AuthError::Credentials(BearerError::Missing),
                401,
                "unauthorized",
            ),
            (
                AuthError::Credentials(BearerError::OtherScheme),
                401,
                "unauthorized",
            ),
            (
                AuthError::Credentials(BearerError::Whitespace),
                400,
                "invalid_request",
            ),
            (
                AuthError::Credentials(BearerError::Multiple),
                400,
                "invalid_request",
            ),
            (
                AuthError::Verify(VerifyError::Invalid),
                401,
                "invalid_token",
            ),
            (
                AuthError::Verify(VerifyError::Malformed(ParseError::ChecksumMismatch)),
                401,
                "invalid_token",
            ),
            (
                AuthError::Verify(VerifyError::Expired),
                401,
                "invalid_token",
            ),
            (
                AuthError::Verify(VerifyError::Unavailable("db down".into())),
                503,
                "unavailable",
            ),
            (
                AuthError::Denied(Denied::MissingScope(scope("tickets:write"))),
                403,
                "insufficient_scope",
            ),
            (
                AuthError::RateLimited {
                    retry_after: Duration::from_millis(1500),
                },
                429,
                "rate_limited",
            ),
            (AuthError::Unavailable, 503, "unavailable"),
        ];
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
}
