#!/usr/bin/env bash
# Long crash campaigns, outside the test suite (which runs about 100 trials
# per command and a 10-second concurrency soak):
# - SIGKILL at random moments, 1,000 trials per command and route
#   (tests/crash.rs: rs-send; export, import, emit, apply over media; flush
#   and import through a relay over dir: routes; rs-relay receive; the HTTP
#   client and server). A failure prints RS_TEST_SEED to replay it.
# - the same power cut on lossyfs (tests/lossyfs.rs: a FUSE file system
#   that forgets what was not fsynced), 1,000 trials each for rs-send,
#   export and import.
# - every command running at once, as cron jobs would, for RS_SOAK_SECONDS
#   (default 600).
# - the power-loss campaign (tests/powerloss.rs) in full: every mode (drop,
#   tear, mix) at every operation index, where the suite takes one mode per
#   index.
#
#   scripts/soak.sh                 1,000 trials, 10 minutes of concurrency
#   RS_CRASH_TRIALS=5000 RS_SOAK_SECONDS=3600 scripts/soak.sh
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
export RS_CRASH_TRIALS="${RS_CRASH_TRIALS:-1000}"
export RS_SOAK_SECONDS="${RS_SOAK_SECONDS:-600}"
echo "soak: $RS_CRASH_TRIALS trials per command, $RS_SOAK_SECONDS s of concurrency"
start=$SECONDS
cargo test --quiet --features fault-injection --test crash -- --nocapture --test-threads 1
cargo test --quiet --features fault-injection --test lossyfs -- --nocapture
cargo test --quiet --features fault-injection --test bulk killed_at_random_moments -- --nocapture --test-threads 1
RS_POWERLOSS_MODES=drop,tear,mix cargo test --quiet --features fault-injection \
    --test powerloss -- --nocapture --test-threads 1
echo "soak: passed in $((SECONDS - start)) s"
