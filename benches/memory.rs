//! Memory of the in-memory store: bytes per key at 1,000,000 keys (the peak while growing
//! included) with records as the quickstart issues them (name, owner, tenant, three scopes,
//! expiry), and the peak memory of one verification.
//!
//! Bytes are counted by a counting global allocator (`peak_alloc`: current and peak bytes
//! requested from the system allocator), so they exclude the allocator's own per-block
//! overhead; resident memory from `/proc/self/statm` is printed beside them, which includes
//! it. The figures are printed as `memory: name = value` lines, which `scripts/bench.sh`
//! reads.
//!
//! `cargo bench --bench memory`

mod support;

use support::block_on;

use keyward::{
    Hasher, IssueRequest, KeyFormat, KeyManager, KeyRecord, MemoryStore, Pepper, RequestContext,
    policy::Expiry,
};
use peak_alloc::PeakAlloc;

#[global_allocator]
static ALLOC: PeakAlloc = PeakAlloc;

const KEYS: usize = 1_000_000;

/// Resident set size in bytes, from `/proc/self/statm` (0 where it cannot be read).
fn rss() -> usize {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<usize>().ok())
        .map_or(0, |pages| pages * 4096)
}

fn report(name: &str, value: impl std::fmt::Display) {
    println!("memory: {name} = {value}");
}

fn main() {
    // Criterion options passed to every bench by `cargo bench -- ...` are ignored here.
    let manager = KeyManager::new(
        MemoryStore::new(),
        KeyFormat::new(["tak"]).expect("format"),
        Hasher::fast(Pepper::new("k1", [0x42; 32]).expect("pepper")),
    );
    let ctx = RequestContext::new();

    let before = ALLOC.current_usage();
    let rss_before = rss();
    ALLOC.reset_peak_usage();
    let mut sample = None;
    for i in 0..KEYS {
        let request = IssueRequest::new("ci-bot", format!("user_{i}"))
            .tenant(format!("tenant_{}", i % 1000))
            // Parsed per request, as a service does: no scope strings shared between records.
            .scopes("read comments tickets:write".parse().expect("scopes"))
            .expiry(Expiry::After(time::Duration::days(90)));
        let issued = block_on(manager.issue(request, &ctx)).expect("issue");
        if i == KEYS / 2 {
            sample = Some(issued.key);
        }
    }
    let after = ALLOC.current_usage();
    let peak = ALLOC.peak_usage();
    let rss_after = rss();
    assert_eq!(manager.store().len(), KEYS);
    report("keys", KEYS);
    report("size_of KeyRecord", size_of::<KeyRecord>());
    report("bytes per key", (after - before) / KEYS);
    report("peak bytes per key while growing", (peak - before) / KEYS);
    report(
        "resident bytes per key (statm)",
        rss_after.saturating_sub(rss_before) / KEYS,
    );

    // A verification that expands the record: the first after a write of it (here the
    // `last_used_at` written by the first verification), which drops the store's expanded
    // copy. The expanded record stays in the store's bounded hot set.
    let key = sample.expect("sample key");
    block_on(manager.verify(key.expose_secret(), &ctx)).expect("valid");
    let before = ALLOC.current_usage();
    ALLOC.reset_peak_usage();
    let verified = block_on(manager.verify(key.expose_secret(), &ctx)).expect("valid");
    let peak = ALLOC.peak_usage();
    drop(verified);
    report("expanding verify peak bytes", peak - before);
    report(
        "expanding verify retained bytes",
        ALLOC.current_usage() - before,
    );

    // One verification of a hot key (verified before, record unchanged since).
    let before = ALLOC.current_usage();
    ALLOC.reset_peak_usage();
    let verified = block_on(manager.verify(key.expose_secret(), &ctx)).expect("valid");
    let peak = ALLOC.peak_usage();
    drop(verified);
    report("verify peak bytes", peak - before);
    report("verify retained bytes", ALLOC.current_usage() - before);
}
