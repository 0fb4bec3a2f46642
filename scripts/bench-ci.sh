#!/usr/bin/env bash
# CI's throughput and latency regression check, about two minutes: burst fan-out 1→100, 10→10 and
# 1→1000, and p99 at a fixed rate, against hubbub, Redis and NATS in one run, each repeated 5 times
# and interleaved. Each ratio (hubbub ÷ the best of Redis and NATS, medians) is checked against
# benches/baseline.json; the run fails when one has fallen past its tolerance, and says which and by
# how much. Ratios rather than rates: Redis and NATS slow down with a busy machine, hubbub's lead
# over them does not.
#
#   scripts/bench-ci.sh                      check (what .ci/run does)
#   scripts/bench-ci.sh --write-baseline     measure and write the ratios into benches/baseline.json
#
# The report of the last run is in target/bench-ci/ (comparison.md, CSV, charts).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

exec bash scripts/compare.sh fanout-1x100 fanout-10x10 fanout-1x1000 latency \
  --brokers hubbub,redis,nats \
  --repeat 5 --deliveries 1000000 --latency-duration 2s \
  --out target/bench-ci \
  --check benches/baseline.json "$@"
