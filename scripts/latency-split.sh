#!/usr/bin/env bash
# Is the latency at a fixed rate set by the broker, or by what every broker shares (the
# measuring client, the kernel, the machine)? Runs `loadgen latency` 4 -> 100 at 2,000 msg/s
# against hubbub, Redis and the plain tokio baseline with the subscribers in 1, 2 and 4 worker
# processes (--per-process 100, 50, 25), interleaved, REPEAT times, and writes one markdown
# table of p50/p99/p999. If the client's serial handling of a message's 100 deliveries set the
# median, splitting them over processes would lower it for every broker.
#
#   scripts/latency-split.sh [OUT_DIR] [REPEAT]        (peers started by scripts/peers.sh start)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-reports/runs/latency-split}
repeat=${2:-3}
mkdir -p "$out"
cargo build --release -q -p loadgen -p hubbub -p hubbub-benches
lg=target/release/loadgen
target/release/broker --listen 127.0.0.1:0 --ready-file "$out/.hubbub-addr" >/dev/null 2>&1 &
broker=$!
trap 'kill $broker 2>/dev/null || true; rm -f "$out/.hubbub-addr"' EXIT
for _ in $(seq 50); do [[ -s $out/.hubbub-addr ]] && break; sleep 0.1; done
hubbub=$(cat "$out/.hubbub-addr")
table=$out/runs.md
{
  echo "commit $(git rev-parse --short HEAD), $(date -u +%FT%TZ), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
  echo
  echo "| run | broker | processes | p50 µs | p99 µs | p999 µs | loadgen's busiest thread |"
  echo "|---|---|---:|---:|---:|---:|---|"
} > "$table"
for rep in $(seq "$repeat"); do
  for pp in 100 50 25; do
    for b in "hubbub $hubbub $broker" "redis 127.0.0.1:6390 $(pgrep -x redis-server | head -1)" \
             "hubbub 127.0.0.1:4250 $(pgrep -x plain-broker | head -1) plain-tokio"; do
      set -- $b
      name=${4:-$1}
      json=$("$lg" latency --proto "$1" --target "$2" --broker-pid "$3" --publishers 4 \
        --subscribers 100 --rate 2000 --warmup 2s --duration 10s --per-process "$pp" --json 2>/dev/null)
      python3 - "$rep" "$name" "$((100 / pp))" "$json" >> "$table" <<'PY'
import json, sys
rep, name, procs, doc = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
l, step = doc["latency"], doc["steps"][0]
ev = step["bottleneck"]["loadgen"]
print(f"| {rep} | {name} | {procs} | {l['p50_us']} | {l['p99_us']} | {l['p999_us']} | {ev['busiest_thread_pct']:.0f}% |")
PY
    done
  done
done
cat "$table"
