//! Live or known answers: shared by tests/argon2_interop.rs and tests/detect_secrets.rs.
//!
//! A plain `cargo test` needs Rust only: those tests check keyward against answers that
//! argon2-cffi and detect-secrets gave before, committed in tests/interop/ with the scripts
//! that made them. With `KEYWARD_TEST_INTEROP=1` (as `.ci/run` sets after installing both
//! tools) the `live_*` tests also run the real tools, and check that the committed answers
//! are still the ones the installed tools give. Without it the `live_*` tests check nothing,
//! and say so on stderr.

use std::io::Write;
use std::process::Command;

/// The variable that turns the live checks on.
pub(crate) const VAR: &str = "KEYWARD_TEST_INTEROP";

/// Whether live checks were asked for: `1` yes; unset, empty or `0` no; anything else panics.
fn asked() -> bool {
    match std::env::var(VAR) {
        Ok(v) if v == "1" => true,
        Ok(v) if v.is_empty() || v == "0" => false,
        Err(std::env::VarError::NotPresent) => false,
        other => panic!("{VAR} must be 1 (run the live interop checks) or 0, not {other:?}"),
    }
}

/// Whether the live check `test` runs. Without `KEYWARD_TEST_INTEROP=1`: `false`, after a
/// line on stderr (written past the test harness's capture, so it shows) saying the check
/// was skipped. With it: `true` once `python3` imports `module`, and otherwise a panic
/// naming the pip package `package` to install.
pub(crate) fn enabled(test: &str, module: &str, package: &str) -> bool {
    if !asked() {
        // One write, on a line of its own: the harness prints test results beside it.
        let note = format!(
            "\nnote: {test} SKIPPED: {VAR} is not set, so {package} itself was not run (the \
             known-answer tests check the answers in tests/interop/); to run it, `pip install \
             {package}` and set {VAR}=1\n"
        );
        // Best effort: a closed stderr must not fail the test.
        let _ = std::io::stderr().lock().write_all(note.as_bytes());
        return false;
    }
    let out = Command::new("python3")
        .args(["-c", &format!("import {module}")])
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "{VAR}=1 asks for the live {package} check, but python3 could not run ({e}): \
                 install Python 3 and `pip install {package}`, or unset {VAR}"
            )
        });
    assert!(
        out.status.success(),
        "{VAR}=1 asks for the live {package} check, but python3 cannot import {module}: run \
         `pip install {package}` (or unset {VAR} to check the known answers only). \
         stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    true
}

/// Runs `python3 <script> --check`: the make script recomputes its known-answer file with
/// the installed tool and fails, showing the difference, if the committed file is stale.
pub(crate) fn check_known_answers(script: &str) {
    let out = Command::new("python3")
        .arg(script)
        .arg("--check")
        .output()
        .unwrap_or_else(|e| panic!("python3 {script} --check could not run: {e}"));
    assert!(
        out.status.success(),
        "the committed known answers differ from what the installed tool gives now \
         (python3 {script} --check):\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    print!("{}", String::from_utf8_lossy(&out.stdout));
}
