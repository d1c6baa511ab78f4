//! An [`ErrorResponse`] as an `http::Response`, for the axum layer.

use http::header::{CONTENT_TYPE, HeaderValue, RETRY_AFTER, WWW_AUTHENTICATE};
use http::{Response, StatusCode};

use super::ErrorResponse;

impl ErrorResponse {
    /// The response: status, `Content-Type: application/json`, the challenge and
    /// `Retry-After` when set, and the JSON body.
    pub(crate) fn to_http<B: From<String>>(&self) -> Response<B> {
        let mut response = Response::new(B::from(self.body()));
        *response.status_mut() =
            StatusCode::from_u16(self.status).unwrap_or(StatusCode::UNAUTHORIZED);
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if let Some(Ok(v)) = self.www_authenticate.as_deref().map(HeaderValue::from_str) {
            headers.insert(WWW_AUTHENTICATE, v);
        }
        if let Some(secs) = self.retry_after {
            headers.insert(RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}
