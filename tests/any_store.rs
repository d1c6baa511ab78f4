//! `AnyStore`, the store chosen at run time from a URL: `memory:` passes the conformance
//! suite; `sqlite:` opens, migrates and keeps keys across a reopen, passes the suite and
//! forwards the store's own one-statement bulk revocation (feature `sqlite`); `postgres://`
//! opens, migrates and round-trips a key on the server of `KEYWARD_TEST_POSTGRES_URL`
//! (feature `postgres`); and every error is typed and never shows the URL's password.

use keyward::{
    Hasher, IssueRequest, KeyFormat, KeyManager, Pepper, RequestContext,
    store::{AnyStore, AnyStoreError},
    testing,
};

/// The error of opening `url`.
async fn open_error(url: &str) -> AnyStoreError {
    match AnyStore::open(url).await {
        Ok(store) => panic!("{url} opened: {store:?}"),
        Err(e) => e,
    }
}

/// The error's display, the display of each of its sources, and its debug form.
fn every_text(e: &AnyStoreError) -> String {
    let mut text = format!("{e:?}");
    let mut source: Option<&dyn std::error::Error> = Some(e);
    while let Some(e) = source {
        text.push('\n');
        text.push_str(&e.to_string());
        source = e.source();
    }
    text
}

fn assert_hides(e: &AnyStoreError, secret: &str) {
    let text = every_text(e);
    assert!(!text.contains(secret), "{secret} shown: {text}");
}

/// A manager over `store`, with a fixed pepper so that keys verify across reopens.
fn manager(store: AnyStore) -> KeyManager<AnyStore> {
    KeyManager::new(
        store,
        KeyFormat::new(["tak"]).expect("format"),
        Hasher::fast(Pepper::new("k1", [7u8; 32]).expect("pepper")),
    )
}

/// Issues a key through `store` and verifies it; returns the key.
async fn round_trip(store: AnyStore) -> String {
    let manager = manager(store);
    let ctx = RequestContext::new();
    let issued = manager
        .issue(IssueRequest::new("ci-bot", "user_42"), &ctx)
        .await
        .expect("issue");
    let verified = manager
        .verify(issued.key.expose_secret(), &ctx)
        .await
        .expect("verify");
    assert_eq!(verified.key_id(), issued.record.id);
    assert_eq!(verified.owner(), "user_42");
    issued.key.expose_secret().to_owned()
}

// The suite races its writers on spawned tasks: it needs a multi-thread runtime.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_urls_open_a_store_that_passes_the_conformance_suite() {
    for url in ["memory:", "memory://", "MEMORY:"] {
        let store = AnyStore::open(url).await.expect("open");
        assert!(matches!(store, AnyStore::Memory(_)), "{url}: {store:?}");
    }
    testing::conformance(|| async { AnyStore::open("memory:").await.expect("open") }).await;
    round_trip(AnyStore::open("memory://").await.expect("open")).await;
}

#[tokio::test]
async fn each_memory_url_opens_a_store_of_its_own() {
    let key = round_trip(AnyStore::open("memory:").await.expect("open")).await;
    let other = manager(AnyStore::open("memory:").await.expect("open"));
    assert!(
        other.verify(&key, &RequestContext::new()).await.is_err(),
        "a second memory: store is empty"
    );
}

#[tokio::test]
async fn a_memory_url_with_more_after_the_scheme_is_invalid() {
    for url in ["memory:keys", "memory://somewhere", "memory:///"] {
        let e = open_error(url).await;
        assert!(
            matches!(
                e,
                AnyStoreError::InvalidUrl {
                    scheme: "memory",
                    ..
                }
            ),
            "{url}: {e:?}"
        );
    }
}

#[tokio::test]
async fn an_unknown_scheme_is_named_without_the_rest_of_the_url() {
    let e = open_error("redis://user:secret@cache:6379/0").await;
    match &e {
        AnyStoreError::UnknownScheme { scheme } => assert_eq!(scheme, "redis"),
        other => panic!("unexpected error {other:?}"),
    }
    assert!(e.to_string().contains("`redis`"), "{e}");
    assert_hides(&e, "secret");
    assert_hides(&e, "cache");

    let e = open_error("Mysql://root:secret@db/keys").await;
    assert!(
        matches!(&e, AnyStoreError::UnknownScheme { scheme } if scheme == "Mysql"),
        "{e:?}"
    );
    assert_hides(&e, "secret");
}

#[tokio::test]
async fn a_url_without_a_scheme_is_refused_without_echoing_it() {
    for url in [
        "",
        "keys.db",
        "/var/lib/keys.db",
        ":secret@host",
        "1secret:x",
    ] {
        let e = open_error(url).await;
        assert!(matches!(e, AnyStoreError::NoScheme), "{url:?}: {e:?}");
        assert_hides(&e, "secret");
        if !url.is_empty() {
            assert_hides(&e, url);
        }
    }
}

#[cfg(not(feature = "sqlite"))]
#[tokio::test]
async fn sqlite_without_its_feature_names_the_feature() {
    for url in ["sqlite://keys.db?mode=rwc", "sqlite::memory:"] {
        let e = open_error(url).await;
        assert!(
            matches!(
                e,
                AnyStoreError::FeatureDisabled {
                    scheme: "sqlite",
                    feature: "sqlite"
                }
            ),
            "{url}: {e:?}"
        );
        assert!(e.to_string().contains("`sqlite` cargo feature"), "{e}");
    }
}

#[cfg(not(feature = "postgres"))]
#[tokio::test]
async fn postgres_without_its_feature_names_the_feature_and_never_the_password() {
    for (url, scheme) in [
        ("postgres://user:secret@host/db", "postgres"),
        ("postgresql://user:secret@host/db", "postgresql"),
        ("POSTGRES://user@host/db?password=secret", "postgres"),
    ] {
        let e = open_error(url).await;
        assert!(
            matches!(
                e,
                AnyStoreError::FeatureDisabled { scheme: s, feature: "postgres" } if s == scheme
            ),
            "{url}: {e:?}"
        );
        assert!(e.to_string().contains("`postgres` cargo feature"), "{e}");
        assert_hides(&e, "secret");
    }
}

#[cfg(feature = "postgres")]
#[tokio::test]
async fn a_failed_postgres_connection_never_shows_the_password() {
    let mut tasks = tokio::task::JoinSet::new();
    for url in [
        // Nothing listens on port 1.
        "postgres://user:secret@127.0.0.1:1/db",
        "postgresql://user:secret@127.0.0.1:1/db?connect_timeout=1",
        "postgres://user@127.0.0.1:1/db?password=secret",
        // Not a valid URL or not valid options.
        "postgres://user:secret@host:notaport/db",
        "postgres://user:secret@127.0.0.1:1/db?sslmode=secret",
        "postgres://user:sec%72et@127.0.0.1:1/db",
    ] {
        // At once: a refused connection is retried until the pool's 5-second timeout.
        tasks.spawn(async move { (url, open_error(url).await) });
    }
    while let Some(done) = tasks.join_next().await {
        let (url, e) = done.expect("task");
        assert!(matches!(e, AnyStoreError::Store(_)), "{url}: {e:?}");
        assert_hides(&e, "secret");
        assert_eq!(e.to_string(), "cannot open the key store", "{url}");
    }
}

#[cfg(feature = "sqlite")]
mod sqlite {
    use std::path::Path;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use keyward::{
        KeyStore, RequestContext,
        store::{AnyStore, AnyStoreError, ListFilter},
        testing,
    };

    use super::{manager, open_error, round_trip};

    /// `sqlite://<path>?mode=rwc`, which creates the file.
    fn url(path: &Path) -> String {
        format!("sqlite://{}?mode=rwc", path.display())
    }

    #[tokio::test]
    async fn a_sqlite_url_opens_migrates_and_keeps_keys_across_a_reopen() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let path = dir.path().join("keys.db");
        let store = AnyStore::open(&url(&path)).await.expect("open");
        let AnyStore::Sqlite(sqlite) = &store else {
            panic!("not a SQLite store: {store:?}");
        };
        assert_eq!(
            sqlite.schema_version().await.expect("schema version"),
            keyward::store::SqliteStore::SCHEMA_VERSION,
            "opening migrates"
        );
        let key = round_trip(store).await;

        // Reopening migrates again (a no-op) and finds the key; the scheme's case is free.
        let again = format!("SQLite:{}", path.display());
        let reopened = manager(AnyStore::open(&again).await.expect("reopen"));
        reopened
            .verify(&key, &RequestContext::new())
            .await
            .expect("the key survives a reopen");
    }

    #[tokio::test]
    async fn a_missing_file_without_mode_rwc_is_a_store_error() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let missing = format!("sqlite://{}", dir.path().join("missing.db").display());
        let e = open_error(&missing).await;
        assert!(matches!(e, AnyStoreError::Store(_)), "{e:?}");
        assert!(!dir.path().join("missing.db").exists());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_sqlite_url_store_passes_the_conformance_suite() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let n = AtomicUsize::new(0);
        testing::conformance(|| {
            let path = dir.path().join(format!(
                "conformance-{}.db",
                n.fetch_add(1, Ordering::Relaxed)
            ));
            async move { AnyStore::open(&url(&path)).await.expect("open") }
        })
        .await;
        assert!(
            n.load(Ordering::Relaxed) > 1,
            "one fresh database per check"
        );
    }

    /// The store's own `revoke_matching` (one `UPDATE` that decodes no row, so it revokes a
    /// corrupt row too) runs, not the trait's default (which reports that row unreadable).
    #[tokio::test]
    async fn revoke_matching_is_the_stores_own() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let store = AnyStore::open(&url(&dir.path().join("revoke.db")))
            .await
            .expect("open");
        let AnyStore::Sqlite(sqlite) = &store else {
            panic!("not a SQLite store: {store:?}");
        };
        let mut ids = Vec::new();
        for _ in 0..2 {
            let r = testing::record("mallory");
            store.insert(r.clone()).await.expect("insert");
            ids.push(r.id);
        }
        sqlx::query("UPDATE keyward_keys SET scopes = 'not json' WHERE id = ?")
            .bind(ids[0].as_str())
            .execute(sqlite.pool())
            .await
            .expect("hand edit");
        assert!(store.get(&ids[0]).await.is_err(), "the row is corrupt");

        let report = store
            .revoke_matching(&ListFilter::Owner("mallory".into()))
            .await
            .expect("revoke");
        ids.sort_unstable_by(|a, b| a.as_str().cmp(b.as_str()));
        assert_eq!(report.revoked, ids, "the corrupt row is revoked too");
        assert!(report.unreadable.is_empty(), "{report:?}");
    }
}

#[cfg(feature = "postgres")]
mod postgres {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use keyward::store::{AnyStore, AnyStoreError};
    use sqlx::postgres::PgPoolOptions;

    use super::{assert_hides, round_trip};

    const URL_VAR: &str = "KEYWARD_TEST_POSTGRES_URL";

    /// The test server's URL.
    ///
    /// # Panics
    /// When the variable is absent: these tests never pass without a server.
    fn server_url() -> String {
        match std::env::var(URL_VAR) {
            Ok(url) if !url.is_empty() => url,
            _ => panic!(
                "{URL_VAR} is not set: these tests need a PostgreSQL server, as \
                 `{URL_VAR}=postgres://postgres:postgres@127.0.0.1:5432/keyward_test cargo \
                 test --features postgres --test any_store`"
            ),
        }
    }

    /// `url` with a query parameter added.
    fn with_param(url: &str, param: &str) -> String {
        let glue = if url.contains('?') { '&' } else { '?' };
        format!("{url}{glue}{param}")
    }

    #[tokio::test]
    async fn a_postgres_url_opens_migrates_and_round_trips_a_key() {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let url = server_url();
        let schema = format!(
            "keyward_any_{}_{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let admin = PgPoolOptions::new()
            .max_connections(1)
            .connect(&url)
            .await
            .unwrap_or_else(|e| panic!("cannot connect to {URL_VAR}: {e}"));
        sqlx::query(&format!("CREATE SCHEMA {schema}"))
            .execute(&admin)
            .await
            .expect("create schema");

        // The store's connections work in the fresh schema.
        let in_schema = with_param(&url, &format!("options=-c%20search_path%3D{schema}"));
        let store = AnyStore::open(&in_schema).await.expect("open");
        let AnyStore::Postgres(postgres) = &store else {
            panic!("not a PostgreSQL store");
        };
        assert_eq!(
            postgres.schema_version().await.expect("schema version"),
            keyward::store::PostgresStore::SCHEMA_VERSION,
            "opening migrates"
        );
        let debug = format!("{store:?}");
        assert!(
            !debug.contains('@') && !debug.contains("password"),
            "{debug}"
        );
        round_trip(store.clone()).await;
        let tables: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = $1",
        )
        .bind(&schema)
        .fetch_one(&admin)
        .await
        .expect("count tables");
        assert_eq!(
            tables, 4,
            "keyward_keys, keyward_audit, keyward_expiry_notices and keyward_schema_version"
        );

        // The postgresql:// spelling opens the same database.
        let other = in_schema.replacen("postgres://", "postgresql://", 1);
        AnyStore::open(&other).await.expect("open postgresql://");

        if let AnyStore::Postgres(postgres) = store {
            postgres.pool().close().await;
        }
        sqlx::query(&format!("DROP SCHEMA {schema} CASCADE"))
            .execute(&admin)
            .await
            .expect("drop schema");
    }

    #[tokio::test]
    async fn a_wrong_password_is_refused_without_showing_it() {
        let url = server_url();
        let (scheme, rest) = url.split_once("://").expect("a URL with ://");
        let (userinfo, host) = rest.split_once('@').expect("a URL with user information");
        let user = userinfo.split(':').next().unwrap_or_default();
        let wrong = format!("{scheme}://{user}:Wr0ng-s3cret@{host}");
        match AnyStore::open(&wrong).await {
            Err(e) => {
                assert!(matches!(e, AnyStoreError::Store(_)), "{e:?}");
                assert_hides(&e, "Wr0ng-s3cret");
            }
            // A server that trusts local connections ignores the password.
            Ok(_) => eprintln!("the server accepted a wrong password: nothing to check"),
        }
    }
}
