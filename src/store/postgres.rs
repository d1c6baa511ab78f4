//! The PostgreSQL store (feature `postgres`): keys shared by many service instances, with
//! sqlx.

use core::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgRow};
use sqlx::{PgConnection, Postgres, Transaction};
use time::OffsetDateTime;

mod invalidations;

pub use invalidations::PgInvalidations;

use super::StoreError;
use super::sql::{self, ColumnError, Conn, Dialect, Migration, SqlStore, unavailable};

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
    Migration {
        version: 4,
        description: "IP allowlists, audit log, expiry notices",
        statements: &[
            // JSON text: null for any network (every older key), else a list of CIDR blocks.
            // A constant default is added without rewriting the table.
            "ALTER TABLE keyward_keys ADD COLUMN allowed_networks text NOT NULL DEFAULT 'null'",
            // The audit log: times in UTC unix microseconds (as on SQLite), detail as JSON
            // text.
            "CREATE TABLE IF NOT EXISTS keyward_audit (
            seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            at bigint NOT NULL,
            kind text NOT NULL,
            key_id text,
            name text,
            tenant text,
            owner text,
            actor text,
            client_addr text,
            request_id text,
            detail text NOT NULL,
            count bigint NOT NULL
        )",
            "CREATE INDEX IF NOT EXISTS keyward_audit_key ON keyward_audit (key_id, seq)",
            "CREATE INDEX IF NOT EXISTS keyward_audit_at ON keyward_audit (at)",
            // Expiry notices sent: one row per key, threshold and expiry.
            "CREATE TABLE IF NOT EXISTS keyward_expiry_notices (
            key_id text NOT NULL,
            threshold_secs bigint NOT NULL,
            expires_at bigint NOT NULL,
            sent_at bigint NOT NULL,
            PRIMARY KEY (key_id, threshold_secs, expires_at)
        )",
        ],
    },
    Migration {
        version: 5,
        description: "change notifications for caches",
        statements: &[
            // Every committed insert, delete and change of a key notifies channel
            // `keyward_keys` with its id (a truncation with `*`), so that caches in every
            // instance drop it (`PgInvalidations`). A change of `last_used_at` alone
            // notifies nothing: it is a statistic, and notifying it would empty every
            // instance's cache of its busiest keys once a minute.
            "CREATE OR REPLACE FUNCTION keyward_keys_notify() RETURNS trigger \
             LANGUAGE plpgsql AS $$ \
             BEGIN \
                 IF TG_OP = 'TRUNCATE' THEN \
                     PERFORM pg_notify('keyward_keys', '*'); \
                     RETURN NULL; \
                 END IF; \
                 IF TG_OP IN ('UPDATE', 'DELETE') THEN \
                     PERFORM pg_notify('keyward_keys', OLD.id); \
                 END IF; \
                 IF TG_OP IN ('INSERT', 'UPDATE') THEN \
                     PERFORM pg_notify('keyward_keys', NEW.id); \
                 END IF; \
                 RETURN NULL; \
             END $$",
            "CREATE TRIGGER keyward_keys_notify_row AFTER INSERT OR DELETE ON keyward_keys \
             FOR EACH ROW EXECUTE FUNCTION keyward_keys_notify()",
            "CREATE TRIGGER keyward_keys_notify_change AFTER UPDATE ON keyward_keys \
             FOR EACH ROW WHEN ((to_jsonb(OLD) - 'last_used_at') \
                 IS DISTINCT FROM (to_jsonb(NEW) - 'last_used_at')) \
             EXECUTE FUNCTION keyward_keys_notify()",
            "CREATE TRIGGER keyward_keys_notify_truncate AFTER TRUNCATE ON keyward_keys \
             FOR EACH STATEMENT EXECUTE FUNCTION keyward_keys_notify()",
            // Also under `session_replication_role = replica` (logical replication
            // subscribers, some restore tools), which skips ordinary triggers.
            "ALTER TABLE keyward_keys ENABLE ALWAYS TRIGGER keyward_keys_notify_row, \
             ENABLE ALWAYS TRIGGER keyward_keys_notify_change, \
             ENABLE ALWAYS TRIGGER keyward_keys_notify_truncate",
        ],
    },
];

/// Moves `last_used_at` forward for many keys (see [`Dialect::TOUCH_MANY`]); a key's
/// latest time wins, and ids are compared as the text they are.
const TOUCH_MANY: &str = "UPDATE keyward_keys k SET last_used_at = t.at \
     FROM (SELECT e->>0 AS id, \
                  max(timestamptz 'epoch' + (e->>1)::bigint * interval '1 microsecond') AS at \
           FROM jsonb_array_elements($1::text::jsonb) AS e GROUP BY 1) AS t \
     WHERE k.id = t.id AND (k.last_used_at IS NULL OR k.last_used_at < t.at)";

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
/// First key of the per-owner locks taken by the capped writes (`insert_capped`,
/// `update_capped`, and `insert_within`/`update_within` with an owner cap).
const OWNER_LOCK_SPACE: i32 = LOCK_SPACE + 1;
/// First key of the per-tenant locks taken by `insert_within` and `update_within` with a
/// tenant cap (`hashtext(tenant)` is the second).
const TENANT_LOCK_SPACE: i32 = LOCK_SPACE + 2;

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
/// Every [`KeyStore`](super::KeyStore) method is atomic: single statements (compare-and-set updates, quota
/// consumption, bulk revocation), or one transaction where a check and a write go together.
/// The per-owner cap (on inserts and on capped updates) takes a transaction-scoped advisory
/// lock on the owner, so it holds with any number of connections and instances; rotation
/// updates the old key and inserts the new one in one transaction. Listings are ordered by
/// the bytes of the id, which is [`KeyId`](crate::key::id::KeyId)'s order for ids of one length.
///
/// A row that does not decode is [`StoreError::Corrupt`] naming its key; driver, pool and
/// connection errors (including a pool that has no free connection in time) are
/// [`StoreError::Unavailable`].
///
/// ```no_run
/// # async fn demo() -> Result<(), keyward::store::StoreError> {
/// let store = keyward::store::PostgresStore::connect("postgres://app@localhost/app").await?;
/// store.migrate().await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct PostgresStore {
    pool: PgPool,
    read_timeout: Duration,
}

impl SqlStore for PostgresStore {
    type Db = Postgres;

    fn pool(&self) -> &PgPool {
        &self.pool
    }

    fn read_timeout(&self) -> Duration {
        self.read_timeout
    }
}

impl PostgresStore {
    /// keyward's schema version that [`PostgresStore::migrate`] brings a database to.
    pub const SCHEMA_VERSION: i64 = 5;

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
        Self {
            pool,
            read_timeout: sql::READ_TIMEOUT,
        }
    }

    /// Sets how long a read on the verification path (`get`, `consume`, `touch`,
    /// `touch_many`) waits for the database, connection included, before failing with
    /// [`StoreError::Unavailable`] (default 2 seconds): a stalled database (a connection
    /// open but silent) makes verification fail closed within this time instead of
    /// hanging. Management writes are bounded by the pool's acquire timeout and the
    /// server's own timeouts instead.
    ///
    /// A `consume` or a last-use write that timed out may still commit on the server: a
    /// quota may lose the uses of a call that was refused (it never gains any).
    #[must_use]
    pub fn with_read_timeout(mut self, timeout: Duration) -> Self {
        self.read_timeout = timeout;
        self
    }

    /// The read timeout (see [`PostgresStore::with_read_timeout`]).
    #[must_use]
    pub fn read_timeout(&self) -> Duration {
        self.read_timeout
    }

    /// The connection pool, for the application's own queries.
    #[must_use]
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Creates or upgrades keyward's tables to [`PostgresStore::SCHEMA_VERSION`] (what each
    /// version adds: [`store`](crate::store#schema-versions)). Idempotent, and safe to run
    /// from several instances at once: one transaction holding an advisory lock applies
    /// each step once. Tables other than keyward's, sqlx's `_sqlx_migrations` included, are
    /// left alone.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when the database fails, or holds a keyward schema newer
    /// than this version of keyward knows (nothing is changed then).
    pub async fn migrate(&self) -> Result<(), StoreError> {
        Conn::migrate(&self.pool, Self::SCHEMA_VERSION).await
    }

    /// The schema version recorded in this PostgreSQL database: 0 before the first
    /// [`PostgresStore::migrate`].
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when the database fails.
    pub async fn schema_version(&self) -> Result<i64, StoreError> {
        Conn::schema_version(&self.pool).await
    }
}

impl Dialect for Postgres {
    type Time = OffsetDateTime;

    const MIGRATIONS: &'static [Migration] = MIGRATIONS;
    const VERSION_TABLE: &'static str = VERSION_TABLE;
    const TOUCH_MANY: &'static str = TOUCH_MANY;

    fn time(t: OffsetDateTime) -> OffsetDateTime {
        t
    }

    fn read_time(row: &PgRow, name: &'static str) -> Result<Option<OffsetDateTime>, ColumnError> {
        sql::column::<PgRow, Option<OffsetDateTime>>(row, name)
    }

    /// Begins at READ COMMITTED whatever the server's default isolation: a capped write
    /// counts after taking its advisory lock, and only at READ COMMITTED does that count
    /// see what the lock's previous holder committed (under REPEATABLE READ the snapshot
    /// would date from before the wait, and two writes could both pass the cap).
    async fn begin(pool: &PgPool) -> Result<Transaction<'static, Postgres>, sqlx::Error> {
        pool.begin_with("BEGIN ISOLATION LEVEL READ COMMITTED")
            .await
    }

    /// Takes the advisory lock of `owner`'s capped writes, held until the transaction ends.
    /// Capped writes for one owner queue on it until the holder commits, and each statement
    /// after it sees what the previous holders committed (READ COMMITTED).
    async fn lock_owner(conn: &mut PgConnection, owner: &str) -> Result<(), sqlx::Error> {
        sqlx::query("SELECT pg_advisory_xact_lock($1, hashtext($2))")
            .bind(OWNER_LOCK_SPACE)
            .bind(owner)
            .execute(conn)
            .await?;
        Ok(())
    }

    /// Takes the advisory lock of `tenant`'s capped writes, held until the transaction
    /// ends, as [`Dialect::lock_owner`] does for an owner.
    async fn lock_tenant(conn: &mut PgConnection, tenant: &str) -> Result<(), sqlx::Error> {
        sqlx::query("SELECT pg_advisory_xact_lock($1, hashtext($2))")
            .bind(TENANT_LOCK_SPACE)
            .bind(tenant)
            .execute(conn)
            .await?;
        Ok(())
    }

    /// Takes the migration's advisory lock, held until the transaction ends: migrations
    /// running from several instances at once apply each step once.
    async fn lock_migrations(conn: &mut PgConnection) -> Result<(), sqlx::Error> {
        sqlx::query("SELECT pg_advisory_xact_lock($1, $2)")
            .bind(LOCK_SPACE)
            .bind(MIGRATION_LOCK)
            .execute(conn)
            .await?;
        Ok(())
    }

    async fn has_version_table(pool: &PgPool) -> Result<bool, sqlx::Error> {
        sqlx::query_scalar("SELECT to_regclass('keyward_schema_version') IS NOT NULL")
            .fetch_one(pool)
            .await
    }
}
