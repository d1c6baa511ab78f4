//! Store failures fail closed: while the store cannot answer no key verifies, nothing
//! panics, and everything works again once it is back, with nothing lost.

use keyward::{
    Hasher, IssueRequest, KeyFormat, KeyManager, Pepper, RequestContext,
    manager::{IssueError, LifecycleError, VerifyError},
};

/// A store that can be switched off (the crate's own test helper).
type Flaky = keyward::testing::FlakyStore;

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

    store.set_down(true);
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

    store.set_down(false);
    let verified = manager
        .verify(issued.key.expose_secret(), &ctx)
        .await
        .expect("works again");
    assert_eq!(verified.key_id(), issued.key.id());
    assert_eq!(store.inner().len(), 1, "nothing lost, nothing half-written");
}
