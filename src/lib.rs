#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod alphabet;
mod api_key;
mod audit;
#[cfg(feature = "axum")]
#[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
pub mod axum;
mod bearer;
mod checksum;
mod clock;
mod format;
#[cfg(feature = "tonic")]
#[cfg_attr(docsrs, doc(cfg(feature = "tonic")))]
pub mod grpc;
mod hash;
mod http;
mod key_id;
mod limit;
mod manager;
mod parse;
mod policy;
mod prefix;
mod record;
#[cfg(feature = "secret-scanning")]
#[cfg_attr(docsrs, doc(cfg(feature = "secret-scanning")))]
pub mod scanning;
mod scope;
mod store;
#[cfg(feature = "testing")]
#[cfg_attr(docsrs, doc(cfg(feature = "testing")))]
pub mod testing;
mod text;
#[cfg(any(feature = "axum", feature = "tonic"))]
mod tower;
mod verified;

pub use api_key::{ApiKey, GenerateError};
pub use audit::{
    AuditEvent, AuditKind, AuditLog, AuditSink, FailureReason, NoAudit, RequestContext,
    TracingAudit,
};
pub use bearer::{
    BearerError, CredentialSource, MAX_HEADER_LEN, bearer_token, header_token, single_value,
};
pub use checksum::{CHECKSUM_LEN, checksum};
pub use clock::{Clock, FakeClock, SystemClock};
pub use format::{FormatError, KeyFormat};
pub use hash::{
    ARGON2_OUTPUT_LEN, ARGON2_SALT_LEN, Argon2Params, Argon2ParamsError, HashAlgorithm,
    HashConfigError, HashError, HashParseError, Hasher, MAX_PEPPER_ID_LEN, MAX_PEPPER_LEN,
    MAX_STORED_HASH_LEN, MIN_PEPPER_LEN, Mismatch, Pepper, PepperError, PepperId, PepperIdError,
    StoredHash,
};
pub use http::{AuthError, ErrorResponse};
pub use key_id::{KeyId, KeyIdError, MAX_KEY_ID_LEN, MIN_KEY_ID_LEN};
#[cfg(feature = "rate-limit")]
#[cfg_attr(docsrs, doc(cfg(feature = "rate-limit")))]
pub use limit::MemoryLimiter;
pub use limit::{
    Decision, FailureThrottle, LimitError, LimitPolicy, Limiter, Rate, RateError, Subject,
};
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub use limit::{RedisFallback, RedisLimiter};
pub use manager::{
    Acting, BoxFuture, DEFAULT_MAX_DELEGATION_DEPTH, IssueError, IssueHook, IssueRequest, Issued,
    KeyManager, LEAKED_REASON, LeakError, LeakLabel, LeakReport, LeakVerdict, LifecycleError,
    OwnerPermissions, PermissionTable, QuotaError, Remaining, VerifyError,
};
pub use parse::{ParseError, ParsedKey, parse_any};
pub use policy::{Expiry, ExpiryPreset, IssuancePolicy, PolicyError};
pub use prefix::{MAX_PREFIX_LEN, Prefix, PrefixError};
pub use record::{KeyRecord, KeyStatus, KeyStatusError, Metadata, MetadataError};
pub use record::{QuotaRefill, RefillError, RefillInterval};
pub use scope::{
    CatalogError, Denied, MAX_RESOURCE_DEPTH, MAX_RESOURCE_LEN, MAX_RESOURCES, MAX_SCOPE_DEPTH,
    MAX_SCOPE_LEN, MAX_SCOPES, Resource, ResourceError, Restrictions, Scope, ScopeCatalog,
    ScopeCatalogBuilder, ScopeError, ScopeSet, authorize,
};
#[cfg(feature = "postgres")]
#[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
pub use store::PostgresStore;
#[cfg(feature = "sqlite")]
#[cfg_attr(docsrs, doc(cfg(feature = "sqlite")))]
pub use store::SqliteStore;
pub use store::{AnyStore, AnyStoreError};
pub use store::{BulkRevocation, Consumed, KeyStore, ListFilter, MemoryStore, Page, StoreError};
pub use verified::Verified;
