#!/usr/bin/env bash
# Installs what building and testing rs needs on a fresh Debian machine that
# has the Rust toolchain. Idempotent: installs only what is missing.
set -euo pipefail

# Debian packages the tests use. Keep this list the single place they are named.
packages=(
    pkg-config
    libssl-dev
    libclang-dev
    postfix
    gnupg
    openssl
    nginx-light
    fcgiwrap
    curl
    knot
    knot-dnsutils
    bind9-utils
    lintian
    man-db
    adduser
    python3
    python3-venv
    postgresql
    nats-server
    age
)

# Postfix asks how to configure itself; the tests configure their own instances.
if ! dpkg-query -W -f='${Status}' postfix 2>/dev/null | grep -q "install ok installed"; then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    echo "postfix postfix/main_mailer_type select No configuration" | $sudo debconf-set-selections
fi

missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "setup: installing ${missing[*]}"
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get update -qq
    $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

command -v cargo >/dev/null || { echo "setup: cargo not found: install the Rust toolchain (rustup)" >&2; exit 1; }
rustup component list --installed 2>/dev/null | grep -q '^clippy' || rustup component add clippy rustfmt
# The Debian package's builder (scripts/package.sh).
command -v cargo-deb >/dev/null || cargo install cargo-deb --locked --version 3.8.0 --quiet
# The fuzzer driver (scripts/fuzz.sh; its smoke run is part of scripts/test.sh).
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked --version 0.13.2 --quiet
# A standard tus client (tuspy, from PyPI) for the resumable-upload tests
# (tests/bulk.rs), in a virtual environment of its own: .venv/.
venv="$(cd "$(dirname "$0")/.." && pwd)/.venv"
if ! "$venv/bin/python3" -c "import tusclient" 2>/dev/null; then
    /usr/bin/python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "tuspy==1.1.0"
fi
echo "setup: ready ($(cargo --version))"
