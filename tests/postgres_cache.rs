//! Caches over one PostgreSQL database, proven on the real server: two instances (each a
//! `KeyManager` over its own `CachedStore`, fed by its own `PgInvalidations`) see each
//! other's revocations within 100 ms at p99, also through a revoked parent; with an
//! instance's connections cut, and separately stalled (sockets open, bytes held), by a TCP
//! proxy, it serves no cached record past the staleness bound, fails closed within the read
//! timeout and recovers; hot verifications with write-behind send nothing to the database
//! (an idle instance's traffic and one flush).
//!
//! The server's URL comes from `KEYWARD_TEST_POSTGRES_URL` (see `postgres_store.rs`).

#[path = "support/postgres.rs"]
mod server;

use std::time::{Duration, Instant};

use keyward::manager::VerifyError;
use keyward::store::{CachedStore, InvalidationStream, PgInvalidations, PostgresStore};
use keyward::{Hasher, IssueRequest, KeyFormat, KeyManager, KeyStore, Pepper, RequestContext};
use server::{Proxy, Schema, upstream};

type Manager = KeyManager<CachedStore<PostgresStore>>;

/// One service instance: a manager over a cache over `store`, its stream running.
struct Instance {
    manager: Manager,
    cache: CachedStore<PostgresStore>,
    stream: tokio::task::JoinHandle<()>,
}

impl Instance {
    /// An instance over `store` with staleness bound `bound`; its stream connects through
    /// `stream_via` when given. With `write_behind`, last uses are written behind and every
    /// verification records one.
    async fn start(
        store: PostgresStore,
        bound: Duration,
        stream_via: Option<(&Schema, std::net::SocketAddr)>,
        write_behind: bool,
    ) -> Self {
        let stream = match stream_via {
            Some((schema, addr)) => PgInvalidations::with_options(schema.options(Some(addr))),
            None => PgInvalidations::new(&store),
        }
        .connect_timeout(Duration::from_millis(500))
        .max_backoff(Duration::from_millis(200));
        let mut builder = CachedStore::builder(store, bound);
        if write_behind {
            builder = builder.write_behind(10_000);
        }
        let (cache, feed) = builder.build();
        let stream = tokio::spawn(stream.run(feed));
        let mut manager = KeyManager::new(
            cache.clone(),
            KeyFormat::new(["tak"]).expect("format"),
            Hasher::fast(Pepper::new("k1", [7u8; 32]).expect("pepper")),
        );
        if write_behind {
            manager = manager.with_last_used_interval(time::Duration::ZERO);
        }
        let instance = Self {
            manager,
            cache,
            stream,
        };
        instance.wait_fresh(Duration::from_secs(10)).await;
        instance
    }

    async fn wait_fresh(&self, within: Duration) {
        let started = Instant::now();
        while !self.cache.is_fresh() {
            assert!(
                started.elapsed() < within,
                "the stream did not prove itself live within {within:?}"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        self.stream.abort();
    }
}

fn ctx() -> RequestContext {
    RequestContext::new()
}

/// Polls `secret` on `instance` every millisecond until it is refused as revoked; the time
/// from `since` until then.
async fn refused_after(instance: &Instance, secret: &str, since: Instant) -> Duration {
    loop {
        match instance.manager.verify(secret, &ctx()).await {
            Err(VerifyError::Revoked) => return since.elapsed(),
            Ok(_) => {}
            Err(e) => panic!("only Ok or Revoked expected, got {e:?}"),
        }
        assert!(
            since.elapsed() < Duration::from_secs(5),
            "still accepted after 5 s"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// Waits until `b`'s stream has delivered every notification of `a`'s writes so far: `b`
/// caches the absence of a new id, `a` inserts it, and `b` sees it once its notification
/// arrives, after every earlier one (notifications arrive in commit order).
async fn caught_up(a: &Instance, b: &Instance) {
    assert!(b.cache.is_fresh(), "B's stream is not live");
    let marker = keyward::testing::record("marker");
    let id = marker.id;
    assert!(b.cache.get(&id).await.expect("get").is_none());
    a.cache
        .inner()
        .insert(marker)
        .await
        .expect("insert the marker");
    let started = Instant::now();
    while b.cache.get(&id).await.expect("get").is_none() {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "B's stream did not deliver A's write within 5 s"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// Verifies `secrets` on `b` until one round of them sends nothing through `proxy` (B's
/// pool): B then answers them from its cache. First `b` catches up with `a`'s writes (A's
/// inserts would otherwise drop B's reads later); the first reads fill the cache, and the
/// pool's release of a connection sends a 5-byte ping a moment after a read. Fails if no
/// round within 5 s is silent.
async fn answers_from_cache(a: &Instance, b: &Instance, proxy: &Proxy, secrets: &[&str]) {
    caught_up(a, b).await;
    let started = Instant::now();
    loop {
        let before = proxy.sent();
        for secret in secrets {
            b.manager.verify(secret, &ctx()).await.expect("B verifies");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
        if proxy.sent() == before {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "B kept going to the database"
        );
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn report(what: &str, mut times: Vec<Duration>) -> Duration {
    times.sort_unstable();
    let (p50, p99, max) = (
        percentile(&times, 50.0),
        percentile(&times, 99.0),
        times[times.len() - 1],
    );
    println!(
        "{what}: {} trials, p50 {p50:?}, p99 {p99:?}, max {max:?}",
        times.len()
    );
    p99
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_reaches_the_other_instance_within_100ms_at_p99() {
    let schema = Schema::new().await;
    let a_store = schema.migrated(4).await;
    // B's pool goes through a proxy, to show that B answers from its cache.
    let proxy = Proxy::start(upstream().await).await;
    let b_store = schema.store_via(Some(proxy.addr), 4).await;
    // A long bound: what B sees comes from the notifications, not from the bound.
    let bound = Duration::from_secs(30);
    let a = Instance::start(a_store, bound, None, false).await;
    let b = Instance::start(b_store, bound, None, false).await;

    let mut direct = Vec::new();
    let mut through_parent = Vec::new();
    for trial in 0..100 {
        let parent = a
            .manager
            .issue(IssueRequest::new(format!("parent {trial}"), "ann"), &ctx())
            .await
            .expect("issue");
        let proof = a
            .manager
            .verify(parent.key.expose_secret(), &ctx())
            .await
            .expect("parent verifies");
        let child = a
            .manager
            .issue_delegated(&proof, IssueRequest::new("child", "ann"), &ctx())
            .await
            .expect("delegate");
        // B has both in its cache and answers from it without a word to the database.
        answers_from_cache(
            &a,
            &b,
            &proxy,
            &[parent.key.expose_secret(), child.key.expose_secret()],
        )
        .await;

        a.manager
            .revoke(&parent.key.id(), None, &ctx())
            .await
            .expect("revoke on A");
        let revoked_at = Instant::now();
        // The child first: it is refused through its parent's record.
        through_parent.push(refused_after(&b, child.key.expose_secret(), revoked_at).await);
        direct.push(refused_after(&b, parent.key.expose_secret(), revoked_at).await);
    }
    let p99 = report("revocation on A refused by B", direct);
    assert!(p99 < Duration::from_millis(100), "p99 {p99:?}");
    let p99 = report("parent revoked on A, child refused by B", through_parent);
    assert!(p99 < Duration::from_millis(100), "p99 {p99:?}");
    drop((a, b));
    schema.drop().await;
}

/// B's connections (pool and stream) go through a proxy that cuts or stalls them after B
/// cached a key; A revokes the key meanwhile. No verification on B that starts once the
/// bound has passed since the fault accepts the key; B fails closed within its read
/// timeout; once the connections return, B refuses the key as revoked and its cache is
/// live again.
async fn faulted(stall: bool) {
    let schema = Schema::new().await;
    let a_store = schema.migrated(2).await;
    let proxy = Proxy::start(upstream().await).await;
    let read_timeout = Duration::from_millis(300);
    let b_store = schema
        .store_via(Some(proxy.addr), 4)
        .await
        .with_read_timeout(read_timeout);
    let bound = Duration::from_millis(500);
    let a = Instance::start(a_store, bound, None, false).await;
    let b = Instance::start(b_store, bound, Some((&schema, proxy.addr)), false).await;
    let issued = a
        .manager
        .issue(IssueRequest::new("k", "ann"), &ctx())
        .await
        .expect("issue");
    let secret = issued.key.expose_secret();
    // Cached on B, and served from memory: B's connections carry nothing for it.
    answers_from_cache(&a, &b, &proxy, &[secret]).await;

    if stall {
        proxy.stall();
    } else {
        proxy.cut();
    }
    let faulted_at = Instant::now();
    a.manager
        .revoke(&issued.key.id(), None, &ctx())
        .await
        .expect("revoke on A");
    let (mut stale_within_bound, mut unavailable) = (0usize, 0usize);
    let mut slowest = Duration::ZERO;
    while faulted_at.elapsed() < bound * 3 {
        let started = Instant::now();
        let result = b.manager.verify(secret, &ctx()).await;
        let took = started.elapsed();
        match result {
            Ok(_) => {
                assert!(
                    started - faulted_at < bound,
                    "B served its cached record {:?} after the fault (bound {bound:?})",
                    started - faulted_at
                );
                stale_within_bound += 1;
            }
            Err(VerifyError::Unavailable(_)) => {
                unavailable += 1;
                slowest = slowest.max(took);
            }
            Err(e) => panic!("while faulted only a cached Ok or Unavailable, got {e:?}"),
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    println!(
        "{}: {stale_within_bound} cached answers within the bound, {unavailable} refusals \
         (slowest {slowest:?}, read timeout {read_timeout:?})",
        if stall { "stalled" } else { "cut" }
    );
    assert!(
        stale_within_bound > 0,
        "B never answered from its cache while it could"
    );
    assert!(unavailable > 0, "B never failed closed");
    assert!(
        slowest < read_timeout + Duration::from_millis(200),
        "a refusal took {slowest:?}"
    );

    proxy.restore();
    let restored = Instant::now();
    loop {
        match b.manager.verify(secret, &ctx()).await {
            Err(VerifyError::Revoked) => break,
            Err(VerifyError::Unavailable(_)) => {}
            other => panic!(
                "after the fault: Revoked (or Unavailable while reconnecting), got {other:?}"
            ),
        }
        assert!(
            restored.elapsed() < Duration::from_secs(10),
            "B did not recover"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    b.wait_fresh(Duration::from_secs(10)).await;
    // And B hears of A's writes again.
    let fresh = a
        .manager
        .issue(IssueRequest::new("after", "ann"), &ctx())
        .await
        .expect("issue");
    b.manager
        .verify(fresh.key.expose_secret(), &ctx())
        .await
        .expect("B verifies a new key");
    a.manager
        .disable(&fresh.key.id(), &ctx())
        .await
        .expect("disable on A");
    let since = Instant::now();
    while b
        .manager
        .verify(fresh.key.expose_secret(), &ctx())
        .await
        .is_ok()
    {
        assert!(since.elapsed() < Duration::from_secs(2), "disable not seen");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    drop((a, b));
    schema.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cut_connections_serve_nothing_past_the_bound_and_recover() {
    faulted(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_connections_serve_nothing_past_the_bound_and_recover() {
    faulted(true).await;
}

/// With write-behind, N hot verifications on B send nothing through B's pool but the one
/// flush of their last-use times, as an idle B sends nothing at all (B's stream, on a
/// connection of its own, sends its heartbeats in both cases); an uncached instance sends a
/// round trip per verification.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hot_verifications_send_nothing_beyond_an_idle_instance() {
    const N: usize = 10_000;
    let schema = Schema::new().await;
    let a_store = schema.migrated(2).await;
    let proxy = Proxy::start(upstream().await).await;
    let b_store = schema.store_via(Some(proxy.addr), 2).await;
    let bound = Duration::from_secs(5);
    let a = Instance::start(a_store, bound, None, false).await;
    // Every verification of B records a last use (by default one a minute per key).
    let b = Instance::start(b_store.clone(), bound, None, true).await;
    let mut secrets = Vec::new();
    for i in 0..10 {
        let issued = a
            .manager
            .issue(IssueRequest::new(format!("k{i}"), "ann"), &ctx())
            .await
            .expect("issue");
        b.manager
            .verify(issued.key.expose_secret(), &ctx())
            .await
            .expect("B verifies");
        secrets.push(issued);
    }
    // All cached (A's inserts may drop B's first reads), then flushed, and the pool's
    // release of the flush's connection (a 5-byte ping) passed.
    let all: Vec<&str> = secrets.iter().map(|i| i.key.expose_secret()).collect();
    answers_from_cache(&a, &b, &proxy, &all).await;
    assert_eq!(
        b.cache.cached_records(),
        secrets.len() + 1,
        "and the marker"
    );
    b.cache.flush_touches().await.expect("flush");
    tokio::time::sleep(Duration::from_millis(100)).await;

    let idle_from = proxy.sent();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(b.cache.flush_touches().await.expect("flush"), 0);
    let idle = proxy.sent() - idle_from;

    let hot_from = proxy.sent();
    for n in 0..N {
        b.manager
            .verify(secrets[n % secrets.len()].key.expose_secret(), &ctx())
            .await
            .expect("B verifies");
    }
    let before_flush = proxy.sent() - hot_from;
    assert_eq!(b.cache.pending_touches(), secrets.len());
    assert_eq!(b.cache.flush_touches().await.expect("flush"), secrets.len());
    let hot = proxy.sent() - hot_from;

    // The flush wrote the last uses.
    for issued in &secrets {
        let record = b_store
            .get(&issued.key.id())
            .await
            .expect("get")
            .expect("present");
        assert!(record.last_used_at.is_some(), "last use not written");
    }

    // The same work without a cache, through the same proxy.
    let uncached = KeyManager::new(
        b_store,
        KeyFormat::new(["tak"]).expect("format"),
        Hasher::fast(Pepper::new("k1", [7u8; 32]).expect("pepper")),
    );
    let uncached_from = proxy.sent();
    for n in 0..1_000 {
        uncached
            .verify(secrets[n % secrets.len()].key.expose_secret(), &ctx())
            .await
            .expect("verifies");
    }
    let uncached_sent = proxy.sent() - uncached_from;
    println!(
        "bytes sent by the pool: idle {idle}, {N} hot verifications {before_flush} + one flush \
         {} = {hot}; 1,000 uncached verifications {uncached_sent}",
        hot - before_flush
    );
    assert_eq!(idle, 0, "an idle instance sends nothing through its pool");
    assert_eq!(before_flush, 0, "hot verifications sent something");
    assert!(hot < 2_048, "one flush of 10 keys took {hot} bytes");
    assert!(uncached_sent > 1_000 * 20, "uncached: {uncached_sent}");
    drop((a, b));
    schema.drop().await;
}

/// A database whose notification triggers are missing or disabled would return heartbeats
/// while no write is notified: the stream never vouches for the cache then, and does once
/// they are back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_triggers_the_stream_never_vouches() {
    let schema = Schema::new().await;
    let store = schema.migrated(2).await;
    sqlx::query("ALTER TABLE keyward_keys DISABLE TRIGGER keyward_keys_notify_change")
        .execute(store.pool())
        .await
        .expect("disable a trigger");
    let (cache, feed) = CachedStore::new(store.clone(), Duration::from_secs(5));
    let stream = tokio::spawn(
        PgInvalidations::new(&store)
            .max_backoff(Duration::from_millis(100))
            .run(feed),
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!cache.is_fresh(), "vouched without the triggers");
    sqlx::query("ALTER TABLE keyward_keys ENABLE ALWAYS TRIGGER keyward_keys_notify_change")
        .execute(store.pool())
        .await
        .expect("enable the trigger");
    let started = Instant::now();
    while !cache.is_fresh() {
        assert!(started.elapsed() < Duration::from_secs(5), "never live");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The migration enables them always: replicas' writes notify too.
    let modes: Vec<String> = sqlx::query_scalar(
        "SELECT tgenabled::text FROM pg_trigger WHERE tgrelid = to_regclass('keyward_keys') \
         AND tgname LIKE 'keyward_keys_notify%' ORDER BY tgname",
    )
    .fetch_all(store.pool())
    .await
    .expect("triggers");
    assert_eq!(modes, ["A", "A", "A"]);
    stream.abort();
    schema.drop().await;
}
