//! Cached verification over PostgreSQL beside the memory store, in the same run: a
//! `CachedStore<PostgresStore>` whose `PgInvalidations` stream keeps it live answers a hot
//! record from memory (goal: at most twice the memory store's hot verify).
//!
//! `KEYWARD_TEST_POSTGRES_URL=postgres://… cargo bench --features postgres --bench cached`
//! (without the variable only the memory store is measured).

mod support;

use support::block_on;

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use keyward::store::{CachedStore, InvalidationStream, PgInvalidations, PostgresStore};
use keyward::{
    Hasher, IssueRequest, KeyFormat, KeyId, KeyManager, KeyStore, MemoryStore, Pepper,
    RequestContext, Scope,
};

fn manager<S: KeyStore>(store: S) -> KeyManager<S> {
    KeyManager::new(
        store,
        KeyFormat::new(["tak"]).expect("format"),
        Hasher::fast(Pepper::new("k1", [0x42; 32]).expect("pepper")),
    )
}

/// Issues a key and verifies it once (its last use written); returns its secret and id.
fn hot_key<S: KeyStore>(m: &KeyManager<S>, rt: &tokio::runtime::Runtime) -> (String, KeyId) {
    let ctx = RequestContext::new();
    let issued = rt
        .block_on(m.issue(IssueRequest::new("bench", "owner"), &ctx))
        .expect("issue");
    let secret = issued.key.expose_secret().to_owned();
    rt.block_on(m.verify(&secret, &ctx)).expect("first verify");
    (secret, issued.key.id())
}

fn cached(c: &mut Criterion) {
    // The stream, the pool and the flushes run on this runtime's own threads; a cache hit
    // never waits, so the measured loop polls it directly, like the memory store.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let _entered = rt.enter();
    let ctx = RequestContext::new();
    let read: Scope = "read".parse().expect("scope");

    let memory = manager(MemoryStore::new());
    let (memory_key, _) = hot_key(&memory, &rt);

    let mut g = c.benchmark_group("cached verify (PostgreSQL)");
    g.bench_function("memory store: verify + authorize, hot record", |b| {
        b.iter(|| {
            let v = block_on(memory.verify(black_box(&memory_key), &ctx)).expect("valid");
            v.authorize(&read, None).is_ok()
        })
    });
    let Ok(url) = std::env::var("KEYWARD_TEST_POSTGRES_URL") else {
        eprintln!("KEYWARD_TEST_POSTGRES_URL is not set: the cached store is not measured");
        g.finish();
        return;
    };
    let store = rt
        .block_on(PostgresStore::connect(&url))
        .expect("connect to KEYWARD_TEST_POSTGRES_URL");
    rt.block_on(store.migrate()).expect("migrate");
    let (cache, feed) = CachedStore::builder(store.clone(), Duration::from_secs(2))
        .write_behind(100_000)
        .build();
    rt.spawn(PgInvalidations::new(&store).run(feed));
    while !cache.is_fresh() {
        std::thread::sleep(Duration::from_millis(5));
    }
    let cached = manager(cache.clone());
    let (cached_key, cached_id) = hot_key(&cached, &rt);
    // The insert's notification may drop the first read: read it again once it passed.
    std::thread::sleep(Duration::from_millis(100));
    rt.block_on(cached.verify(&cached_key, &ctx))
        .expect("verify");
    assert!(cache.cached_records() > 0, "the key is cached");
    g.bench_function(
        "CachedStore<PostgresStore>: verify + authorize, hot record",
        |b| {
            b.iter(|| {
                let v = block_on(cached.verify(black_box(&cached_key), &ctx)).expect("valid");
                v.authorize(&read, None).is_ok()
            })
        },
    );
    g.finish();
    rt.block_on(cache.flush_touches()).expect("flush");
    rt.block_on(store.delete(&cached_id)).expect("delete");
}

criterion_group!(benches, cached);
criterion_main!(benches);
