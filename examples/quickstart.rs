//! The keyward quickstart: the whole flow on the in-memory store.
//!
//! ```text
//! cargo run --example quickstart
//! ```
use keyward::{
    Hasher, IssueRequest, KeyFormat, KeyManager, MemoryStore, Pepper, RequestContext, ScopeCatalog,
};
use time::Duration;
use time::format_description::well_known::Rfc3339;

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
    let expires = match issued.record.expires_at {
        Some(at) => at.format(&Rfc3339)?,
        None => "never".to_owned(),
    };
    println!("          expires {expires}");

    // 2. Verify it, as a request handler would.
    let verified = manager.verify(issued.key.expose_secret(), &ctx).await?;
    println!(
        "verified  {} owned by {}",
        verified.key_id(),
        verified.owner()
    );

    // 3. Authorize: `tickets:write` includes `read`, but not `tickets:assign`.
    for scope in ["read", "tickets:assign"] {
        match verified.authorize(&scope.parse()?, None) {
            Ok(()) => println!("authorize {scope:<16}-> allowed"),
            Err(denied) => println!("authorize {scope:<16}-> denied: {denied}"),
        }
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
    for (label, key) in [("old key", &issued.key), ("new key", &rotated.key)] {
        match manager.verify(key.expose_secret(), &ctx).await {
            Ok(v) => println!("{label}   -> accepted as {}", v.key_id()),
            Err(e) => println!("{label}   -> refused: {e}"),
        }
    }

    // 5. Revoke the new key: refused at once, for good.
    manager
        .revoke(&rotated.key.id(), Some("quickstart done"), &ctx)
        .await?;
    match manager.verify(rotated.key.expose_secret(), &ctx).await {
        Ok(_) => println!("revoked   -> still accepted (bug!)"),
        Err(e) => println!("revoked   -> refused: {e}"),
    }
    Ok(())
}
