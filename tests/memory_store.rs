//! The in-memory store passes the KeyStore conformance suite (one test per rule, and the
//! whole suite in one test), and holds its cap under real parallelism (threads, not just
//! interleaved futures).

use std::sync::Arc;

use keyward::{KeyStore, MemoryStore, store::StoreError, testing};

async fn fresh_store() -> MemoryStore {
    MemoryStore::new()
}

/// One test per rule of the contract.
mod conformance {
    keyward::conformance_tests!(super::fresh_store);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_store_passes_the_whole_conformance_suite() {
    testing::conformance(fresh_store).await;
}

#[test]
fn cap_holds_across_threads() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .build()
        .expect("runtime");
    let store = MemoryStore::new();
    let results: Vec<Result<(), StoreError>> = runtime.block_on(async {
        let tasks: Vec<_> = (0..50)
            .map(|_| {
                let store = store.clone();
                tokio::spawn(async move {
                    store
                        .insert_capped(testing::record("zoe"), 3, testing::epoch())
                        .await
                })
            })
            .collect();
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.expect("task"));
        }
        out
    });
    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 3);
    assert_eq!(store.len(), 3);
    let shared = Arc::new(store);
    assert!(!shared.is_empty());
}
