#!/usr/bin/env bash
# The whole test suite: set-up, formatting, lints, unit and integration tests
# (which drive the real binaries), and man page freshness. Each phase says
# how long it took, and the last line the whole.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$SECONDS
mark=$SECONDS
phase() {
    echo "   ($(( SECONDS - mark )) s)"
    mark=$SECONDS
    echo "== $*"
}

echo "== set-up"
scripts/setup.sh
phase "cargo fmt --check"
cargo fmt --all -- --check
phase "cargo clippy"
cargo clippy --workspace --all-targets --quiet -- -D warnings
cargo clippy --workspace --all-targets --features rs/fault-injection --quiet -- -D warnings
phase "cargo test"
# The power-loss campaign (tests/powerloss.rs) needs the fault layer.
cargo test --workspace --all-targets --features rs/fault-injection --quiet
phase "man pages"
scripts/man.sh --check
phase "fuzz smoke (scripts/fuzz.sh runs each target to 10^7)"
scripts/fuzz.sh --smoke 5
phase "the Debian package"
scripts/test-package.sh
phase "done"
echo "all tests passed in $((SECONDS - start)) s"
