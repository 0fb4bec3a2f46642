#!/usr/bin/env bash
# deploy/docker-compose.yml in a real Swarm on this one machine: checks that the file Swarm reads is
# the file docker-compose reads, and that a hub and its leaves come up and link there.
#
#   scripts/swarm.sh           the brokers only: deploys the stack with the agents and the
#                              coordinator scaled to 0, waits for the hub and both leaves to run and
#                              both leaves' links to be up (docker service logs), sends a message
#                              published on one leaf to a subscriber on the other (across the hub;
#                              client and publisher from the broker image, run on the edge network),
#                              then removes the stack
#   scripts/swarm.sh ramp      the whole stack: waits for the coordinator's ramp to finish
#                              (HUBBUB_SWARM_RAMP_TIMEOUT seconds, default 900), prints its log and
#                              exits with its exit status; the report lands in reports/runs/compose-ramp/
#
# Needs the images and deploy/agent-token (scripts/images.sh). A machine that is in no swarm is put
# in one (`docker swarm init --advertise-addr 127.0.0.1`) and taken out again at the end, with the
# docker_gwbridge network that init made; a machine already a swarm manager is used as it is and
# left in its swarm. Either way the stack (HUBBUB_STACK, default hubbub) is removed on the way out,
# on failure too, and the script refuses to start if a stack of that name is already there. Every
# wait is bounded (HUBBUB_SWARM_TIMEOUT seconds, default 60, each).
#
# What Swarm does differently here, and why the file says what it says: the hub's and the leaves'
# names resolve to their tasks' own addresses (endpoint_mode: dnsrr), as Swarm's virtual IPs need
# IPVS, which this machine's kernel lacks (with a virtual IP, a leaf's connect gets "No route to
# host"); depends_on and security_opt are ignored (the coordinator waits for its agents itself).
# The images must be on every node: on more than one machine, `docker save | docker load` them there.
# shellcheck disable=SC2317 # the wait conditions and the EXIT trap are called indirectly
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
mode=${1:-brokers}
case $mode in brokers | ramp) ;; *)
  echo "usage: scripts/swarm.sh [ramp]" >&2
  exit 2
  ;;
esac
stack=${HUBBUB_STACK:-hubbub}
wait_s=${HUBBUB_SWARM_TIMEOUT:-60}
ramp_s=${HUBBUB_SWARM_RAMP_TIMEOUT:-900}
work=$root/target/swarm
mkdir -p "$work"

for tag in hubbub-broker:local hubbub-loadgen:local; do
  docker image inspect "$tag" >/dev/null 2>&1 || {
    echo "swarm: no image $tag; run scripts/images.sh first" >&2
    exit 1
  }
done
[ -r deploy/agent-token ] || {
  echo "swarm: no deploy/agent-token; run scripts/images.sh first" >&2
  exit 1
}

initialised=0
had_gwbridge=0
docker network inspect docker_gwbridge >/dev/null 2>&1 && had_gwbridge=1
deployed=0
probe=

# Until COMMAND succeeds, every second, at most SECONDS; says what it waited for when it gives up.
wait_for() { # SECONDS WHAT COMMAND...
  local seconds=$1 what=$2
  shift 2
  local deadline=$((SECONDS + seconds))
  until "$@"; do
    if [ "$SECONDS" -ge "$deadline" ]; then
      echo "swarm: gave up after ${seconds}s waiting for $what" >&2
      return 1
    fi
    sleep 1
  done
}

stack_gone() {
  [ -z "$(docker ps -aq -f "label=com.docker.stack.namespace=$stack")" ] &&
    [ -z "$(docker network ls -q -f "label=com.docker.stack.namespace=$stack")" ]
}

cleanup() {
  local status=$?
  trap - EXIT
  set +e
  if [ -n "$probe" ]; then docker rm -f "$probe" >/dev/null 2>&1; fi
  if [ "$deployed" = 1 ]; then
    echo "swarm: removing stack $stack"
    timeout "$wait_s" docker stack rm "$stack" >/dev/null
    wait_for $((wait_s > 60 ? wait_s : 60)) "stack $stack's containers and networks to go" stack_gone
  fi
  if [ "$initialised" = 1 ]; then
    echo "swarm: leaving the swarm this script made"
    timeout "$wait_s" docker swarm leave --force >/dev/null
    if [ "$had_gwbridge" = 0 ]; then
      docker network rm docker_gwbridge >/dev/null 2>&1
    fi
  fi
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

state=$(docker info -f '{{.Swarm.LocalNodeState}}')
case $state in
  inactive)
    echo "swarm: initialising a one-machine swarm"
    timeout "$wait_s" docker swarm init --advertise-addr 127.0.0.1 >/dev/null
    initialised=1
    ;;
  active)
    if [ "$(docker info -f '{{.Swarm.ControlAvailable}}')" != true ]; then
      echo "swarm: this machine is a swarm worker; deploy from a manager" >&2
      exit 1
    fi
    if docker stack ls --format '{{.Name}}' | grep -qx "$stack"; then
      echo "swarm: a stack named $stack is already deployed; remove it or set HUBBUB_STACK" >&2
      exit 1
    fi
    echo "swarm: using the swarm this machine is in"
    ;;
  *)
    echo "swarm: this machine's swarm state is '$state'; expected inactive or active" >&2
    exit 1
    ;;
esac

files=(-c deploy/docker-compose.yml)
if [ "$mode" = brokers ]; then
  cat >"$work/brokers-only.yml" <<'EOF'
# Written by scripts/swarm.sh: the brokers of deploy/docker-compose.yml, without the ramp.
version: "3.8"
services:
  agent:
    deploy:
      replicas: 0
  loadgen:
    deploy:
      replicas: 0
EOF
  files+=(-c "$work/brokers-only.yml")
fi
if [ "$mode" = ramp ]; then
  mkdir -p reports/runs # the coordinator's bind mount (scripts/images.sh made it writable by 10001)
fi
echo "swarm: deploying stack $stack ($mode)"
deployed=1
timeout "$wait_s" docker stack deploy "${files[@]}" "$stack" >"$work/deploy.log" 2>&1 ||
  {
    cat "$work/deploy.log" >&2
    exit 1
  }

running() { # SERVICE N: N tasks of SERVICE running
  [ "$(docker service ps -q -f desired-state=running "${stack}_$1" 2>/dev/null |
    xargs -r docker inspect -f '{{.Status.State}}' 2>/dev/null | grep -cx running)" -ge "$2" ]
}
wait_for "$wait_s" "the hub to run" running hub 1
wait_for "$wait_s" "both leaves to run" running leaf 2
echo "swarm: hub 1/1 and leaves 2/2 running"

links_up() { # each of the two leaves' logs says its link is up
  [ "$(timeout 10 docker service logs --no-task-ids "${stack}_leaf" 2>&1 |
    awk '/link to upstream up/ { print $1 }' | sort -u | wc -l)" -ge 2 ]
}
wait_for "$wait_s" "both leaves' links to the hub" links_up
timeout 10 docker service logs --no-task-ids "${stack}_leaf" 2>&1 | grep 'link to upstream up'

if [ "$mode" = brokers ]; then
  # The leaves' addresses on the edge network, one for the subscriber and one for the publisher.
  mapfile -t leaves < <(docker ps -q -f "label=com.docker.swarm.service.name=${stack}_leaf" |
    xargs -r docker inspect -f "{{(index .NetworkSettings.Networks \"${stack}_edge\").IPAddress}}")
  [ "${#leaves[@]}" -ge 2 ] || {
    echo "swarm: expected two leaves on ${stack}_edge, found: ${leaves[*]:-none}" >&2
    exit 1
  }
  channel=swarm-check-$$
  probe=${stack}-swarm-probe-$$
  docker run -d --name "$probe" --network "${stack}_edge" --entrypoint /usr/local/bin/client \
    hubbub-broker:local --server "${leaves[0]}:4243" --count 3 "$channel" >/dev/null
  subscribed() { docker logs "$probe" 2>&1 | grep -q "subscribed to $channel"; }
  wait_for "$wait_s" "the subscriber on ${leaves[0]}" subscribed
  # Ten messages over 2 s; the subscriber leaves after three.
  timeout 30 docker run --rm --network "${stack}_edge" --entrypoint /usr/local/bin/publisher \
    hubbub-broker:local --server "${leaves[1]}:4243" --interval 200ms --count 10 \
    --text across-the-hub "$channel" >/dev/null || {
    echo "swarm: the publisher on ${leaves[1]} failed or took over 30 s" >&2
    exit 1
  }
  code=$(timeout "$wait_s" docker wait "$probe") || {
    echo "swarm: the subscriber on ${leaves[0]} did not get 3 messages within ${wait_s}s:" >&2
    docker logs "$probe" >&2
    exit 1
  }
  docker logs "$probe"
  [ "$code" = 0 ] || exit 1
  echo "swarm: published on leaf ${leaves[1]}, received on leaf ${leaves[0]}: the hub relays"
  exit 0
fi

# ramp: until the coordinator's one task has finished.
task_state() {
  docker service ps -q "${stack}_loadgen" 2>/dev/null | head -1 |
    xargs -r docker inspect -f '{{.Status.State}}' 2>/dev/null
}
finished() { case $(task_state) in complete | failed | rejected | shutdown) return 0 ;; *) return 1 ;; esac; }
echo "swarm: waiting up to ${ramp_s}s for the ramp"
wait_for "$ramp_s" "the ramp to finish" finished || {
  timeout 10 docker service logs --raw "${stack}_loadgen" 2>&1 | tail -40 >&2
  exit 1
}
timeout 30 docker service logs --raw "${stack}_loadgen" 2>&1 | tail -60
task=$(docker service ps -q "${stack}_loadgen" | head -1)
code=$(docker inspect -f '{{.Status.ContainerStatus.ExitCode}}' "$task")
echo "swarm: the ramp ended $(task_state), exit status $code; report in reports/runs/compose-ramp/"
exit "$code"
