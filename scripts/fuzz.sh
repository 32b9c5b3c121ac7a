#!/usr/bin/env bash
# Fuzzes every parser that reads outside input (fuzz/fuzz_targets, cargo
# fuzz with libFuzzer and AddressSanitizer; on stable through
# RUSTC_BOOTSTRAP=1). Each target runs to RUNS executions (default 10^7),
# or for SECONDS with --smoke (what scripts/test.sh does). Prints the
# executions and findings per target; exits 1 if any target found
# something (the input is kept in fuzz/artifacts/TARGET/: make it a
# regression test, fix, and run again).
#
#   scripts/fuzz.sh                  every target, 10^7 executions each
#   scripts/fuzz.sh --runs 100000 envelope config
#   scripts/fuzz.sh --smoke 5        every target for 5 seconds
set -euo pipefail
cd "$(dirname "$0")/.."

runs=10000000
smoke=
targets=()
while [ $# -gt 0 ]; do
    case $1 in
        --runs) runs=$2; shift 2;;
        --smoke) smoke=$2; shift 2;;
        -h|--help) sed -n '2,14p' "$0"; exit 0;;
        *) targets+=("$1"); shift;;
    esac
done
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked --version 0.13.2 --quiet
export RUSTC_BOOTSTRAP=1
[ ${#targets[@]} -gt 0 ] || mapfile -t targets < <(cargo fuzz list --fuzz-dir fuzz)
# A smoke run (seconds per target, in scripts/test.sh) builds without
# optimisation: half the build time, and seconds find what they find
# either way; the full runs are optimised.
profile=()
[ -z "$smoke" ] || profile=(--dev)
echo "fuzz: building ${#targets[@]} target(s)"
cargo fuzz build "${profile[@]}" --fuzz-dir fuzz >/dev/null 2>&1 || cargo fuzz build "${profile[@]}" --fuzz-dir fuzz

if [ -n "$smoke" ]; then limit=(-max_total_time="$smoke"); else limit=(-runs="$runs"); fi
found=0
printf '%-14s %14s %10s  %s\n' TARGET EXECUTIONS FINDINGS NOTE
for t in "${targets[@]}"; do
    log=$(mktemp)
    mkdir -p "fuzz/corpus/$t"
    if cargo fuzz run "${profile[@]}" --fuzz-dir fuzz "$t" "fuzz/corpus/$t" fuzz/seeds -- "${limit[@]}" -print_final_stats=1 >"$log" 2>&1; then
        findings=0; note=
    else
        findings=1; found=1
        note="see $(ls -t "fuzz/artifacts/$t"/* 2>/dev/null | head -n 1) and $log"
    fi
    execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -n 1)
    printf '%-14s %14s %10s  %s\n' "$t" "${execs:-?}" "$findings" "$note"
    [ "$findings" = 1 ] || rm -f "$log"
done
exit $found
