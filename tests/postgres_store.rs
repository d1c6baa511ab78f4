//! The PostgreSQL store against a real server: the conformance suite (one test per rule, each
//! in a schema of its own, and the whole suite in one test), hand-corrupted rows,
//! migrations beside another application's sqlx migrations (also run concurrently) and
//! upgrades from older keyward schemas, two services over one database, the per-owner cap
//! with 50 concurrent issuers over several connections and with racing capped updates, bulk
//! revocation over a corrupt row, the delegation parent's column, consumption moving the
//! version, a connection cut mid-run (through a TCP proxy inside the test, so other tests
//! keep their server) and pool exhaustion.
//!
//! The server's URL comes from `KEYWARD_TEST_POSTGRES_URL`; without it every test here
//! fails, saying how to provide one. Each test works in its own fresh schema.

#[path = "sql/scenarios.rs"]
mod scenarios;
#[path = "support/postgres.rs"]
mod server;

use server::{Proxy, Schema, upstream};

use std::sync::Arc;
use std::time::{Duration, Instant};

use keyward::{
    IssueRequest, KeyId, KeyStore, RequestContext,
    manager::{IssueError, VerifyError},
    store::{ListFilter, Page, PostgresStore, StoreError},
    testing,
};
use sqlx::postgres::{PgPool, PgPoolOptions};
use tokio::sync::watch;

/// A migrated store in a fresh schema of its own, for one conformance rule.
async fn fresh_schema_store() -> PostgresStore {
    let schema = Schema::new().await;
    let store = schema.migrated(5).await;
    schema.admin.close().await;
    store
}

/// Drops the store's schema (made by [`fresh_schema_store`]) and closes its pool.
async fn drop_store_schema(store: PostgresStore) {
    let name: String = sqlx::query_scalar("SELECT current_schema()::text")
        .fetch_one(store.pool())
        .await
        .expect("current schema");
    assert!(
        name.starts_with("keyward_test_"),
        "not a test schema: {name}"
    );
    sqlx::query(&format!("DROP SCHEMA {name} CASCADE"))
        .execute(store.pool())
        .await
        .expect("drop schema");
    store.pool().close().await;
}

/// One test per rule of the contract, each in a schema of its own.
mod conformance {
    keyward::conformance_tests!(super::fresh_schema_store, super::drop_store_schema);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_store_passes_the_whole_conformance_suite() {
    let schemas = std::sync::Mutex::new(Vec::new());
    testing::conformance(|| async {
        let schema = Schema::new().await;
        let store = schema.migrated(5).await;
        schemas.lock().expect("lock").push(schema);
        store
    })
    .await;
    let schemas = std::mem::take(&mut *schemas.lock().expect("lock"));
    assert_eq!(
        schemas.len(),
        testing::Rule::ALL.len(),
        "one fresh schema per check"
    );
    for schema in schemas {
        schema.drop().await;
    }
}

#[tokio::test]
async fn schema_has_keyward_tables_and_indexes_only() {
    let schema = Schema::new().await;
    let store = schema.store(2).await;
    assert_eq!(store.schema_version().await.expect("version"), 0);
    store.migrate().await.expect("migrate");
    assert_eq!(
        store.schema_version().await.expect("version"),
        PostgresStore::SCHEMA_VERSION
    );
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.tables WHERE table_schema = $1 \
         ORDER BY table_name",
    )
    .bind(&schema.name)
    .fetch_all(store.pool())
    .await
    .expect("tables");
    assert_eq!(
        tables,
        [
            "keyward_audit",
            "keyward_expiry_notices",
            "keyward_keys",
            "keyward_schema_version"
        ]
    );
    let indexes: Vec<String> = sqlx::query_scalar(
        "SELECT indexname::text FROM pg_indexes WHERE schemaname = $1 \
         AND tablename = 'keyward_keys' ORDER BY indexname",
    )
    .bind(&schema.name)
    .fetch_all(store.pool())
    .await
    .expect("indexes");
    assert_eq!(
        indexes,
        [
            "keyward_keys_owner",
            "keyward_keys_pkey",
            "keyward_keys_tenant"
        ]
    );
    let types: Vec<(String, String)> = sqlx::query_as(
        "SELECT column_name::text, data_type::text FROM information_schema.columns \
         WHERE table_schema = $1 AND table_name = 'keyward_keys' AND column_name LIKE '%_at' \
         ORDER BY column_name",
    )
    .bind(&schema.name)
    .fetch_all(store.pool())
    .await
    .expect("columns");
    assert!(
        types.iter().all(|(_, t)| t == "timestamp with time zone"),
        "{types:?}"
    );
    // Only the hash is stored, never the key.
    let manager = scenarios::manager(store.clone());
    let issued = manager
        .issue(IssueRequest::new("k", "u"), &RequestContext::new())
        .await
        .expect("issue");
    let row: String = sqlx::query_scalar("SELECT row_to_json(k)::text FROM keyward_keys k")
        .fetch_one(store.pool())
        .await
        .expect("row");
    let secret = issued.key.expose_secret();
    assert!(!row.contains(&secret[secret.len() - 20..]), "{row}");
    assert!(row.contains(&issued.record.hash.to_string()));
    schema.drop().await;
}

/// Runs `UPDATE keyward_keys SET <assignment> WHERE id = id` on `pool`, which must change
/// exactly that row.
async fn hand_edit(pool: PgPool, id: KeyId, assignment: &str) {
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
    let schema = Schema::new().await;
    let store = schema.migrated(3).await;
    let pool = store.pool().clone();
    scenarios::corrupt_rows(store, |id: KeyId, assignment| {
        hand_edit(pool.clone(), id, assignment)
    })
    .await;
    schema.drop().await;
}

#[tokio::test]
async fn revoke_matching_revokes_a_corrupt_row_in_one_statement() {
    let schema = Schema::new().await;
    let store = schema.migrated(3).await;
    let pool = store.pool().clone();
    scenarios::revoke_matching_revokes_a_corrupt_row(store, |id: KeyId, assignment: String| {
        let pool = pool.clone();
        async move { hand_edit(pool, id, &assignment).await }
    })
    .await;
    schema.drop().await;
}

#[tokio::test]
async fn the_delegation_parent_round_trips() {
    let schema = Schema::new().await;
    scenarios::parent_round_trips(schema.migrated(2).await).await;
    schema.drop().await;
}

#[tokio::test]
async fn update_capped_keeps_the_cap() {
    let schema = Schema::new().await;
    scenarios::update_capped_keeps_the_cap(schema.migrated(2).await).await;
    schema.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn update_capped_races_enable_one_key_each_round() {
    let schema = Schema::new().await;
    let one = schema.migrated(4).await;
    let two = schema.store(4).await;
    scenarios::update_capped_race(vec![one, two]).await;
    schema.drop().await;
}

#[tokio::test]
async fn consume_moves_the_version() {
    let schema = Schema::new().await;
    scenarios::consume_moves_the_version(schema.migrated(2).await).await;
    schema.drop().await;
}

#[tokio::test]
async fn the_audit_log_and_expiry_notices_survive_a_restart() {
    let schema = Schema::new().await;
    let store = schema.migrated(2).await;
    scenarios::audit_log_survives_a_restart(store, || schema.store(2)).await;
    schema.drop().await;
}

#[tokio::test]
async fn migrations_coexist_with_the_applications_sqlx_migrations() {
    let schema = Schema::new().await;
    let store = schema.store(3).await;
    let pool = store.pool();
    for statement in [
        "CREATE TABLE _sqlx_migrations (version BIGINT PRIMARY KEY, description TEXT NOT NULL, \
         installed_on TIMESTAMPTZ NOT NULL DEFAULT now(), success BOOLEAN NOT NULL, \
         checksum BYTEA NOT NULL, execution_time BIGINT NOT NULL)",
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
         VALUES (20240101000000, 'create todos', TRUE, '\\x00ff', 42)",
        "CREATE TABLE todos (id bigserial PRIMARY KEY, title text NOT NULL)",
        "INSERT INTO todos (title) VALUES ('ship keyward')",
    ] {
        sqlx::query(statement)
            .execute(pool)
            .await
            .expect("application setup");
    }
    let snapshot = || async {
        let migrations: Vec<(i64, String, Vec<u8>, i64)> = sqlx::query_as(
            "SELECT version, description, checksum, execution_time FROM _sqlx_migrations \
             ORDER BY version",
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

    // Two instances starting at once: the advisory lock lets each step run once.
    let other = schema.store(3).await;
    let (a, b) = tokio::join!(store.migrate(), other.migrate());
    a.expect("migrate");
    b.expect("concurrent migrate");
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

    store.migrate().await.expect("migrate again");
    assert_eq!(snapshot().await, before);
    let versions: Vec<i64> =
        sqlx::query_scalar("SELECT version FROM keyward_schema_version ORDER BY version")
            .fetch_all(pool)
            .await
            .expect("keyward versions");
    assert_eq!(
        versions,
        (1..=PostgresStore::SCHEMA_VERSION).collect::<Vec<_>>(),
        "each version once"
    );
    scenarios::manager(other)
        .verify(issued.key.expose_secret(), &ctx)
        .await
        .expect("the key survives migrations");

    // A schema from a newer keyward is refused, not downgraded.
    sqlx::query("INSERT INTO keyward_schema_version (version, description) VALUES (99, 'x')")
        .execute(pool)
        .await
        .expect("insert");
    match store.migrate().await {
        Err(ref e @ StoreError::Unavailable(_)) => {
            assert!(scenarios::chain(e).contains("99"), "{e:?}");
        }
        other => panic!("expected Unavailable, got {other:?}"),
    }
    schema.drop().await;
}

#[tokio::test]
async fn two_managers_over_one_database() {
    let schema = Schema::new().await;
    let one = schema.migrated(3).await;
    let two = schema.store(3).await;
    scenarios::two_managers(one, two).await;
    schema.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cap_holds_with_50_concurrent_issuers_over_several_connections() {
    let schema = Schema::new().await;
    let one = schema.migrated(8).await;
    let two = schema.store(8).await;
    scenarios::concurrent_cap(vec![one, two]).await;
    schema.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cut_connection_fails_closed_and_recovers() {
    let schema = Schema::new().await;
    let proxy = Proxy::start(upstream().await).await;
    let acquire_timeout = Duration::from_secs(2);
    let pool = PgPoolOptions::new()
        .max_connections(3)
        .acquire_timeout(acquire_timeout)
        .connect_with(schema.options(Some(proxy.addr)))
        .await
        .expect("connect through the proxy");
    let store = PostgresStore::from_pool(pool);
    store.migrate().await.expect("migrate");
    let manager = Arc::new(scenarios::manager(store.clone()));
    let ctx = RequestContext::new();
    let mut keys = Vec::new();
    for i in 0..5 {
        keys.push(
            manager
                .issue(IssueRequest::new(format!("k{i}"), "u"), &ctx)
                .await
                .expect("issue"),
        );
    }
    let secret = keys[0].key.expose_secret().to_owned();

    // Verifications run continuously while the connection is cut and restored.
    let (stop, stopped) = watch::channel(false);
    let runner = {
        let manager = Arc::clone(&manager);
        let secret = secret.clone();
        tokio::spawn(async move {
            let (mut ok, mut unavailable) = (0usize, 0usize);
            while !*stopped.borrow() {
                match manager.verify(&secret, &RequestContext::new()).await {
                    Ok(_) => ok += 1,
                    Err(VerifyError::Unavailable(_)) => unavailable += 1,
                    Err(e) => panic!("only Unavailable is allowed while cut, got {e:?}"),
                }
            }
            (ok, unavailable)
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    proxy.cut();
    let started = Instant::now();
    match manager.verify(&secret, &ctx).await {
        Err(VerifyError::Unavailable(_)) => {}
        other => panic!("verify while cut must fail closed, got {other:?}"),
    }
    assert!(
        started.elapsed() < acquire_timeout + Duration::from_secs(3),
        "failed after {:?}",
        started.elapsed()
    );
    assert!(matches!(
        manager
            .issue(IssueRequest::new("while cut", "u"), &ctx)
            .await,
        Err(IssueError::Store(StoreError::Unavailable(_)))
    ));
    proxy.restore();
    manager
        .verify(&secret, &ctx)
        .await
        .expect("works again once the connection is back");
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.send_replace(true);
    let (ok, unavailable) = runner.await.expect("no panic in the verifying task");
    assert!(
        ok > 0 && unavailable > 0,
        "ok {ok}, unavailable {unavailable}"
    );

    // Nothing lost, nothing half-written.
    for issued in &keys {
        manager
            .verify(issued.key.expose_secret(), &ctx)
            .await
            .expect("every key still verifies");
    }
    let listed = store
        .list(&ListFilter::Owner("u".into()), Page::first(100))
        .await
        .expect("list");
    assert_eq!(listed.len(), keys.len());
    store.pool().close().await;
    schema.drop().await;
}

#[tokio::test]
async fn pool_exhaustion_is_a_typed_error_within_the_timeout() {
    let schema = Schema::new().await;
    schema.migrated(1).await.pool().close().await;
    let acquire_timeout = Duration::from_millis(500);
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(acquire_timeout)
        .connect_with(schema.options(None))
        .await
        .expect("connect");
    let store = PostgresStore::from_pool(pool);
    let manager = scenarios::manager(store.clone());
    let ctx = RequestContext::new();
    let issued = manager
        .issue(IssueRequest::new("k", "u"), &ctx)
        .await
        .expect("issue");

    let held = store
        .pool()
        .begin()
        .await
        .expect("hold the only connection");
    let started = Instant::now();
    match store.get(&issued.key.id()).await {
        Err(StoreError::Unavailable(source)) => {
            assert!(source.to_string().contains("timed out"), "{source}");
        }
        other => panic!("expected Unavailable, got {other:?}"),
    }
    let waited = started.elapsed();
    assert!(
        waited >= acquire_timeout.mul_f32(0.9) && waited < acquire_timeout * 4,
        "gave up after {waited:?}"
    );
    assert!(matches!(
        manager.verify(issued.key.expose_secret(), &ctx).await,
        Err(VerifyError::Unavailable(_))
    ));
    held.rollback().await.expect("release");
    manager
        .verify(issued.key.expose_secret(), &ctx)
        .await
        .expect("works once a connection is free");
    store.pool().close().await;
    schema.drop().await;
}

/// keyward's PostgreSQL schema version 1, exactly as keyward created it before version 2
/// (copied from `src/store/postgres.rs`), and the row it recorded.
const VERSION_1: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS keyward_schema_version (
    version bigint PRIMARY KEY,
    description text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)",
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
    "INSERT INTO keyward_schema_version (version, description) \
     VALUES (1, 'keys table with owner and tenant indexes')",
];

/// What keyward's PostgreSQL schema version 2 added to version 1 (copied from
/// `src/store/postgres.rs`), and the row it recorded.
const VERSION_2: &[&str] = &[
    "ALTER TABLE keyward_keys ADD COLUMN refill_uses bigint, \
     ADD COLUMN refill_interval text, ADD COLUMN refill_day bigint, \
     ADD COLUMN refilled_at timestamptz",
    "INSERT INTO keyward_schema_version (version, description) \
     VALUES (2, 'usage quota refill schedule and time of the last refill')",
];

/// Version 1's insert: its 19 columns.
const VERSION_1_INSERT: &str = "INSERT INTO keyward_keys (id, prefix, tenant, name, owner, \
     scopes, roles, restrictions, metadata, created_at, expires_at, last_used_at, status, \
     hash, version, rotated_from, rotated_to, issued_by, remaining_uses) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, \
     $19)";

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
    let schema = Schema::new().await;
    let store = schema.store(2).await;
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
            .bind(r.created_at)
            .bind(r.expires_at)
            .bind(r.last_used_at)
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
        "SELECT COUNT(*) FROM information_schema.columns WHERE table_schema = $1 \
         AND table_name = 'keyward_keys' AND column_name = 'parent'",
    )
    .bind(&schema.name)
    .fetch_one(pool)
    .await
    .expect("columns");
    assert_eq!(parent_column, 0, "no parent column before version 3");

    store.migrate().await.expect("upgrade");
    assert_eq!(
        store.schema_version().await.expect("version"),
        PostgresStore::SCHEMA_VERSION
    );
    let versions: Vec<i64> =
        sqlx::query_scalar("SELECT version FROM keyward_schema_version ORDER BY version")
            .fetch_all(pool)
            .await
            .expect("keyward versions");
    assert_eq!(
        versions,
        [1, 2, 3, 4, 5],
        "old versions kept, new ones recorded once"
    );
    let parents: Vec<Option<String>> = sqlx::query_scalar("SELECT parent FROM keyward_keys")
        .fetch_all(pool)
        .await
        .expect("parents");
    assert_eq!(parents, vec![None; old.len()], "old keys have no parent");
    let sqlx_table: bool = sqlx::query_scalar("SELECT to_regclass('_sqlx_migrations') IS NULL")
        .fetch_one(pool)
        .await
        .expect("to_regclass");
    assert!(sqlx_table, "sqlx's migrations table is never created");
    let triggers: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_trigger WHERE tgrelid = to_regclass('keyward_keys') \
         AND tgname LIKE 'keyward_keys_notify%' AND tgenabled = 'A'",
    )
    .fetch_one(pool)
    .await
    .expect("triggers");
    assert_eq!(triggers, 3, "the change notifications come with version 5");
    store.migrate().await.expect("migrate again");
    assert_eq!(
        store.schema_version().await.expect("version"),
        PostgresStore::SCHEMA_VERSION
    );

    scenarios::check_upgraded_keys(schema.store(2).await, &key, &old).await;
    store.pool().close().await;
    schema.drop().await;
}
