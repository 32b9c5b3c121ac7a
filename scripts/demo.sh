#!/usr/bin/env bash
# Sets up, builds, and runs a demonstration on the built-in demo spools
# (spool/demo-a and spool/demo-b in this checkout): site A queues messages
# of each precedence, exports them to a directory standing for a USB stick,
# site B imports them (a second import of the same stick delivers nothing
# twice), B's acknowledgements travel back on the stick, and A's queue ends
# empty. Safe to rerun: it starts afresh.
set -euo pipefail
cd "$(dirname "$0")/.."

# RS_DEMO_BIN=/usr/bin runs it with installed binaries (the package test).
if [ -n "${RS_DEMO_BIN:-}" ]; then
    export PATH="$RS_DEMO_BIN:$PATH"
else
    scripts/setup.sh
    echo "== building (release)"
    cargo build --release --quiet
    export PATH="$PWD/target/release:$PATH"
fi
demo=$PWD/spool
A=$demo/demo-a
B=$demo/demo-b
stick=$demo/demo-stick
rm -rf "$A" "$B" "$stick"
mkdir -p "$stick"

step() { printf '\n== %s\n' "$*"; }

step "create two sites: A (a sensor host) whose upstream is B (the provider's hub)"
RS_SPOOL=$A rs-queue init --site demo --component demo.sensor1
RS_SPOOL=$B rs-queue init --site hub --component hub.collector
cat >> "$A/config.toml" <<CONF

[[peer]]
id = "hub.collector"
routes = ["dir:$stick"]
upstream = true
ack_timeout = "1h"
CONF
cat >> "$B/config.toml" <<CONF

[[peer]]
id = "demo.sensor1"
routes = ["dir:$stick"]
CONF

step "A queues messages (rs-send prints each ID once it is durable)"
export RS_SPOOL=$A
echo "inventory snapshot" | rs-send --class inventory --subclass snapshot --precedence bulk
rs-send --class infrastructure --subclass heartbeat --kind event --text "all services up"
alarm=$(rs-send --class monitoring --subclass disk --kind alarm --severity critical --state raised \
    --instance host7 --text "/var is 98% full" --precedence urgent --ttl 4h)
echo "$alarm"
head -c 2048 /dev/urandom | rs-send --class data --subclass sample --mime-type application/octet-stream
rs-send --class monitoring --subclass load --kind event --text "short-lived" --ttl 1m

step "A's queue, in send order (precedence, then arrival)"
rs-queue list

step "two minutes later the 1-minute message has expired: it is never sent"
later=$(date -u -d '+2 minutes' +%Y-%m-%dT%H:%M:%SZ)
RS_NOW=$later rs-queue export --to "$stick"
rs-queue list --area dead
find "$stick" -type f | sed "s|$demo/||" | sort

step "B imports the stick, twice: the second time delivers nothing new"
RS_SPOOL=$B rs-relay import --from "$stick" --keep
RS_SPOOL=$B rs-relay import --from "$stick"
ls "$B/received/new"

step "B writes its acknowledgements to the stick; A imports them"
RS_SPOOL=$B rs-queue flush
RS_SPOOL=$A rs-relay import --from "$stick"

step "A's view: the alarm is acknowledged, nothing is left to send"
rs-ack status "$alarm"
rs-queue stats

step "the alarm as B received it (a Maildir file any mail tool reads)"
RS_SPOOL=$B rs-ack status "$alarm"
sed -n '1,12p' "$(ls "$B"/received/new/*"$alarm"* | head -n 1)"
echo "..."
echo
echo "demo done: spools in spool/demo-a and spool/demo-b"
