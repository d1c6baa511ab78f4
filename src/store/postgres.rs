//! The PostgreSQL store (feature `postgres`): keys shared by many service instances, with
//! sqlx.

use core::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::{PgArguments, PgConnectOptions, PgPool, PgPoolOptions, PgRow};
use sqlx::query::Query;
use sqlx::{PgConnection, Postgres};
use time::OffsetDateTime;

use super::sql::{self, ColumnError, Encoded, Migration, SchemaTooNew, unavailable};
use super::{BulkRevocation, Consumed, KeyStore, ListFilter, Page, StoreError};
use crate::key_id::KeyId;
use crate::record::KeyRecord;

/// keyward's schema on PostgreSQL, one entry per version.
const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        description: "keys table with owner and tenant indexes",
        statements: &[
            // Ids sort by their bytes (COLLATE "C"), whatever the database's collation.
            // Scopes, roles, restrictions and metadata are JSON text, which reads back exactly.
            r#"CREATE TABLE IF NOT EXISTS keyward_keys (
            id text COLLATE "C" PRIMARY KEY CHECK (id ~ '^[0-9A-Za-z]{11,32}$'),
            prefix text NOT NULL,
            tenant text,
            name text NOT NULL,
            owner text NOT NULL,
            scopes text NOT NULL,
            roles text NOT NULL,
            restrictions text NOT NULL,
            metadata text NOT NULL,
            created_at timestamptz NOT NULL,
            expires_at timestamptz,
            last_used_at timestamptz,
            status text NOT NULL,
            hash text NOT NULL,
            version bigint NOT NULL,
            rotated_from text,
            rotated_to text,
            issued_by text,
            remaining_uses bigint
        )"#,
            "CREATE INDEX IF NOT EXISTS keyward_keys_owner ON keyward_keys (owner)",
            "CREATE INDEX IF NOT EXISTS keyward_keys_tenant ON keyward_keys (tenant)",
        ],
    },
    Migration {
        version: 2,
        description: "usage quota refill schedule and time of the last refill",
        statements: &[
            // The schedule: all three null without one. Nullable columns without a default
            // are added without rewriting the table.
            "ALTER TABLE keyward_keys ADD COLUMN refill_uses bigint, \
             ADD COLUMN refill_interval text, ADD COLUMN refill_day bigint, \
             ADD COLUMN refilled_at timestamptz",
        ],
    },
    Migration {
        version: 3,
        description: "delegation parent",
        statements: &[
            // The delegation parent's key id; null for a root key (and every older key).
            "ALTER TABLE keyward_keys ADD COLUMN parent text",
        ],
    },
];

const VERSION_TABLE: &str = "CREATE TABLE IF NOT EXISTS keyward_schema_version (
    version bigint PRIMARY KEY,
    description text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)";

/// First key of keyward's advisory locks (`pg_advisory_xact_lock(int, int)`), `keyw` in
/// ASCII; the second key says what is locked.
const LOCK_SPACE: i32 = 0x6b65_7977;
/// Second key of the migration lock. Owner locks use `hashtext(owner)` under
/// [`OWNER_LOCK_SPACE`].
const MIGRATION_LOCK: i32 = 0;
/// First key of the per-owner locks taken by `insert_capped` and `update_capped`.
const OWNER_LOCK_SPACE: i32 = LOCK_SPACE + 1;

/// How long an operation waits for a connection before failing with
/// [`StoreError::Unavailable`] (for [`PostgresStore::connect`]).
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections of the pool made by [`PostgresStore::connect`].
const MAX_CONNECTIONS: u32 = 10;

/// Keeps key records in PostgreSQL through a sqlx connection pool: the store for services
/// that run on many machines and share one set of keys.
///
/// Call [`PostgresStore::migrate`] at start to create or upgrade keyward's tables in the
/// connection's current schema (the first of its `search_path`): `keyward_keys` (one row per
/// key, primary key on the id, indexes on owner and tenant) and `keyward_schema_version`
/// (keyward's own schema version; sqlx's `_sqlx_migrations` table is never touched). Secrets
/// are never stored, only their [`StoredHash`](crate::StoredHash) strings; timestamps are
/// `timestamptz` (microseconds, UTC); scopes, roles, restrictions and metadata are JSON text.
///
/// Every [`KeyStore`] method is atomic: single statements (compare-and-set updates, quota
/// consumption, bulk revocation), or one transaction where a check and a write go together.
/// The per-owner cap (on inserts and on capped updates) takes a transaction-scoped advisory
/// lock on the owner, so it holds with any number of connections and instances; rotation
/// updates the old key and inserts the new one in one transaction. Listings are ordered by
/// the bytes of the id, which is [`KeyId`]'s order for ids of one length.
///
/// A row that does not decode is [`StoreError::Corrupt`] naming its key; driver, pool and
/// connection errors (including a pool that has no free connection in time) are
/// [`StoreError::Unavailable`].
///
/// ```no_run
/// # async fn demo() -> Result<(), keyward::StoreError> {
/// let store = keyward::PostgresStore::connect("postgres://app@localhost/app").await?;
/// store.migrate().await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct PostgresStore {
    pool: PgPool,
}

impl PostgresStore {
    /// keyward's schema version that [`PostgresStore::migrate`] brings a database to.
    pub const SCHEMA_VERSION: i64 = 3;

    /// Connects a pool of up to 10 connections to a URL such as
    /// `postgres://user:password@host/database`; an operation waits at most 5 seconds for a
    /// connection. For other settings (TLS, pool size, timeouts) build the pool yourself and
    /// use [`PostgresStore::from_pool`].
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when the URL is invalid or the server cannot be reached.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let options = PgConnectOptions::from_str(url).map_err(unavailable)?;
        let pool = PgPoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(options)
            .await
            .map_err(unavailable)?;
        Ok(Self::from_pool(pool))
    }

    /// A store over an existing pool.
    #[must_use]
    pub fn from_pool(pool: PgPool) -> Self {
        Self { pool }
    }

    /// The connection pool, for the application's own queries.
    #[must_use]
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Creates or upgrades keyward's tables to [`PostgresStore::SCHEMA_VERSION`], recording
    /// each applied version in `keyward_schema_version`. A database of an earlier version
    /// is upgraded in place, its keys kept as they were: version 2 adds the columns of the
    /// usage quota's refill schedule ([`QuotaRefill`](crate::QuotaRefill)) and of the time of
    /// the last refill, null for existing keys (no schedule); version 3 adds the column of
    /// the delegation parent ([`KeyRecord::parent`]), null for existing keys (root keys: old
    /// `issued_by` values stay history and are not enforced). Idempotent, and safe to run from
    /// several instances at once: it runs in one transaction holding an advisory lock, so
    /// each step is applied once. Other tables, including sqlx's `_sqlx_migrations`, are
    /// left alone.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when the database fails, or holds a keyward schema newer
    /// than this version of keyward knows (nothing is changed then).
    pub async fn migrate(&self) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await.map_err(unavailable)?;
        sqlx::query("SELECT pg_advisory_xact_lock($1, $2)")
            .bind(LOCK_SPACE)
            .bind(MIGRATION_LOCK)
            .execute(&mut *tx)
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
    /// [`PostgresStore::migrate`].
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when the database fails.
    pub async fn schema_version(&self) -> Result<i64, StoreError> {
        let exists: bool =
            sqlx::query_scalar("SELECT to_regclass('keyward_schema_version') IS NOT NULL")
                .fetch_one(&self.pool)
                .await
                .map_err(unavailable)?;
        if !exists {
            return Ok(0);
        }
        sqlx::query_scalar(sql::SCHEMA_VERSION)
            .fetch_one(&self.pool)
            .await
            .map_err(unavailable)
    }
}

type PgQuery<'q> = Query<'q, Postgres, PgArguments>;

fn time_column(row: &PgRow, name: &'static str) -> Result<Option<OffsetDateTime>, ColumnError> {
    sql::column::<PgRow, Option<OffsetDateTime>>(row, name)
}

fn decode(row: &PgRow, known: Option<KeyId>) -> Result<KeyRecord, StoreError> {
    sql::decode(row, known, time_column)
}

/// Binds `$1` to `$24` of [`sql::INSERT`] and [`sql::UPDATE`].
fn bind_record<'q>(query: PgQuery<'q>, e: &Encoded<'q>) -> PgQuery<'q> {
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
        .bind(r.created_at)
        .bind(r.expires_at)
        .bind(r.last_used_at)
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
        .bind(r.refilled_at)
        .bind(sql::optional_id(r.parent.as_ref()))
}

/// Inserts `record` on `conn`; a taken id is [`StoreError::Duplicate`].
async fn insert_on(conn: &mut PgConnection, record: &KeyRecord) -> Result<(), StoreError> {
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
    conn: &mut PgConnection,
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

/// Takes the advisory lock of `owner`'s capped writes, held until the transaction ends.
/// Capped writes for one owner queue on it until the holder commits, and each statement
/// after it sees what the previous holders committed (READ COMMITTED).
async fn lock_owner(conn: &mut PgConnection, owner: &str) -> Result<(), StoreError> {
    sqlx::query("SELECT pg_advisory_xact_lock($1, hashtext($2))")
        .bind(OWNER_LOCK_SPACE)
        .bind(owner)
        .execute(conn)
        .await
        .map_err(unavailable)?;
    Ok(())
}

/// Checks that key `id` is stored with version `expected` (the first step of a
/// compare-and-set done in a transaction; the write's own compare-and-set still guards it).
async fn check_version(
    conn: &mut PgConnection,
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
async fn missing_or_conflict(conn: &mut PgConnection, id: KeyId) -> StoreError {
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

impl KeyStore for PostgresStore {
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
        let mut tx = self.pool.begin().await.map_err(unavailable)?;
        lock_owner(&mut tx, &record.owner).await?;
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
            .bind(now)
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
        let mut tx = self.pool.begin().await.map_err(unavailable)?;
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
        let mut tx = self.pool.begin().await.map_err(unavailable)?;
        // The owner's lock, as in insert_capped: capped writes for one owner never
        // interleave. A plain update of this record between the version check and the write
        // makes the write's compare-and-set change nothing, which is a Conflict.
        lock_owner(&mut tx, &record.owner).await?;
        check_version(&mut tx, record.id, expected_version).await?;
        if record.counts_against_cap(now) {
            let others: i64 = sqlx::query_scalar(sql::COUNT_LIVE_OTHERS)
                .bind(record.owner.as_str())
                .bind(now)
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
        let mut query = sql::revoke_query::<Postgres>(filter);
        let rows = query
            .build()
            .fetch_all(&self.pool)
            .await
            .map_err(unavailable)?;
        Ok(BulkRevocation::new(sql::revoked_ids(&rows), Vec::new()))
    }

    async fn list(&self, filter: &ListFilter, page: Page) -> Result<Vec<KeyRecord>, StoreError> {
        let mut query = sql::list_query::<Postgres>(filter, page);
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
            .bind(at)
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
