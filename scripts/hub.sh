#!/usr/bin/env bash
# A hub topology of hubbub brokers on loopback: one hub and N leaves linked to it.
#
#   scripts/hub.sh start [LEAVES] [BASE_PORT]   hub on 127.0.0.1:BASE_PORT (default 4300),
#                                               leaves on BASE_PORT+1 … BASE_PORT+LEAVES (default 4)
#   scripts/hub.sh targets                      the leaves, comma-separated (for loadgen --target)
#   scripts/hub.sh pids                         every broker's pid, comma-separated (for --broker-pid)
#   scripts/hub.sh stop                         stops them all (SIGTERM, then SIGKILL after 10 s)
#
# Logs and pid files live in target/hub/ (HUBBUB_RUN_DIR overrides). Uses target/release/broker,
# building it if it is missing (HUBBUB_BROKER overrides).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
run_dir=${HUBBUB_RUN_DIR:-$root/target/hub}
broker=${HUBBUB_BROKER:-$root/target/release/broker}

# The broker writes its address into its --ready-file once it listens.
wait_for_file() { # FILE
  for _ in $(seq 100); do
    [ -s "$1" ] && return 0
    sleep 0.1
  done
  echo "$1 never appeared; see $run_dir/*.log" >&2
  return 1
}

# The broker's counters (the STATS extension), one JSON line.
stats() { # PORT
  exec 3<>"/dev/tcp/127.0.0.1/$1" || return 1
  echo '{"command":"STATS"}' >&3
  local line
  read -r -t 5 line <&3
  exec 3<&-
  echo "$line"
}

wait_for_link() { # PORT: until the leaf's STATS says its upstream link is connected
  for _ in $(seq 100); do
    stats "$1" 2>/dev/null | grep -q '"connected":true' && return 0
    sleep 0.1
  done
  echo "the broker on port $1 never linked to its upstream; see $run_dir/*.log" >&2
  return 1
}

start_broker() { # NAME PORT [ARGS…]
  local name=$1 port=$2
  shift 2
  rm -f "$run_dir/$name.addr"
  RUST_LOG=${RUST_LOG:-info} "$broker" --listen "127.0.0.1:$port" --name "$name" \
    --ready-file "$run_dir/$name.addr" "$@" >"$run_dir/$name.log" 2>&1 &
  echo $! >"$run_dir/$name.pid"
  wait_for_file "$run_dir/$name.addr"
}

join_files() { # PATTERN: the contents of the matching files, comma-separated
  cat $1 2>/dev/null | paste -sd, -
}

case ${1:-} in
start)
  leaves=${2:-4}
  base=${3:-4300}
  if ls "$run_dir"/*.pid >/dev/null 2>&1; then
    echo "a hub is already running (scripts/hub.sh stop first)" >&2
    exit 1
  fi
  [ -x "$broker" ] || (cd "$root" && cargo build --release -p hubbub --bin broker)
  mkdir -p "$run_dir"
  start_broker hub "$base"
  for i in $(seq "$leaves"); do
    start_broker "leaf-$i" "$((base + i))" --upstream "127.0.0.1:$base"
  done
  for i in $(seq "$leaves"); do
    wait_for_link "$((base + i))"
  done
  echo "hub 127.0.0.1:$base with $leaves leaves: $(join_files "$run_dir/leaf-*.addr")"
  ;;
targets) join_files "$run_dir/leaf-*.addr" ;;
pids) join_files "$run_dir/*.pid" ;;
stop)
  pids=$(cat "$run_dir"/*.pid 2>/dev/null || true)
  [ -n "$pids" ] || { echo "no hub is running"; exit 0; }
  kill -TERM $pids 2>/dev/null || true
  for _ in $(seq 100); do
    alive=$(for p in $pids; do kill -0 "$p" 2>/dev/null && echo "$p"; done || true)
    [ -z "$alive" ] && break
    sleep 0.1
  done
  [ -n "${alive:-}" ] && kill -KILL $alive 2>/dev/null || true
  rm -f "$run_dir"/*.pid "$run_dir"/*.addr
  echo "stopped"
  ;;
*)
  sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'
  exit 2
  ;;
esac
