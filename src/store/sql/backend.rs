//! The SQL stores' one implementation of [`KeyStore`], generic over the database: what
//! differs between SQLite and PostgreSQL (how a timestamp is stored, how a transaction
//! begins, how writes for one owner are serialized, the schema) is a [`Dialect`]; every
//! statement and every step around them is written once, here.

use core::future::Future;
use std::sync::Arc;

use sqlx::query::Query as SqlxQuery;
use sqlx::{
    ColumnIndex, Database, Decode, Encode, Executor, IntoArguments, Pool, Transaction, Type,
};
use time::OffsetDateTime;

use super::{
    self as sql, ColumnError, Encoded, Filtered, Migration, SchemaTooNew, saturating_i64,
    saturating_usize, unavailable,
};
use crate::key::id::KeyId;
use crate::record::KeyRecord;
use crate::store::{BulkRevocation, Consumed, KeyStore, ListFilter, LiveCaps, Page, StoreError};

/// A statement of `DB` with its bound values.
type Query<'q, DB> = SqlxQuery<'q, DB, <DB as Database>::Arguments<'q>>;

/// What one SQL database does its own way. Implemented for [`sqlx::Postgres`] in
/// `postgres.rs` and for [`sqlx::Sqlite`] in `sqlite.rs`.
pub(in crate::store) trait Dialect: Database {
    /// How a timestamp is bound: `timestamptz` on PostgreSQL, UTC unix microseconds on
    /// SQLite.
    type Time: for<'q> Encode<'q, Self> + Type<Self> + Send + Sync + 'static;

    /// keyward's schema, one entry per version.
    const MIGRATIONS: &'static [Migration];

    /// Creates `keyward_schema_version` if it is missing.
    const VERSION_TABLE: &'static str;

    /// Moves `last_used_at` forward for many keys in one statement: `$1` is the JSON text
    /// of `sql::touches_json`, `[["id", micros], ...]`, where an id may repeat (its latest
    /// time wins).
    const TOUCH_MANY: &'static str;

    /// `t` as this database stores it.
    fn time(t: OffsetDateTime) -> Self::Time;

    /// Reads the nullable timestamp column `name`.
    fn read_time(
        row: &Self::Row,
        name: &'static str,
    ) -> Result<Option<OffsetDateTime>, ColumnError>;

    /// Begins a transaction in which a check and a write go together.
    fn begin(
        pool: &Pool<Self>,
    ) -> impl Future<Output = Result<Transaction<'static, Self>, sqlx::Error>> + Send;

    /// Makes the capped writes of `owner` wait for each other until the transaction on
    /// `conn` ends (nothing where [`Dialect::begin`] already takes the database's write
    /// lock).
    fn lock_owner(
        conn: &mut Self::Connection,
        owner: &str,
    ) -> impl Future<Output = Result<(), sqlx::Error>> + Send;

    /// Makes the tenant-capped writes of `tenant` wait for each other until the transaction
    /// on `conn` ends, as [`Dialect::lock_owner`] does for an owner. Taken before the
    /// owner's lock, always in that order, so two capped writes never wait for each other
    /// in a cycle.
    fn lock_tenant(
        conn: &mut Self::Connection,
        tenant: &str,
    ) -> impl Future<Output = Result<(), sqlx::Error>> + Send;

    /// Makes concurrent migrations wait for each other until the transaction on `conn`
    /// ends (nothing where [`Dialect::begin`] already takes the database's write lock).
    fn lock_migrations(
        conn: &mut Self::Connection,
    ) -> impl Future<Output = Result<(), sqlx::Error>> + Send;

    /// Whether `keyward_schema_version` exists.
    fn has_version_table(
        pool: &Pool<Self>,
    ) -> impl Future<Output = Result<bool, sqlx::Error>> + Send;
}

/// A store that keeps its records in a SQL database through a sqlx pool; it is a
/// [`KeyStore`] by the implementation below.
pub(in crate::store) trait SqlStore: Send + Sync {
    /// The database.
    type Db: Dialect;

    /// The store's pool.
    fn pool(&self) -> &Pool<Self::Db>;

    /// How long a read on the verification path waits for the database.
    fn read_timeout(&self) -> core::time::Duration;
}

/// keyward's statements on one connection (or transaction) of database `DB`, and the
/// schema steps on its pool.
pub(in crate::store) struct Conn<'c, DB: Database>(&'c mut DB::Connection);

impl<DB> Conn<'_, DB>
where
    DB: Dialect,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    for<'q> Option<&'q str>: Encode<'q, DB>,
    for<'q> Option<i64>: Encode<'q, DB>,
    for<'q> Option<DB::Time>: Encode<'q, DB>,
    for<'q> String: Encode<'q, DB> + Type<DB>,
    for<'q> i64: Encode<'q, DB> + Decode<'q, DB> + Type<DB>,
    usize: ColumnIndex<DB::Row>,
{
    /// Inserts `record`; a taken id is [`StoreError::Duplicate`].
    async fn insert(&mut self, record: &KeyRecord) -> Result<(), StoreError> {
        let encoded = Encoded::new(record)?;
        match Self::bind_record(sqlx::query(sql::INSERT), &encoded)
            .execute(&mut *self.0)
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if sql::is_unique_violation(&e) => Err(StoreError::Duplicate(record.id)),
            Err(e) => Err(unavailable(e)),
        }
    }

    /// Compare-and-set of `record`, storing version `expected + 1`.
    async fn update(&mut self, record: &KeyRecord, expected: u64) -> Result<(), StoreError> {
        let id = record.id;
        // A version that does not fit the column is not the stored one.
        let (Ok(expected_i64), Some(next)) = (i64::try_from(expected), expected.checked_add(1))
        else {
            return Err(self.missing_or_conflict(id).await);
        };
        let mut encoded = Encoded::new(record)?;
        encoded.version = saturating_i64(next);
        let updated = Self::bind_record(sqlx::query(sql::UPDATE), &encoded)
            .bind(expected_i64)
            .fetch_optional(&mut *self.0)
            .await
            .map_err(unavailable)?;
        if updated.is_some() {
            Ok(())
        } else {
            Err(self.missing_or_conflict(id).await)
        }
    }

    /// The stored version of key `id`, if it exists.
    async fn version(&mut self, id: KeyId) -> Result<Option<i64>, sqlx::Error> {
        sqlx::query_scalar::<DB, i64>(sql::VERSION)
            .bind(id.as_str())
            .fetch_optional(&mut *self.0)
            .await
    }

    /// Checks that key `id` is stored with version `expected` (the first step of a
    /// compare-and-set done in a transaction; the write's own compare-and-set still guards
    /// it).
    async fn check_version(&mut self, id: KeyId, expected: u64) -> Result<(), StoreError> {
        let stored = self.version(id).await.map_err(unavailable)?;
        sql::check_version(id, stored, expected)
    }

    /// Why a compare-and-set on `id` changed nothing: the record is absent or has another
    /// version.
    async fn missing_or_conflict(&mut self, id: KeyId) -> StoreError {
        match self.version(id).await {
            Ok(None) => StoreError::NotFound(id),
            Ok(Some(_)) => StoreError::Conflict(id),
            Err(e) => unavailable(e),
        }
    }

    /// Fails with the error of the first cap of `caps` that `record` would break (the
    /// owner's [`StoreError::LimitReached`], then the tenant's
    /// [`StoreError::TenantLimitReached`]), counting the keys that count against the cap at
    /// `now`, not counting key `other_than`.
    async fn check_caps(
        &mut self,
        record: &KeyRecord,
        caps: LiveCaps,
        other_than: Option<&KeyId>,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        if let Some(cap) = caps.owner_cap() {
            let live = self
                .count_live(
                    sql::COUNT_LIVE,
                    sql::COUNT_LIVE_OTHERS,
                    &record.owner,
                    other_than,
                    now,
                )
                .await?;
            if live >= saturating_usize(cap) {
                return Err(StoreError::LimitReached { limit: cap });
            }
        }
        if let (Some(cap), Some(tenant)) = (caps.tenant_cap(), &record.tenant) {
            let live = self
                .count_live(
                    sql::COUNT_TENANT_LIVE,
                    sql::COUNT_TENANT_LIVE_OTHERS,
                    tenant,
                    other_than,
                    now,
                )
                .await?;
            if live >= saturating_usize(cap) {
                return Err(StoreError::TenantLimitReached { limit: cap });
            }
        }
        Ok(())
    }

    /// The live keys of one owner or tenant (`all`: `$1` the name, `$2` now), or of them
    /// other than key `other_than` (`others`: `$3` the key).
    async fn count_live(
        &mut self,
        all: &'static str,
        others: &'static str,
        name: &str,
        other_than: Option<&KeyId>,
        now: OffsetDateTime,
    ) -> Result<i64, StoreError> {
        let query = match other_than {
            None => sqlx::query_scalar::<DB, i64>(all)
                .bind(name)
                .bind(DB::time(now)),
            Some(id) => sqlx::query_scalar::<DB, i64>(others)
                .bind(name)
                .bind(DB::time(now))
                .bind(id.as_str()),
        };
        query.fetch_one(&mut *self.0).await.map_err(unavailable)
    }

    /// Binds `$1` to `$25` of [`sql::INSERT`] and [`sql::UPDATE`].
    fn bind_record<'q>(query: Query<'q, DB>, e: &Encoded<'q>) -> Query<'q, DB> {
        let r = e.record;
        let interval: Option<&'q str> = e.refill_interval;
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
            .bind(DB::time(r.created_at))
            .bind(r.expires_at.map(DB::time))
            .bind(r.last_used_at.map(DB::time))
            .bind(e.status())
            .bind(e.hash())
            .bind(e.version)
            .bind(sql::optional_id(r.rotated_from.as_ref()))
            .bind(sql::optional_id(r.rotated_to.as_ref()))
            .bind(sql::optional_id(r.issued_by.as_ref()))
            .bind(e.remaining_uses)
            .bind(e.refill_uses)
            .bind(interval)
            .bind(e.refill_day)
            .bind(r.refilled_at.map(DB::time))
            .bind(sql::optional_id(r.parent.as_ref()))
            .bind(e.allowed_networks.clone())
    }

    /// Begins the transaction of a write of `record` under `caps`, holding
    /// [`Dialect::lock_tenant`] (with a tenant cap and a tenant) then [`Dialect::lock_owner`]
    /// (with an owner cap): capped writes for one tenant, or one owner, never interleave.
    async fn begin_capped(
        pool: &Pool<DB>,
        record: &KeyRecord,
        caps: LiveCaps,
    ) -> Result<Transaction<'static, DB>, StoreError> {
        let mut tx = DB::begin(pool).await.map_err(unavailable)?;
        if let (Some(_), Some(tenant)) = (caps.tenant_cap(), &record.tenant) {
            DB::lock_tenant(&mut tx, tenant)
                .await
                .map_err(unavailable)?;
        }
        if caps.owner_cap().is_some() {
            DB::lock_owner(&mut tx, &record.owner)
                .await
                .map_err(unavailable)?;
        }
        Ok(tx)
    }

    /// `statement` with its values bound.
    fn bind_filtered<'q>(statement: &'q Filtered<'_>) -> Query<'q, DB> {
        let mut query = sqlx::query(&statement.sql);
        if let Some(value) = statement.filter {
            query = query.bind(value);
        }
        if let Some(after) = &statement.after {
            query = query.bind(after.as_str());
        }
        if let Some(limit) = statement.limit {
            query = query.bind(limit);
        }
        query
    }

    /// Creates or upgrades keyward's tables in `pool` to schema version `supported`, in
    /// one transaction begun by [`Dialect::begin`] that holds [`Dialect::lock_migrations`].
    pub(in crate::store) async fn migrate(
        pool: &Pool<DB>,
        supported: i64,
    ) -> Result<(), StoreError> {
        let mut tx = DB::begin(pool).await.map_err(unavailable)?;
        Conn::<DB>(&mut tx).apply_migrations(supported).await?;
        tx.commit().await.map_err(unavailable)
    }

    /// keyward's schema version in `pool`'s database: 0 before the first migration.
    pub(in crate::store) async fn schema_version(pool: &Pool<DB>) -> Result<i64, StoreError> {
        if !DB::has_version_table(pool).await.map_err(unavailable)? {
            return Ok(0);
        }
        sqlx::query_scalar(sql::SCHEMA_VERSION)
            .fetch_one(pool)
            .await
            .map_err(unavailable)
    }

    /// Applies the migrations past the database's schema version, recording each, unless
    /// the database is newer than `supported`.
    async fn apply_migrations(&mut self, supported: i64) -> Result<(), StoreError> {
        DB::lock_migrations(&mut *self.0)
            .await
            .map_err(unavailable)?;
        sqlx::query(DB::VERSION_TABLE)
            .execute(&mut *self.0)
            .await
            .map_err(unavailable)?;
        let current: i64 = sqlx::query_scalar(sql::SCHEMA_VERSION)
            .fetch_one(&mut *self.0)
            .await
            .map_err(unavailable)?;
        if current > supported {
            return Err(StoreError::unavailable(SchemaTooNew {
                found: current,
                supported,
            }));
        }
        for migration in DB::MIGRATIONS.iter().filter(|m| m.version > current) {
            for statement in migration.statements {
                sqlx::query(statement)
                    .execute(&mut *self.0)
                    .await
                    .map_err(unavailable)?;
            }
            sqlx::query(sql::RECORD_MIGRATION)
                .bind(migration.version)
                .bind(migration.description)
                .execute(&mut *self.0)
                .await
                .map_err(unavailable)?;
        }
        Ok(())
    }
}

/// The SQL stores' [`KeyStore`] (for `SqliteStore` and `PostgresStore`). Every method is atomic: one statement (compare-and-set
/// updates, quota consumption, bulk revocation), or one transaction begun by
/// `Dialect::begin` where a check and a write go together (the caps on live keys, which also
/// take `Dialect::lock_tenant` and `Dialect::lock_owner`, and rotation).
impl<S, DB> KeyStore for S
where
    S: SqlStore<Db = DB>,
    DB: Dialect,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    for<'q> Option<&'q str>: Encode<'q, DB>,
    for<'q> Option<i64>: Encode<'q, DB>,
    for<'q> Option<DB::Time>: Encode<'q, DB>,
    for<'q> String: Encode<'q, DB> + Decode<'q, DB> + Type<DB>,
    for<'q> i64: Encode<'q, DB> + Decode<'q, DB> + Type<DB>,
    usize: ColumnIndex<DB::Row>,
    &'static str: ColumnIndex<DB::Row>,
{
    async fn insert(&self, record: KeyRecord) -> Result<(), StoreError> {
        let mut conn = self.pool().acquire().await.map_err(unavailable)?;
        Conn::<DB>(&mut conn).insert(&record).await
    }

    async fn insert_all(&self, records: Vec<KeyRecord>) -> Result<(), StoreError> {
        let mut tx = DB::begin(self.pool()).await.map_err(unavailable)?;
        let mut on = Conn::<DB>(&mut tx);
        for record in &records {
            // An error returns early: dropping the transaction rolls every insert back.
            on.insert(record).await?;
        }
        tx.commit().await.map_err(unavailable)
    }

    async fn insert_capped(
        &self,
        record: KeyRecord,
        max_live: usize,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        self.insert_within(record, LiveCaps::none().owner(max_live), now)
            .await
    }

    async fn insert_within(
        &self,
        record: KeyRecord,
        caps: LiveCaps,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        let mut tx = Conn::<DB>::begin_capped(self.pool(), &record, caps).await?;
        let mut on = Conn::<DB>(&mut tx);
        let exists = sqlx::query(sql::EXISTS)
            .bind(record.id.as_str())
            .fetch_optional(&mut *on.0)
            .await
            .map_err(unavailable)?;
        if exists.is_some() {
            return Err(StoreError::Duplicate(record.id));
        }
        on.check_caps(&record, caps, None, now).await?;
        on.insert(&record).await?;
        tx.commit().await.map_err(unavailable)
    }

    async fn get(&self, id: &KeyId) -> Result<Option<Arc<KeyRecord>>, StoreError> {
        let row = sql::within(
            self.read_timeout(),
            sqlx::query(sql::SELECT)
                .bind(id.as_str())
                .fetch_optional(self.pool()),
        )
        .await?;
        row.map(|row| sql::decode(&row, Some(*id), DB::read_time).map(Arc::new))
            .transpose()
    }

    async fn update(&self, record: KeyRecord, expected_version: u64) -> Result<(), StoreError> {
        let mut conn = self.pool().acquire().await.map_err(unavailable)?;
        Conn::<DB>(&mut conn)
            .update(&record, expected_version)
            .await
    }

    async fn rotate(
        &self,
        old: KeyRecord,
        expected_version: u64,
        new: KeyRecord,
    ) -> Result<(), StoreError> {
        let mut tx = DB::begin(self.pool()).await.map_err(unavailable)?;
        let mut on = Conn::<DB>(&mut tx);
        on.update(&old, expected_version).await?;
        // A duplicate new id returns early: dropping the transaction rolls the update back.
        on.insert(&new).await?;
        tx.commit().await.map_err(unavailable)
    }

    async fn update_capped(
        &self,
        record: KeyRecord,
        expected_version: u64,
        max_live: usize,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        self.update_within(
            record,
            expected_version,
            LiveCaps::none().owner(max_live),
            now,
        )
        .await
    }

    async fn update_within(
        &self,
        record: KeyRecord,
        expected_version: u64,
        caps: LiveCaps,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        // As in insert_within, capped writes for one owner (or tenant) never interleave. A
        // plain update of this record between the version check and the write makes the
        // write's compare-and-set change nothing, which is a Conflict.
        let mut tx = Conn::<DB>::begin_capped(self.pool(), &record, caps).await?;
        let mut on = Conn::<DB>(&mut tx);
        on.check_version(record.id, expected_version).await?;
        if record.counts_against_cap(now) {
            on.check_caps(&record, caps, Some(&record.id), now).await?;
        }
        on.update(&record, expected_version).await?;
        tx.commit().await.map_err(unavailable)
    }

    async fn revoke_matching(&self, filter: &ListFilter) -> Result<BulkRevocation, StoreError> {
        // One statement that decodes no row: a corrupt row is revoked like the others.
        let revoke = Filtered::revoke(filter);
        let rows = Conn::<DB>::bind_filtered(&revoke)
            .fetch_all(self.pool())
            .await
            .map_err(unavailable)?;
        Ok(BulkRevocation::new(sql::revoked_ids(&rows), Vec::new()))
    }

    async fn list(&self, filter: &ListFilter, page: Page) -> Result<Vec<KeyRecord>, StoreError> {
        let list = Filtered::list(filter, page);
        let rows = Conn::<DB>::bind_filtered(&list)
            .fetch_all(self.pool())
            .await
            .map_err(unavailable)?;
        rows.iter()
            .map(|row| sql::decode(row, None, DB::read_time))
            .collect()
    }

    async fn consume(&self, id: &KeyId, cost: u64) -> Result<Consumed, StoreError> {
        let limit = self.read_timeout();
        if let Ok(cost) = i64::try_from(cost) {
            let left: Option<i64> = sql::within(
                limit,
                sqlx::query_scalar(sql::CONSUME)
                    .bind(id.as_str())
                    .bind(cost)
                    .fetch_optional(self.pool()),
            )
            .await?;
            if let Some(left) = left {
                return u64::try_from(left)
                    .map(Consumed::Remaining)
                    .map_err(|e| StoreError::corrupt(*id, ColumnError::new("remaining_uses", e)));
            }
        }
        // Nothing taken: no such key, no quota, or not enough left.
        let row: Option<Option<i64>> = sql::within(
            limit,
            sqlx::query_scalar(sql::REMAINING)
                .bind(id.as_str())
                .fetch_optional(self.pool()),
        )
        .await?;
        Ok(match row {
            None => Consumed::NotFound,
            Some(None) => Consumed::Unlimited,
            Some(Some(_)) => Consumed::Exhausted,
        })
    }

    async fn touch(&self, id: &KeyId, at: OffsetDateTime) -> Result<(), StoreError> {
        sql::within(
            self.read_timeout(),
            sqlx::query(sql::TOUCH)
                .bind(id.as_str())
                .bind(DB::time(at))
                .execute(self.pool()),
        )
        .await?;
        Ok(())
    }

    async fn touch_many(&self, touches: &[(KeyId, OffsetDateTime)]) -> Result<(), StoreError> {
        if touches.is_empty() {
            return Ok(());
        }
        sql::within(
            self.read_timeout(),
            sqlx::query(DB::TOUCH_MANY)
                .bind(sql::touches_json(touches))
                .execute(self.pool()),
        )
        .await?;
        Ok(())
    }

    async fn delete(&self, id: &KeyId) -> Result<bool, StoreError> {
        let deleted = sqlx::query(sql::DELETE)
            .bind(id.as_str())
            .fetch_optional(self.pool())
            .await
            .map_err(unavailable)?;
        Ok(deleted.is_some())
    }
}
