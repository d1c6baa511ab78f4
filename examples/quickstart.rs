//! The keyward quickstart: the whole flow on the in-memory store.
//!
//! ```text
//! cargo run --example quickstart
//! ```
use keyward::{
    Hasher, IssueRequest, KeyFormat, KeyManager, MemoryStore, Pepper, RequestContext, ScopeCatalog,
};
use time::Duration;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The application's scopes: `tickets:write` includes `comments`, which includes `read`.
    let catalog = ScopeCatalog::builder()
        .scopes(["read", "comments", "tickets:write", "tickets:assign"])
        .implies("comments", "read")
        .implies("tickets:write", "comments")
        .implies("tickets:assign", "read")
        .build()?;

    // In production the pepper comes from a secret manager: Pepper::from_text(&env_var).
    let manager = KeyManager::new(
        MemoryStore::new(),
        KeyFormat::new(["tak"])?,
        Hasher::fast(Pepper::random("k1")?),
    )
    .with_catalog(catalog);
    let ctx = RequestContext::new().actor("quickstart");

    // 1. Issue a key. The plaintext exists only here: show it once.
    let issued = manager
        .issue(
            IssueRequest::new("ci-bot", "user_42")
                .tenant("acme")
                .scopes("tickets:write".parse()?),
            &ctx,
        )
        .await?;
    println!(
        "issued    {}  (shown once: {})",
        issued.record.preview(),
        issued.key.expose_secret()
    );
    println!(
        "          expires {}",
        issued
            .record
            .expires_at
            .map_or("never".to_owned(), |t| t.to_string())
    );

    // 2. Verify it, as a request handler would.
    let verified = manager.verify(issued.key.expose_secret(), &ctx).await?;
    println!(
        "verified  {} owned by {}",
        verified.key_id(),
        verified.owner()
    );

    // 3. Authorize: `tickets:write` includes `read`, but not `tickets:assign`.
    println!(
        "authorize read            -> {:?}",
        verified.authorize(&"read".parse()?, None)
    );
    match verified.authorize(&"tickets:assign".parse()?, None) {
        Ok(()) => println!("authorize tickets:assign  -> allowed"),
        Err(denied) => println!("authorize tickets:assign  -> denied: {denied}"),
    }

    // 4. Rotate with a one-hour overlap: both keys work until the old one's grace ends.
    let rotated = manager
        .rotate(&issued.key.id(), Duration::hours(1), &ctx)
        .await?;
    println!(
        "rotated   {} -> {}",
        issued.record.preview(),
        rotated.record.preview()
    );
    println!(
        "old key   -> {:?}",
        manager
            .verify(issued.key.expose_secret(), &ctx)
            .await
            .map(|v| v.key_id())
    );
    println!(
        "new key   -> {:?}",
        manager
            .verify(rotated.key.expose_secret(), &ctx)
            .await
            .map(|v| v.key_id())
    );

    // 5. Revoke the new key: refused at once, for good.
    manager
        .revoke(&rotated.key.id(), Some("quickstart done"), &ctx)
        .await?;
    match manager.verify(rotated.key.expose_secret(), &ctx).await {
        Ok(_) => println!("revoked key -> still accepted (bug!)"),
        Err(e) => println!("revoked key -> refused: {e}"),
    }
    Ok(())
}
