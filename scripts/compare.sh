#!/usr/bin/env bash
# hubbub side by side with Redis, NATS and Mosquitto, in one command: starts fresh peers on loopback
# (scripts/peers.sh; any already running are restarted, since a broker that has held many clients
# before measures less memory for the next ones), runs `loadgen compare` with the arguments given
# (all scenarios by default; loadgen starts its own hubbub, and restarts the peers before each memory
# shape so each is measured on a fresh process) and stops the peers, however it ends.
#
#   scripts/compare.sh [LOADGEN COMPARE ARGS…]
#   scripts/compare.sh --out reports/compare                  the committed comparison
#   scripts/compare.sh fanout-1x100 latency --repeat 5        some scenarios only
#
# Installs the peers first if they are missing (needs root and Debian's package index).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

bash scripts/peers.sh install >/dev/null
cargo build --release -p loadgen
bash scripts/peers.sh stop all
trap 'bash scripts/peers.sh stop all' EXIT
bash scripts/peers.sh start all

target/release/loadgen compare \
  --restart-peers "bash scripts/peers.sh restart" \
  --redis "$(bash scripts/peers.sh addr redis)" \
  --nats "$(bash scripts/peers.sh addr nats)" \
  --mosquitto "$(bash scripts/peers.sh addr mosquitto)" \
  --redis-tls "$(bash scripts/peers.sh tls-addr redis)" \
  --nats-tls "$(bash scripts/peers.sh tls-addr nats)" \
  --mosquitto-tls "$(bash scripts/peers.sh tls-addr mosquitto)" \
  --tls-dir "$(bash scripts/peers.sh tls-dir)" \
  "$@"
