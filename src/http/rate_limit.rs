//! A limiter's [`Decision`] as HTTP: `RateLimit-*` headers, and `429` with `Retry-After`
//! through [`AuthError::RateLimited`].

use super::{AuthError, ceil_secs};
use crate::limit::Decision;

impl Decision {
    /// The `RateLimit-Limit`, `RateLimit-Remaining` and `RateLimit-Reset` headers (the
    /// reset in whole seconds, rounded up), for allowed and denied answers alike.
    ///
    /// ```
    /// use std::time::Duration;
    /// let d = keyward::limit::Decision::Allowed { limit: 60, remaining: 59, reset_after: Duration::from_millis(1500) };
    /// assert_eq!(d.headers(), [("RateLimit-Limit", 60), ("RateLimit-Remaining", 59), ("RateLimit-Reset", 2)]);
    /// ```
    #[must_use]
    pub fn headers(&self) -> [(&'static str, u64); 3] {
        [
            ("RateLimit-Limit", u64::from(self.limit())),
            ("RateLimit-Remaining", u64::from(self.remaining())),
            ("RateLimit-Reset", ceil_secs(self.reset_after())),
        ]
    }

    /// `Ok(self)` when allowed, else [`AuthError::RateLimited`] with the retry time (which
    /// [`ErrorResponse`](crate::http::ErrorResponse) turns into `429` and `Retry-After`).
    ///
    /// # Errors
    /// [`AuthError::RateLimited`] when denied.
    pub fn into_result(self) -> Result<Self, AuthError> {
        match self.retry_after() {
            None => Ok(self),
            Some(retry_after) => Err(AuthError::RateLimited { retry_after }),
        }
    }
}

/// Sets the `RateLimit-*` headers of `decision` on a response.
#[cfg(all(feature = "axum", feature = "rate-limit"))]
pub(crate) fn insert_headers(headers: &mut http::HeaderMap, decision: &Decision) {
    for (name, value) in decision.headers() {
        headers.insert(name, http::HeaderValue::from(value));
    }
}
