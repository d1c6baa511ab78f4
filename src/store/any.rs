//! A store chosen at run time from a URL: memory, SQLite or PostgreSQL behind one type.

use std::borrow::Cow;
use std::error::Error as StdError;
use std::sync::Arc;

use time::OffsetDateTime;

#[cfg(feature = "postgres")]
use super::PostgresStore;
#[cfg(feature = "sqlite")]
use super::SqliteStore;
use super::{
    BulkRevocation, Consumed, KeyStore, ListFilter, LiveCaps, MemoryStore, Page, StoreError,
};
use crate::key::id::KeyId;
use crate::record::KeyRecord;

/// The longest scheme an error names; a longer "scheme" is more likely a mistyped secret.
const MAX_SCHEME_LEN: usize = 32;

/// One of keyward's stores, chosen at run time, for services and tools configured by
/// environment (a `DATABASE_URL`).
///
/// [`KeyStore`] returns `impl Future`, so it cannot be used as `dyn KeyStore`; this enum is
/// the glue instead. It implements [`KeyStore`] by forwarding every method, including those
/// with a default implementation, to the store it holds, so each store's own atomic versions
/// are used (a SQL store's one-statement [`KeyStore::revoke_matching`], for instance).
///
/// [`AnyStore::open`] picks the store from the URL's scheme:
///
/// | URL | Store | Feature |
/// |-----|-------|---------|
/// | `memory:` or `memory://` | a new, empty [`MemoryStore`] | none |
/// | `sqlite:` / `sqlite://path?mode=rwc` | `SqliteStore`, migrated | `sqlite` |
/// | `postgres://…` / `postgresql://…` | `PostgresStore`, migrated | `postgres` |
///
/// A store built by hand (with its own pool settings, say) converts with `From`.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use keyward::{Hasher, IssueRequest, KeyFormat, KeyManager, Pepper, RequestContext, store::AnyStore};
///
/// // In a service: std::env::var("KEYWARD_DATABASE_URL")?
/// let store = AnyStore::open("memory:").await?;
/// assert!(matches!(store, AnyStore::Memory(_)));
///
/// let manager = KeyManager::new(store, KeyFormat::new(["tak"])?, Hasher::fast(Pepper::random("k1")?));
/// let ctx = RequestContext::new();
/// let issued = manager.issue(IssueRequest::new("ci-bot", "user_42"), &ctx).await?;
/// let verified = manager.verify(issued.key.expose_secret(), &ctx).await?;
/// assert_eq!(verified.key_id(), issued.record.id);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum AnyStore {
    /// Keys in this process's memory, lost when it exits.
    Memory(MemoryStore),
    /// Keys in a SQLite database file.
    #[cfg(feature = "sqlite")]
    #[cfg_attr(docsrs, doc(cfg(feature = "sqlite")))]
    Sqlite(SqliteStore),
    /// Keys in a PostgreSQL database.
    #[cfg(feature = "postgres")]
    #[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
    Postgres(PostgresStore),
}

/// [`AnyStore::open`] failed. No variant holds the URL, or its password.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AnyStoreError {
    /// The URL does not start with a scheme (`memory:`, `sqlite:`, `postgres://`).
    #[error("the store URL has no scheme (expected memory:, sqlite: or postgres://)")]
    NoScheme,
    /// The URL's scheme names no store keyward has.
    #[error("unknown store URL scheme `{scheme}` (expected memory:, sqlite: or postgres://)")]
    UnknownScheme {
        /// The scheme, as written.
        scheme: String,
    },
    /// The scheme's store is behind a cargo feature this build does not enable.
    #[error("store URL scheme `{scheme}` needs keyward's `{feature}` cargo feature")]
    FeatureDisabled {
        /// The scheme, in lower case.
        scheme: &'static str,
        /// The cargo feature to enable.
        feature: &'static str,
    },
    /// The URL has a known scheme but cannot be used with it.
    #[error("invalid `{scheme}` store URL: {reason}")]
    InvalidUrl {
        /// The scheme, in lower case.
        scheme: &'static str,
        /// What is wrong.
        reason: &'static str,
    },
    /// The store could not be opened or migrated.
    #[error("cannot open the key store")]
    Store(#[source] StoreError),
}

impl AnyStore {
    /// Opens the store a URL names, creating or upgrading keyward's tables on a SQL store
    /// (its `migrate`, which is idempotent and safe to run from several instances at once):
    ///
    /// - `memory:` or `memory://`: a new, empty [`MemoryStore`];
    /// - `sqlite:…` (feature `sqlite`): `SqliteStore::connect` with the whole URL, such as
    ///   `sqlite://keys.db?mode=rwc` (`mode=rwc` creates the file);
    /// - `postgres://…` or `postgresql://…` (feature `postgres`): `PostgresStore::connect`
    ///   with the whole URL.
    ///
    /// Schemes are matched ignoring case. Errors never contain the URL: a store error whose
    /// text would show the URL's password is replaced by one that says so.
    ///
    /// # Errors
    /// [`AnyStoreError::NoScheme`] or [`AnyStoreError::UnknownScheme`] for a URL of no store,
    /// [`AnyStoreError::FeatureDisabled`] for a store this build leaves out,
    /// [`AnyStoreError::InvalidUrl`] for a `memory:` URL with a path, and
    /// [`AnyStoreError::Store`] when the database cannot be opened or migrated.
    pub async fn open(url: &str) -> Result<Self, AnyStoreError> {
        let scheme = scheme(url).ok_or(AnyStoreError::NoScheme)?;
        let rest = &url[scheme.len() + 1..];
        match scheme.to_ascii_lowercase().as_str() {
            "memory" => {
                if rest.is_empty() || rest == "//" {
                    Ok(Self::Memory(MemoryStore::new()))
                } else {
                    Err(AnyStoreError::InvalidUrl {
                        scheme: "memory",
                        reason: "nothing may follow `memory:` or `memory://`",
                    })
                }
            }
            "sqlite" => open_sqlite(rest).await,
            "postgres" => open_postgres("postgres", url, rest).await,
            "postgresql" => open_postgres("postgresql", url, rest).await,
            _ => Err(AnyStoreError::UnknownScheme {
                scheme: scheme.to_owned(),
            }),
        }
    }
}

impl AnyStore {
    /// The invalidation stream for a [`CachedStore`](super::CachedStore) over this store:
    /// [`PgInvalidations`](super::PgInvalidations) for PostgreSQL,
    /// [`SqliteInvalidations`](super::SqliteInvalidations) for SQLite, and `None` for the
    /// memory store, which lives in this process only: a cache in front of it saves
    /// nothing.
    #[must_use]
    pub fn invalidations(&self) -> Option<AnyInvalidations> {
        match self {
            Self::Memory(_) => None,
            #[cfg(feature = "sqlite")]
            Self::Sqlite(store) => Some(AnyInvalidations::Sqlite(super::SqliteInvalidations::new(
                store,
            ))),
            #[cfg(feature = "postgres")]
            Self::Postgres(store) => Some(AnyInvalidations::Postgres(super::PgInvalidations::new(
                store,
            ))),
        }
    }
}

/// The invalidation stream of an [`AnyStore`]'s database (from
/// [`AnyStore::invalidations`]), with the defaults of each.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum AnyInvalidations {
    /// `PRAGMA data_version` polling.
    #[cfg(feature = "sqlite")]
    #[cfg_attr(docsrs, doc(cfg(feature = "sqlite")))]
    Sqlite(super::SqliteInvalidations),
    /// `LISTEN/NOTIFY`.
    #[cfg(feature = "postgres")]
    #[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
    Postgres(super::PgInvalidations),
}

impl super::InvalidationStream for AnyInvalidations {
    async fn run(self, feed: super::CacheFeed) {
        // Without a SQL feature there is no variant, and nothing to drive.
        #[cfg(not(any(feature = "sqlite", feature = "postgres")))]
        drop(feed);
        match self {
            #[cfg(feature = "sqlite")]
            Self::Sqlite(stream) => stream.run(feed).await,
            #[cfg(feature = "postgres")]
            Self::Postgres(stream) => stream.run(feed).await,
        }
    }
}

#[cfg(feature = "sqlite")]
async fn open_sqlite(rest: &str) -> Result<AnyStore, AnyStoreError> {
    // sqlx wants the scheme in lower case.
    let url = format!("sqlite:{rest}");
    let store = SqliteStore::connect(&url)
        .await
        .map_err(AnyStoreError::Store)?;
    store.migrate().await.map_err(AnyStoreError::Store)?;
    Ok(AnyStore::Sqlite(store))
}

#[cfg(not(feature = "sqlite"))]
async fn open_sqlite(_rest: &str) -> Result<AnyStore, AnyStoreError> {
    Err(AnyStoreError::FeatureDisabled {
        scheme: "sqlite",
        feature: "sqlite",
    })
}

#[cfg(feature = "postgres")]
async fn open_postgres(
    scheme: &'static str,
    url: &str,
    rest: &str,
) -> Result<AnyStore, AnyStoreError> {
    let secrets = url_secrets(url);
    let fail = |e: StoreError| AnyStoreError::Store(withhold_secrets(e, &secrets));
    let url = format!("{scheme}:{rest}");
    let store = PostgresStore::connect(&url).await.map_err(fail)?;
    store.migrate().await.map_err(fail)?;
    Ok(AnyStore::Postgres(store))
}

#[cfg(not(feature = "postgres"))]
async fn open_postgres(
    scheme: &'static str,
    _url: &str,
    _rest: &str,
) -> Result<AnyStore, AnyStoreError> {
    Err(AnyStoreError::FeatureDisabled {
        scheme,
        feature: "postgres",
    })
}

/// The URL's scheme (RFC 3986: a letter, then letters, digits, `+`, `-` or `.`), if it
/// starts with one no longer than [`MAX_SCHEME_LEN`].
fn scheme(url: &str) -> Option<&str> {
    let (scheme, _) = url.split_once(':')?;
    let mut chars = scheme.chars();
    let valid = scheme.len() <= MAX_SCHEME_LEN
        && chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    valid.then_some(scheme)
}

/// The passwords a URL carries (in its user information or a `password` query parameter),
/// as written and percent-decoded.
#[cfg_attr(not(feature = "postgres"), allow(dead_code))]
fn url_secrets(url: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut add = |raw: &str, plus_is_space: bool| {
        if raw.is_empty() {
            return;
        }
        let decoded = percent_decode(raw, plus_is_space);
        if decoded != raw {
            found.push(decoded.into_owned());
        }
        found.push(raw.to_owned());
    };
    let without_fragment = url.split('#').next().unwrap_or_default();
    let (before_query, query) = match without_fragment.split_once('?') {
        Some((before, query)) => (before, Some(query)),
        None => (without_fragment, None),
    };
    if let Some((_, after_scheme)) = before_query.split_once("://") {
        let authority = after_scheme.split('/').next().unwrap_or_default();
        if let Some((userinfo, _)) = authority.rsplit_once('@')
            && let Some((_, password)) = userinfo.split_once(':')
        {
            add(password, false);
        }
    }
    for pair in query.into_iter().flat_map(|q| q.split('&')) {
        if let Some((key, value)) = pair.split_once('=')
            && percent_decode(key, true) == "password"
        {
            add(value, true);
        }
    }
    found
}

/// `text` with `%XX` escapes decoded (and `+` as a space in a query), invalid UTF-8 replaced.
fn percent_decode(text: &str, plus_is_space: bool) -> Cow<'_, str> {
    if !(text.contains('%') || plus_is_space && text.contains('+')) {
        return Cow::Borrowed(text);
    }
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let byte = bytes[i];
        let escaped = (byte == b'%')
            .then(|| bytes.get(i + 1..i + 3))
            .flatten()
            .and_then(|hex| core::str::from_utf8(hex).ok())
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match escaped {
            Some(decoded) => {
                out.push(decoded);
                i += 3;
            }
            None => {
                out.push(if plus_is_space && byte == b'+' {
                    b' '
                } else {
                    byte
                });
                i += 1;
            }
        }
    }
    Cow::Owned(String::from_utf8_lossy(&out).into_owned())
}

/// `error` itself, unless its text (display of every source, or debug) contains one of
/// `secrets`: then an [`StoreError::Unavailable`] that says details were withheld.
#[cfg_attr(not(feature = "postgres"), allow(dead_code))]
fn withhold_secrets(error: StoreError, secrets: &[String]) -> StoreError {
    let mut text = format!("{error:?}");
    let mut source: Option<&(dyn StdError + 'static)> = Some(&error);
    while let Some(e) = source {
        text.push('\n');
        text.push_str(&e.to_string());
        source = e.source();
    }
    if secrets.iter().any(|s| text.contains(s.as_str())) {
        StoreError::unavailable(
            "the database error's details are withheld: they contain the URL's password",
        )
    } else {
        error
    }
}

impl From<MemoryStore> for AnyStore {
    fn from(store: MemoryStore) -> Self {
        Self::Memory(store)
    }
}

#[cfg(feature = "sqlite")]
impl From<SqliteStore> for AnyStore {
    fn from(store: SqliteStore) -> Self {
        Self::Sqlite(store)
    }
}

#[cfg(feature = "postgres")]
impl From<PostgresStore> for AnyStore {
    fn from(store: PostgresStore) -> Self {
        Self::Postgres(store)
    }
}

/// Calls the same method on whichever store `$self` holds.
macro_rules! forward {
    ($self:ident, $store:ident => $call:expr) => {
        match $self {
            AnyStore::Memory($store) => $call.await,
            #[cfg(feature = "sqlite")]
            AnyStore::Sqlite($store) => $call.await,
            #[cfg(feature = "postgres")]
            AnyStore::Postgres($store) => $call.await,
        }
    };
}

impl KeyStore for AnyStore {
    async fn insert(&self, record: KeyRecord) -> Result<(), StoreError> {
        forward!(self, s => s.insert(record))
    }

    async fn insert_all(&self, records: Vec<KeyRecord>) -> Result<(), StoreError> {
        forward!(self, s => s.insert_all(records))
    }

    async fn insert_capped(
        &self,
        record: KeyRecord,
        max_live: usize,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        forward!(self, s => s.insert_capped(record, max_live, now))
    }

    async fn insert_within(
        &self,
        record: KeyRecord,
        caps: LiveCaps,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        forward!(self, s => s.insert_within(record, caps, now))
    }

    async fn get(&self, id: &KeyId) -> Result<Option<Arc<KeyRecord>>, StoreError> {
        forward!(self, s => s.get(id))
    }

    async fn update(&self, record: KeyRecord, expected_version: u64) -> Result<(), StoreError> {
        forward!(self, s => s.update(record, expected_version))
    }

    async fn rotate(
        &self,
        old: KeyRecord,
        expected_version: u64,
        new: KeyRecord,
    ) -> Result<(), StoreError> {
        forward!(self, s => s.rotate(old, expected_version, new))
    }

    async fn list(&self, filter: &ListFilter, page: Page) -> Result<Vec<KeyRecord>, StoreError> {
        forward!(self, s => s.list(filter, page))
    }

    async fn update_capped(
        &self,
        record: KeyRecord,
        expected_version: u64,
        max_live: usize,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        forward!(self, s => s.update_capped(record, expected_version, max_live, now))
    }

    async fn update_within(
        &self,
        record: KeyRecord,
        expected_version: u64,
        caps: LiveCaps,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        forward!(self, s => s.update_within(record, expected_version, caps, now))
    }

    async fn revoke_matching(&self, filter: &ListFilter) -> Result<BulkRevocation, StoreError> {
        forward!(self, s => s.revoke_matching(filter))
    }

    async fn consume(&self, id: &KeyId, cost: u64) -> Result<Consumed, StoreError> {
        forward!(self, s => s.consume(id, cost))
    }

    async fn touch(&self, id: &KeyId, at: OffsetDateTime) -> Result<(), StoreError> {
        forward!(self, s => s.touch(id, at))
    }

    async fn touch_many(&self, touches: &[(KeyId, OffsetDateTime)]) -> Result<(), StoreError> {
        forward!(self, s => s.touch_many(touches))
    }

    async fn get_fresh(&self, id: &KeyId) -> Result<Option<Arc<KeyRecord>>, StoreError> {
        forward!(self, s => s.get_fresh(id))
    }

    async fn delete(&self, id: &KeyId) -> Result<bool, StoreError> {
        forward!(self, s => s.delete(id))
    }
}

impl crate::audit::AuditStore for AnyStore {
    async fn append(&self, records: Vec<crate::audit::AuditRecord>) -> Result<(), StoreError> {
        forward!(self, s => s.append(records))
    }

    async fn query(
        &self,
        query: &crate::audit::AuditQuery,
    ) -> Result<Vec<crate::audit::AuditRecord>, StoreError> {
        forward!(self, s => s.query(query))
    }

    async fn purge_before(&self, before: OffsetDateTime) -> Result<u64, StoreError> {
        forward!(self, s => s.purge_before(before))
    }
}

impl crate::manager::NoticeStore for AnyStore {
    async fn claim_notice(
        &self,
        key: &KeyId,
        threshold: time::Duration,
        expires_at: OffsetDateTime,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        forward!(self, s => s.claim_notice(key, threshold, expires_at, now))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schemes() {
        assert_eq!(scheme("memory:"), Some("memory"));
        assert_eq!(scheme("Postgres://u:p@h/d"), Some("Postgres"));
        assert_eq!(scheme("keys.db"), None);
        assert_eq!(scheme(":x"), None);
        assert_eq!(scheme("1x:y"), None);
        assert_eq!(scheme(&format!("{}:", "a".repeat(33))), None);
    }

    #[test]
    fn secrets_of_a_url() {
        assert_eq!(
            url_secrets("postgres://u:p%40ss@h:5432/d"),
            ["p@ss", "p%40ss"]
        );
        assert_eq!(
            url_secrets("postgres://u@h/d?password=a+b&x=1"),
            ["a b", "a+b"]
        );
        assert_eq!(url_secrets("postgres://u:@h/d"), Vec::<String>::new());
        assert_eq!(url_secrets("postgres://h/d?x=u:p@"), Vec::<String>::new());
        assert_eq!(url_secrets("postgres://u:s/e@h/d"), Vec::<String>::new());
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%2Fb%zz%", false), "a/b%zz%");
        assert_eq!(percent_decode("a+b", false), "a+b");
        assert_eq!(percent_decode("%ff", false), "\u{fffd}");
    }

    #[test]
    fn withheld_when_the_text_shows_a_secret() {
        let shown = StoreError::unavailable("bad password hunter2 for user");
        let kept = withhold_secrets(shown, &["hunter2".to_owned()]);
        assert!(!format!("{kept:?}").contains("hunter2"));
        let other = StoreError::unavailable("connection refused");
        let kept = withhold_secrets(other, &["hunter2".to_owned()]);
        assert!(format!("{kept:?}").contains("connection refused"));
    }
}
