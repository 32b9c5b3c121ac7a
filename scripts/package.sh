#!/usr/bin/env bash
# Builds the Debian package with cargo-deb (configured in Cargo.toml under
# [package.metadata.deb]; maintainer scripts in packaging/debian):
# target/debian/rs-messaging_VERSION-REVISION_ARCH.deb. Extra arguments go to cargo deb.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v cargo-deb >/dev/null || cargo install cargo-deb --locked --version 3.8.0 --quiet
# The package carries the man pages in man/: they must be current.
scripts/man.sh --check
cargo deb -p rs --strip --quiet "$@"
ls target/debian/rs-messaging_*.deb
