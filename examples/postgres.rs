//! The keyward quickstart on PostgreSQL: keys that every instance of a service shares.
//!
//! ```text
//! cargo run --example postgres --features postgres -- postgres://user:password@localhost/app
//! DATABASE_URL=postgres://user:password@localhost/app cargo run --example postgres --features postgres
//! ```
use keyward::{
    Hasher, IssueRequest, KeyFormat, KeyManager, Pepper, RequestContext, ScopeCatalog,
    store::PostgresStore,
};
use time::Duration;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let Some(url) = std::env::args()
        .nth(1)
        .or_else(|| std::env::var("DATABASE_URL").ok())
    else {
        eprintln!(
            "usage: postgres URL (or set DATABASE_URL), such as postgres://user:password@localhost/app"
        );
        std::process::exit(2);
    };

    // Connect, then create or upgrade keyward's tables (keyward_keys and
    // keyward_schema_version) beside the application's own.
    let store = PostgresStore::connect(&url).await?;
    store.migrate().await?;

    let catalog = ScopeCatalog::builder()
        .scopes(["read", "comments", "tickets:write", "tickets:assign"])
        .implies("comments", "read")
        .implies("tickets:write", "comments")
        .implies("tickets:assign", "read")
        .build()?;
    // In production the pepper comes from a secret manager, the same for every instance:
    // Pepper::from_text(&env_var). A random one makes this run's keys unverifiable later.
    let manager = KeyManager::new(
        store,
        KeyFormat::new(["tak"])?,
        Hasher::fast(Pepper::random("k1")?),
    )
    .with_catalog(catalog);
    let ctx = RequestContext::new().actor("postgres example");

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

    // 2. Verify it, as a request handler on any instance would.
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
    for (label, key) in [("old key", &issued.key), ("new key", &rotated.key)] {
        println!(
            "{label}   -> {:?}",
            manager
                .verify(key.expose_secret(), &ctx)
                .await
                .map(|v| v.key_id())
        );
    }

    // 5. Revoke both: refused at once, for good, by every instance.
    for key in [&issued.key, &rotated.key] {
        manager
            .revoke(&key.id(), Some("postgres example done"), &ctx)
            .await?;
    }
    match manager.verify(rotated.key.expose_secret(), &ctx).await {
        Ok(_) => println!("revoked key -> still accepted (bug!)"),
        Err(e) => println!("revoked key -> refused: {e}"),
    }
    Ok(())
}
