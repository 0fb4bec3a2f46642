#!/usr/bin/env bash
# Regenerates every measured figure in reports/README.md, each into its folder under reports/.
#
#   scripts/report.sh                  all sections, in this order (about two hours)
#   scripts/report.sh SECTION…         some: one-broker hub memory fanout slow compare limits containers million
#
# one-broker  loadgen ramp to 50,000 against one broker             reports/ramp-one-broker/
# hub         the same through a hub of 4 leaves, and 100,000 with 6 reports/ramp-hub-50000/, ramp-hub-100000/
# memory      memory per idle subscribed connection, 100 shared channels and one each  reports/memory-shared/, memory-own-channel/
# fanout      steady-state deliveries per second as subscribers grow reports/fanout-sweep/
# slow        a healthy audience's latency with 0 and 10 stalled subscribers  reports/slow-consumer-{0,10}/
# compare     hubbub, Redis, NATS, Mosquitto side by side (about 45 min)  reports/compare/, compare-threads-1/
# limits      what the machine's limits do, each changed once        reports/limits/*/
# containers  the same ramp with a hub, two leaves and two agents each in a container
#             (deploy/docker-compose.yml) and on loopback, three of each interleaved (about 6 min,
#             needs Docker)                                            reports/containers/
# million     a ramp past a million, and the walls on the way (about 20 min, needs root)
#             reports/ramp-million/, ramp-lean-100000*/, limits/conntrack-262144/, limits/ehash-262144/
#
# Runs on loopback only; the limits section changes two sysctls (ip_local_port_range, somaxconn)
# for one run each and puts them back, so it needs root.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
cargo build --release -p loadgen -p hubbub
out=reports

# loadgen; exit status 3 (a ramp that found its limit, a run that missed its objective) is what
# several of these runs are for, so only other failures stop the script.
lg() { target/release/loadgen "$@" || [ $? -eq 3 ]; }

section_one_broker() {
  lg ramp --max-clients 50000 --brokers 1 --out $out/ramp-one-broker
}

hub_ramp() ( # LEAVES MAX_CLIENTS DIR; a subshell, so that its EXIT trap stops the hub
  bash scripts/hub.sh start "$1"
  trap 'bash scripts/hub.sh stop' EXIT
  lg ramp --max-clients "$2" --target "$(bash scripts/hub.sh targets)" \
    --broker-pid "$(bash scripts/hub.sh pids)" --out "$3"
)

section_hub() {
  hub_ramp 4 50000 $out/ramp-hub-50000
  hub_ramp 6 100000 $out/ramp-hub-100000
}

section_memory() {
  lg memory --clients 10000 --channels 100 --repeat 3 --out $out/memory-shared
  lg memory --clients 10000 --channels 10000 --repeat 3 --out $out/memory-own-channel
}

section_fanout() {
  lg fanout --subscribers 1,10,100,1000,10000 --window 1000 --repeat 3 --out $out/fanout-sweep
}

section_slow() {
  for n in 0 10; do
    lg latency --subscribers 100 --rate 2000 --size 1024 --duration 20s --stalled "$n" \
      --out "$out/slow-consumer-$n"
  done
}

section_compare() {
  bash scripts/compare.sh --out $out/compare
  bash scripts/compare.sh fanout-1x100 fanout-1x1000 latency --brokers hubbub,redis,nats \
    --windows 1000 --hubbub-threads 1 --out $out/compare-threads-1
}

# A broker of our own for the limits section, with its open-files limit set to $1; it writes
# its address into target/limits-broker.addr once it listens.
broker_with_nofile() { # NOFILE PORT
  local ready=target/limits-broker.addr
  rm -f "$ready"
  (ulimit -n "$1" && exec target/release/broker --listen "127.0.0.1:$2" --ready-file "$ready") \
    >/dev/null 2>&1 &
  broker_pid=$!
  for _ in $(seq 100); do [ -s "$ready" ] && return 0; sleep 0.1; done
  echo "the broker did not start on port $2" >&2
  return 1
}

section_limits() ( # a subshell, so that its EXIT trap puts the sysctls back however it ends
  local ports somaxconn conntrack
  ports=$(tr '\t' ' ' </proc/sys/net/ipv4/ip_local_port_range)
  somaxconn=$(cat /proc/sys/net/core/somaxconn)
  conntrack=$(cat /proc/sys/net/netfilter/nf_conntrack_max)
  restore() {
    echo "$ports" >/proc/sys/net/ipv4/ip_local_port_range
    echo "$somaxconn" >/proc/sys/net/core/somaxconn
    echo "$conntrack" >/proc/sys/net/netfilter/nf_conntrack_max
    ip netns del hubbub-conntrack 2>/dev/null || true
  }
  trap restore EXIT

  # The broker's open-files limit: 10,000 instead of 20,000 (compare ramp-one-broker).
  broker_with_nofile 10000 4410
  lg ramp --max-clients 15000 --step 2500 --target 127.0.0.1:4410 --broker-pid "$broker_pid" \
    --out $out/limits/broker-nofile-10000
  kill "$broker_pid"

  # The ephemeral port range: 5,000 ports, from one source address and then from two.
  echo "50000 54999" >/proc/sys/net/ipv4/ip_local_port_range
  lg ramp --max-clients 8000 --step 2000 --sources 1 --out $out/limits/ports-5000-sources-1
  lg ramp --max-clients 8000 --step 2000 --sources 2 --out $out/limits/ports-5000-sources-2
  echo "$ports" >/proc/sys/net/ipv4/ip_local_port_range

  # The accept backlog: somaxconn 128 instead of 4096, with 2,000 connects in flight.
  for backlog in 128 4096; do
    echo "$backlog" >/proc/sys/net/core/somaxconn
    lg ramp --max-clients 10000 --step 5000 --connect-concurrency 2000 \
      --out "$out/limits/somaxconn-$backlog"
  done
  echo "$somaxconn" >/proc/sys/net/core/somaxconn

  # Netfilter's connection-tracking table, 12,000 entries instead of 262,144: in a network
  # namespace of its own (the table's maximum is the machine's, but each namespace counts its
  # own entries, so nothing else here is cut off), whose one rule tracks connections as
  # Docker's rules make the host's do.
  ip netns add hubbub-conntrack
  ip netns exec hubbub-conntrack ip link set lo up
  ip netns exec hubbub-conntrack iptables -A INPUT -m conntrack --ctstate ESTABLISHED -j ACCEPT
  echo 12000 >/proc/sys/net/netfilter/nf_conntrack_max
  ip netns exec hubbub-conntrack target/release/loadgen ramp --max-clients 16000 --step 4000 \
    --brokers 1 --connect-timeout 3s --out $out/limits/conntrack-12000 || [ $? -eq 3 ]
)

# The million-client ramp and the walls it meets on the way (reports/README.md, section 10).
# Past the connection-tracking table the runs go into network namespaces with no netfilter
# rules, and a namespace takes the size of its own table of established TCP connections from
# net.ipv4.tcp_child_ehash_entries as it is created (0: it shares the machine's, 262,144
# buckets here), which is the setting measured.
section_million() ( # a subshell, so that its EXIT trap deletes the namespaces and the sysctl
  local child
  child=$(cat /proc/sys/net/ipv4/tcp_child_ehash_entries)
  restore() {
    echo "$child" >/proc/sys/net/ipv4/tcp_child_ehash_entries
    ip netns del hubbub-ehash-shared 2>/dev/null || true
    ip netns del hubbub-million 2>/dev/null || true
  }
  trap restore EXIT
  namespace() { # NAME EHASH_ENTRIES
    echo "$2" >/proc/sys/net/ipv4/tcp_child_ehash_entries
    ip netns add "$1"
    ip netns exec "$1" ip link set lo up
  }
  local shape=(--rate 1000 --channels 10000 --slo-p99 1s --placement by-channel)
  # In the machine's own namespace: Docker's rules track every connection.
  lg ramp --max-clients 400000 --step 50000 "${shape[@]}" --out $out/limits/conntrack-262144
  namespace hubbub-ehash-shared 0
  ip netns exec hubbub-ehash-shared target/release/loadgen ramp --max-clients 1000000 \
    "${shape[@]}" --out $out/limits/ehash-262144 || [ $? -eq 3 ]
  namespace hubbub-million 2097152
  ip netns exec hubbub-million target/release/loadgen ramp --max-clients 1500000 \
    "${shape[@]}" --out $out/ramp-million || [ $? -eq 3 ]
  # Issue 15's target: 100,000 through the hub at 2,000 msg/s over 1,000 channels.
  for placement in spread by-channel; do
    ip netns exec hubbub-million target/release/loadgen ramp --max-clients 100000 \
      --placement $placement --out "$out/ramp-lean-100000-$placement" || [ $? -eq 3 ]
  done
)

# Issue 16: a distributed ramp, every broker and agent in a container of its own (its own
# address, its own descriptor limit), beside the same ramp on loopback, interleaved.
section_containers() {
  bash scripts/images.sh
  local shape=(--max-clients 30000 --step 5000)
  rm -rf "$out/containers" && mkdir -p "$out/containers"
  for i in 1 2 3; do
    HUBBUB_MAX_CLIENTS=30000 HUBBUB_STEP=5000 HUBBUB_REPORT="containers-$i" timeout 900 \
      docker-compose -f deploy/docker-compose.yml up --exit-code-from loadgen || [ $? -eq 3 ]
    docker-compose -f deploy/docker-compose.yml down -v
    cp -r "reports/runs/containers-$i" "$out/containers/compose-$i"
    lg ramp "${shape[@]}" --brokers 2 --out "$out/containers/loopback-$i"
  done
}

sections=("$@")
[ ${#sections[@]} -gt 0 ] || sections=(one-broker hub memory fanout slow compare limits containers million)
for s in "${sections[@]}"; do
  echo "== $s"
  "section_${s//-/_}"
done
