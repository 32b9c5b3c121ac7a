#!/usr/bin/env bash
# Sets up, builds, and runs a demonstration on the built-in demo spool
# (spool/demo in this checkout): messages of each precedence are queued,
# listed in send order, throttled, held and released, and an expired message
# is pruned to dead/ with its reason. Safe to rerun: it starts afresh.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh
echo "== building (release)"
cargo build --release --quiet
bin=$PWD/target/release
export PATH="$bin:$PATH"
export RS_SPOOL=$PWD/spool/demo
rm -rf "$RS_SPOOL"

step() { printf '\n== %s\n' "$*"; }

step "create the spool"
rs-queue init --site demo --component demo.sensor1

step "queue messages (rs-send prints each ID once it is durable)"
echo "inventory snapshot" | rs-send --class inventory --subclass snapshot --precedence bulk
rs-send --class infrastructure --subclass heartbeat --kind event --text "all services up"
rs-send --class monitoring --subclass disk --kind alarm --severity critical --state raised \
    --instance host7 --text "/var is 98% full" --precedence urgent --ttl 4h
head -c 2048 /dev/urandom | rs-send --class data --subclass sample --mime-type application/octet-stream
rs-send --class monitoring --subclass load --kind event --text "short-lived" --ttl 1m

step "the queue, in send order (precedence, then arrival)"
rs-queue list

step "throttle: two messages an hour, then see what is due now"
rs-queue throttle --max-messages-per-hour 2
rs-queue due
rs-queue throttle --max-messages-per-hour none >/dev/null

step "manual stop and start"
rs-queue hold
rs-queue due
rs-queue release

step "two minutes later: the 1-minute message has expired; prune moves it to dead/"
RS_NOW=$(date -u -d '+2 minutes' +%Y-%m-%dT%H:%M:%SZ) rs-queue prune
rs-queue list --area dead

step "statistics"
rs-queue stats

step "the spool on disk"
find "$RS_SPOOL" -type f -not -path '*/state/*' | sed "s|$PWD/||" | sort
echo
echo "demo done: spool in spool/demo; try: RS_SPOOL=spool/demo $bin/rs-queue show --json ID"
