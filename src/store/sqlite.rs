//! The SQLite store (feature `sqlite`): keys in an embedded database file, with sqlx.

use core::str::FromStr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use sqlx::query::Query;
use sqlx::sqlite::{
    SqliteArguments, SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteRow,
};
use sqlx::{Sqlite, SqliteConnection};
use time::OffsetDateTime;

use super::sql::{self, ColumnError, Encoded, Migration, SchemaTooNew, unavailable};
use super::{BulkRevocation, Consumed, KeyStore, ListFilter, Page, StoreError};
use crate::key_id::KeyId;
use crate::record::KeyRecord;

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
];

const VERSION_TABLE: &str = "CREATE TABLE IF NOT EXISTS keyward_schema_version (
    version INTEGER NOT NULL PRIMARY KEY,
    description TEXT NOT NULL,
    applied_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now'))
) STRICT";

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
/// Every [`KeyStore`] method is atomic: single statements (a bulk revocation is one
/// `UPDATE`), or one `BEGIN IMMEDIATE` transaction where a check and a write go together
/// (the per-owner cap on inserts and on capped updates, rotation), so the cap holds across
/// connections and processes sharing the file. Listings are ordered by the bytes of the id,
/// which is [`KeyId`]'s order for ids of one length.
///
/// A row that does not decode is [`StoreError::Corrupt`] naming its key; driver, pool and
/// connection errors are [`StoreError::Unavailable`].
///
/// ```no_run
/// # async fn demo() -> Result<(), keyward::StoreError> {
/// let store = keyward::SqliteStore::open("keys.db").await?;
/// store.migrate().await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
}

impl SqliteStore {
    /// keyward's schema version that [`SqliteStore::migrate`] brings a database to.
    pub const SCHEMA_VERSION: i64 = 3;

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
        Self { pool }
    }

    /// The connection pool, for the application's own queries.
    #[must_use]
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// Creates or upgrades keyward's tables to [`SqliteStore::SCHEMA_VERSION`], recording
    /// each applied version in `keyward_schema_version`. A database of an earlier version
    /// is upgraded in place, its keys kept as they were: version 2 adds the columns of the
    /// usage quota's refill schedule ([`QuotaRefill`](crate::QuotaRefill)) and of the time of
    /// the last refill, null for existing keys (no schedule); version 3 adds the column of
    /// the delegation parent ([`KeyRecord::parent`]), null for existing keys (root keys: old
    /// `issued_by` values stay history and are not enforced). Idempotent; runs in one
    /// `BEGIN IMMEDIATE` transaction, so concurrent calls apply each step once. Other tables,
    /// including sqlx's `_sqlx_migrations`, are left alone.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when the database fails, or holds a keyward schema newer
    /// than this version of keyward knows (nothing is changed then).
    pub async fn migrate(&self) -> Result<(), StoreError> {
        let mut tx = self
            .pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(unavailable)?;
        sqlx::query(VERSION_TABLE)
            .execute(&mut *tx)
            .await
            .map_err(unavailable)?;
        let current: i64 = sqlx::query_scalar(sql::SCHEMA_VERSION)
            .fetch_one(&mut *tx)
            .await
            .map_err(unavailable)?;
        if current > Self::SCHEMA_VERSION {
            return Err(StoreError::unavailable(SchemaTooNew {
                found: current,
                supported: Self::SCHEMA_VERSION,
            }));
        }
        for migration in MIGRATIONS.iter().filter(|m| m.version > current) {
            for statement in migration.statements {
                sqlx::query(statement)
                    .execute(&mut *tx)
                    .await
                    .map_err(unavailable)?;
            }
            sqlx::query(sql::RECORD_MIGRATION)
                .bind(migration.version)
                .bind(migration.description)
                .execute(&mut *tx)
                .await
                .map_err(unavailable)?;
        }
        tx.commit().await.map_err(unavailable)
    }

    /// keyward's schema version in the database: 0 before the first
    /// [`SqliteStore::migrate`].
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when the database fails.
    pub async fn schema_version(&self) -> Result<i64, StoreError> {
        let tables: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' \
             AND name = 'keyward_schema_version'",
        )
        .fetch_one(&self.pool)
        .await
        .map_err(unavailable)?;
        if tables == 0 {
            return Ok(0);
        }
        sqlx::query_scalar(sql::SCHEMA_VERSION)
            .fetch_one(&self.pool)
            .await
            .map_err(unavailable)
    }
}

type SqliteQuery<'q> = Query<'q, Sqlite, SqliteArguments<'q>>;

/// UTC unix microseconds, truncated like PostgreSQL's `timestamptz` (saturating outside
/// ±292,000 years, which `time` does not reach by default).
fn micros(t: OffsetDateTime) -> i64 {
    let us = t.unix_timestamp_nanos() / 1000;
    i64::try_from(us).unwrap_or(if us < 0 { i64::MIN } else { i64::MAX })
}

fn time_column(row: &SqliteRow, name: &'static str) -> Result<Option<OffsetDateTime>, ColumnError> {
    sql::column::<SqliteRow, Option<i64>>(row, name)?
        .map(|us| {
            OffsetDateTime::from_unix_timestamp_nanos(i128::from(us) * 1000)
                .map_err(|e| ColumnError::new(name, e))
        })
        .transpose()
}

fn decode(row: &SqliteRow, known: Option<KeyId>) -> Result<KeyRecord, StoreError> {
    sql::decode(row, known, time_column)
}

/// Binds `$1` to `$24` of [`sql::INSERT`] and [`sql::UPDATE`].
fn bind_record<'q>(query: SqliteQuery<'q>, e: &Encoded<'q>) -> SqliteQuery<'q> {
    let r = e.record;
    query
        .bind(e.id())
        .bind(r.prefix.as_str())
        .bind(r.tenant.as_deref())
        .bind(r.name.as_str())
        .bind(r.owner.as_str())
        .bind(e.scopes.clone())
        .bind(e.roles.clone())
        .bind(e.restrictions.clone())
        .bind(e.metadata.clone())
        .bind(micros(r.created_at))
        .bind(r.expires_at.map(micros))
        .bind(r.last_used_at.map(micros))
        .bind(e.status())
        .bind(e.hash())
        .bind(e.version)
        .bind(sql::optional_id(r.rotated_from.as_ref()))
        .bind(sql::optional_id(r.rotated_to.as_ref()))
        .bind(sql::optional_id(r.issued_by.as_ref()))
        .bind(e.remaining_uses)
        .bind(e.refill_uses)
        .bind(e.refill_interval)
        .bind(e.refill_day)
        .bind(r.refilled_at.map(micros))
        .bind(sql::optional_id(r.parent.as_ref()))
}

/// Inserts `record` on `conn`; a taken id is [`StoreError::Duplicate`].
async fn insert_on(conn: &mut SqliteConnection, record: &KeyRecord) -> Result<(), StoreError> {
    let encoded = Encoded::new(record)?;
    match bind_record(sqlx::query(sql::INSERT), &encoded)
        .execute(conn)
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if sql::is_unique_violation(&e) => Err(StoreError::Duplicate(record.id)),
        Err(e) => Err(unavailable(e)),
    }
}

/// Compare-and-set of `record` on `conn`, storing version `expected + 1`.
async fn update_on(
    conn: &mut SqliteConnection,
    record: &KeyRecord,
    expected: u64,
) -> Result<(), StoreError> {
    let id = record.id;
    // A version that does not fit the column is not the stored one.
    let (Ok(expected_i64), Some(next)) = (i64::try_from(expected), expected.checked_add(1)) else {
        return Err(missing_or_conflict(conn, id).await);
    };
    let mut encoded = Encoded::new(record)?;
    encoded.version = sql::saturating_i64(next);
    let done = bind_record(sqlx::query(sql::UPDATE), &encoded)
        .bind(expected_i64)
        .execute(&mut *conn)
        .await
        .map_err(unavailable)?;
    if done.rows_affected() == 1 {
        Ok(())
    } else {
        Err(missing_or_conflict(conn, id).await)
    }
}

/// Checks that key `id` is stored with version `expected`, inside a transaction that holds
/// the write lock (so it cannot change before the transaction's write).
async fn check_version(
    conn: &mut SqliteConnection,
    id: KeyId,
    expected: u64,
) -> Result<(), StoreError> {
    let stored = sqlx::query_scalar::<_, i64>(sql::VERSION)
        .bind(id.as_str())
        .fetch_optional(conn)
        .await
        .map_err(unavailable)?;
    sql::check_version(id, stored, expected)
}

/// Why a compare-and-set on `id` changed nothing: the record is absent or has another
/// version.
async fn missing_or_conflict(conn: &mut SqliteConnection, id: KeyId) -> StoreError {
    match sqlx::query_scalar::<_, i64>(sql::VERSION)
        .bind(id.as_str())
        .fetch_optional(conn)
        .await
    {
        Ok(None) => StoreError::NotFound(id),
        Ok(Some(_)) => StoreError::Conflict(id),
        Err(e) => unavailable(e),
    }
}

impl KeyStore for SqliteStore {
    async fn insert(&self, record: KeyRecord) -> Result<(), StoreError> {
        let mut conn = self.pool.acquire().await.map_err(unavailable)?;
        insert_on(&mut conn, &record).await
    }

    async fn insert_capped(
        &self,
        record: KeyRecord,
        max_live: usize,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        // BEGIN IMMEDIATE takes the database's write lock before the count, so no other
        // writer can insert between the count and the insert.
        let mut tx = self
            .pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(unavailable)?;
        let exists = sqlx::query(sql::EXISTS)
            .bind(record.id.as_str())
            .fetch_optional(&mut *tx)
            .await
            .map_err(unavailable)?;
        if exists.is_some() {
            return Err(StoreError::Duplicate(record.id));
        }
        let live: i64 = sqlx::query_scalar(sql::COUNT_LIVE)
            .bind(record.owner.as_str())
            .bind(micros(now))
            .fetch_one(&mut *tx)
            .await
            .map_err(unavailable)?;
        if live >= sql::saturating_usize(max_live) {
            return Err(StoreError::LimitReached { limit: max_live });
        }
        insert_on(&mut tx, &record).await?;
        tx.commit().await.map_err(unavailable)
    }

    async fn get(&self, id: &KeyId) -> Result<Option<Arc<KeyRecord>>, StoreError> {
        let row = sqlx::query(sql::SELECT)
            .bind(id.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(unavailable)?;
        row.map(|row| decode(&row, Some(*id)).map(Arc::new))
            .transpose()
    }

    async fn update(&self, record: KeyRecord, expected_version: u64) -> Result<(), StoreError> {
        let mut conn = self.pool.acquire().await.map_err(unavailable)?;
        update_on(&mut conn, &record, expected_version).await
    }

    async fn rotate(
        &self,
        old: KeyRecord,
        expected_version: u64,
        new: KeyRecord,
    ) -> Result<(), StoreError> {
        let mut tx = self
            .pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(unavailable)?;
        update_on(&mut tx, &old, expected_version).await?;
        // A duplicate new id returns early: dropping the transaction rolls the update back.
        insert_on(&mut tx, &new).await?;
        tx.commit().await.map_err(unavailable)
    }

    async fn update_capped(
        &self,
        record: KeyRecord,
        expected_version: u64,
        max_live: usize,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        // As in insert_capped: BEGIN IMMEDIATE takes the database's write lock before the
        // checks, so no other writer changes the record or the owner's keys in between.
        let mut tx = self
            .pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(unavailable)?;
        check_version(&mut tx, record.id, expected_version).await?;
        if record.counts_against_cap(now) {
            let others: i64 = sqlx::query_scalar(sql::COUNT_LIVE_OTHERS)
                .bind(record.owner.as_str())
                .bind(micros(now))
                .bind(record.id.as_str())
                .fetch_one(&mut *tx)
                .await
                .map_err(unavailable)?;
            if others >= sql::saturating_usize(max_live) {
                return Err(StoreError::LimitReached { limit: max_live });
            }
        }
        update_on(&mut tx, &record, expected_version).await?;
        tx.commit().await.map_err(unavailable)
    }

    async fn revoke_matching(&self, filter: &ListFilter) -> Result<BulkRevocation, StoreError> {
        // One statement that decodes no row: a corrupt row is revoked like the others.
        let mut query = sql::revoke_query::<Sqlite>(filter);
        let rows = query
            .build()
            .fetch_all(&self.pool)
            .await
            .map_err(unavailable)?;
        Ok(BulkRevocation::new(sql::revoked_ids(&rows), Vec::new()))
    }

    async fn list(&self, filter: &ListFilter, page: Page) -> Result<Vec<KeyRecord>, StoreError> {
        let mut query = sql::list_query::<Sqlite>(filter, page);
        let rows = query
            .build()
            .fetch_all(&self.pool)
            .await
            .map_err(unavailable)?;
        rows.iter().map(|row| decode(row, None)).collect()
    }

    async fn consume(&self, id: &KeyId, cost: u64) -> Result<Consumed, StoreError> {
        if let Ok(cost) = i64::try_from(cost) {
            let left: Option<i64> = sqlx::query_scalar(sql::CONSUME)
                .bind(id.as_str())
                .bind(cost)
                .fetch_optional(&self.pool)
                .await
                .map_err(unavailable)?;
            if let Some(left) = left {
                return u64::try_from(left)
                    .map(Consumed::Remaining)
                    .map_err(|e| StoreError::corrupt(*id, ColumnError::new("remaining_uses", e)));
            }
        }
        // Nothing taken: no such key, no quota, or not enough left.
        let row: Option<Option<i64>> = sqlx::query_scalar(sql::REMAINING)
            .bind(id.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(unavailable)?;
        Ok(match row {
            None => Consumed::NotFound,
            Some(None) => Consumed::Unlimited,
            Some(Some(_)) => Consumed::Exhausted,
        })
    }

    async fn touch(&self, id: &KeyId, at: OffsetDateTime) -> Result<(), StoreError> {
        sqlx::query(sql::TOUCH)
            .bind(id.as_str())
            .bind(micros(at))
            .execute(&self.pool)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn delete(&self, id: &KeyId) -> Result<bool, StoreError> {
        let done = sqlx::query(sql::DELETE)
            .bind(id.as_str())
            .execute(&self.pool)
            .await
            .map_err(unavailable)?;
        Ok(done.rows_affected() > 0)
    }
}
