#!/usr/bin/env bash
# Fault tests across hosts (broker/tests/faults.rs): a hub and two leaves, each in a container of
# hubbub-broker:local on Docker bridge networks, under a steady stream of publishes while leaf-b
# is cut from the network, the hub is killed and started again, and the hub is frozen (docker
# pause) for less and for more than the links' --upstream-timeout. Each test prints what was
# published, received and lost, and the leaves' upstream counters. Then a distributed ramp
# (loadgen/tests/containers.rs): a broker and two loadgen agents in containers, the coordinator
# here, whose merged report must add up to what each agent's workers logged they measured.
#
#   scripts/faults.sh            builds the images (scripts/images.sh), then runs every fault
#   scripts/faults.sh FILTER     only the tests whose names contain FILTER (cargo test's filter)
#
# Needs a working Docker (CI has one: without it this fails, it does not skip). With
# HUBBUB_IMAGES_BUILT=1 the images are taken as they are. The test run (its build included) is
# bounded by HUBBUB_FAULTS_TIMEOUT seconds (default 600; the faults take about a minute). The
# tests remove their own containers and networks, after a failure too; whatever a killed run
# left (anything named hubbub-faults-*) is removed on the way out.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bound=${HUBBUB_FAULTS_TIMEOUT:-600}
filter=${1:-}

cleanup() {
  local containers networks
  containers=$( (docker ps --all --quiet --filter name=hubbub-faults-; docker ps --all --quiet --filter name=hubbub-dist-) 2>/dev/null || true)
  if [ -n "$containers" ]; then
    echo "faults: removing leftover containers" >&2
    # shellcheck disable=SC2086 # one id a line
    docker rm --force --volumes $containers >/dev/null || true
  fi
  networks=$( (docker network ls --quiet --filter name=hubbub-faults-; docker network ls --quiet --filter name=hubbub-dist-) 2>/dev/null || true)
  if [ -n "$networks" ]; then
    echo "faults: removing leftover networks" >&2
    # shellcheck disable=SC2086
    docker network rm $networks >/dev/null || true
  fi
}

if ! docker info >/dev/null 2>&1; then
  echo "faults: docker info failed: these tests need a running Docker Engine" >&2
  docker info >&2 || true
  exit 1
fi
trap cleanup EXIT
cleanup

if [ "${HUBBUB_IMAGES_BUILT:-0}" != 1 ]; then
  bash scripts/images.sh
fi
docker image inspect hubbub-broker:local >/dev/null

started=$(date +%s)
# In its own process group (timeout's default), so that the signal reaches the test binary
# under cargo too, and a stuck run ends.
timeout --kill-after=15 "$bound" \
  cargo test --release -p hubbub --test faults -- --ignored --test-threads 1 --nocapture ${filter:+"$filter"}
timeout --kill-after=15 "$bound" \
  cargo test --release -p loadgen --test containers -- --ignored --test-threads 1 --nocapture ${filter:+"$filter"}
echo "faults: passed in $(($(date +%s) - started)) s"
