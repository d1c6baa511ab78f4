//! The legacy-token parser on arbitrary text: no panic; what parses starts with the longest
//! configured prefix and `_`, has a b64token body, a prefixed-api-key token has its short
//! token; and no legacy token is a keyward key of a disjoint format; `Debug` never shows the body.
#![no_main]

use std::sync::LazyLock;

use keyward::KeyFormat;
use keyward::hash::ForeignScheme;
use keyward::key::LegacyFormats;
use libfuzzer_sys::fuzz_target;

static LEGACY: LazyLock<LegacyFormats> = LazyLock::new(|| {
    LegacyFormats::new()
        .sha256("old")
        .and_then(|f| f.sha256("old_sk"))
        .and_then(|f| f.prefixed_api_key("acme"))
        .expect("formats")
});
static FORMAT: LazyLock<KeyFormat> = LazyLock::new(|| KeyFormat::new(["tak"]).expect("format"));

fuzz_target!(|input: &str| {
    let Ok(token) = LEGACY.parse(input) else {
        return;
    };
    assert_eq!(token.expose_secret(), input);
    let prefix = token.prefix();
    let body = &input[prefix.len() + 1..];
    assert!(input.starts_with(prefix) && input.as_bytes()[prefix.len()] == b'_');
    // The longest configured prefix won.
    if prefix == "old" {
        assert!(!body.starts_with("sk_"));
    }
    let trimmed = body.trim_end_matches('=');
    assert!(!trimmed.is_empty());
    assert!(trimmed.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~+/".contains(&b)));
    match token.scheme() {
        ForeignScheme::PrefixedApiKey => {
            let short = token.short_token().expect("short token");
            assert!(!short.is_empty() && !short.contains('_'));
            assert!(body.starts_with(short) && body.len() > short.len() + 1);
        }
        _ => assert_eq!(token.short_token(), None),
    }
    assert!(FORMAT.parse(input).is_err());
    // Debug shows the prefix and the scheme, never the body.
    assert_eq!(
        format!("{token:?}"),
        format!(
            "LegacyToken {{ prefix: {prefix:?}, scheme: {:?}, secret: \"<redacted>\" }}",
            token.scheme()
        )
    );
});
