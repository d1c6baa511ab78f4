//! Finding the key in a request: RFC 6750 `Authorization: Bearer` parsing (and an optional
//! custom header such as `X-API-Key`), with no web framework needed.

/// Where a service reads keys from.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum CredentialSource {
    /// `Authorization: Bearer <key>` (RFC 6750 section 2.1).
    #[default]
    Bearer,
    /// A custom header holding the bare key, such as `X-API-Key` (lowercase name).
    Header(String),
    /// The custom header when present, otherwise the Bearer header.
    HeaderOrBearer(String),
}

/// Why no key could be taken from a request.
///
/// The HTTP layer answers [`BearerError::Missing`] and [`BearerError::OtherScheme`] with a
/// plain 401 challenge (RFC 6750 section 3.1: no error code when no Bearer credentials were
/// sent), and every other variant with 400 `invalid_request`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BearerError {
    /// No credentials were sent.
    #[error("no credentials: send the key as Authorization: Bearer <key>")]
    Missing,
    /// Credentials of another scheme (such as Basic) were sent.
    #[error("unsupported authorization scheme (use Bearer)")]
    OtherScheme,
    /// `Bearer` without a token.
    #[error("empty bearer token")]
    Empty,
    /// Whitespace inside or after the token, such as a trailing newline.
    #[error("the token has extra whitespace or a line break (send the key exactly, on one line)")]
    Whitespace,
    /// The header appears more than once.
    #[error("several credentials headers (send exactly one)")]
    Multiple,
    /// Characters outside RFC 6750's b64token set, or a header that is not text.
    #[error("the token has characters outside the RFC 6750 token set")]
    InvalidCharacter,
    /// The header is longer than any key could be.
    #[error("credentials header too long (maximum {MAX_HEADER_LEN} bytes)")]
    TooLong,
}

/// Longest header value examined, in bytes; longer values are refused without a scan.
pub const MAX_HEADER_LEN: usize = 1024;

/// Takes the single value of a header that may appear several times.
///
/// # Errors
/// [`BearerError::Missing`] for none, [`BearerError::Multiple`] for more than one.
pub fn single_value<'a, I>(values: I) -> Result<&'a [u8], BearerError>
where
    I: IntoIterator<Item = &'a [u8]>,
{
    let mut values = values.into_iter();
    let first = values.next().ok_or(BearerError::Missing)?;
    if values.next().is_some() {
        return Err(BearerError::Multiple);
    }
    Ok(first)
}

/// Extracts the token from one `Authorization` header value:
/// `Bearer` (any case), one or more spaces, then a b64token
/// (`1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="`). Nothing is trimmed.
///
/// ```
/// use keyward::http::{BearerError, bearer_token};
/// assert_eq!(bearer_token(b"Bearer tak_abc"), Ok("tak_abc"));
/// assert_eq!(bearer_token(b"bearer   tak_abc"), Ok("tak_abc"));
/// assert_eq!(bearer_token(b"Basic dXNlcjpwYXNz"), Err(BearerError::OtherScheme));
/// assert_eq!(bearer_token(b"Bearer tak_abc\n"), Err(BearerError::Whitespace));
/// ```
///
/// # Errors
/// A [`BearerError`] naming the problem.
pub fn bearer_token(value: &[u8]) -> Result<&str, BearerError> {
    if value.len() > MAX_HEADER_LEN {
        return Err(BearerError::TooLong);
    }
    if value.iter().all(u8::is_ascii_whitespace) {
        return Err(BearerError::Missing);
    }
    let scheme_end = value.iter().position(|&b| b == b' ').unwrap_or(value.len());
    let (scheme, rest) = value.split_at(scheme_end);
    if !scheme.eq_ignore_ascii_case(b"bearer") {
        return Err(BearerError::OtherScheme);
    }
    let token_start = rest.iter().position(|&b| b != b' ').unwrap_or(rest.len());
    token(&rest[token_start..])
}

/// Checks the value of a custom header that carries the bare key (such as `X-API-Key`).
///
/// # Errors
/// As [`bearer_token`], for the token part.
pub fn header_token(value: &[u8]) -> Result<&str, BearerError> {
    if value.len() > MAX_HEADER_LEN {
        return Err(BearerError::TooLong);
    }
    token(value)
}

fn token(t: &[u8]) -> Result<&str, BearerError> {
    if t.is_empty() {
        return Err(BearerError::Empty);
    }
    if t.iter().any(|b| b.is_ascii_whitespace()) {
        return Err(BearerError::Whitespace);
    }
    let padding = t.iter().rev().take_while(|&&b| b == b'=').count();
    let (chars, _) = t.split_at(t.len() - padding);
    let ok =
        |b: &u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/');
    if chars.is_empty() || !chars.iter().all(ok) {
        return Err(BearerError::InvalidCharacter);
    }
    // Only ASCII passed the check above.
    core::str::from_utf8(t).map_err(|_| BearerError::InvalidCharacter)
}

impl CredentialSource {
    /// Extracts the presented key from a request's headers, given a function returning all
    /// values of a (lowercase) header name.
    ///
    /// # Errors
    /// A [`BearerError`].
    pub fn extract<'a, F, I>(&self, mut header: F) -> Result<&'a str, BearerError>
    where
        F: FnMut(&str) -> I,
        I: IntoIterator<Item = &'a [u8]>,
    {
        match self {
            Self::Bearer => bearer_token(single_value(header("authorization"))?),
            Self::Header(name) => header_token(single_value(header(name))?),
            Self::HeaderOrBearer(name) => match single_value(header(name)) {
                Err(BearerError::Missing) => bearer_token(single_value(header("authorization"))?),
                other => header_token(other?),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_rfc6750_credentials() {
        assert_eq!(bearer_token(b"Bearer tak_abc"), Ok("tak_abc"));
        assert_eq!(bearer_token(b"BEARER tak_abc"), Ok("tak_abc"));
        assert_eq!(
            bearer_token(b"Bearer  mF_9.B5f-4.1JqM=="),
            Ok("mF_9.B5f-4.1JqM==")
        );
    }

    #[test]
    fn each_error_is_precise() {
        assert_eq!(bearer_token(b""), Err(BearerError::Missing));
        assert_eq!(
            bearer_token(b"Basic dXNlcjpwYXNz"),
            Err(BearerError::OtherScheme)
        );
        assert_eq!(
            bearer_token(b"Bearertak_abc"),
            Err(BearerError::OtherScheme)
        );
        assert_eq!(bearer_token(b"Bearer"), Err(BearerError::Empty));
        assert_eq!(bearer_token(b"Bearer "), Err(BearerError::Empty));
        assert_eq!(
            bearer_token(b"Bearer tak_abc "),
            Err(BearerError::Whitespace)
        );
        assert_eq!(
            bearer_token(b"Bearer tak_abc\n"),
            Err(BearerError::Whitespace)
        );
        assert_eq!(
            bearer_token(b"Bearer tak_abc\r\n"),
            Err(BearerError::Whitespace)
        );
        assert_eq!(
            bearer_token(b"Bearer tak\tabc"),
            Err(BearerError::Whitespace)
        );
        assert_eq!(
            bearer_token(b"Bearer tak_a\"bc"),
            Err(BearerError::InvalidCharacter)
        );
        assert_eq!(
            bearer_token(b"Bearer t\xc3\xa9"),
            Err(BearerError::InvalidCharacter)
        );
        assert_eq!(
            bearer_token(b"Bearer ==="),
            Err(BearerError::InvalidCharacter)
        );
        assert_eq!(
            bearer_token(b"Bearer a=b"),
            Err(BearerError::InvalidCharacter)
        );
        assert_eq!(bearer_token(&[b'a'; 2000]), Err(BearerError::TooLong));
        let two: [&[u8]; 2] = [b"Bearer a", b"Bearer b"];
        assert_eq!(single_value(two), Err(BearerError::Multiple));
        assert_eq!(single_value(core::iter::empty()), Err(BearerError::Missing));
    }

    #[test]
    fn custom_header_source() {
        let source = CredentialSource::HeaderOrBearer("x-api-key".into());
        let get = |name: &str| -> Vec<&'static [u8]> {
            match name {
                "x-api-key" => vec![b"tak_key".as_slice()],
                _ => vec![],
            }
        };
        assert_eq!(source.extract(get), Ok("tak_key"));
        let bearer_only = |name: &str| -> Vec<&'static [u8]> {
            if name == "authorization" {
                vec![b"Bearer tak_b".as_slice()]
            } else {
                vec![]
            }
        };
        assert_eq!(source.extract(bearer_only), Ok("tak_b"));
        assert_eq!(
            CredentialSource::Bearer.extract(|_: &str| Vec::<&[u8]>::new()),
            Err(BearerError::Missing)
        );
    }
}
