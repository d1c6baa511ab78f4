//! The keyward quickstart: generate, preview and parse a key.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let format = keyward::KeyFormat::new(["tak"])?;
    let key = format.generate()?;
    println!("new key (shown once): {}", key.expose_secret());
    println!("preview for the UI:   {}", key.preview());
    let parsed = format.parse(key.expose_secret())?;
    println!(
        "parsed: prefix {}, key id {}",
        parsed.prefix(),
        parsed.key_id()
    );
    Ok(())
}
