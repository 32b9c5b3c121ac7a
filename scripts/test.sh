#!/usr/bin/env bash
# The whole test suite: set-up, formatting, lints, unit and integration tests
# (which drive the real binaries), and man page freshness.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$SECONDS

scripts/setup.sh
echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --quiet -- -D warnings
cargo clippy --workspace --all-targets --features rs/fault-injection --quiet -- -D warnings
echo "== cargo test"
# The power-loss campaign (tests/powerloss.rs) needs the fault layer.
cargo test --workspace --all-targets --features rs/fault-injection --quiet
echo "== man pages"
scripts/man.sh --check
echo "== fuzz smoke (scripts/fuzz.sh runs each target to 10^7)"
scripts/fuzz.sh --smoke 5
echo "== the Debian package"
scripts/test-package.sh
echo "all tests passed in $((SECONDS - start)) s"
