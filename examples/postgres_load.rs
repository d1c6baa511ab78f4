//! Verify throughput and latency over the PostgreSQL store, with a connection pool.
//!
//! ```text
//! cargo run --release --example postgres_load --features postgres -- URL [WORKERS] [SECONDS] [POOL]
//! ```
//!
//! Issues 1,000 keys, then `WORKERS` tasks (default 32) verify random ones for `SECONDS`
//! (default 10) through a pool of `POOL` connections (default 16), and prints requests per
//! second and latency percentiles. The keys are deleted at the end.
use std::sync::Arc;
use std::time::{Duration, Instant};

use keyward::{
    Hasher, IssueRequest, KeyFormat, KeyManager, KeyStore, Pepper, RequestContext,
    store::PostgresStore,
};
use sqlx::postgres::PgPoolOptions;

const KEYS: usize = 1000;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let Some(url) = args.next().or_else(|| std::env::var("DATABASE_URL").ok()) else {
        eprintln!("usage: postgres_load URL [WORKERS] [SECONDS] [POOL]");
        std::process::exit(2);
    };
    let workers: usize = args.next().map_or(Ok(32), |a| a.parse())?;
    let seconds: u64 = args.next().map_or(Ok(10), |a| a.parse())?;
    let pool_size: u32 = args.next().map_or(Ok(16), |a| a.parse())?;

    let pool = PgPoolOptions::new()
        .max_connections(pool_size)
        .min_connections(pool_size)
        .connect(&url)
        .await?;
    let store = PostgresStore::from_pool(pool);
    store.migrate().await?;
    let manager = Arc::new(KeyManager::new(
        store,
        KeyFormat::new(["tak"])?,
        Hasher::fast(Pepper::random("k1")?),
    ));
    let ctx = RequestContext::new();
    let mut secrets = Vec::with_capacity(KEYS);
    let mut ids = Vec::with_capacity(KEYS);
    for i in 0..KEYS {
        let issued = manager
            .issue(IssueRequest::new("load", format!("owner{}", i % 50)), &ctx)
            .await?;
        secrets.push(issued.key.expose_secret().to_owned());
        ids.push(issued.key.id());
    }
    let secrets = Arc::new(secrets);

    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let tasks: Vec<_> = (0..workers)
        .map(|w| {
            let (manager, secrets) = (Arc::clone(&manager), Arc::clone(&secrets));
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
    latencies.sort_unstable();
    let pct = |p: f64| {
        let i = ((latencies.len() as f64 * p).ceil() as usize).clamp(1, latencies.len()) - 1;
        latencies[i]
    };
    if latencies.is_empty() {
        eprintln!("no successful verification ({errors} errors)");
        std::process::exit(1);
    }
    println!(
        "verify over PostgresStore: {} keys, {workers} workers, pool of {pool_size}, {:.1} s",
        KEYS,
        elapsed.as_secs_f64()
    );
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
    for id in &ids {
        manager.store().delete(id).await?;
    }
    Ok(())
}
