#!/usr/bin/env bash
# Long crash campaigns, outside the test suite (which runs 100 trials each):
# the HTTP client and server SIGKILLed at random moments during exchanges,
# 1,000 trials each by default. A failure prints RS_TEST_SEED to replay it.
# Then the power-loss campaign (tests/powerloss.rs) in full: every mode
# (drop, tear, mix) at every operation index, where the test suite takes
# one mode per index.
#
#   scripts/soak.sh              1,000 trials per campaign
#   RS_CRASH_TRIALS=5000 scripts/soak.sh
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
export RS_CRASH_TRIALS="${RS_CRASH_TRIALS:-1000}"
echo "soak: $RS_CRASH_TRIALS trials per campaign"
start=$SECONDS
cargo test --quiet --test crash -- --nocapture --test-threads 1 http_
RS_POWERLOSS_MODES=drop,tear,mix cargo test --quiet --features fault-injection \
    --test powerloss -- --nocapture --test-threads 1
echo "soak: passed in $((SECONDS - start)) s"
