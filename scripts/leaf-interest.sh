#!/usr/bin/env bash
# How fast a leaf holding many channels passes new ones up to its hub: a hub and a leaf on
# loopback, one client at the leaf subscribes to N channels (pipelined), then to M more one at a
# time; prints when the hub had them all, and each broker's CPU seconds. The leaf follows the
# changes only (issue 13): it used to re-read every channel on each change.
#
#   scripts/leaf-interest.sh [BROKER] [N] [M] [PORT]    defaults: target/release/broker 200000 2000 4501
#
# Loopback only; stops both brokers however it ends. Needs python3 (for the client).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
broker=${1:-$root/target/release/broker}
n=${2:-200000}
m=${3:-2000}
hub=${4:-4501}
leaf=$((hub + 1))
"$broker" --listen "127.0.0.1:$hub" --stats-interval 0s >/dev/null 2>&1 &
h=$!
"$broker" --listen "127.0.0.1:$leaf" --upstream "127.0.0.1:$hub" --max-subscriptions 1000000 \
  --stats-interval 0s >/dev/null 2>&1 &
l=$!
trap 'kill $h $l 2>/dev/null || true' EXIT
sleep 0.5
timeout 120 python3 - "$hub" "$leaf" "$n" "$m" <<'PY'
import json, socket, sys, time
hub, leaf, n, m = map(int, sys.argv[1:])
def channels(port):
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(b'{"command":"STATS"}\n')
    v = json.loads(s.makefile("rb").readline())
    s.close()
    return v["channels"]
def hub_has(count, t0):
    while channels(hub) < count:
        time.sleep(0.01)
    return time.time() - t0
c = socket.create_connection(("127.0.0.1", leaf))
acks = c.makefile("rb")
def subscribe(lo, hi):
    c.sendall(b"".join(b'{"command":"SUBSCRIBE","args":{"channel":"ch-%d"}}\n' % i for i in range(lo, hi)))
    for _ in range(lo, hi):
        acks.readline()
t0 = time.time()
subscribe(0, n)
print(f"{n} channels at the leaf: acknowledged after {time.time() - t0:.2f} s, at the hub after {hub_has(n, t0):.2f} s")
t0 = time.time()
for k in range(m):
    subscribe(n + k, n + k + 1)
t = hub_has(n + m, t0)
print(f"then {m} more, one at a time: at the hub after {t:.2f} s ({m / t:.0f} channels/s)")
PY
cpu() { awk '{print ($14 + $15) / 100}' "/proc/$1/stat"; }
echo "CPU seconds: leaf $(cpu $l), hub $(cpu $h)"
