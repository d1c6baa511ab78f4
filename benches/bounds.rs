//! What refusing oversized input costs: a 1 MB key, a 1 MB header, 10,000 scopes, a deeply
//! nested scope, a 1 MB stored hash and a 1 MB resource path, beside the cost of merely
//! reading 1 MB (a byte count) and of parsing a valid key, measured in the same run.
//! `tests/resource_bounds.rs` asserts the errors.
//!
//! `cargo bench --bench bounds`

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use keyward::{
    KeyFormat, Scope, ScopeSet, StoredHash, http::bearer_token, key::parse_any, scope::Resource,
};

const MB: usize = 1 << 20;

fn bounds(c: &mut Criterion) {
    let format = KeyFormat::new(["tak"]).expect("format");
    let key = format.generate().expect("key");
    let valid = key.expose_secret().to_owned();
    let huge_key = format!("{valid}{}", "A".repeat(MB));
    let header = format!("Bearer {huge_key}");
    let scopes = "read ".repeat(10_000);
    let deep = format!("{}a", "a:".repeat(10_000));
    let hash = format!("$hmac-sha256$pid=k1${}", "A".repeat(MB));
    let resource = "a:1/".repeat(MB / 4);

    let mut g = c.benchmark_group("reject oversized input");
    g.bench_function("baseline: count the bytes of 1 MB", |b| {
        b.iter(|| {
            black_box(huge_key.as_bytes())
                .iter()
                .filter(|&&b| b == b'A')
                .count()
        })
    });
    g.bench_function("baseline: parse a valid key", |b| {
        b.iter(|| format.parse(black_box(&valid)).is_ok())
    });
    g.bench_function("1 MB key (KeyFormat::parse)", |b| {
        b.iter(|| format.parse(black_box(&huge_key)).is_err())
    });
    g.bench_function("1 MB key (parse_any)", |b| {
        b.iter(|| parse_any(black_box(&huge_key)).is_err())
    });
    g.bench_function("1 MB Authorization header", |b| {
        b.iter(|| bearer_token(black_box(header.as_bytes())).is_err())
    });
    g.bench_function("10,000 scopes", |b| {
        b.iter(|| black_box(&scopes).parse::<ScopeSet>().is_err())
    });
    g.bench_function("10,000 nested scope segments", |b| {
        b.iter(|| Scope::new(black_box(&deep)).is_err())
    });
    g.bench_function("1 MB stored hash", |b| {
        b.iter(|| black_box(&hash).parse::<StoredHash>().is_err())
    });
    g.bench_function("1 MB resource path", |b| {
        b.iter(|| Resource::new(black_box(&resource)).is_err())
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = bounds
}
criterion_main!(benches);
