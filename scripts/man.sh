#!/usr/bin/env bash
# Regenerates man/ from the commands' clap definitions.
# With --check, changes nothing and fails if man/ is stale.
set -euo pipefail
cd "$(dirname "$0")/.."
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
env -u RS_SPOOL cargo run --quiet --example mangen -- "$out"
if [ "${1:-}" = --check ]; then
    if ! diff -r man "$out" >/dev/null; then
        diff -r man "$out" | head -n 20
        echo "man/ is stale: run scripts/man.sh and commit the result" >&2
        exit 1
    fi
    echo "man pages are up to date"
else
    rm -rf man
    mkdir -p man
    cp "$out"/* man/
    echo "wrote $(ls man | wc -l) man pages to man/"
fi
