#!/usr/bin/env bash
# Two builds of the broker side by side, before and after a change: the same loadgen runs against
# each in turn, interleaved (before, after, before, …) so a noisy minute falls on both, and the
# medians with their spread are printed as a markdown table.
#
#   scripts/ab.sh REV [REPEAT]     REV (a commit, tag or branch) against the working tree; 3 repeats
#
# Then, where perf is installed, one more 1→100 fan-out run per side with the broker's CPU
# sampled (perf's cpu-clock event, which works without hardware counters) over 8 s of its
# counted window, and the functions that took the most samples printed for each side: where
# the time went before and after, not only how much.
#
# REV's broker is built in a git worktree under target/ab/ (removed afterwards); the working tree's
# broker and loadgen are built as usual, and the same loadgen measures both. Each run warms up for
# 2 s and counts 10 s: fan-out 1→100, 10→10 over 10 channels and 1→1000 at a window of 1,000, and
# p99 at 2,000 msg/s from 4 publishers to 100 subscribers. Loopback only; stops both brokers
# however it ends.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
rev=${1:?usage: scripts/ab.sh REV [REPEAT]}
repeat=${2:-3}
work=target/ab
before_src=$work/src

cargo build --release -p loadgen -p hubbub
rm -rf "$work"
mkdir -p "$work"
git worktree prune # a worktree left registered by an earlier run that was killed
git worktree add --detach -q "$before_src" "$rev"
pids=()
cleanup() {
  [ ${#pids[@]} -eq 0 ] || kill "${pids[@]}" 2>/dev/null || true
  git worktree remove --force "$before_src" 2>/dev/null || true
}
trap cleanup EXIT
# Its own target directory, so that the working tree's build is left as it is.
cargo build --release --quiet --manifest-path "$before_src/Cargo.toml" -p hubbub --bin broker \
  --target-dir "$work/target"

start() { # NAME BINARY: starts it on a free port; sets addr_NAME and pid_NAME
  local ready=$work/$1.addr
  "$2" --listen 127.0.0.1:0 --stats-interval 0s --ready-file "$ready" 2>"$work/$1.log" &
  pids+=($!)
  printf -v "pid_$1" %s $!
  for _ in $(seq 100); do [ -s "$ready" ] && break; sleep 0.1; done
  [ -s "$ready" ] || { echo "the $1 broker did not start; see $work/$1.log" >&2; exit 1; }
  printf -v "addr_$1" %s "$(cat "$ready")"
}
start before "$work/target/release/broker"
start after target/release/broker

# One figure from loadgen's --json summary: fan-out's first run's rate, or latency's p99 in ms.
figure() {
  python3 -c '
import json, sys
d = json.load(sys.stdin)
if "runs" in d: print(d["runs"][0]["deliveries_per_sec"])
else: print(d["latency"]["p99_us"] / 1000)'
}

scenarios=(
  "fanout-1x100|fanout --subscribers 100 --window 1000 --repeat 1"
  "fanout-10x10|fanout --publishers 10 --channels 10 --subscribers 10 --window 1000 --repeat 1"
  "fanout-1x1000|fanout --subscribers 1000 --size 16 --window 1000 --repeat 1"
  "latency-4x100-2k p99 ms|latency --publishers 4 --subscribers 100 --rate 2000 --warmup 2s --duration 10s"
)
results=$work/results.tsv
: >"$results"
for s in "${scenarios[@]}"; do
  name=${s%%|*}
  args=${s#*|}
  for i in $(seq "$repeat"); do
    for side in before after; do
      addr_var=addr_$side pid_var=pid_$side
      # shellcheck disable=SC2086 # the scenario's flags, one a word
      # Exit status 3 (an objective missed) still measured; anything else stops the script.
      value=$({ target/release/loadgen $args --target "${!addr_var}" --broker-pid "${!pid_var}" \
        --out "$work/runs/$name-$side-$i" --json 2>/dev/null || [ $? -eq 3 ]; } | figure)
      printf '%s\t%s\t%s\n' "$name" "$side" "$value" | tee -a "$results" >&2
    done
  done
done

profile() { # SIDE: the broker's hottest functions over one fan-out run, to stdout
  local addr_var=addr_$1 pid_var=pid_$1 data=$work/$1.perf.data
  target/release/loadgen fanout --subscribers 100 --window 1000 --repeat 1 \
    --target "${!addr_var}" --out "$work/runs/profile-$1" >/dev/null 2>&1 &
  local load=$!
  sleep 3 # past the 2 s warm-up
  perf record -q -e cpu-clock -F 1999 -p "${!pid_var}" -o "$data" -- sleep 8 >/dev/null 2>&1
  wait "$load" || true
  local samples rate
  samples=$(perf script -i "$data" -F time 2>/dev/null | wc -l)
  rate=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["runs"][0]["deliveries_per_sec"])' \
    "$work/runs/profile-$1/summary.json")
  echo
  python3 - "$1" "$samples" "$rate" <<'PY'
import sys
side, samples, rate = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
cores = samples / 1999 / 8
print(f"{side}: fan-out 1→100, window 1,000, {rate / 1e6:.2f} M deliveries/s; the broker used "
      f"{cores:.2f} cores ({samples} samples over 8 s), {cores * 1e6 / rate:.3f} µs of CPU per delivery")
PY
  echo
  echo '```'
  perf report -i "$data" --no-children --sort dso --stdio 2>/dev/null |
    grep -v '^#' | grep -v '^$' | head -3 | sed -E 's/[[:space:]]+$//'
  echo '```'
  echo
  echo "Functions with 2% or more of the broker's samples (self):"
  echo
  echo '```'
  perf report -i "$data" --no-children --sort symbol --stdio --percent-limit 2 2>/dev/null |
    grep -v '^#' | grep -v '^$' | sed -E 's/[[:space:]]+-[[:space:]]+-[[:space:]]*$//' | head -20
  echo '```'
}

python3 - "$results" "$rev" <<'EOF'
import statistics, sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
names = list(dict.fromkeys(r[0] for r in rows))
def show(v, name):
    return f"{v:.3f}" if "ms" in name else f"{v / 1e6:.2f} M"
print(f"| scenario | before ({sys.argv[2]}) median (min–max) | after (working tree) median (min–max) | after ÷ before |")
print("|---|---:|---:|---:|")
for name in names:
    side = {s: [float(r[2]) for r in rows if r[0] == name and r[1] == s] for s in ("before", "after")}
    b, a = statistics.median(side["before"]), statistics.median(side["after"])
    cell = lambda v: f"{show(statistics.median(v), name)} ({show(min(v), name)}–{show(max(v), name)})"
    print(f"| {name} | {cell(side['before'])} | {cell(side['after'])} | {a / b:.2f}× |")
EOF

if command -v perf >/dev/null; then
  profile before
  profile after
fi
