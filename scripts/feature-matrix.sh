#!/usr/bin/env bash
# The full feature matrix, with clippy: every feature alone, no feature, and all together,
# for the library and (with the feature's own dependencies) each target that can build.
#   scripts/feature-matrix.sh            # each feature alone: cargo hack clippy --each-feature
#   POWERSET=1 scripts/feature-matrix.sh # also every pair of features (--feature-powerset --depth 2)
#
# .ci/run runs the cheaper half of this on every submission: `cargo hack check --each-feature
# --lib` (does each feature build alone?) plus `cargo clippy --all-features --all-targets`.
# This script adds clippy on each feature alone and, on request, pairs of features; run it
# before a release and after changing a feature's `cfg`s. It needs no server.
#
# `--no-dev-deps` is not used: it makes cargo-hack rewrite Cargo.toml while it runs, which
# races with anyone editing the file. It is not needed either: with resolver 3 (edition
# 2024), dev-dependencies (including `keyward = { path = ".", features = [...] }`) do not
# add features to a `--lib` build.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v cargo-hack >/dev/null || cargo install cargo-hack --locked --version 0.6.46

# The library alone with every feature set: what a user's `cargo add keyward -F x` compiles.
cargo hack clippy --each-feature --lib -- -D warnings
if [[ ${POWERSET:-0} == 1 ]]; then
    cargo hack clippy --feature-powerset --depth 2 --lib -- -D warnings
fi
# Tests, examples and benches with all features, and each with only the features it
# declares (required-features) on top of the self dev-dependency's `testing` and `axum`.
cargo hack clippy --each-feature --all-targets -- -D warnings
