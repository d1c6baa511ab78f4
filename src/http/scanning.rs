//! A refused secret-scanning alert as HTTP (feature `secret-scanning`): the status and the
//! JSON error body the scanner gets.

use super::ErrorResponse;
use crate::leak::scanning::ScanningError;

impl ScanningError {
    /// The HTTP status: 413, 401 (headers, unknown key, signature), 400 (body) or 503 (key
    /// source or store; the scanner retries).
    #[must_use]
    pub fn status(&self) -> u16 {
        match self {
            Self::BodyTooLarge { .. } => 413,
            Self::BadHeader { .. } | Self::UnknownKey | Self::Signature(_) => 401,
            Self::MalformedBody => 400,
            Self::KeySource(_) | Self::Leak(_) => 503,
        }
    }

    /// A short machine-readable code for the JSON error body.
    #[must_use]
    pub fn code(&self) -> &'static str {
        match self {
            Self::BodyTooLarge { .. } => "payload_too_large",
            Self::BadHeader { .. } | Self::UnknownKey | Self::Signature(_) => "unauthorized",
            Self::MalformedBody => "bad_request",
            Self::KeySource(_) | Self::Leak(_) => "unavailable",
        }
    }
}

/// The scanner's answer: status, code and message; never a challenge or `Retry-After`.
impl From<&ScanningError> for ErrorResponse {
    fn from(error: &ScanningError) -> Self {
        Self {
            status: error.status(),
            www_authenticate: None,
            retry_after: None,
            code: error.code(),
            message: error.to_string(),
        }
    }
}
