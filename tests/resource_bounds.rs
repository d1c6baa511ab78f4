//! Oversized untrusted input is refused with a typed error naming the limit: a 1 MB key, a
//! 1 MB Authorization header, 10,000 scopes, deeply nested scopes, a 1 MB stored hash and a
//! 1 MB resource path. `benches/bounds.rs` measures what each refusal costs.

use keyward::{
    Hasher, KeyFormat, KeyManager, MemoryStore, Pepper, RequestContext, Scope, ScopeSet,
    StoredHash,
    hash::HashParseError,
    http::{BearerError, CredentialSource, MAX_HEADER_LEN, bearer_token, header_token},
    key::{MAX_PREFIX_LEN, ParseError, parse_any},
    manager::VerifyError,
    scope::{
        MAX_RESOURCE_DEPTH, MAX_SCOPE_DEPTH, Resource, ResourceError, Restrictions, ScopeError,
    },
};

const MB: usize = 1 << 20;

/// A valid key of the format followed by 1 MB of key characters.
fn huge_key(format: &KeyFormat) -> String {
    let mut key = format.generate().expect("key").expose_secret().to_owned();
    key.push_str(&"A".repeat(MB));
    key
}

#[test]
fn a_1mb_key_is_too_long() {
    let format = KeyFormat::new(["tak"]).expect("format");
    let max = format.max_len();
    for input in [huge_key(&format), "a".repeat(MB), "é".repeat(MB / 2)] {
        assert_eq!(
            format.parse(&input).err(),
            Some(ParseError::TooLong { max })
        );
    }
    let any_max = MAX_PREFIX_LEN + 1 + 128 + 6;
    assert_eq!(
        parse_any(&huge_key(&format)).err(),
        Some(ParseError::TooLong { max: any_max })
    );
    // Whitespace is reported before length: it says more about the mistake.
    let padded = format!("{}\n", "a".repeat(MB));
    assert_eq!(
        format.parse(&padded).err(),
        Some(ParseError::TrailingWhitespace)
    );
}

#[tokio::test]
async fn the_manager_refuses_a_1mb_key_as_malformed() {
    let format = KeyFormat::new(["tak"]).expect("format");
    let max = format.max_len();
    let manager = KeyManager::new(
        MemoryStore::new(),
        format.clone(),
        Hasher::fast(Pepper::new("k1", [1u8; 32]).expect("pepper")),
    );
    let e = manager
        .verify(&huge_key(&format), &RequestContext::new())
        .await
        .expect_err("1 MB key");
    assert!(
        matches!(e, VerifyError::Malformed(ParseError::TooLong { max: m }) if m == max),
        "{e:?}"
    );
}

#[test]
fn a_1mb_header_is_too_long() {
    let mut header = b"Bearer ".to_vec();
    header.extend(std::iter::repeat_n(b'a', MB));
    assert_eq!(bearer_token(&header), Err(BearerError::TooLong));
    assert_eq!(header_token(&header[7..]), Err(BearerError::TooLong));
    let authorization = |name: &str| -> Vec<&[u8]> {
        if name == "authorization" {
            vec![header.as_slice()]
        } else {
            vec![]
        }
    };
    assert_eq!(
        CredentialSource::Bearer.extract(authorization),
        Err(BearerError::TooLong)
    );
    // Not even a scan for whitespace: a 1 MB line break is refused for its length.
    let blank = vec![b' '; MB];
    assert_eq!(bearer_token(&blank), Err(BearerError::TooLong));
    // The limit itself is accepted.
    let mut longest = b"Bearer ".to_vec();
    longest.extend(std::iter::repeat_n(b'a', MAX_HEADER_LEN - longest.len()));
    assert!(bearer_token(&longest).is_ok());
}

#[test]
fn ten_thousand_scopes_are_too_many() {
    let spaced = "read ".repeat(10_000);
    assert_eq!(spaced.parse::<ScopeSet>(), Err(ScopeError::TooMany));
    let distinct: Vec<String> = (0..10_000).map(|i| format!("s{i}")).collect();
    assert_eq!(
        distinct.join(",").parse::<ScopeSet>(),
        Err(ScopeError::TooMany)
    );
    let scopes = distinct.iter().map(|s| Scope::new(s).expect("scope"));
    assert_eq!(ScopeSet::from_scopes(scopes), Err(ScopeError::TooMany));
    let json = serde_json::to_string(&distinct).expect("json");
    let e = serde_json::from_str::<ScopeSet>(&json).expect_err("too many");
    assert!(e.to_string().contains("too many scopes"), "{e}");
    // Invalid scopes past the limit are not even looked at: counting comes first.
    let junk = format!("{} !!!", "read ".repeat(10_000));
    assert_eq!(junk.parse::<ScopeSet>(), Err(ScopeError::TooMany));
}

#[test]
fn deeply_nested_scopes_are_refused() {
    let deep = format!("{}a", "a:".repeat(10_000));
    assert_eq!(Scope::new(&deep), Err(ScopeError::TooLong));
    assert_eq!(deep.parse::<ScopeSet>(), Err(ScopeError::TooLong));
    let wildcard = format!("{}*", "a:".repeat(10_000));
    assert_eq!(Scope::new(&wildcard), Err(ScopeError::TooLong));
    // Within the length limit, depth is its own error.
    let one_too_deep = ["a"; MAX_SCOPE_DEPTH + 1].join(":");
    assert_eq!(Scope::new(&one_too_deep), Err(ScopeError::TooDeep));
    assert_eq!(one_too_deep.parse::<ScopeSet>(), Err(ScopeError::TooDeep));
}

#[test]
fn a_1mb_stored_hash_is_too_long() {
    let digest = "A".repeat(MB);
    for input in [
        format!("$hmac-sha256$pid=k1${digest}"),
        format!("$argon2id$v=19$m=64,t=1,p=1${digest}${digest}"),
        "$".repeat(MB),
    ] {
        assert_eq!(input.parse::<StoredHash>(), Err(HashParseError::TooLong));
    }
    let json = serde_json::to_string(&format!("$hmac-sha256$pid=k1${digest}")).expect("json");
    assert!(serde_json::from_str::<StoredHash>(&json).is_err());
}

#[test]
fn a_1mb_resource_path_is_refused() {
    let long = format!("company:{}", "4".repeat(MB));
    assert_eq!(Resource::new(&long), Err(ResourceError::Length));
    let deep = "a:1/".repeat(MB / 4);
    assert_eq!(Resource::new(&deep), Err(ResourceError::Length));
    assert_eq!(Restrictions::only([&long]), Err(ResourceError::Length));
    let one_too_deep = ["a:1"; MAX_RESOURCE_DEPTH + 1].join("/");
    assert_eq!(Resource::new(&one_too_deep), Err(ResourceError::TooDeep));
    let many: Vec<String> = (0..10_000).map(|i| format!("company:{i}")).collect();
    assert_eq!(Restrictions::only(&many), Err(ResourceError::TooMany));
}
