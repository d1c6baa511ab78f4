#!/usr/bin/env bash
# Runs every fuzz target for N seconds each (default 60), one after another, on stable Rust
# without a sanitizer. Seeds from fuzz/seeds/<target>/ are copied into the (git-ignored)
# corpus fuzz/corpus/<target>/ first. Extra arguments go to libFuzzer.
#   scripts/fuzz.sh 600            # the campaign run before a release: 10 minutes per target
#   TARGETS="scopes" scripts/fuzz.sh 30 -max_len=512
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
seconds=${1:-60}
shift || true
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
targets=${TARGETS:-$(cargo fuzz list)}
cargo fuzz build --sanitizer none
for target in $targets; do
    mkdir -p "corpus/$target"
    cp -n "seeds/$target/"* "corpus/$target/" 2>/dev/null || true
    printf '\n=== fuzz %s for %ss\n' "$target" "$seconds"
    cargo fuzz run --sanitizer none "$target" "corpus/$target" -- \
        -max_total_time="$seconds" -print_final_stats=1 "$@"
    printf '=== %s: corpus %s files\n' "$target" "$(find "corpus/$target" -type f | wc -l)"
done
