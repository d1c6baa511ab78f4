//! [`Error`]: every error of the crate in one type, for applications that want one `?`
//! (the errors of the `axum` and `grpc` layers are HTTP and gRPC answers, not errors).

use crate::audit::ChannelError;
use crate::hash::{
    Argon2ParamsError, HashConfigError, HashError, HashParseError, Mismatch, PepperError,
    PepperIdError,
};
use crate::http::{AuthError, BearerError};
use crate::key::{
    FormatError, GenerateError, KeyIdError, LegacyError, LegacyParseError, ParseError, PrefixError,
};
use crate::leak::LeakError;
#[cfg(feature = "secret-scanning")]
use crate::leak::scanning::{KeyListError, KeySourceError, ScanningError, SignatureError};
use crate::limit::{LimitError, RateError};
use crate::manager::{
    EditError, ImportError, ImportLineError, IssueError, LifecycleError, QuotaError, VerifyError,
};
use crate::network::NetworkError;
use crate::policy::PolicyError;
use crate::record::{KeyStatusError, MetadataError, RefillError};
use crate::scope::{CatalogError, Denied, ResourceError, ScopeError};
use crate::store::{AnyStoreError, StoreError};

/// Any error of keyward: each variant wraps the error of one domain, and `From` impls let
/// `?` convert them, so an application can return `Result<T, keyward::Error>` from code that
/// issues, verifies and manages keys.
///
/// Every variant is transparent: its message is the domain error's message, and
/// [`source`](std::error::Error::source) returns that error's own cause, so a report that
/// walks the chain prints each cause exactly once. Match on the variant (or
/// [`downcast_ref`](std::error::Error) the domain error) to act on the reason.
///
/// ```
/// use keyward::{Error, KeyFormat};
///
/// fn format() -> Result<KeyFormat, Error> {
///     Ok(KeyFormat::new(["Not A Prefix"])?)
/// }
/// let err = format().unwrap_err();
/// assert!(matches!(err, Error::Format(_)));
/// assert_eq!(err.to_string(), "prefix must start with a lowercase letter a-z");
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A key format could not be built.
    #[error(transparent)]
    Format(#[from] FormatError),
    /// A prefix is invalid.
    #[error(transparent)]
    Prefix(#[from] PrefixError),
    /// A presented string is not a well-formed key.
    #[error(transparent)]
    Parse(#[from] ParseError),
    /// A key id is invalid.
    #[error(transparent)]
    KeyId(#[from] KeyIdError),
    /// A legacy format could not be configured.
    #[error(transparent)]
    Legacy(#[from] LegacyError),
    /// A presented string is not a legacy token of the configured formats.
    #[error(transparent)]
    LegacyParse(#[from] LegacyParseError),
    /// An import line is invalid.
    #[error(transparent)]
    ImportLine(#[from] ImportLineError),
    /// An import wrote nothing.
    #[error(transparent)]
    Import(#[from] ImportError),
    /// A key could not be generated.
    #[error(transparent)]
    Generate(#[from] GenerateError),
    /// A request carries no usable credentials.
    #[error(transparent)]
    Credentials(#[from] BearerError),
    /// Hashing failed.
    #[error(transparent)]
    Hash(#[from] HashError),
    /// A hasher's configuration is invalid.
    #[error(transparent)]
    HashConfig(#[from] HashConfigError),
    /// A key does not match its stored hash ([`Hasher::verify`](crate::Hasher::verify)).
    #[error(transparent)]
    Mismatch(#[from] Mismatch),
    /// A stored-hash string is invalid.
    #[error(transparent)]
    StoredHash(#[from] HashParseError),
    /// Argon2 parameters are out of bounds.
    #[error(transparent)]
    Argon2Params(#[from] Argon2ParamsError),
    /// A pepper is invalid.
    #[error(transparent)]
    Pepper(#[from] PepperError),
    /// A pepper id is invalid.
    #[error(transparent)]
    PepperId(#[from] PepperIdError),
    /// A channel name is invalid.
    #[error(transparent)]
    Channel(#[from] ChannelError),
    /// A scope is invalid.
    #[error(transparent)]
    Scope(#[from] ScopeError),
    /// A resource pattern is invalid.
    #[error(transparent)]
    Resource(#[from] ResourceError),
    /// An IP allowlist is invalid.
    #[error(transparent)]
    Network(#[from] NetworkError),
    /// A scope catalog is invalid, or a scope is not in it.
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    /// A verified key may not do what was asked.
    #[error(transparent)]
    Denied(#[from] Denied),
    /// Metadata out of bounds.
    #[error(transparent)]
    Metadata(#[from] MetadataError),
    /// A quota refill is invalid.
    #[error(transparent)]
    Refill(#[from] RefillError),
    /// A key status string is invalid.
    #[error(transparent)]
    KeyStatus(#[from] KeyStatusError),
    /// An expiry or issuance policy is invalid.
    #[error(transparent)]
    Policy(#[from] PolicyError),
    /// The key store failed or refused.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A store could not be opened from its URL.
    #[error(transparent)]
    OpenStore(#[from] AnyStoreError),
    /// A key could not be issued.
    #[error(transparent)]
    Issue(#[from] IssueError),
    /// A presented key did not verify.
    #[error(transparent)]
    Verify(#[from] VerifyError),
    /// A lifecycle operation (revoke, rotate, …) failed.
    #[error(transparent)]
    Lifecycle(#[from] LifecycleError),
    /// A key could not be edited.
    #[error(transparent)]
    Edit(#[from] EditError),
    /// A usage quota could not be changed or consumed.
    #[error(transparent)]
    Quota(#[from] QuotaError),
    /// Leak reports could not be processed.
    #[error(transparent)]
    Leak(#[from] LeakError),
    /// A rate limiter failed.
    #[error(transparent)]
    Limit(#[from] LimitError),
    /// A rate is invalid.
    #[error(transparent)]
    Rate(#[from] RateError),
    /// A request was refused by the HTTP or gRPC layer.
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// A secret-scanning alert was refused (feature `secret-scanning`).
    #[cfg(feature = "secret-scanning")]
    #[error(transparent)]
    Scanning(#[from] ScanningError),
    /// A scanner's signature did not verify (feature `secret-scanning`).
    #[cfg(feature = "secret-scanning")]
    #[error(transparent)]
    Signature(#[from] SignatureError),
    /// A scanner's public-key list is invalid (feature `secret-scanning`).
    #[cfg(feature = "secret-scanning")]
    #[error(transparent)]
    KeyList(#[from] KeyListError),
    /// A scanner's public keys could not be fetched (feature `secret-scanning`).
    #[cfg(feature = "secret-scanning")]
    #[error(transparent)]
    KeySource(#[from] KeySourceError),
}

#[cfg(test)]
mod tests {
    use std::error::Error as _;

    use super::*;

    #[test]
    fn variants_are_transparent() {
        let err = Error::from(StoreError::Unavailable("database down".into()));
        assert_eq!(err.to_string(), "key store unavailable");
        assert_eq!(
            err.source().map(ToString::to_string).as_deref(),
            Some("database down")
        );
    }
}
