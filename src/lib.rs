#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod audit;
#[cfg(feature = "axum")]
#[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
pub mod axum;
pub mod clock;
mod error;
#[cfg(feature = "tonic")]
#[cfg_attr(docsrs, doc(cfg(feature = "tonic")))]
pub mod grpc;
pub mod hash;
pub mod http;
pub mod key;
pub mod leak;
pub mod limit;
pub mod manager;
#[cfg(feature = "mcp")]
#[cfg_attr(docsrs, doc(cfg(feature = "mcp")))]
pub mod mcp;
pub mod network;
pub mod policy;
pub mod record;
pub mod scope;
pub mod store;
#[cfg(feature = "testing")]
#[cfg_attr(docsrs, doc(cfg(feature = "testing")))]
pub mod testing;
mod text;
#[cfg(any(feature = "axum", feature = "tonic"))]
mod tower;
mod verified;

pub use audit::RequestContext;
pub use clock::{Clock, SystemClock};
pub use error::Error;
pub use hash::{Hasher, Pepper, StoredHash};
pub use key::{ApiKey, KeyFormat, KeyId};
pub use manager::{IssueRequest, Issued, KeyManager};
pub use record::KeyRecord;
pub use scope::{Scope, ScopeCatalog, ScopeSet};
pub use store::{KeyStore, MemoryStore};
pub use verified::Verified;
