//! Builds an example of this crate, as a user would run it, and finds its executable.

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

/// Builds example `name` with `features` (the `cargo` running this test, in this crate's
/// directory) and returns the executable's path from cargo's JSON report.
///
/// # Panics
/// When the build fails or cargo reports no executable.
pub(crate) fn build(name: &str, features: &str) -> PathBuf {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = Command::new(cargo)
        .args([
            "build",
            "--quiet",
            "--example",
            name,
            "--features",
            features,
        ])
        .arg("--message-format=json")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo runs");
    assert!(
        out.status.success(),
        "cargo build --example {name} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == name)
        .find_map(|m| m["executable"].as_str().map(PathBuf::from))
        .unwrap_or_else(|| panic!("cargo reports no executable for example {name}"))
}
