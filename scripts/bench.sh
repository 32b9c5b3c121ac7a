#!/usr/bin/env bash
# Benchmarks, kept out of the test suite (machines are shared and noisy).
# Prints medians over many whole-process runs. Bounded: finishes in minutes.
#
#   scripts/bench.sh            all workloads
#   scripts/bench.sh send       only the per-invocation rs-send measurement
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
