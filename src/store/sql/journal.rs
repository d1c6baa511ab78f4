//! The SQL stores' audit log (`keyward_audit`) and expiry-notice markers
//! (`keyward_expiry_notices`), both from schema version 4, written once for SQLite and
//! PostgreSQL. Times are UTC unix microseconds (`bigint`) in both tables, so range queries
//! are the same statement on both databases.

use sqlx::{ColumnIndex, Decode, Encode, Executor, IntoArguments, Row, Type};
use time::OffsetDateTime;

use super::{ColumnError, Dialect, SqlStore, from_micros, micros, saturating_i64, unavailable};
use crate::audit::{AuditQuery, AuditRecord, AuditStore};
use crate::key::id::KeyId;
use crate::manager::NoticeStore;
use crate::store::StoreError;

const INSERT: &str = "INSERT INTO keyward_audit (at, kind, key_id, name, tenant, owner, actor, \
     client_addr, request_id, detail, count) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)";

const SELECT: &str = "SELECT seq, at, kind, key_id, name, tenant, owner, actor, client_addr, \
     request_id, detail, count FROM keyward_audit WHERE seq > $1";

const PURGE: &str = "DELETE FROM keyward_audit WHERE at < $1 RETURNING seq";

const CLAIM: &str = "INSERT INTO keyward_expiry_notices (key_id, threshold_secs, expires_at, \
     sent_at) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING RETURNING key_id";

/// A value bound to a query built at run time.
enum Bind {
    Text(String),
    Int(i64),
}

impl<S, DB> AuditStore for S
where
    S: SqlStore<Db = DB>,
    DB: Dialect,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    for<'q> Option<&'q str>: Encode<'q, DB>,
    for<'q> Option<String>: Encode<'q, DB>,
    for<'q> String: Encode<'q, DB> + Decode<'q, DB> + Type<DB>,
    for<'q> i64: Encode<'q, DB> + Decode<'q, DB> + Type<DB>,
    &'static str: ColumnIndex<DB::Row>,
{
    async fn append(&self, records: Vec<AuditRecord>) -> Result<(), StoreError> {
        let mut tx = self.pool().begin().await.map_err(unavailable)?;
        for r in &records {
            sqlx::query(INSERT)
                .bind(micros(r.at))
                .bind(r.kind.as_str())
                .bind(r.key_id.as_ref().map(KeyId::as_str))
                .bind(r.name.as_deref())
                .bind(r.tenant.as_deref())
                .bind(r.owner.as_deref())
                .bind(r.actor.as_deref())
                .bind(r.client_addr.map(|a| a.to_string()))
                .bind(r.request_id.as_deref())
                .bind(r.detail.to_string())
                .bind(saturating_i64(r.count))
                .execute(&mut *tx)
                .await
                .map_err(unavailable)?;
        }
        tx.commit().await.map_err(unavailable)
    }

    async fn query(&self, query: &AuditQuery) -> Result<Vec<AuditRecord>, StoreError> {
        let mut sql = SELECT.to_owned();
        let mut binds = vec![Bind::Int(saturating_i64(query.after.unwrap_or(0)))];
        let mut condition = |column: &str, op: &str, value: Bind| {
            binds.push(value);
            sql.push_str(&format!(" AND {column} {op} ${}", binds.len()));
        };
        if let Some(key) = &query.key {
            condition("key_id", "=", Bind::Text(key.as_str().to_owned()));
        }
        if let Some(owner) = &query.owner {
            condition("owner", "=", Bind::Text(owner.clone()));
        }
        if let Some(tenant) = &query.tenant {
            condition("tenant", "=", Bind::Text(tenant.clone()));
        }
        if let Some(kind) = &query.kind {
            condition("kind", "=", Bind::Text(kind.clone()));
        }
        if let Some(since) = query.since {
            condition("at", ">=", Bind::Int(micros(since)));
        }
        if let Some(until) = query.until {
            condition("at", "<", Bind::Int(micros(until)));
        }
        let limit = query.limit.clamp(1, AuditQuery::MAX_LIMIT);
        sql.push_str(&format!(" ORDER BY seq LIMIT {limit}"));
        let mut statement = sqlx::query(&sql);
        for bind in binds {
            statement = match bind {
                Bind::Text(text) => statement.bind(text),
                Bind::Int(n) => statement.bind(n),
            };
        }
        let mut conn = self.pool().acquire().await.map_err(unavailable)?;
        let rows = statement.fetch_all(&mut *conn).await.map_err(unavailable)?;
        rows.iter()
            .map(|row| decode(row).map_err(StoreError::unavailable))
            .collect()
    }

    async fn purge_before(&self, before: OffsetDateTime) -> Result<u64, StoreError> {
        let mut conn = self.pool().acquire().await.map_err(unavailable)?;
        let rows = sqlx::query(PURGE)
            .bind(micros(before))
            .fetch_all(&mut *conn)
            .await
            .map_err(unavailable)?;
        Ok(u64::try_from(rows.len()).unwrap_or(u64::MAX))
    }
}

fn decode<R>(row: &R) -> Result<AuditRecord, ColumnError>
where
    R: Row,
    &'static str: ColumnIndex<R>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
{
    let text = |name: &'static str| super::column::<R, Option<String>>(row, name);
    let unsigned = |name: &'static str| {
        let n = super::column::<R, i64>(row, name)?;
        u64::try_from(n).map_err(|e| ColumnError::new(name, e))
    };
    let key_id = text("key_id")?
        .map(|raw| {
            raw.parse::<KeyId>()
                .map_err(|e| ColumnError::new("key_id", e))
        })
        .transpose()?;
    let client_addr = text("client_addr")?
        .map(|raw| raw.parse().map_err(|e| ColumnError::new("client_addr", e)))
        .transpose()?;
    let detail = super::column::<R, String>(row, "detail")?;
    Ok(AuditRecord {
        seq: unsigned("seq")?,
        at: from_micros(super::column::<R, i64>(row, "at")?, "at")?,
        kind: super::column::<R, String>(row, "kind")?,
        key_id,
        name: text("name")?,
        tenant: text("tenant")?,
        owner: text("owner")?,
        actor: text("actor")?,
        client_addr,
        request_id: text("request_id")?,
        detail: serde_json::from_str(&detail).map_err(|e| ColumnError::new("detail", e))?,
        count: unsigned("count")?,
    })
}

impl<S, DB> NoticeStore for S
where
    S: SqlStore<Db = DB>,
    DB: Dialect,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
{
    async fn claim_notice(
        &self,
        key: &KeyId,
        threshold: time::Duration,
        expires_at: OffsetDateTime,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        let mut conn = self.pool().acquire().await.map_err(unavailable)?;
        let claimed = sqlx::query(CLAIM)
            .bind(key.as_str())
            .bind(threshold.whole_seconds())
            .bind(micros(expires_at))
            .bind(micros(now))
            .fetch_optional(&mut *conn)
            .await
            .map_err(unavailable)?;
        Ok(claimed.is_some())
    }
}
