//! The Authorization header parser on arbitrary bytes: no panic, and a token taken is a
//! well-formed suffix of the header value.
//!
//! Input: header values separated by `\n`; even ones are `authorization`, odd ones
//! `x-api-key`. The whole input is also parsed as one value.
#![no_main]

use keyward::http::{BearerError, CredentialSource, MAX_HEADER_LEN, bearer_token, header_token};
use libfuzzer_sys::fuzz_target;

/// A token is non-empty, short, RFC 6750 b64token characters only, and a suffix of `value`.
fn check_token(value: &[u8], token: Result<&str, BearerError>) {
    let Ok(token) = token else { return };
    assert!(!token.is_empty() && token.len() <= MAX_HEADER_LEN);
    assert!(value.ends_with(token.as_bytes()));
    assert!(!token.bytes().any(|b| b.is_ascii_whitespace()));
    assert_eq!(header_token(token.as_bytes()), Ok(token));
}

fuzz_target!(|data: &[u8]| {
    check_token(data, bearer_token(data));
    check_token(data, header_token(data));
    if let Ok(token) = bearer_token(data) {
        assert!(data[..6].eq_ignore_ascii_case(b"bearer"));
        assert_eq!(
            bearer_token(format!("Bearer {token}").as_bytes()),
            Ok(token)
        );
    }
    let values: Vec<&[u8]> = data.split(|&b| b == b'\n').collect();
    let headers = |name: &str| -> Vec<&[u8]> {
        let parity = usize::from(name != "authorization");
        let named = values
            .iter()
            .enumerate()
            .filter(move |(i, _)| i % 2 == parity);
        named.map(|(_, v)| *v).collect()
    };
    for source in [
        CredentialSource::Bearer,
        CredentialSource::Header("x-api-key".into()),
        CredentialSource::HeaderOrBearer("x-api-key".into()),
    ] {
        if let Ok(token) = source.extract(headers) {
            assert!(values.iter().any(|v| v.ends_with(token.as_bytes())));
            assert_eq!(header_token(token.as_bytes()), Ok(token));
        }
    }
});
