//! The scope check on every request, and the owner-bound intersection: `allows` on a
//! normalized set of 32 scopes (target at most 50 ns) beside a raw binary search over the
//! same 32 strings, and the intersection of two such sets (target at most 2 µs).
//!
//! `cargo bench --bench scopes`

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use keyward::{Scope, ScopeSet};

fn scope(s: &str) -> Scope {
    s.parse().expect("valid scope")
}

/// 32 scopes as an application might grant them: 28 concrete, 4 wildcards, depth 1 to 3.
fn key_scopes() -> ScopeSet {
    let mut scopes: Vec<String> = ["read", "comments", "tickets:write", "tickets:assign"]
        .map(str::to_owned)
        .to_vec();
    for area in [
        "billing", "projects", "sprints", "members", "reports", "webhooks",
    ] {
        for action in ["read", "write", "admin:read", "export"] {
            scopes.push(format!("{area}:{action}"));
        }
    }
    scopes.extend(["audit:*", "tasks:*", "epics:comments:*", "leaves:*"].map(str::to_owned));
    let set = ScopeSet::from_scopes(scopes.iter().map(|s| scope(s))).expect("within limits");
    assert_eq!(set.len(), 32);
    set
}

/// An owner's permissions overlapping the key's: some shared, some wider, some disjoint.
fn owner_scopes() -> ScopeSet {
    let mut scopes: Vec<String> = ["read", "tickets:*", "audit:log:read", "tasks:*"]
        .map(str::to_owned)
        .to_vec();
    for area in [
        "billing", "projects", "sprints", "goals", "members", "teams",
    ] {
        for action in ["read", "write", "admin:*", "import"] {
            scopes.push(format!("{area}:{action}"));
        }
    }
    scopes.extend(["epics:*", "leaves:approve", "leaves:read", "standups:*"].map(str::to_owned));
    let set = ScopeSet::from_scopes(scopes.iter().map(|s| scope(s))).expect("within limits");
    assert_eq!(set.len(), 32);
    set
}

fn allows(c: &mut Criterion) {
    let set = key_scopes();
    let raw: Vec<String> = {
        let mut v: Vec<String> = set.iter().map(ToString::to_string).collect();
        v.sort();
        v
    };
    let exact = scope("sprints:write");
    let deep = scope("epics:comments:write:own");
    let missing = scope("billing:admin:write");
    assert!(set.allows(&exact) && set.allows(&deep) && !set.allows(&missing));

    let mut g = c.benchmark_group("allows (32 scopes)");
    g.bench_function("raw binary search over 32 strings", |b| {
        b.iter(|| raw.binary_search_by(|s| s.as_str().cmp(black_box("sprints:write"))))
    });
    g.bench_function("granted exactly", |b| {
        b.iter(|| black_box(&set).allows(black_box(&exact)))
    });
    g.bench_function("granted by a wildcard, depth 4", |b| {
        b.iter(|| black_box(&set).allows(black_box(&deep)))
    });
    g.bench_function("refused, depth 3", |b| {
        b.iter(|| black_box(&set).allows(black_box(&missing)))
    });
    g.finish();
}

fn intersection(c: &mut Criterion) {
    let key = key_scopes();
    let owner = owner_scopes();
    let mut g = c.benchmark_group("intersection (32 by 32 scopes)");
    g.bench_function("owner bound", |b| {
        b.iter(|| black_box(&key).intersection(black_box(&owner)))
    });
    g.bench_function("union", |b| {
        b.iter(|| black_box(&key).union(black_box(&owner)))
    });
    g.finish();
}

criterion_group!(benches, allows, intersection);
criterion_main!(benches);
