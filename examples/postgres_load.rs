//! Verify throughput and latency over the PostgreSQL store, with a connection pool, uncached
//! or through a `CachedStore` fed by `PgInvalidations`.
//!
//! ```text
//! cargo run --release --example postgres_load --features postgres -- URL [WORKERS] [SECONDS] [POOL] [uncached|cached]
//! ```
//!
//! Issues 1,000 keys, then `WORKERS` tasks (default 32) verify random ones for `SECONDS`
//! (default 10) through a pool of `POOL` connections (default 16), and prints requests per
//! second and latency percentiles. `cached` puts a `CachedStore` (staleness bound 2 s, last
//! uses written behind and flushed every second) in front of the store, and then also
//! measures propagation: 100 times, a second instance without a cache revokes a key the
//! cached one has just verified, and the cached one verifies it every 100 µs until it is
//! refused. The keys are deleted at the end.
use std::sync::Arc;
use std::time::{Duration, Instant};

use keyward::manager::VerifyError;
use keyward::store::{CachedStore, InvalidationStream, PgInvalidations, PostgresStore};
use keyward::{Hasher, IssueRequest, KeyFormat, KeyManager, KeyStore, Pepper, RequestContext};
use sqlx::postgres::PgPoolOptions;

const KEYS: usize = 1000;
/// The cached mode's staleness bound.
const BOUND: Duration = Duration::from_secs(2);
/// Propagation trials in the cached mode.
const TRIALS: usize = 100;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let Some(url) = args.next().or_else(|| std::env::var("DATABASE_URL").ok()) else {
        eprintln!("usage: postgres_load URL [WORKERS] [SECONDS] [POOL] [uncached|cached]");
        std::process::exit(2);
    };
    let workers: usize = args.next().map_or(Ok(32), |a| a.parse())?;
    let seconds: u64 = args.next().map_or(Ok(10), |a| a.parse())?;
    let pool_size: u32 = args.next().map_or(Ok(16), |a| a.parse())?;
    let cached = match args.next().as_deref() {
        None | Some("uncached") => false,
        Some("cached") => true,
        Some(other) => {
            eprintln!("the mode is `uncached` or `cached`, not {other:?}");
            std::process::exit(2);
        }
    };

    let pool = PgPoolOptions::new()
        .max_connections(pool_size)
        .min_connections(pool_size)
        .connect(&url)
        .await?;
    let store = PostgresStore::from_pool(pool);
    store.migrate().await?;
    // Both instances share one pepper, as a service's instances do.
    let mut pepper = [0u8; 32];
    getrandom::fill(&mut pepper).map_err(|e| format!("no randomness: {e}"))?;
    let hasher = || Pepper::new("k1", pepper).map(Hasher::fast);
    // The writer: an instance without a cache.
    let writer = KeyManager::new(store.clone(), KeyFormat::new(["tak"])?, hasher()?);
    let ctx = RequestContext::new();
    let mut secrets = Vec::with_capacity(KEYS);
    let mut ids = Vec::with_capacity(KEYS);
    for i in 0..KEYS {
        let issued = writer
            .issue(IssueRequest::new("load", format!("owner{}", i % 50)), &ctx)
            .await?;
        secrets.push(issued.key.expose_secret().to_owned());
        ids.push(issued.key.id());
    }
    let secrets = Arc::new(secrets);
    let settings = format!("{KEYS} keys, {workers} workers, pool of {pool_size}");

    if cached {
        let (cache, feed) = CachedStore::builder(store.clone(), BOUND)
            .write_behind(100_000)
            .build();
        let stream = tokio::spawn(PgInvalidations::new(&store).run(feed));
        let flusher = {
            let cache = cache.clone();
            tokio::spawn(async move {
                let mut every = tokio::time::interval(Duration::from_secs(1));
                loop {
                    every.tick().await;
                    if let Err(e) = cache.flush_touches().await {
                        eprintln!("flush failed (kept for the next one): {e}");
                    }
                }
            })
        };
        let started = Instant::now();
        while !cache.is_fresh() {
            if started.elapsed() > Duration::from_secs(10) {
                return Err("the invalidation stream did not prove itself live in 10 s".into());
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let manager = Arc::new(KeyManager::new(
            cache.clone(),
            KeyFormat::new(["tak"])?,
            hasher()?,
        ));
        let title = format!("verify over CachedStore<PostgresStore>: {settings}");
        load(&title, Arc::clone(&manager), &secrets, workers, seconds).await?;
        propagation(&writer, &manager).await?;
        flusher.abort();
        cache.flush_touches().await?;
        stream.abort();
    } else {
        let title = format!("verify over PostgresStore: {settings}");
        load(&title, Arc::new(writer), &secrets, workers, seconds).await?;
    }
    for id in &ids {
        store.delete(id).await?;
    }
    Ok(())
}

/// `workers` tasks verify random keys of `secrets` for `seconds`; prints the figures.
async fn load<S: KeyStore + 'static>(
    title: &str,
    manager: Arc<KeyManager<S>>,
    secrets: &Arc<Vec<String>>,
    workers: usize,
    seconds: u64,
) -> Result<(), Box<dyn std::error::Error>> {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let tasks: Vec<_> = (0..workers)
        .map(|w| {
            let (manager, secrets) = (Arc::clone(&manager), Arc::clone(secrets));
            tokio::spawn(async move {
                let ctx = RequestContext::new();
                let mut latencies = Vec::new();
                let mut errors = 0usize;
                let mut i = w.wrapping_mul(7919);
                while Instant::now() < deadline {
                    i = i.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                    let secret = &secrets[i % secrets.len()];
                    let t = Instant::now();
                    match manager.verify(secret, &ctx).await {
                        Ok(_) => latencies.push(t.elapsed()),
                        Err(_) => errors += 1,
                    }
                    // A cached verification never waits: let the other tasks (and the
                    // stream) run, as a server's requests would.
                    tokio::task::yield_now().await;
                }
                (latencies, errors)
            })
        })
        .collect();
    let mut latencies = Vec::new();
    let mut errors = 0;
    for task in tasks {
        let (l, e) = task.await?;
        latencies.extend(l);
        errors += e;
    }
    let elapsed = started.elapsed();
    if latencies.is_empty() {
        return Err(format!("no successful verification ({errors} errors)").into());
    }
    latencies.sort_unstable();
    let pct = |p: f64| percentile(&latencies, p);
    println!("{title}, {:.1} s", elapsed.as_secs_f64());
    println!(
        "{} verifications, {errors} errors, {:.0} per second",
        latencies.len(),
        latencies.len() as f64 / elapsed.as_secs_f64()
    );
    println!(
        "latency p50 {:?}, p90 {:?}, p99 {:?}, p99.9 {:?}, max {:?}",
        pct(0.50),
        pct(0.90),
        pct(0.99),
        pct(0.999),
        pct(1.0)
    );
    Ok(())
}

/// How long a revocation by `writer` takes to be refused by the cached `reader`.
async fn propagation<S: KeyStore, C: KeyStore>(
    writer: &KeyManager<S>,
    reader: &KeyManager<C>,
) -> Result<(), Box<dyn std::error::Error>> {
    let ctx = RequestContext::new();
    let mut times = Vec::with_capacity(TRIALS);
    for i in 0..TRIALS {
        let issued = writer
            .issue(IssueRequest::new(format!("propagation {i}"), "owner"), &ctx)
            .await?;
        let secret = issued.key.expose_secret();
        // Twice: the insert's own notification may drop the first read from the cache.
        reader.verify(secret, &ctx).await?;
        tokio::time::sleep(Duration::from_millis(5)).await;
        reader.verify(secret, &ctx).await?;
        writer.revoke(&issued.key.id(), None, &ctx).await?;
        let revoked = Instant::now();
        loop {
            match reader.verify(secret, &ctx).await {
                Ok(_) => {}
                Err(VerifyError::Revoked) => break,
                Err(e) => return Err(e.into()),
            }
            if revoked.elapsed() > BOUND * 2 {
                return Err("a revocation was not seen within twice the bound".into());
            }
            tokio::time::sleep(Duration::from_micros(100)).await;
        }
        times.push(revoked.elapsed());
        writer.store().delete(&issued.key.id()).await?;
    }
    times.sort_unstable();
    println!(
        "propagation: {TRIALS} trials, p50 {:?}, p99 {:?}, max {:?}",
        percentile(&times, 0.50),
        percentile(&times, 0.99),
        percentile(&times, 1.0)
    );
    Ok(())
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}
