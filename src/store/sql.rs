//! What the SQL stores share: the columns of a record, how a record becomes column values
//! and a row becomes a record (or a [`StoreError::Corrupt`] naming the key), and how driver
//! errors map to [`StoreError`]; and, in `backend`, the one [`KeyStore`](super::KeyStore)
//! implementation both stores use.

mod backend;
mod journal;

pub(super) use backend::{Conn, Dialect, SqlStore};

use core::fmt;
use core::future::Future;
use core::time::Duration;
use std::error::Error as StdError;

use sqlx::{ColumnIndex, Decode, Row, Type};
use time::OffsetDateTime;

use super::{ListFilter, Page, StoreError};
use crate::hash::StoredHash;
use crate::key::id::KeyId;
use crate::key::prefix::Prefix;
use crate::network::Networks;
use crate::record::{KeyRecord, KeyStatus, Metadata, QuotaRefill, RefillError};
use crate::scope::{Restrictions, ScopeSet};

/// The record columns, in the order both stores bind and select them (`$1` to `$25`).
/// `refill_uses` to `refilled_at` came with schema version 2: the quota's refill schedule
/// (`refill_uses`, `refill_interval` `daily` or `monthly`, `refill_day` for `monthly`; all
/// null without a schedule) and the time of the last refill. `parent` (the delegation
/// parent's id, null for a root key) came with version 3, `allowed_networks` (the IP
/// allowlist as JSON text, `null` for any network) with version 4.
macro_rules! columns {
    () => {
        "id, prefix, tenant, name, owner, scopes, roles, restrictions, metadata, created_at, \
         expires_at, last_used_at, status, hash, version, rotated_from, rotated_to, issued_by, \
         remaining_uses, refill_uses, refill_interval, refill_day, refilled_at, parent, \
         allowed_networks"
    };
}

/// The version after a write that does not compare versions (consume, bulk revocation):
/// one more, saturating at `i64::MAX` like [`saturating_i64`], so that no stored value makes
/// the statement fail with an overflow.
macro_rules! next_version {
    () => {
        "CASE WHEN version < 9223372036854775807 THEN version + 1 ELSE version END"
    };
}

// Statements both databases run as written (SQLite accepts `$n` parameters too).

/// Reads one record: `$1` id.
pub(super) const SELECT: &str = concat!("SELECT ", columns!(), " FROM keyward_keys WHERE id = $1");

/// Inserts a record: `$1` to `$25` in column order.
pub(super) const INSERT: &str = concat!(
    "INSERT INTO keyward_keys (",
    columns!(),
    ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, \
     $18, $19, $20, $21, $22, $23, $24, $25)"
);

/// Compare-and-set: `$1` to `$25` as for [`INSERT`] (with `$15` the new version), `$26` the
/// expected version; returns a row when it replaced the record.
pub(super) const UPDATE: &str = "UPDATE keyward_keys SET prefix = $2, tenant = $3, name = $4, \
     owner = $5, scopes = $6, roles = $7, restrictions = $8, metadata = $9, created_at = $10, \
     expires_at = $11, last_used_at = $12, status = $13, hash = $14, version = $15, \
     rotated_from = $16, rotated_to = $17, issued_by = $18, remaining_uses = $19, \
     refill_uses = $20, refill_interval = $21, refill_day = $22, refilled_at = $23, \
     parent = $24, allowed_networks = $25 WHERE id = $1 AND version = $26 RETURNING version";

/// The version of one record (after a compare-and-set that changed nothing): `$1` id.
pub(super) const VERSION: &str = "SELECT version FROM keyward_keys WHERE id = $1";

/// Whether a record exists: `$1` id.
pub(super) const EXISTS: &str = "SELECT 1 FROM keyward_keys WHERE id = $1";

/// Which rows count against a cap (see [`KeyRecord::counts_against_cap`]): `$1` the
/// owner or tenant (as `$column`), `$2` now.
macro_rules! live_of {
    ($column:literal) => {
        concat!(
            "SELECT COUNT(*) FROM keyward_keys WHERE ",
            $column,
            " = $1 AND status = 'active' \
             AND (expires_at IS NULL OR expires_at > $2) AND rotated_to IS NULL"
        )
    };
}

/// Live keys of an owner that count against the cap (see
/// [`KeyRecord::counts_against_cap`]): `$1` owner, `$2` now.
pub(super) const COUNT_LIVE: &str = live_of!("owner");

/// Live keys of an owner that count against the cap, other than key `$3`: `$1` owner, `$2`
/// now (for [`KeyStore::update_capped`](super::KeyStore::update_capped), where the record
/// being replaced must not count against itself).
pub(super) const COUNT_LIVE_OTHERS: &str = concat!(live_of!("owner"), " AND id <> $3");

/// Live keys of a tenant that count against the cap: `$1` tenant, `$2` now.
pub(super) const COUNT_TENANT_LIVE: &str = live_of!("tenant");

/// Live keys of a tenant that count against the cap, other than key `$3`: `$1` tenant, `$2`
/// now.
pub(super) const COUNT_TENANT_LIVE_OTHERS: &str = concat!(live_of!("tenant"), " AND id <> $3");

/// Takes `$2` uses from key `$1` if that many are left. A consume is a write, so it moves
/// the version on: a compare-and-set built on a read from before it loses.
pub(super) const CONSUME: &str = concat!(
    "UPDATE keyward_keys SET remaining_uses = remaining_uses - $2, version = ",
    next_version!(),
    " WHERE id = $1 AND remaining_uses >= $2 RETURNING remaining_uses"
);

/// The start of a bulk revocation, to which [`Filtered::revoke`] adds the filter: revokes every
/// row not revoked yet, moving its version on, and returns the ids. It reads no other
/// column, so a row that does not decode is revoked like any other.
pub(super) const REVOKE: &str = concat!(
    "UPDATE keyward_keys SET status = 'revoked', version = ",
    next_version!(),
    " WHERE status <> 'revoked'"
);

/// What is left of a quota (after a consume that took nothing): `$1` id.
pub(super) const REMAINING: &str = "SELECT remaining_uses FROM keyward_keys WHERE id = $1";

/// Moves `last_used_at` of key `$1` forward to `$2`.
pub(super) const TOUCH: &str = "UPDATE keyward_keys SET last_used_at = $2 \
     WHERE id = $1 AND (last_used_at IS NULL OR last_used_at < $2)";

/// Deletes key `$1`; returns a row when there was one.
pub(super) const DELETE: &str = "DELETE FROM keyward_keys WHERE id = $1 RETURNING id";

/// The start of a listing, to which [`Filtered::list`] adds conditions.
pub(super) const LIST: &str = concat!("SELECT ", columns!(), " FROM keyward_keys WHERE 1 = 1");

/// The current keyward schema version (the table exists).
pub(super) const SCHEMA_VERSION: &str =
    "SELECT COALESCE(MAX(version), 0) FROM keyward_schema_version";

/// Records that a migration was applied: `$1` version, `$2` description.
pub(super) const RECORD_MIGRATION: &str =
    "INSERT INTO keyward_schema_version (version, description) VALUES ($1, $2)";

/// One step of keyward's schema: applied once, in order, recorded in
/// `keyward_schema_version`.
pub(super) struct Migration {
    pub(super) version: i64,
    pub(super) description: &'static str,
    pub(super) statements: &'static [&'static str],
}

/// A statement built from [`LIST`] or [`REVOKE`] and a filter: its text, with `$n`
/// placeholders, and the values they take, in order.
pub(super) struct Filtered<'a> {
    pub(super) sql: String,
    /// The owner or tenant to match, if the filter names one.
    pub(super) filter: Option<&'a str>,
    /// The id a listing starts after.
    pub(super) after: Option<String>,
    /// The most rows a listing returns.
    pub(super) limit: Option<i64>,
}

impl<'a> Filtered<'a> {
    /// A listing: [`LIST`] plus the filter, the page start, the order and the limit.
    pub(super) fn list(filter: &'a ListFilter, page: Page) -> Self {
        let mut q = Self::new(LIST, filter);
        if let Some(after) = page.after {
            q.after = Some(after.as_str().to_owned());
            q.push_placeholder(" AND id > ");
        }
        q.limit = Some(saturating_usize(page.limit.clamp(1, Page::MAX_LIMIT)));
        q.push_placeholder(" ORDER BY id LIMIT ");
        q
    }

    /// A bulk revocation: [`REVOKE`] plus the filter, returning the id of each row it
    /// revoked.
    pub(super) fn revoke(filter: &'a ListFilter) -> Self {
        let mut q = Self::new(REVOKE, filter);
        q.sql.push_str(" RETURNING id");
        q
    }

    /// `start` (whose `WHERE` clause is open) and `filter`'s condition (` AND …`).
    fn new(start: &str, filter: &'a ListFilter) -> Self {
        let mut q = Self {
            sql: start.to_owned(),
            filter: None,
            after: None,
            limit: None,
        };
        let (condition, value) = match filter {
            ListFilter::Owner(owner) => (" AND owner = ", owner.as_str()),
            ListFilter::Tenant(tenant) => (" AND tenant = ", tenant.as_str()),
            ListFilter::All => return q,
        };
        q.filter = Some(value);
        q.push_placeholder(condition);
        q
    }

    /// Appends `text` and the placeholder of the value set last.
    fn push_placeholder(&mut self, text: &str) {
        let n = [
            self.filter.is_some(),
            self.after.is_some(),
            self.limit.is_some(),
        ]
        .into_iter()
        .filter(|&bound| bound)
        .count();
        self.sql.push_str(text);
        self.sql.push('$');
        self.sql.push_str(&n.to_string());
    }
}

/// The ids a bulk revocation returned, as key ids in the order of their bytes (the order
/// of listings). A returned value that is not a key id (the schema's check constraint
/// normally prevents it) is logged and left out: its row is revoked all the same, but it
/// cannot be named.
pub(super) fn revoked_ids<R>(rows: &[R]) -> Vec<KeyId>
where
    R: Row,
    &'static str: ColumnIndex<R>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
{
    let mut ids: Vec<KeyId> = rows
        .iter()
        .filter_map(|row| {
            let parsed = column::<R, String>(row, "id")
                .and_then(|raw| raw.parse::<KeyId>().map_err(|e| ColumnError::new("id", e)));
            match parsed {
                Ok(id) => Some(id),
                Err(e) => {
                    tracing::warn!(
                        target: "keyward",
                        error = ?e,
                        "a bulk revocation revoked a row whose id is not a key id"
                    );
                    None
                }
            }
        })
        .collect();
    ids.sort_unstable_by(|a, b| a.as_str().cmp(b.as_str()));
    ids
}

/// The columns of a record that both databases store the same way: text, JSON text and
/// 64-bit integers. Timestamps are left to each store.
pub(super) struct Encoded<'a> {
    pub(super) record: &'a KeyRecord,
    pub(super) scopes: String,
    pub(super) roles: String,
    pub(super) restrictions: String,
    pub(super) metadata: String,
    pub(super) allowed_networks: String,
    pub(super) version: i64,
    pub(super) remaining_uses: Option<i64>,
    pub(super) refill_uses: Option<i64>,
    pub(super) refill_interval: Option<&'static str>,
    pub(super) refill_day: Option<i64>,
}

impl<'a> Encoded<'a> {
    /// Encodes `record`. Scopes, roles, restrictions and metadata become JSON text, which
    /// reads back exactly.
    pub(super) fn new(record: &'a KeyRecord) -> Result<Self, StoreError> {
        let json = |column: &'static str, value: Result<String, serde_json::Error>| {
            value.map_err(|e| StoreError::corrupt(record.id, ColumnError::new(column, e)))
        };
        Ok(Self {
            record,
            scopes: json("scopes", serde_json::to_string(&record.scopes))?,
            roles: json("roles", serde_json::to_string(&record.roles))?,
            restrictions: json("restrictions", serde_json::to_string(&record.restrictions))?,
            metadata: json("metadata", serde_json::to_string(&record.metadata))?,
            allowed_networks: json(
                "allowed_networks",
                serde_json::to_string(&record.allowed_networks),
            )?,
            version: saturating_i64(record.version),
            remaining_uses: record.remaining_uses.map(saturating_i64),
            refill_uses: record.refill.map(|r| saturating_i64(r.uses())),
            refill_interval: record.refill.map(|r| r.interval().as_str()),
            refill_day: record
                .refill
                .and_then(|r| r.interval().day())
                .map(i64::from),
        })
    }

    pub(super) fn id(&self) -> &'a str {
        self.record.id.as_str()
    }

    pub(super) fn status(&self) -> &'static str {
        self.record.status.as_str()
    }

    pub(super) fn hash(&self) -> String {
        self.record.hash.to_string()
    }
}

/// The first check of a compare-and-set done in steps inside a transaction (whose write
/// still compares the version): `stored` is the row's version (`None`: no such row). An
/// absent row is [`StoreError::NotFound`], another version [`StoreError::Conflict`].
pub(super) fn check_version(
    id: KeyId,
    stored: Option<i64>,
    expected: u64,
) -> Result<(), StoreError> {
    match stored {
        None => Err(StoreError::NotFound(id)),
        // A negative stored version (a hand edit) is no expected version either.
        Some(v) if u64::try_from(v).ok() == Some(expected) => Ok(()),
        Some(_) => Err(StoreError::Conflict(id)),
    }
}

/// A key id column that may be null.
pub(super) fn optional_id(id: Option<&KeyId>) -> Option<&str> {
    id.map(KeyId::as_str)
}

/// Both databases store integers as signed 64 bits. A version or a quota above
/// `i64::MAX` (9.2 × 10¹⁸) cannot occur in practice; it is stored as `i64::MAX`.
pub(super) fn saturating_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// `usize` to `i64`, saturating (a cap larger than `i64::MAX` is no cap).
pub(super) fn saturating_usize(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// One column of a row did not decode.
#[derive(Debug, thiserror::Error)]
#[error("column {column} does not decode")]
pub(super) struct ColumnError {
    column: &'static str,
    #[source]
    source: Box<dyn StdError + Send + Sync>,
}

impl ColumnError {
    pub(super) fn new(
        column: &'static str,
        source: impl Into<Box<dyn StdError + Send + Sync>>,
    ) -> Self {
        Self {
            column,
            source: source.into(),
        }
    }
}

/// A row's id column is not a key id, so the row cannot even be named (the schema's check
/// constraint normally prevents this).
#[derive(Debug, thiserror::Error)]
#[error("a stored row has an invalid key id")]
pub(super) struct UnnamedRow(#[source] pub(super) Box<dyn StdError + Send + Sync>);

/// The database holds keyward tables written by a newer version of keyward.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "keyward schema version {found} in the database is newer than this version of keyward \
     supports (up to {supported})"
)]
pub(super) struct SchemaTooNew {
    pub(super) found: i64,
    pub(super) supported: i64,
}

/// A value that must not be null was null.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Null;

impl fmt::Display for Null {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("unexpected null")
    }
}

impl StdError for Null {}

/// Reads column `name` of `row`, naming the column on failure.
pub(super) fn column<'r, R, T>(row: &'r R, name: &'static str) -> Result<T, ColumnError>
where
    R: Row,
    &'static str: ColumnIndex<R>,
    T: Decode<'r, R::Database> + Type<R::Database>,
{
    row.try_get::<T, _>(name)
        .map_err(|e| ColumnError::new(name, e))
}

/// Decodes a row selected with the record columns into a record. `time` reads a (nullable)
/// timestamp column the way the store keeps it. `known` is the id the row was looked up by,
/// if any. A row that does not decode is [`StoreError::Corrupt`] naming its key.
pub(super) fn decode<R>(
    row: &R,
    known: Option<KeyId>,
    time: impl Fn(&R, &'static str) -> Result<Option<OffsetDateTime>, ColumnError>,
) -> Result<KeyRecord, StoreError>
where
    R: Row,
    &'static str: ColumnIndex<R>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
{
    let id = match known {
        Some(id) => id,
        None => {
            let raw: String =
                column(row, "id").map_err(|e| StoreError::unavailable(UnnamedRow(e.into())))?;
            raw.parse::<KeyId>()
                .map_err(|e| StoreError::unavailable(UnnamedRow(e.into())))?
        }
    };
    decode_fields(row, id, time).map_err(|e| StoreError::corrupt(id, e))
}

fn decode_fields<R>(
    row: &R,
    id: KeyId,
    time: impl Fn(&R, &'static str) -> Result<Option<OffsetDateTime>, ColumnError>,
) -> Result<KeyRecord, ColumnError>
where
    R: Row,
    &'static str: ColumnIndex<R>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
{
    let text = |name: &'static str| column::<R, String>(row, name);
    let optional_text = |name: &'static str| column::<R, Option<String>>(row, name);
    let parsed = |name: &'static str, raw: String| {
        raw.parse::<KeyId>().map_err(|e| ColumnError::new(name, e))
    };
    let optional_id = |name: &'static str| -> Result<Option<KeyId>, ColumnError> {
        optional_text(name)?
            .map(|raw| parsed(name, raw))
            .transpose()
    };
    let unsigned =
        |name: &'static str, n: i64| u64::try_from(n).map_err(|e| ColumnError::new(name, e));

    let prefix = Prefix::new(&text("prefix")?).map_err(|e| ColumnError::new("prefix", e))?;
    let scopes: ScopeSet = json(&text("scopes")?, "scopes")?;
    let roles: Vec<String> = json(&text("roles")?, "roles")?;
    let restrictions: Restrictions = json(&text("restrictions")?, "restrictions")?;
    let metadata: Metadata = json(&text("metadata")?, "metadata")?;
    let allowed_networks: Networks = json(&text("allowed_networks")?, "allowed_networks")?;
    let status = text("status")?
        .parse::<KeyStatus>()
        .map_err(|e| ColumnError::new("status", e))?;
    let hash = text("hash")?
        .parse::<StoredHash>()
        .map_err(|e| ColumnError::new("hash", e))?;
    let version = unsigned("version", column::<R, i64>(row, "version")?)?;
    let remaining_uses = column::<R, Option<i64>>(row, "remaining_uses")?
        .map(|n| unsigned("remaining_uses", n))
        .transpose()?;
    let refill = refill(
        column::<R, Option<i64>>(row, "refill_uses")?,
        optional_text("refill_interval")?,
        column::<R, Option<i64>>(row, "refill_day")?,
    )?;
    Ok(KeyRecord {
        id,
        prefix,
        tenant: optional_text("tenant")?,
        name: text("name")?,
        owner: text("owner")?,
        scopes,
        roles,
        restrictions,
        allowed_networks,
        metadata,
        created_at: time(row, "created_at")?.ok_or(ColumnError::new("created_at", Null))?,
        expires_at: time(row, "expires_at")?,
        last_used_at: time(row, "last_used_at")?,
        status,
        hash,
        version,
        rotated_from: optional_id("rotated_from")?,
        rotated_to: optional_id("rotated_to")?,
        issued_by: optional_id("issued_by")?,
        parent: optional_id("parent")?,
        remaining_uses,
        refill,
        refilled_at: time(row, "refilled_at")?,
    })
}

/// The refill schedule from its three columns: all null for none; otherwise uses and an
/// interval, with a day for `monthly` only. The error names the offending column.
fn refill(
    uses: Option<i64>,
    interval: Option<String>,
    day: Option<i64>,
) -> Result<Option<QuotaRefill>, ColumnError> {
    let (uses, interval) = match (uses, interval) {
        (None, None) if day.is_none() => return Ok(None),
        (Some(uses), Some(interval)) => (uses, interval),
        (None, _) => return Err(ColumnError::new("refill_uses", Null)),
        (Some(_), None) => return Err(ColumnError::new("refill_interval", Null)),
    };
    let uses = u64::try_from(uses).map_err(|e| ColumnError::new("refill_uses", e))?;
    let day = day
        .map(|d| u8::try_from(d).map_err(|e| ColumnError::new("refill_day", e)))
        .transpose()?;
    QuotaRefill::from_parts(uses, &interval, day)
        .map(Some)
        .map_err(|e| {
            let column = match e {
                RefillError::ZeroUses | RefillError::TooManyUses => "refill_uses",
                RefillError::Day => "refill_day",
                _ => "refill_interval",
            };
            ColumnError::new(column, e)
        })
}

fn json<T: serde::de::DeserializeOwned>(raw: &str, name: &'static str) -> Result<T, ColumnError> {
    serde_json::from_str(raw).map_err(|e| ColumnError::new(name, e))
}

/// Whether a driver error is a unique-key violation (the id exists).
pub(super) fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.is_unique_violation())
}

/// Any other driver error: connection, protocol, pool timeout, a statement the database
/// refused. The manager fails closed on it.
pub(super) fn unavailable(e: sqlx::Error) -> StoreError {
    StoreError::unavailable(e)
}

/// How long a read on the verification path (`get`, `consume`, `touch`, `touch_many`)
/// waits for the database by default before failing with [`StoreError::Unavailable`].
pub(super) const READ_TIMEOUT: Duration = Duration::from_secs(2);

/// The cause of a [`StoreError::Unavailable`] for a database that did not answer in time.
#[derive(Debug)]
pub(super) struct NoAnswer(pub(super) Duration);

impl fmt::Display for NoAnswer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "the database did not answer within {:?}", self.0)
    }
}

impl StdError for NoAnswer {}

/// Runs `operation`, failing with [`StoreError::Unavailable`] when it errs or has not
/// finished within `limit` (the operation is dropped then: sqlx closes a connection left
/// mid-statement instead of reusing it).
pub(super) async fn within<T>(
    limit: Duration,
    operation: impl Future<Output = Result<T, sqlx::Error>>,
) -> Result<T, StoreError> {
    match tokio::time::timeout(limit, operation).await {
        Ok(done) => done.map_err(unavailable),
        Err(_) => Err(StoreError::unavailable(NoAnswer(limit))),
    }
}

/// `touches` as the JSON text [`Dialect::TOUCH_MANY`] reads: `[["id", micros], ...]`.
pub(super) fn touches_json(touches: &[(KeyId, OffsetDateTime)]) -> String {
    let rows: Vec<(&str, i64)> = touches
        .iter()
        .map(|(id, at)| (id.as_str(), micros(*at)))
        .collect();
    // Ids are alphanumeric and times integers: serializing them cannot fail.
    serde_json::to_string(&rows).unwrap_or_else(|_| String::from("[]"))
}

/// UTC unix microseconds, saturating: how SQLite keeps timestamps, and how both databases
/// keep the audit log's and the expiry notices' times.
pub(super) fn micros(t: OffsetDateTime) -> i64 {
    let us = t.unix_timestamp_nanos() / 1000;
    i64::try_from(us).unwrap_or(if us < 0 { i64::MIN } else { i64::MAX })
}

/// The instant of UTC unix microseconds `us` read from column `column`.
pub(super) fn from_micros(us: i64, column: &'static str) -> Result<OffsetDateTime, ColumnError> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(us) * 1000)
        .map_err(|e| ColumnError::new(column, e))
}
