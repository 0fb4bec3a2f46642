#!/usr/bin/env bash
# CI's throughput and latency regression check, about eight minutes: steady-state fan-out 1→100,
# 10→10 and 1→1000 at a window of 1,000 messages, and p99 at two fixed rates, against hubbub, Redis
# and NATS in one run, each repeated 5 times and interleaved; every run warms up for 1 s and then
# counts 4 s (shorter than compare's default 2 s + 10 s, to fit CI's budget; still seconds, not a
# burst). Each ratio (hubbub ÷ the best of Redis and NATS, medians) is checked against
# benches/baseline.json: the run fails (exit status 3) only when the ratio's whole bootstrap 95%
# interval has fallen past its tolerance, and says which and by how much. Ratios rather than
# rates: the machine's noise moves all brokers together, not the ratio.
#
#   scripts/bench-ci.sh                      check (what .ci/run does)
#   scripts/bench-ci.sh --write-baseline     measure and write the ratios into benches/baseline.json
#
# The report of the last run is in target/bench-ci/ (comparison.md, CSV, charts, provenance).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

exec bash scripts/compare.sh fanout-1x100 fanout-10x10 fanout-1x1000 latency \
  --brokers hubbub,redis,nats \
  --repeat 5 --windows 1000 --warmup 1s --duration 4s \
  --out target/bench-ci \
  --check benches/baseline.json "$@"
