//! The SQLite store (feature `sqlite`): keys in an embedded database file, with sqlx.

use core::str::FromStr;
use std::path::Path;
use std::time::Duration;

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
};
use sqlx::{Sqlite, SqliteConnection, Transaction};
use time::OffsetDateTime;

mod invalidations;

pub use invalidations::SqliteInvalidations;

use super::StoreError;
use super::sql::{self, ColumnError, Conn, Dialect, Migration, SqlStore, unavailable};

/// keyward's schema on SQLite, one entry per version.
const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        description: "keys table with owner and tenant indexes",
        statements: &[
            // Timestamps are UTC unix microseconds; scopes, roles, restrictions and metadata
            // are JSON text. STRICT keeps every column to its declared type.
            "CREATE TABLE IF NOT EXISTS keyward_keys (
            id TEXT NOT NULL PRIMARY KEY
                CHECK (length(id) BETWEEN 11 AND 32 AND id NOT GLOB '*[^0-9A-Za-z]*'),
            prefix TEXT NOT NULL,
            tenant TEXT,
            name TEXT NOT NULL,
            owner TEXT NOT NULL,
            scopes TEXT NOT NULL,
            roles TEXT NOT NULL,
            restrictions TEXT NOT NULL,
            metadata TEXT NOT NULL,
            created_at INTEGER NOT NULL,
            expires_at INTEGER,
            last_used_at INTEGER,
            status TEXT NOT NULL,
            hash TEXT NOT NULL,
            version INTEGER NOT NULL,
            rotated_from TEXT,
            rotated_to TEXT,
            issued_by TEXT,
            remaining_uses INTEGER
        ) STRICT",
            "CREATE INDEX IF NOT EXISTS keyward_keys_owner ON keyward_keys (owner)",
            "CREATE INDEX IF NOT EXISTS keyward_keys_tenant ON keyward_keys (tenant)",
        ],
    },
    Migration {
        version: 2,
        description: "usage quota refill schedule and time of the last refill",
        statements: &[
            // The schedule: all three null without one; refilled_at in unix microseconds.
            "ALTER TABLE keyward_keys ADD COLUMN refill_uses INTEGER",
            "ALTER TABLE keyward_keys ADD COLUMN refill_interval TEXT",
            "ALTER TABLE keyward_keys ADD COLUMN refill_day INTEGER",
            "ALTER TABLE keyward_keys ADD COLUMN refilled_at INTEGER",
        ],
    },
    Migration {
        version: 3,
        description: "delegation parent",
        statements: &[
            // The delegation parent's key id; null for a root key (and every older key).
            "ALTER TABLE keyward_keys ADD COLUMN parent TEXT",
        ],
    },
    Migration {
        version: 4,
        description: "IP allowlists, audit log, expiry notices",
        statements: &[
            // JSON text: null for any network (every older key), else a list of CIDR blocks.
            "ALTER TABLE keyward_keys ADD COLUMN allowed_networks TEXT NOT NULL DEFAULT 'null'",
            // The audit log: times in UTC unix microseconds, detail as JSON text.
            "CREATE TABLE IF NOT EXISTS keyward_audit (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            at INTEGER NOT NULL,
            kind TEXT NOT NULL,
            key_id TEXT,
            name TEXT,
            tenant TEXT,
            owner TEXT,
            actor TEXT,
            client_addr TEXT,
            request_id TEXT,
            detail TEXT NOT NULL,
            count INTEGER NOT NULL
        ) STRICT",
            "CREATE INDEX IF NOT EXISTS keyward_audit_key ON keyward_audit (key_id, seq)",
            "CREATE INDEX IF NOT EXISTS keyward_audit_at ON keyward_audit (at)",
            // Expiry notices sent: one row per key, threshold and expiry.
            "CREATE TABLE IF NOT EXISTS keyward_expiry_notices (
            key_id TEXT NOT NULL,
            threshold_secs INTEGER NOT NULL,
            expires_at INTEGER NOT NULL,
            sent_at INTEGER NOT NULL,
            PRIMARY KEY (key_id, threshold_secs, expires_at)
        ) STRICT",
        ],
    },
];

const VERSION_TABLE: &str = "CREATE TABLE IF NOT EXISTS keyward_schema_version (
    version INTEGER NOT NULL PRIMARY KEY,
    description TEXT NOT NULL,
    applied_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now'))
) STRICT";

/// Moves `last_used_at` forward for many keys (see [`Dialect::TOUCH_MANY`]); a key's
/// latest time wins.
const TOUCH_MANY: &str = "UPDATE keyward_keys SET last_used_at = t.at \
     FROM (SELECT json_extract(value, '$[0]') AS id, max(json_extract(value, '$[1]')) AS at \
           FROM json_each($1) GROUP BY 1) AS t \
     WHERE keyward_keys.id = t.id \
       AND (keyward_keys.last_used_at IS NULL OR keyward_keys.last_used_at < t.at)";

/// How long a statement waits for another connection's write to finish.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// How long an operation waits for a free connection of the pool.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

/// Keeps key records in a SQLite database file (bundled SQLite, write-ahead log), through a
/// sqlx connection pool: the embedded, persistent store for a single service.
///
/// Call [`SqliteStore::migrate`] once at start to create or upgrade keyward's tables. They
/// live beside the application's own tables: `keyward_keys` (one row per key, primary key
/// on the id, indexes on owner and tenant) and `keyward_schema_version` (keyward's own schema
/// version; sqlx's `_sqlx_migrations` table is never touched). Secrets are never stored, only
/// their [`StoredHash`](crate::StoredHash) strings; timestamps are UTC unix microseconds;
/// scopes, roles, restrictions and metadata are JSON text.
///
/// Every [`KeyStore`](super::KeyStore) method is atomic: single statements (a bulk revocation is one
/// `UPDATE`), or one `BEGIN IMMEDIATE` transaction where a check and a write go together
/// (the per-owner cap on inserts and on capped updates, rotation), so the cap holds across
/// connections and processes sharing the file. Listings are ordered by the bytes of the id,
/// which is [`KeyId`](crate::key::id::KeyId)'s order for ids of one length.
///
/// A row that does not decode is [`StoreError::Corrupt`] naming its key; driver, pool and
/// connection errors are [`StoreError::Unavailable`].
///
/// ```no_run
/// # async fn demo() -> Result<(), keyward::store::StoreError> {
/// let store = keyward::store::SqliteStore::open("keys.db").await?;
/// store.migrate().await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
    read_timeout: Duration,
}

impl SqlStore for SqliteStore {
    type Db = Sqlite;

    fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    fn read_timeout(&self) -> Duration {
        self.read_timeout
    }
}

impl SqliteStore {
    /// keyward's schema version that [`SqliteStore::migrate`] brings a database to.
    pub const SCHEMA_VERSION: i64 = 4;

    /// Opens (creating it if missing) the database file at `path`, in WAL mode.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when the file cannot be opened.
    pub async fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        Self::connect_with(
            SqliteConnectOptions::new()
                .filename(path)
                .create_if_missing(true),
        )
        .await
    }

    /// Connects to a database URL such as `sqlite://keys.db?mode=rwc` (`mode=rwc` creates
    /// the file), in WAL mode.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when the URL is invalid or the database cannot be opened.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        Self::connect_with(SqliteConnectOptions::from_str(url).map_err(unavailable)?).await
    }

    async fn connect_with(options: SqliteConnectOptions) -> Result<Self, StoreError> {
        let options = options
            .journal_mode(SqliteJournalMode::Wal)
            .busy_timeout(BUSY_TIMEOUT);
        let pool = SqlitePoolOptions::new()
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(options)
            .await
            .map_err(unavailable)?;
        Ok(Self::from_pool(pool))
    }

    /// A store over an existing pool. Configure the pool's connections with
    /// `journal_mode(SqliteJournalMode::Wal)` and a busy timeout, as
    /// [`SqliteStore::open`] does.
    #[must_use]
    pub fn from_pool(pool: SqlitePool) -> Self {
        Self {
            pool,
            read_timeout: sql::READ_TIMEOUT,
        }
    }

    /// Sets how long a read on the verification path (`get`, `consume`, `touch`,
    /// `touch_many`) waits, for a connection and for the database (another process holding
    /// the file's lock, say), before failing with [`StoreError::Unavailable`] (default 2
    /// seconds).
    ///
    /// A `consume` or a last-use write that timed out may still commit on the server: a
    /// quota may lose the uses of a call that was refused (it never gains any).
    #[must_use]
    pub fn with_read_timeout(mut self, timeout: Duration) -> Self {
        self.read_timeout = timeout;
        self
    }

    /// The read timeout (see [`SqliteStore::with_read_timeout`]).
    #[must_use]
    pub fn read_timeout(&self) -> Duration {
        self.read_timeout
    }

    /// The connection pool, for the application's own queries.
    #[must_use]
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// Creates or upgrades keyward's tables to [`SqliteStore::SCHEMA_VERSION`] (what each
    /// version adds: [`store`](crate::store#schema-versions)). Idempotent; one
    /// `BEGIN IMMEDIATE` transaction, so concurrent calls apply each step once. Tables
    /// other than keyward's, sqlx's `_sqlx_migrations` included, are left alone.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when the database fails, or holds a keyward schema newer
    /// than this version of keyward knows (nothing is changed then).
    pub async fn migrate(&self) -> Result<(), StoreError> {
        Conn::migrate(&self.pool, Self::SCHEMA_VERSION).await
    }

    /// The schema version recorded in this SQLite file: 0 before the first
    /// [`SqliteStore::migrate`].
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when the database fails.
    pub async fn schema_version(&self) -> Result<i64, StoreError> {
        Conn::schema_version(&self.pool).await
    }
}

impl Dialect for Sqlite {
    type Time = i64;

    const MIGRATIONS: &'static [Migration] = MIGRATIONS;
    const VERSION_TABLE: &'static str = VERSION_TABLE;
    const TOUCH_MANY: &'static str = TOUCH_MANY;

    fn time(t: OffsetDateTime) -> i64 {
        sql::micros(t)
    }

    fn read_time(
        row: &SqliteRow,
        name: &'static str,
    ) -> Result<Option<OffsetDateTime>, ColumnError> {
        sql::column::<SqliteRow, Option<i64>>(row, name)?
            .map(|us| sql::from_micros(us, name))
            .transpose()
    }

    /// `BEGIN IMMEDIATE` takes the database's write lock before the transaction's first
    /// statement, so no other writer changes anything between its checks and its write.
    async fn begin(pool: &SqlitePool) -> Result<Transaction<'static, Sqlite>, sqlx::Error> {
        pool.begin_with("BEGIN IMMEDIATE").await
    }

    /// Nothing to take: the transaction already holds the database's write lock.
    async fn lock_owner(_conn: &mut SqliteConnection, _owner: &str) -> Result<(), sqlx::Error> {
        Ok(())
    }

    /// Nothing to take: the transaction already holds the database's write lock.
    async fn lock_tenant(_conn: &mut SqliteConnection, _tenant: &str) -> Result<(), sqlx::Error> {
        Ok(())
    }

    /// Nothing to take: the transaction already holds the database's write lock.
    async fn lock_migrations(_conn: &mut SqliteConnection) -> Result<(), sqlx::Error> {
        Ok(())
    }

    async fn has_version_table(pool: &SqlitePool) -> Result<bool, sqlx::Error> {
        let tables: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' \
             AND name = 'keyward_schema_version'",
        )
        .fetch_one(pool)
        .await?;
        Ok(tables != 0)
    }
}
