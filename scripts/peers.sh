#!/usr/bin/env bash
# Other pub/sub brokers on loopback, to measure side by side with hubbub: Redis pub/sub, NATS core
# and Mosquitto (MQTT 3.1.1, QoS 0), each with its limits set as close to hubbub's defaults as it has;
# and the plain tokio broker from benches/ (plain-broker, built here when started), the baseline.
#
#   scripts/peers.sh install             installs redis-server, nats-server and mosquitto from Debian's
#                                        packages if missing (as root), and leaves no system copy running
#   scripts/peers.sh start [NAME|all]    starts them on 127.0.0.1 and checks each answers (default all)
#   scripts/peers.sh stop [NAME|all]     stops them (SIGTERM, then SIGKILL after 10 s; default all)
#   scripts/peers.sh restart [NAME|all]  stops and starts them: a fresh process, as a memory figure needs
#   scripts/peers.sh status              which are running, with pid and address
#   scripts/peers.sh addr NAME           HOST:PORT of one
#   scripts/peers.sh pid NAME            its pid (to sample its CPU and memory)
#   scripts/peers.sh tls-addr NAME       HOST:PORT of its TLS listener
#   scripts/peers.sh tls-dir             the certificates' directory: ca.pem, server.pem, server.key
#
# NAME is redis, nats, mosquitto or plain-tokio; ports 6390, 4232, 1893 and 4250, not the defaults
# (REDIS_PORT, NATS_PORT, MQTT_PORT, PLAIN_PORT override). NATS_WRITE_DEADLINE (10s) and MQTT_MAX_QUEUED (100000) override
# those two limits. Redis, NATS and Mosquitto also listen for TLS, on 6391, 4233 and 8893
# (REDIS_TLS_PORT, NATS_TLS_PORT, MQTT_TLS_PORT), with a server certificate for 127.0.0.1 and
# localhost signed by a CA made at start (openssl; kept while valid for another day) in
# target/peers/tls/; NATS in a second process (nats-tls), as nats-server 2.9 has TLS for all of
# a server's clients or for none. Logs, pid files and generated configs live in target/peers/
# (PEERS_RUN_DIR overrides); nothing is persisted.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
run_dir=${PEERS_RUN_DIR:-$root/target/peers}
tls_dir=$run_dir/tls
all=(redis nats mosquitto plain-tokio)

port_of() { # NAME
  case $1 in
  redis) echo "${REDIS_PORT:-6390}" ;;
  nats) echo "${NATS_PORT:-4232}" ;;
  mosquitto) echo "${MQTT_PORT:-1893}" ;;
  plain-tokio) echo "${PLAIN_PORT:-4250}" ;;
  esac
}

tls_port_of() { # NAME: its TLS port, or nothing for one without TLS
  case $1 in
  redis) echo "${REDIS_TLS_PORT:-6391}" ;;
  nats) echo "${NATS_TLS_PORT:-4233}" ;;
  mosquitto) echo "${MQTT_TLS_PORT:-8893}" ;;
  esac
}

tls_process_of() { # NAME: the name of the process that listens for TLS (its pid file's)
  case $1 in
  nats) echo nats-tls ;;
  *) echo "$1" ;;
  esac
}

program_of() { # NAME
  case $1 in
  redis) echo redis-server ;;
  nats | nats-tls) echo nats-server ;;
  mosquitto) echo mosquitto ;;
  plain-tokio) echo plain-broker ;;
  esac
}

installed() { # NAME: whether its program is there (the baseline is built when started)
  case $1 in
  plain-tokio) command -v cargo >/dev/null ;;
  *) command -v "$(program_of "$1")" >/dev/null ;;
  esac
}

names() { # [NAME|all]: the names it stands for, or a complaint
  case ${1:-all} in
  all) echo "${all[@]}" ;;
  redis | nats | mosquitto | plain-tokio) echo "$1" ;;
  *)
    echo "unknown broker '$1' (redis, nats, mosquitto, plain-tokio or all)" >&2
    return 1
    ;;
  esac
}

alive() { # PID [PROGRAM]: whether PID runs (PROGRAM, if given); a zombie waiting to be reaped is dead
  local state
  state=$(ps -o stat=,comm= -p "$1" 2>/dev/null) || return 1
  case $state in
  Z*) return 1 ;;
  esac
  [ -z "${2:-}" ] || [ "${state##* }" = "$2" ]
}

pid_of() { # NAME: its pid if it is running
  local pid
  pid=$(cat "$run_dir/$1.pid" 2>/dev/null) || return 1
  alive "$pid" "$(program_of "$1")" && echo "$pid"
}

addr_of() { # NAME: where it listens if running, else where it would
  pid_of "$1" >/dev/null && cat "$run_dir/$1.addr" 2>/dev/null || echo "127.0.0.1:$(port_of "$1")"
}

listening() { # PORT
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

wait_for_port() { # NAME PORT
  local pid
  pid=$(cat "$run_dir/$1.pid")
  for _ in $(seq 100); do
    listening "$2" && return 0
    # By pid alone: just after the fork the process is still bash, not yet the broker.
    alive "$pid" || break
    sleep 0.1
  done
  echo "$1: nothing listens on 127.0.0.1:$2; see $run_dir/$1.log:" >&2
  tail -n 5 "$run_dir/$1.log" >&2
  return 1
}

run() { # COMMAND…: print it, then run it
  echo "+ $*"
  "$@"
}

# --- install ---------------------------------------------------------------------------------

# Debian's packages come with a service each (redis on 6379, mosquitto on 1883, nats on 4222) that
# the package starts where the init system lets it. Ours are started by this script only, so stop
# and disable those.
quiet_system_services() {
  local svc port line pid quiet=1
  for svc in redis-server:6379 mosquitto:1883 nats-server:4222; do
    port=${svc#*:}
    svc=${svc%:*}
    if [ -d /run/systemd/system ] && systemctl is-enabled --quiet "$svc" 2>/dev/null; then
      run systemctl disable --now "$svc"
    fi
    listening "$port" || continue
    quiet=0
    line=$(ss -Hltnp "sport = :$port" 2>/dev/null | grep -F "\"$svc\"" || true)
    [ -n "$line" ] || {
      echo "127.0.0.1:$port is in use, but not by $svc; leaving it alone"
      continue
    }
    echo "$svc was started by its package and listens on :$port; stopping it"
    if [ -x "/etc/init.d/$svc" ]; then
      run service "$svc" stop || true
    fi
    if listening "$port"; then
      pid=$(sed -n 's/.*pid=\([0-9]*\).*/\1/p' <<<"$line")
      run kill -TERM "$pid"
    fi
  done
  [ "$quiet" -eq 0 ] || echo "no system redis, mosquitto or nats listens on 6379, 1883 or 4222"
}

install_peers() {
  local pkg missing=()
  for pkg in redis-server nats-server mosquitto; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  if [ ${#missing[@]} -eq 0 ]; then
    echo "redis-server, nats-server and mosquitto are installed"
  else
    [ "$(id -u)" -eq 0 ] || {
      echo "installing ${missing[*]} needs root" >&2
      exit 1
    }
    run apt-get update
    run env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
  fi
  quiet_system_services
  redis-server --version
  nats-server --version
  mosquitto -h 2>/dev/null | head -n 1 || true
}

# --- certificates ----------------------------------------------------------------------------
# A CA and a server certificate for 127.0.0.1 and localhost (ECDSA P-256, 30 days), made with
# openssl at start unless those in $tls_dir are still valid for a day. Loadgen trusts ca.pem
# (--tls-ca); every TLS listener here, and the hubbub `loadgen compare` starts with TLS, serves
# server.pem.

make_certs() {
  if [ -f "$tls_dir/ca.pem" ] && [ -f "$tls_dir/server.key" ] &&
    openssl x509 -checkend 86400 -noout -in "$tls_dir/server.pem" >/dev/null 2>&1; then
    return 0
  fi
  mkdir -p "$tls_dir"
  local ec=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes)
  openssl req -x509 "${ec[@]}" -days 30 -subj "/CN=hubbub peers test CA" \
    -keyout "$tls_dir/ca.key" -out "$tls_dir/ca.pem" 2>/dev/null
  openssl req "${ec[@]}" -subj "/CN=localhost" \
    -keyout "$tls_dir/server.key" -out "$tls_dir/server.csr" 2>/dev/null
  printf '%s\n' "subjectAltName=IP:127.0.0.1,DNS:localhost" "basicConstraints=CA:FALSE" \
    "keyUsage=critical,digitalSignature" "extendedKeyUsage=serverAuth" >"$tls_dir/server.ext"
  openssl x509 -req -in "$tls_dir/server.csr" -CA "$tls_dir/ca.pem" -CAkey "$tls_dir/ca.key" \
    -CAcreateserial -days 30 -extfile "$tls_dir/server.ext" -out "$tls_dir/server.pem" 2>/dev/null
  echo "certificates made in $tls_dir (CA ca.pem; server.pem for 127.0.0.1 and localhost)"
}

# --- start -----------------------------------------------------------------------------------
# hubbub's defaults, which the settings below follow as far as each broker has the knob: frames up
# to 1 MiB; a client with more than 32 MiB of output pending, or more than 8 MiB for 10 s, is
# disconnected as a slow consumer; connections up to what the open-files limit allows; one
# process; open-files soft limit raised to the hard limit (20,000 on this project's machines). Every broker here sets TCP_NODELAY, as hubbub does.

start_redis() { # PORT
  local args=(
    --bind 127.0.0.1 --port "$1"
    --daemonize no                # stays our child: the pid file is $!
    --save "" --appendonly no     # no RDB snapshot, no AOF: nothing on disk, like hubbub
    --dir "$run_dir"              # and were anything written after all, it lands here
    --protected-mode no           # no password, like hubbub (it listens on loopback only)
    --maxclients 100000           # as many as it can: Redis cuts this to the open-files limit less 32
    --client-output-buffer-limit "pubsub 32mb 8mb 10" # as hubbub's --max-pending 32M --pending-soft 8M --pending-soft-for 10s
    --proto-max-bulk-len 1mb      # longest message 1 MiB (--max-frame 1M; 1mb is Redis's smallest)
    --loglevel warning --logfile "" # warnings only, to stderr
    # io-threads stays at its default 1: Redis serves every client from one thread
    # TLS on a second port of the same process; clients need no certificate of their own
    --tls-port "$(tls_port_of redis)"
    --tls-cert-file "$tls_dir/server.pem" --tls-key-file "$tls_dir/server.key"
    --tls-ca-cert-file "$tls_dir/ca.pem" --tls-auth-clients no
  )
  redis-server "${args[@]}" </dev/null >"$run_dir/redis.log" 2>&1 &
  echo $! >"$run_dir/redis.pid"
}

start_nats() { # PORT
  nats_conf "$1" >"$run_dir/nats.conf"
  nats-server -c "$run_dir/nats.conf" </dev/null >"$run_dir/nats.log" 2>&1 &
  echo $! >"$run_dir/nats.pid"
  # The same settings with TLS required of every client, in a process of its own: nats-server
  # 2.9 cannot require TLS on one port and not on another. Its INFO says tls_required, and the
  # client upgrades before CONNECT. The handshake may take 5 s (its default, 0.5 s, is short
  # for a loaded machine opening many connections at once).
  {
    nats_conf "$(tls_port_of nats)"
    cat <<EOF
tls {
  cert_file: "$tls_dir/server.pem"
  key_file: "$tls_dir/server.key"
  ca_file: "$tls_dir/ca.pem"
  timeout: 5
}
EOF
  } >"$run_dir/nats-tls.conf"
  nats-server -c "$run_dir/nats-tls.conf" </dev/null >"$run_dir/nats-tls.log" 2>&1 &
  echo $! >"$run_dir/nats-tls.pid"
}

nats_conf() { # PORT: the configuration, on stdout
  cat <<EOF
# Written by scripts/peers.sh start: core NATS set as close to hubbub's defaults as it goes.
listen: 127.0.0.1:$1
max_connections: 1000000  # past the open-files limit, which binds first (hubbub: that limit less 32)
max_pending: 32MB         # >32 MiB pending for a client: slow consumer (--max-pending 32M; NATS has no soft limit)
max_payload: 1MB          # longest message 1 MiB (--max-frame 1M)
# A write to a client blocked this long makes it a slow consumer too (10s is NATS's default).
# NATS writes to a subscriber on its publisher's read loop, so a subscriber that stops reading
# holds up the publisher for this long, and is cut by it before 32 MiB can pile up.
write_deadline: "${NATS_WRITE_DEADLINE:-10s}"
# No jetstream block: core NATS only, nothing on disk. Logs notices and errors to stderr.
EOF
}

start_mosquitto() { # PORT
  cat >"$run_dir/mosquitto.conf" <<EOF
# Written by scripts/peers.sh start: Mosquitto 2.0 set as close to hubbub's defaults as it goes.
listener $1 127.0.0.1
# No password, like hubbub (it listens on loopback only).
allow_anonymous true
# Unlimited on this listener; the open-files limit binds first (hubbub: that limit less 32).
max_connections -1
# And the same over TLS, on a second listener; clients need no certificate of their own.
listener $(tls_port_of mosquitto) 127.0.0.1
max_connections -1
certfile $tls_dir/server.pem
keyfile $tls_dir/server.key
cafile $tls_dir/ca.pem
# Nothing on disk.
persistence false
# Run as whoever started it: as root, mosquitto would otherwise switch to user mosquitto.
user $(id -un)
# Mosquitto never disconnects a slow consumer: past its queue limit it drops the client's QoS 0
# messages (logging "Outgoing messages are being dropped" once). For a connected client that limit
# is max_queued_messages, a count of packets waiting for the socket; max_queued_bytes does not
# bound QoS 0 at all, and max_queued_messages 0 leaves QoS 0 unbounded. 100000 packets is about
# 8 MiB (hubbub's soft limit, --pending-soft 8M; Mosquitto has no time-bound one) at loadgen's
# default 64-byte payload (~80 bytes a PUBLISH).
max_queued_messages ${MQTT_MAX_QUEUED:-100000}
# Bounds QoS 1/2 queues only, in bytes; set to match, though QoS 0 ignores it.
max_queued_bytes 8388608
# Longest packet 1 MiB; a longer one disconnects its sender (hubbub --max-frame 1M).
max_packet_size 1048576
# Mosquitto alone defaults to Nagle on; hubbub, Redis and NATS all set TCP_NODELAY.
set_tcp_nodelay true
# Errors, warnings and notices to stderr; no line per connection. \$SYS topics once an hour: they
# carry \$SYS/broker/version (retained), which loadgen reads to record what it measured.
log_dest stderr
log_type error
log_type warning
log_type notice
connection_messages false
sys_interval 3600
EOF
  mosquitto -c "$run_dir/mosquitto.conf" </dev/null >"$run_dir/mosquitto.log" 2>&1 &
  echo $! >"$run_dir/mosquitto.pid"
}

# The baseline hubbub must beat: built from this checkout, one worker thread per core as hubbub.
start_plain-tokio() { # PORT
  cargo build --release --quiet --manifest-path "$root/Cargo.toml" -p hubbub-benches --bin plain-broker
  "$root/target/release/plain-broker" --listen "127.0.0.1:$1" </dev/null >"$run_dir/plain-tokio.log" 2>&1 &
  echo $! >"$run_dir/plain-tokio.pid"
}

# One protocol exchange each, to prove the server behind the port is the one we started and works.
check_redis() { # PORT
  local reply
  exec 3<>"/dev/tcp/127.0.0.1/$1"
  printf 'PING\r\n' >&3
  IFS= read -r -t 5 reply <&3 || true
  exec 3<&-
  reply=${reply%$'\r'}
  [ "$reply" = "+PONG" ] || {
    echo "redis: PING got '$reply', not +PONG" >&2
    return 1
  }
  echo "PING -> $reply"
}

check_nats() { # PORT
  local info
  exec 3<>"/dev/tcp/127.0.0.1/$1"
  IFS= read -r -t 5 info <&3 || true
  exec 3<&-
  case $info in
  "INFO {"*) ;;
  *)
    echo "nats: expected INFO {...}, got '$info'" >&2
    return 1
    ;;
  esac
  echo "INFO: version $(sed -n 's/.*"version":"\([^"]*\)".*/\1/p' <<<"$info")," \
    "max_payload $(sed -n 's/.*"max_payload":\([0-9]*\).*/\1/p' <<<"$info")"
}

check_mosquitto() { # PORT
  python3 - "$1" <<'EOF'
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=5)
# CONNECT: MQTT 3.1.1, clean session, keepalive 60 s, client id "peers-check"
cid = b"peers-check"
body = b"\x00\x04MQTT\x04\x02\x00\x3c" + len(cid).to_bytes(2, "big") + cid
s.sendall(bytes([0x10, len(body)]) + body)
connack = s.recv(4)
s.sendall(b"\xe0\x00")  # DISCONNECT
if connack != b"\x20\x02\x00\x00":
    sys.exit(f"mosquitto: CONNECT got {connack.hex()}, not CONNACK 20020000 (accepted)")
print("CONNECT -> CONNACK accepted")
EOF
}

check_plain-tokio() { # PORT
  local reply
  exec 3<>"/dev/tcp/127.0.0.1/$1"
  printf '{"command":"PING"}\n' >&3
  IFS= read -r -t 5 reply <&3 || true
  exec 3<&-
  [ "$reply" = '{"type":"PONG"}' ] || {
    echo "plain-tokio: PING got '$reply', not PONG" >&2
    return 1
  }
  echo "PING -> $reply"
}

# The same exchange over TLS, trusting only our CA and checking the name 127.0.0.1, as loadgen
# does; NATS reads its plain-text INFO (which must say tls_required) before the handshake.
check_tls() { # NAME PORT
  python3 - "$1" "$2" "$tls_dir/ca.pem" <<'EOF'
import socket, ssl, sys
name, port, ca = sys.argv[1], int(sys.argv[2]), sys.argv[3]
raw = socket.create_connection(("127.0.0.1", port), timeout=5)
if name == "nats":
    info = b""
    while not info.endswith(b"\r\n"):
        more = raw.recv(4096)
        if not more:
            sys.exit("nats (TLS): closed before INFO")
        info += more
    if b'"tls_required":true' not in info:
        sys.exit(f"nats (TLS): its INFO does not require TLS: {info[:200]!r}")
s = ssl.create_default_context(cafile=ca).wrap_socket(raw, server_hostname="127.0.0.1")
if name == "redis":
    s.sendall(b"PING\r\n")
    want, what = b"+PONG\r\n", "PING -> +PONG"
elif name == "nats":
    s.sendall(b'CONNECT {"verbose":false,"tls_required":true}\r\nPING\r\n')
    want, what = b"PONG\r\n", "CONNECT, PING -> PONG"
else:
    cid = b"peers-check-tls"
    body = b"\x00\x04MQTT\x04\x02\x00\x3c" + len(cid).to_bytes(2, "big") + cid
    s.sendall(bytes([0x10, len(body)]) + body)
    want, what = b"\x20\x02\x00\x00", "CONNECT -> CONNACK accepted"
got = b""
while len(got) < len(want) and not got.startswith(b"-"):
    more = s.recv(64)
    if not more:
        break
    got += more
if got[:len(want)] != want:
    sys.exit(f"{name} (TLS): expected {want!r}, got {got!r}")
print(f"{s.version()}: {what}")
EOF
}

start_peers() { # NAME…
  local name port pid answer busy=0
  for name in "$@"; do
    installed "$name" || {
      echo "$name is not installed (scripts/peers.sh install)" >&2
      busy=1
    }
    if pid=$(pid_of "$name"); then
      echo "$name is already running (pid $pid; scripts/peers.sh stop $name first)" >&2
      busy=1
    elif listening "$(port_of "$name")"; then
      echo "$name: 127.0.0.1:$(port_of "$name") is already in use by another program" >&2
      busy=1
    elif [ -n "$(tls_port_of "$name")" ] && listening "$(tls_port_of "$name")"; then
      echo "$name: 127.0.0.1:$(tls_port_of "$name") (TLS) is already in use by another program" >&2
      busy=1
    fi
  done
  [ "$busy" -eq 0 ] || exit 1
  mkdir -p "$run_dir"
  make_certs
  # Redis derives its client limit from the open-files limit, and every client is a file
  # descriptor for all of them: raise the soft limit to the hard one, as hubbub does for itself.
  ulimit -n "$(ulimit -Hn)" 2>/dev/null || echo "could not raise the open-files limit above $(ulimit -n)" >&2
  for name in "$@"; do
    port=$(port_of "$name")
    "start_$name" "$port"
    wait_for_port "$name" "$port"
    if ! answer=$("check_$name" "$port"); then
      echo "$name listens but does not answer; see $run_dir/$name.log (scripts/peers.sh stop $name)" >&2
      exit 1
    fi
    echo "127.0.0.1:$port" >"$run_dir/$name.addr"
    echo "$name 127.0.0.1:$port pid $(cat "$run_dir/$name.pid"): $answer"
    port=$(tls_port_of "$name")
    [ -n "$port" ] || continue
    wait_for_port "$(tls_process_of "$name")" "$port"
    if ! answer=$(check_tls "$name" "$port"); then
      echo "$name listens for TLS but does not answer; see $run_dir/$(tls_process_of "$name").log" >&2
      exit 1
    fi
    echo "127.0.0.1:$port" >"$run_dir/$name.tls-addr"
    echo "$name 127.0.0.1:$port (TLS) pid $(cat "$run_dir/$(tls_process_of "$name").pid"): $answer"
  done
  echo "open files limit $(ulimit -n)"
}

restart_peers() { # NAME…
  stop_peers "$@"
  start_peers "$@"
}

stop_peers() { # NAME…
  local name pid pids=() stopped=() alive=
  for name in "$@"; do
    if pid=$(pid_of "$name"); then
      pids+=("$pid")
      stopped+=("$name")
    fi
    # NATS's TLS process, which the others do not have apart
    if [ "$(tls_process_of "$name")" != "$name" ] && pid=$(pid_of "$(tls_process_of "$name")"); then
      pids+=("$pid")
      stopped+=("$(tls_process_of "$name")")
    fi
    rm -f "$run_dir/$name.pid" "$run_dir/$name.addr" "$run_dir/$name.tls-addr" \
      "$run_dir/$(tls_process_of "$name").pid"
  done
  if [ ${#pids[@]} -eq 0 ]; then
    if [ $# -eq 1 ]; then echo "$1 is not running"; else echo "none of $* is running"; fi
    return 0
  fi
  kill -TERM "${pids[@]}" 2>/dev/null || true
  for _ in $(seq 100); do
    alive=$(for p in "${pids[@]}"; do alive "$p" && echo "$p"; done || true)
    [ -z "$alive" ] && break
    sleep 0.1
  done
  if [ -n "$alive" ]; then
    echo "still running after 10 s, killing: $alive"
    # shellcheck disable=SC2086 # one pid a word
    kill -KILL $alive 2>/dev/null || true
  fi
  echo "stopped ${stopped[*]}"
}

one_name() { # COMMAND NAME: NAME, if it names exactly one broker
  case ${2:-} in
  redis | nats | mosquitto) echo "$2" ;;
  *)
    echo "usage: scripts/peers.sh $1 redis|nats|mosquitto" >&2
    return 1
    ;;
  esac
}

case ${1:-} in
install) install_peers ;;
start | stop | restart)
  list=$(names "${2:-all}")
  read -ra which <<<"$list"
  "$1_peers" "${which[@]}"
  ;;
status)
  for name in "${all[@]}"; do
    if pid=$(pid_of "$name"); then
      printf '%-10s running  pid %-8s %s%s\n' "$name" "$pid" "$(addr_of "$name")" \
        "$(sed 's/^/, TLS /' "$run_dir/$name.tls-addr" 2>/dev/null || true)"
    else
      printf '%-10s stopped\n' "$name"
    fi
  done
  ;;
addr)
  name=$(one_name addr "${2:-}")
  addr_of "$name"
  ;;
tls-addr)
  name=$(one_name tls-addr "${2:-}")
  echo "127.0.0.1:$(tls_port_of "$name")"
  ;;
tls-dir)
  echo "$tls_dir"
  ;;
pid)
  name=$(one_name pid "${2:-}")
  pid_of "$name" || {
    echo "$name is not running" >&2
    exit 1
  }
  ;;
*)
  sed -n '2,25p' "$0" | sed 's/^# \{0,1\}//'
  exit 2
  ;;
esac
