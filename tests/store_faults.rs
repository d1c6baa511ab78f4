//! Store failures fail closed: while the store cannot answer no key verifies, nothing
//! panics, and everything works again once it is back, with nothing lost.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use keyward::{
    Consumed, Hasher, IssueError, IssueRequest, KeyFormat, KeyId, KeyManager, KeyRecord, KeyStore,
    LifecycleError, ListFilter, MemoryStore, Page, Pepper, RequestContext, StoreError, VerifyError,
};
use time::OffsetDateTime;

/// A store that can be switched off, like a database behind a cut connection.
#[derive(Clone, Default)]
struct Flaky {
    inner: MemoryStore,
    down: Arc<AtomicBool>,
}

impl Flaky {
    fn check(&self) -> Result<(), StoreError> {
        if self.down.load(Ordering::SeqCst) {
            Err(StoreError::unavailable(std::io::Error::new(
                std::io::ErrorKind::ConnectionRefused,
                "connection refused",
            )))
        } else {
            Ok(())
        }
    }
}

impl KeyStore for Flaky {
    async fn insert(&self, record: KeyRecord) -> Result<(), StoreError> {
        self.check()?;
        self.inner.insert(record).await
    }
    async fn insert_capped(
        &self,
        record: KeyRecord,
        max_live: usize,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        self.check()?;
        self.inner.insert_capped(record, max_live, now).await
    }
    async fn get(&self, id: &KeyId) -> Result<Option<Arc<KeyRecord>>, StoreError> {
        self.check()?;
        self.inner.get(id).await
    }
    async fn update(&self, record: KeyRecord, expected_version: u64) -> Result<(), StoreError> {
        self.check()?;
        self.inner.update(record, expected_version).await
    }
    async fn rotate(
        &self,
        old: KeyRecord,
        expected_version: u64,
        new: KeyRecord,
    ) -> Result<(), StoreError> {
        self.check()?;
        self.inner.rotate(old, expected_version, new).await
    }
    async fn list(&self, filter: &ListFilter, page: Page) -> Result<Vec<KeyRecord>, StoreError> {
        self.check()?;
        self.inner.list(filter, page).await
    }
    async fn consume(&self, id: &KeyId, cost: u64) -> Result<Consumed, StoreError> {
        self.check()?;
        self.inner.consume(id, cost).await
    }
    async fn touch(&self, id: &KeyId, at: OffsetDateTime) -> Result<(), StoreError> {
        self.check()?;
        self.inner.touch(id, at).await
    }
    async fn delete(&self, id: &KeyId) -> Result<bool, StoreError> {
        self.check()?;
        self.inner.delete(id).await
    }
}

#[tokio::test]
async fn verification_fails_closed_and_recovers() {
    let store = Flaky::default();
    let manager = KeyManager::new(
        store.clone(),
        KeyFormat::new(["tak"]).expect("format"),
        Hasher::fast(Pepper::new("k1", [3u8; 32]).expect("pepper")),
    );
    let ctx = RequestContext::new();
    let issued = manager
        .issue(IssueRequest::new("k", "u"), &ctx)
        .await
        .expect("issue");

    store.down.store(true, Ordering::SeqCst);
    let err = manager
        .verify(issued.key.expose_secret(), &ctx)
        .await
        .expect_err("must fail closed");
    assert!(matches!(err, VerifyError::Unavailable(_)), "{err:?}");
    assert_eq!(err.to_string(), "key store unavailable");
    assert!(
        std::error::Error::source(&err).is_some(),
        "the cause is kept"
    );
    assert!(matches!(
        manager.issue(IssueRequest::new("k2", "u"), &ctx).await,
        Err(IssueError::Store(_))
    ));
    assert!(matches!(
        manager.revoke(&issued.key.id(), None, &ctx).await,
        Err(LifecycleError::Store(_))
    ));

    store.down.store(false, Ordering::SeqCst);
    let verified = manager
        .verify(issued.key.expose_secret(), &ctx)
        .await
        .expect("works again");
    assert_eq!(verified.key_id(), issued.key.id());
    assert_eq!(store.inner.len(), 1, "nothing lost, nothing half-written");
}
