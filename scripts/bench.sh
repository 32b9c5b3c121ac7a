#!/usr/bin/env bash
# Benchmarks, kept out of the test suite (machines are shared and noisy).
# Prints medians over many whole-process runs. Bounded: finishes in minutes.
#
#   scripts/bench.sh            all workloads
#   scripts/bench.sh send       only the per-invocation rs-send measurement
#   scripts/bench.sh delivery   export, import and ack apply of 10,000 messages
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
bin=$PWD/target/release
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
what=${1:-all}

# Times come from bash's $EPOCHREALTIME: no process is started to read the clock.
# median_ms FILE: median of a file of microsecond durations, in ms.
median_ms() { sort -n "$1" | awk '{a[NR]=$1} END {m=(NR%2)?a[(NR+1)/2]:(a[NR/2]+a[NR/2+1])/2; printf "%.3f", m/1e3}'; }

if [ "$what" = all ] || [ "$what" = send ]; then
    runs=200
    export RS_SPOOL=$work/send
    head -c 1024 /dev/urandom > "$work/1k"
    "$bin/rs-queue" init --site bench >/dev/null
    : > "$work/send.us"
    for _ in $(seq $runs); do
        t0=${EPOCHREALTIME/[.,]/}
        "$bin/rs-send" --class bench --subclass w1 --file "$work/1k" >/dev/null
        t1=${EPOCHREALTIME/[.,]/}
        echo $((t1 - t0)) >> "$work/send.us"
    done
    : > "$work/true.us"
    for _ in $(seq $runs); do
        t0=${EPOCHREALTIME/[.,]/}; /bin/true; t1=${EPOCHREALTIME/[.,]/}
        echo $((t1 - t0)) >> "$work/true.us"
    done
    files=$(find "$RS_SPOOL/queue" -type f | wc -l)
    bytes=$(find "$RS_SPOOL/queue" -type f -printf '%s\n' | awk '{s+=$1} END {print s}')
    blocks=$(du -sk --apparent-size "$RS_SPOOL/queue" | cut -f1)
    disk=$(du -sk "$RS_SPOOL/queue" | cut -f1)
    echo "rs-send, 1 KiB binary message, $runs runs (whole process, fsync included):"
    echo "  median $(median_ms "$work/send.us") ms per invocation (/bin/true in the same loop: $(median_ms "$work/true.us") ms)"
    echo "  spool bytes per 1 KiB message: $((bytes / files)) bytes of file; $((disk * 1024 / files)) bytes of disk (du, blocks included)"
fi

if [ "$what" = all ] || [ "$what" = delivery ]; then
    n=${RS_BENCH_MESSAGES:-10000}
    runs=5
    echo "delivery: preparing $n queued messages of 1 KiB"
    head -c 1024 /dev/urandom > "$work/1k"
    RS_SPOOL=$work/a0 "$bin/rs-queue" init --site a --component a.host >/dev/null
    printf '[[peer]]\nid = "b.hub"\nupstream = true\n' >> "$work/a0/config.toml"
    for _ in $(seq "$n"); do RS_SPOOL=$work/a0 "$bin/rs-send" --class bench --subclass w2 --file "$work/1k" >/dev/null; done
    : > "$work/export.us"; : > "$work/import.us"; : > "$work/apply.us"
    for r in $(seq $runs); do
        rm -rf "$work/a" "$work/b" "$work/stick" "$work/back"
        cp -a "$work/a0" "$work/a"
        RS_SPOOL=$work/b "$bin/rs-queue" init --site b --component b.hub >/dev/null
        printf '[[peer]]\nid = "a.host"\n' >> "$work/b/config.toml"
        mkdir -p "$work/stick" "$work/back"
        sync
        t0=${EPOCHREALTIME/[.,]/}; RS_SPOOL=$work/a "$bin/rs-queue" export --to "$work/stick" 2>/dev/null; t1=${EPOCHREALTIME/[.,]/}
        echo $((t1 - t0)) >> "$work/export.us"
        t0=${EPOCHREALTIME/[.,]/}; RS_SPOOL=$work/b "$bin/rs-relay" import --from "$work/stick" 2>/dev/null; t1=${EPOCHREALTIME/[.,]/}
        echo $((t1 - t0)) >> "$work/import.us"
        RS_SPOOL=$work/b "$bin/rs-queue" export --to "$work/back" 2>/dev/null
        t0=${EPOCHREALTIME/[.,]/}; RS_SPOOL=$work/a "$bin/rs-ack" apply --from "$work/back" 2>/dev/null; t1=${EPOCHREALTIME/[.,]/}
        echo $((t1 - t0)) >> "$work/apply.us"
        left=$(RS_SPOOL=$work/a "$bin/rs-queue" stats --json | sed -E 's/.*"outbound":\{.*"total":\{"bytes":[0-9]+,"messages":([0-9]+)\}.*/\1/')
        [ "$left" = 0 ] || { echo "run $r: $left messages left at A" >&2; exit 1; }
    done
    rate() { awk -v n="$n" -v ms="$(median_ms "$1")" 'BEGIN { printf "%.0f messages/s (median %.1f ms)", n / (ms / 1000), ms }'; }
    echo "delivery of $n messages of 1 KiB, median of $runs runs (whole process):"
    echo "  export:    $(rate "$work/export.us")"
    echo "  import:    $(rate "$work/import.us")"
    echo "  ack apply: $(rate "$work/apply.us")"
    if command -v strace >/dev/null; then
        rm -rf "$work/a" "$work/b" "$work/stick" "$work/back"
        cp -a "$work/a0" "$work/a"
        RS_SPOOL=$work/b "$bin/rs-queue" init --site b --component b.hub >/dev/null
        printf '[[peer]]\nid = "a.host"\n' >> "$work/b/config.toml"
        mkdir -p "$work/stick" "$work/back"
        count() { strace -f -c -e trace=fsync,fdatasync,syncfs -o "$work/strace" "$@" >/dev/null 2>&1; awk '/total/ {print $(NF-1)}' "$work/strace"; }
        fe=$(RS_SPOOL=$work/a count "$bin/rs-queue" export --to "$work/stick")
        fi=$(RS_SPOOL=$work/b count "$bin/rs-relay" import --from "$work/stick")
        RS_SPOOL=$work/b "$bin/rs-queue" export --to "$work/back" 2>/dev/null
        fa=$(RS_SPOOL=$work/a count "$bin/rs-ack" apply --from "$work/back")
        echo "  sync calls (fsync, fdatasync, syncfs) for $n messages: export $fe, import $fi, ack apply $fa"
    fi
fi
