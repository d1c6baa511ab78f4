//! The SQLite store against real database files: the conformance suite (one test per rule,
//! each on a database file of its own, and the whole suite in one test), hand-corrupted rows,
//! migrations beside another application's sqlx migrations and upgrades from older keyward
//! schemas, two services over one file, the per-owner cap under real parallelism (on
//! inserts and on capped updates), bulk revocation over a corrupt row, the delegation
//! parent's column, and consumption moving the version.

#[path = "sql/scenarios.rs"]
mod scenarios;

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

use keyward::{
    IssueRequest, KeyId, KeyStore, RequestContext,
    store::{SqliteStore, StoreError},
    testing,
};

async fn migrated(path: &Path) -> SqliteStore {
    let store = SqliteStore::open(path).await.expect("open");
    store.migrate().await.expect("migrate");
    store
}

/// A migrated database in a directory of its own, for one conformance rule.
async fn fresh_database() -> SqliteStore {
    let dir = tempfile::Builder::new()
        .prefix("keyward-sqlite-")
        .tempdir()
        .expect("temporary directory")
        .keep();
    migrated(&dir.join("conformance.db")).await
}

/// Closes the store and removes its database's directory (made by [`fresh_database`]).
async fn remove_database(store: SqliteStore) {
    let file: String =
        sqlx::query_scalar("SELECT file FROM pragma_database_list WHERE name = 'main'")
            .fetch_one(store.pool())
            .await
            .expect("database file");
    store.pool().close().await;
    let dir = Path::new(&file).parent().expect("database directory");
    assert!(
        dir.file_name()
            .is_some_and(|name| name.to_string_lossy().starts_with("keyward-sqlite-")),
        "not a test directory: {}",
        dir.display()
    );
    let _ = std::fs::remove_dir_all(dir);
}

/// One test per rule of the contract, each on a database file of its own.
mod conformance {
    keyward::conformance_tests!(super::fresh_database, super::remove_database);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_store_passes_the_whole_conformance_suite() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let n = AtomicUsize::new(0);
    testing::conformance(|| {
        let path = dir.path().join(format!(
            "conformance-{}.db",
            n.fetch_add(1, Ordering::Relaxed)
        ));
        async move { migrated(&path).await }
    })
    .await;
    assert_eq!(
        n.load(Ordering::Relaxed),
        testing::Rule::ALL.len(),
        "one fresh database per check"
    );
}

#[tokio::test]
async fn opens_in_wal_mode_with_keyward_schema() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let store = SqliteStore::open(dir.path().join("wal.db"))
        .await
        .expect("open");
    assert_eq!(store.schema_version().await.expect("version"), 0);
    store.migrate().await.expect("migrate");
    assert_eq!(
        store.schema_version().await.expect("version"),
        SqliteStore::SCHEMA_VERSION
    );
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(store.pool())
        .await
        .expect("pragma");
    assert_eq!(mode, "wal");
    let indexes: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'keyward_keys' \
         AND name LIKE 'keyward_%' ORDER BY name",
    )
    .fetch_all(store.pool())
    .await
    .expect("indexes");
    assert_eq!(indexes, ["keyward_keys_owner", "keyward_keys_tenant"]);
}

#[tokio::test]
async fn no_plaintext_secret_in_the_database_file() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("secrets.db");
    let store = migrated(&path).await;
    let manager = scenarios::manager(store.clone());
    let issued = manager
        .issue(IssueRequest::new("k", "u"), &RequestContext::new())
        .await
        .expect("issue");
    let stored: String = sqlx::query_scalar("SELECT hash FROM keyward_keys WHERE id = $1")
        .bind(issued.key.id().as_str())
        .fetch_one(store.pool())
        .await
        .expect("hash");
    assert_eq!(stored, issued.record.hash.to_string());
    store.pool().close().await;
    let secret = issued.key.expose_secret().as_bytes();
    let body = &secret[secret.len() - 20..];
    for file in ["secrets.db", "secrets.db-wal"] {
        let bytes = std::fs::read(dir.path().join(file)).unwrap_or_default();
        assert!(
            !bytes.windows(body.len()).any(|w| w == body),
            "{file} contains the key's secret"
        );
    }
}

/// Runs `UPDATE keyward_keys SET <assignment> WHERE id = id` on `pool`, which must change
/// exactly that row.
async fn hand_edit(pool: sqlx::SqlitePool, id: KeyId, assignment: &str) {
    let done = sqlx::query(&format!(
        "UPDATE keyward_keys SET {assignment} WHERE id = $1"
    ))
    .bind(id.as_str())
    .execute(&pool)
    .await
    .expect("hand edit");
    assert_eq!(done.rows_affected(), 1, "{assignment}");
}

#[tokio::test]
async fn corrupt_rows_are_typed_errors_naming_the_key() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let store = migrated(&dir.path().join("corrupt.db")).await;
    let pool = store.pool().clone();
    scenarios::corrupt_rows(store, |id: KeyId, assignment| {
        hand_edit(pool.clone(), id, assignment)
    })
    .await;
}

#[tokio::test]
async fn revoke_matching_revokes_a_corrupt_row_in_one_statement() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let store = migrated(&dir.path().join("revoke.db")).await;
    let pool = store.pool().clone();
    scenarios::revoke_matching_revokes_a_corrupt_row(store, |id: KeyId, assignment: String| {
        let pool = pool.clone();
        async move { hand_edit(pool, id, &assignment).await }
    })
    .await;
}

#[tokio::test]
async fn the_delegation_parent_round_trips() {
    let dir = tempfile::tempdir().expect("temporary directory");
    scenarios::parent_round_trips(migrated(&dir.path().join("parent.db")).await).await;
}

#[tokio::test]
async fn update_capped_keeps_the_cap() {
    let dir = tempfile::tempdir().expect("temporary directory");
    scenarios::update_capped_keeps_the_cap(migrated(&dir.path().join("update-capped.db")).await)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn update_capped_races_enable_one_key_each_round() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("update-capped-race.db");
    let one = migrated(&path).await;
    let two = SqliteStore::open(&path).await.expect("open second");
    scenarios::update_capped_race(vec![one, two]).await;
}

#[tokio::test]
async fn the_audit_log_and_expiry_notices_survive_a_restart() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("audit.db");
    let store = migrated(&path).await;
    scenarios::audit_log_survives_a_restart(store, || async {
        SqliteStore::open(&path).await.expect("reopen")
    })
    .await;
}

#[tokio::test]
async fn consume_moves_the_version() {
    let dir = tempfile::tempdir().expect("temporary directory");
    scenarios::consume_moves_the_version(migrated(&dir.path().join("consume.db")).await).await;
}

#[tokio::test]
async fn migrations_coexist_with_the_applications_sqlx_migrations() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("shared.db");
    let store = SqliteStore::open(&path).await.expect("open");
    let pool = store.pool();
    // What an application using sqlx migrations has in its database already.
    for statement in [
        "CREATE TABLE _sqlx_migrations (version BIGINT PRIMARY KEY, description TEXT NOT NULL, \
         installed_on TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP, success BOOLEAN NOT NULL, \
         checksum BLOB NOT NULL, execution_time BIGINT NOT NULL)",
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
         VALUES (20240101000000, 'create todos', TRUE, X'00FF', 42)",
        "CREATE TABLE todos (id INTEGER PRIMARY KEY, title TEXT NOT NULL)",
        "INSERT INTO todos (title) VALUES ('ship keyward')",
    ] {
        sqlx::query(statement)
            .execute(pool)
            .await
            .expect("application setup");
    }
    let snapshot = || async {
        let migrations: Vec<(i64, String, i64)> = sqlx::query_as(
            "SELECT version, description, execution_time FROM _sqlx_migrations ORDER BY version",
        )
        .fetch_all(pool)
        .await
        .expect("sqlx migrations");
        let todos: Vec<(i64, String)> = sqlx::query_as("SELECT id, title FROM todos")
            .fetch_all(pool)
            .await
            .expect("todos");
        (migrations, todos)
    };
    let before = snapshot().await;
    assert_eq!(before.0.len(), 1);

    store.migrate().await.expect("migrate");
    assert_eq!(
        snapshot().await,
        before,
        "the application's tables are untouched"
    );
    let manager = scenarios::manager(store.clone());
    let ctx = RequestContext::new();
    let issued = manager
        .issue(IssueRequest::new("k", "u"), &ctx)
        .await
        .expect("issue");

    // Again, and from a second store over the same file: nothing changes, nothing is lost.
    store.migrate().await.expect("migrate again");
    let other = migrated(&path).await;
    assert_eq!(snapshot().await, before);
    let versions: Vec<i64> =
        sqlx::query_scalar("SELECT version FROM keyward_schema_version ORDER BY version")
            .fetch_all(pool)
            .await
            .expect("keyward versions");
    assert_eq!(
        versions,
        (1..=SqliteStore::SCHEMA_VERSION).collect::<Vec<_>>(),
        "each version recorded once"
    );
    scenarios::manager(other)
        .verify(issued.key.expose_secret(), &ctx)
        .await
        .expect("the key survives migrations");
}

#[tokio::test]
async fn refuses_a_newer_keyward_schema() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let store = migrated(&dir.path().join("newer.db")).await;
    sqlx::query("INSERT INTO keyward_schema_version (version, description) VALUES (99, 'x')")
        .execute(store.pool())
        .await
        .expect("insert");
    match store.migrate().await {
        Err(ref e @ StoreError::Unavailable(_)) => {
            let text = scenarios::chain(e);
            assert!(text.contains("99"), "{text}");
        }
        other => panic!("expected Unavailable, got {other:?}"),
    }
}

#[tokio::test]
async fn two_managers_over_one_file() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("two.db");
    let one = migrated(&path).await;
    let two = SqliteStore::open(&path).await.expect("open second");
    scenarios::two_managers(one, two).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cap_holds_across_connections_and_pools() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("cap.db");
    let one = migrated(&path).await;
    let two = SqliteStore::open(&path).await.expect("open second");
    scenarios::concurrent_cap(vec![one, two]).await;
}

#[tokio::test]
async fn unreachable_database_is_unavailable() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let missing = dir.path().join("no/such/dir/keys.db");
    match SqliteStore::open(&missing).await {
        Err(StoreError::Unavailable(_)) => {}
        other => panic!("expected Unavailable, got {other:?}"),
    }
    // A store whose tables were never created answers with a typed error, not a panic.
    let store = SqliteStore::open(dir.path().join("empty.db"))
        .await
        .expect("open");
    let id = testing::random_id();
    assert!(matches!(
        store.get(&id).await,
        Err(StoreError::Unavailable(_))
    ));
}

/// keyward's SQLite schema version 1, exactly as keyward created it before version 2
/// (copied from `src/store/sqlite.rs`), and the row it recorded.
const VERSION_1: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS keyward_schema_version (
    version INTEGER NOT NULL PRIMARY KEY,
    description TEXT NOT NULL,
    applied_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now'))
) STRICT",
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
    "INSERT INTO keyward_schema_version (version, description) \
     VALUES (1, 'keys table with owner and tenant indexes')",
];

/// What keyward's SQLite schema version 2 added to version 1 (copied from
/// `src/store/sqlite.rs`), and the row it recorded.
const VERSION_2: &[&str] = &[
    "ALTER TABLE keyward_keys ADD COLUMN refill_uses INTEGER",
    "ALTER TABLE keyward_keys ADD COLUMN refill_interval TEXT",
    "ALTER TABLE keyward_keys ADD COLUMN refill_day INTEGER",
    "ALTER TABLE keyward_keys ADD COLUMN refilled_at INTEGER",
    "INSERT INTO keyward_schema_version (version, description) \
     VALUES (2, 'usage quota refill schedule and time of the last refill')",
];

/// Version 1's insert: its 19 columns, timestamps in unix microseconds.
const VERSION_1_INSERT: &str = "INSERT INTO keyward_keys (id, prefix, tenant, name, owner, \
     scopes, roles, restrictions, metadata, created_at, expires_at, last_used_at, status, \
     hash, version, rotated_from, rotated_to, issued_by, remaining_uses) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, \
     $19)";

fn micros(t: time::OffsetDateTime) -> i64 {
    i64::try_from(t.unix_timestamp_nanos() / 1000).expect("fixture times fit")
}

#[tokio::test]
async fn upgrades_a_version_1_database_in_place() {
    upgrades_in_place(1).await;
}

#[tokio::test]
async fn upgrades_a_version_2_database_in_place() {
    upgrades_in_place(2).await;
}

/// A database of keyward schema version `from` (1 or 2), built with that version's own
/// statements and holding keys written by version 1's insert (so no refill schedule and no
/// parent), migrates to the current version in place, each step recorded once.
async fn upgrades_in_place(from: i64) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join(format!("v{from}.db"));
    let store = SqliteStore::open(&path).await.expect("open");
    let pool = store.pool();
    let steps: &[&[&str]] = if from == 1 {
        &[VERSION_1]
    } else {
        &[VERSION_1, VERSION_2]
    };
    for statement in steps.iter().copied().flatten() {
        sqlx::query(statement)
            .execute(pool)
            .await
            .expect("old schema");
    }
    let (key, old) = scenarios::version_1_keys();
    for r in &old {
        let json = |v: Result<String, serde_json::Error>| v.expect("json");
        sqlx::query(VERSION_1_INSERT)
            .bind(r.id.as_str())
            .bind(r.prefix.as_str())
            .bind(r.tenant.as_deref())
            .bind(r.name.as_str())
            .bind(r.owner.as_str())
            .bind(json(serde_json::to_string(&r.scopes)))
            .bind(json(serde_json::to_string(&r.roles)))
            .bind(json(serde_json::to_string(&r.restrictions)))
            .bind(json(serde_json::to_string(&r.metadata)))
            .bind(micros(r.created_at))
            .bind(r.expires_at.map(micros))
            .bind(r.last_used_at.map(micros))
            .bind(r.status.as_str())
            .bind(r.hash.to_string())
            .bind(i64::try_from(r.version).expect("fixture version"))
            .bind(r.rotated_from.as_ref().map(|id| id.as_str().to_owned()))
            .bind(r.rotated_to.as_ref().map(|id| id.as_str().to_owned()))
            .bind(r.issued_by.as_ref().map(|id| id.as_str().to_owned()))
            .bind(
                r.remaining_uses
                    .map(|n| i64::try_from(n).expect("fixture uses")),
            )
            .execute(pool)
            .await
            .expect("version 1 row");
    }
    assert_eq!(store.schema_version().await.expect("version"), from);
    let parent_column: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM pragma_table_info('keyward_keys') WHERE name = 'parent'",
    )
    .fetch_one(pool)
    .await
    .expect("table_info");
    assert_eq!(parent_column, 0, "no parent column before version 3");

    store.migrate().await.expect("upgrade");
    assert_eq!(store.schema_version().await.expect("version"), 4);
    let versions: Vec<(i64, String)> =
        sqlx::query_as("SELECT version, description FROM keyward_schema_version ORDER BY version")
            .fetch_all(pool)
            .await
            .expect("keyward versions");
    assert_eq!(
        versions.iter().map(|v| v.0).collect::<Vec<_>>(),
        [1, 2, 3, 4],
        "old versions kept, new ones recorded once: {versions:?}"
    );
    let parents: Vec<Option<String>> = sqlx::query_scalar("SELECT parent FROM keyward_keys")
        .fetch_all(pool)
        .await
        .expect("parents");
    assert_eq!(parents, vec![None; old.len()], "old keys have no parent");
    let sqlx_table: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM sqlite_master WHERE name = '_sqlx_migrations'")
            .fetch_one(pool)
            .await
            .expect("sqlite_master");
    assert_eq!(sqlx_table, 0, "sqlx's migrations table is never created");
    store.migrate().await.expect("migrate again");
    assert_eq!(store.schema_version().await.expect("version"), 4);

    // Read back through a store opened afresh on the file.
    store.pool().close().await;
    scenarios::check_upgraded_keys(SqliteStore::open(&path).await.expect("reopen"), &key, &old)
        .await;
}

/// Two "processes" (two pools) on one file, B caching behind `SqliteInvalidations`: A's
/// revocations reach B within a few polls; with B's stream stopped, B serves its cached
/// record until the staleness bound has passed, then reads the file again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cache_over_a_shared_file_sees_other_writers() {
    use std::time::{Duration, Instant};

    use keyward::manager::VerifyError;
    use keyward::store::{CachedStore, InvalidationStream, SqliteInvalidations};

    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("shared.db");
    let a = scenarios::manager(migrated(&path).await);
    let b_store = SqliteStore::open(&path).await.expect("open");
    let bound = Duration::from_millis(400);
    let (cache, feed) = CachedStore::new(b_store.clone(), bound);
    let stream = tokio::spawn(
        SqliteInvalidations::new(&b_store)
            .poll_every(Duration::from_millis(5))
            .run(feed),
    );
    let b = scenarios::manager(cache.clone());
    let ctx = RequestContext::new();
    let started = Instant::now();
    while !cache.is_fresh() {
        assert!(started.elapsed() < Duration::from_secs(5), "never live");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }

    let refused_within = |secret: String| {
        let b = &b;
        async move {
            let since = Instant::now();
            loop {
                match b.verify(&secret, &RequestContext::new()).await {
                    Err(VerifyError::Revoked) => return since.elapsed(),
                    Ok(_) => {}
                    Err(e) => panic!("only Ok or Revoked expected, got {e:?}"),
                }
                assert!(since.elapsed() < Duration::from_secs(2), "still accepted");
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
    };
    let mut slowest = Duration::ZERO;
    for i in 0..20 {
        let issued = a
            .issue(IssueRequest::new(format!("k{i}"), "u"), &ctx)
            .await
            .expect("issue");
        let secret = issued.key.expose_secret().to_owned();
        b.verify(&secret, &ctx).await.expect("B verifies");
        a.revoke(&issued.key.id(), None, &ctx)
            .await
            .expect("revoke");
        slowest = slowest.max(refused_within(secret).await);
    }
    assert!(slowest < Duration::from_millis(200), "slowest {slowest:?}");

    // Without its stream, B serves from memory only until the bound has passed.
    let issued = a
        .issue(IssueRequest::new("last", "u"), &ctx)
        .await
        .expect("issue");
    let secret = issued.key.expose_secret().to_owned();
    tokio::time::sleep(Duration::from_millis(50)).await; // the insert's poll passes
    b.verify(&secret, &ctx).await.expect("B verifies");
    stream.abort();
    let _ = stream.await;
    let stopped = Instant::now();
    a.revoke(&issued.key.id(), None, &ctx)
        .await
        .expect("revoke");
    assert!(
        b.verify(&secret, &ctx).await.is_ok(),
        "cached within the bound"
    );
    let seen_after = refused_within(secret).await;
    let since_stop = stopped.elapsed();
    assert!(
        since_stop >= bound.saturating_sub(Duration::from_millis(60)) && seen_after <= bound,
        "refused {since_stop:?} after the stream stopped (bound {bound:?})"
    );
}
