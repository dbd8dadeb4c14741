#!/usr/bin/env bash
# A local Hearth cluster of separate processes on loopback, over a moto S3 bucket:
# 3 ingester nodes (ingester-1..3; every shard group replicated on all three, RF 3),
# 2 distributors, 2 queriers, a store gateway and a compactor.
#
#   deploy/local/cluster.sh up           start every process, wait until each is ready,
#                                        print `push: <remote-write URL>` and
#                                        `query: <Prometheus API base URL>`
#   deploy/local/cluster.sh down         stop every process (SIGTERM, then SIGKILL after 15 s)
#   deploy/local/cluster.sh status       each process: PID, whether it runs and is ready;
#                                        then every shard group's replicas (hearth cluster status)
#   deploy/local/cluster.sh start NODE [--no-wait]
#                                        start NODE (e.g. ingester-2) again on its data,
#                                        as `up` did; returns once it is ready (at once
#                                        with --no-wait)
#   deploy/local/cluster.sh wait NODE    returns once NODE is ready
#   deploy/local/cluster.sh stop NODE    stop NODE gracefully (SIGTERM)
#   deploy/local/cluster.sh kill NODE    kill -9 NODE; returns once it is gone
#   deploy/local/cluster.sh partition NODE [--asymmetric]
#                                        cut ingester NODE off from its peers in both
#                                        directions (clients still reach it); with
#                                        --asymmetric it can still send to its peers but
#                                        hears nothing back
#   deploy/local/cluster.sh slow NODE    its peers' Raft traffic to ingester NODE (and the
#                                        answers) crawls at 16 KiB/s per connection, as
#                                        over a congested link; a snapshot sent to it
#                                        takes seconds
#   deploy/local/cluster.sh heal NODE    undo partition or slow
#   deploy/local/cluster.sh partition bucket / heal bucket
#                                        make the S3 bucket unreachable from every
#                                        process (requests hang, as in an outage) / undo
#
# Ingesters talk Raft to each other through a TCP fault proxy (faultproxy.py, one link
# per ordered pair of nodes), which is how partition cuts a node off. Set
# HEARTH_CLUSTER_PROXY=0 to have them talk directly (benchmarks; partition is then
# unavailable).
#
# State lives in $HEARTH_CLUSTER_DIR (default ./cluster-data): each process' data
# directory, log (<name>.log), PID (<name>.pid) and command line (<name>.cmd), the
# proxy's link modes (links/), and the ports chosen at `up` (ports.env). Extra flags for
# every process can be given in $HEARTH_CLUSTER_FLAGS. The bucket is moto's S3 server
# (PyPI `moto[server]`); HEARTH_CLUSTER_BUCKET=filesystem uses a directory instead. The
# binary is `hearth` on PATH, else the release build (built if missing).
set -euo pipefail

DIR=${HEARTH_CLUSTER_DIR:-./cluster-data}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
PROXY=${HEARTH_CLUSTER_PROXY:-1}
BUCKET_KIND=${HEARTH_CLUSTER_BUCKET:-s3}
INGESTERS=(ingester-1 ingester-2 ingester-3)
DISTRIBUTORS=(distributor-1 distributor-2)
QUERIERS=(querier-1 querier-2)
ALL=("${INGESTERS[@]}" store-gateway-1 compactor-1 "${DISTRIBUTORS[@]}" "${QUERIERS[@]}")

die() { echo "cluster.sh: $*" >&2; exit 1; }

hearth_bin() {
  if command -v hearth >/dev/null 2>&1; then
    command -v hearth
    return
  fi
  local target=${CARGO_TARGET_DIR:-$ROOT/target}
  if [ ! -x "$target/release/hearth" ]; then
    echo "building hearth (release) ..." >&2
    (cd "$ROOT" && cargo build --release -p hearth >&2)
  fi
  echo "$target/release/hearth"
}

# N distinct free ports, one per line: every socket is held until all are chosen, so
# no port is handed out twice (one bind-and-release per port can get the same port back).
free_ports() {
  python3 -c 'import socket, sys
ss = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in ss:
    s.bind(("127.0.0.1", 0))
print("\n".join(str(s.getsockname()[1]) for s in ss))' "$1"
}

pid_of() { cat "$DIR/$1.pid" 2>/dev/null || true; }

running() {
  local pid; pid=$(pid_of "$1")
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null
}

var() { local v="$1_${2//-/_}"; echo "${!v}"; }
http_port() { var HTTP "$1"; }
grpc_port() { var GRPC "$1"; }
link_port() { var LINK "$1_to_$2"; } # from to

ready() { curl -sf "http://127.0.0.1:$(http_port "$1")/-/ready" >/dev/null 2>&1; }

wait_ready() { # name
  for _ in $(seq 1 1200); do
    ready "$1" && return 0
    running "$1" || die "$1 exited; see $DIR/$1.log, which ends:
$(tail -n 15 "$DIR/$1.log" 2>/dev/null)"
    sleep 0.1
  done
  die "$1 not ready after 120 s; see $DIR/$1.log"
}

is_ingester() { local n; for n in "${INGESTERS[@]}"; do [ "$n" = "$1" ] && return 0; done; return 1; }

# Allocates every port once and keeps them, so restarts of one process keep its address.
ports() {
  if [ ! -f "$DIR/ports.env" ]; then
    local free i=0
    mapfile -t free < <(free_ports $((2 * ${#ALL[@]} + ${#INGESTERS[@]} * ${#INGESTERS[@]} + 2)))
    {
      for n in "${ALL[@]}"; do
        echo "HTTP_${n//-/_}=${free[i++]}"
        echo "GRPC_${n//-/_}=${free[i++]}"
      done
      for a in "${INGESTERS[@]}"; do
        for b in "${INGESTERS[@]}"; do
          [ "$a" = "$b" ] || echo "LINK_${a//-/_}_to_${b//-/_}=${free[i++]}"
        done
      done
      echo "S3_PORT=${free[i++]}"
      echo "LINK_bucket=${free[i++]}"
    } > "$DIR/ports.env"
  fi
  # shellcheck disable=SC1091
  . "$DIR/ports.env"
}

members() { # names...
  local out=() n
  for n in "$@"; do out+=("$n=127.0.0.1:$(grpc_port "$n")"); done
  local IFS=,
  echo "${out[*]}"
}

peer_routes() { # ingester: its peers through the links from it
  local out=() n
  for n in "${INGESTERS[@]}"; do
    [ "$n" = "$1" ] || out+=("$n=127.0.0.1:$(link_port "$1" "$n")")
  done
  local IFS=,
  echo "${out[*]}"
}

bucket_flags() {
  if [ "$BUCKET_KIND" = filesystem ]; then
    printf '%s\n' "--blocks-storage.backend=filesystem" "--blocks-storage.filesystem.dir=$DIR/bucket"
  else
    # Through the fault proxy when it runs, so `partition bucket` can take it away.
    local s3=$S3_PORT
    [ "$PROXY" = 1 ] && s3=$LINK_bucket
    printf '%s\n' "--blocks-storage.backend=s3" \
      "--blocks-storage.s3.endpoint=127.0.0.1:$s3" \
      "--blocks-storage.s3.bucket-name=hearth" \
      "--blocks-storage.s3.region=us-east-1" \
      "--blocks-storage.s3.access-key-id=hearth" \
      "--blocks-storage.s3.secret-access-key=hearth-secret" \
      "--blocks-storage.s3.insecure=true"
  fi
}

command_of() { # name -> the command line, one argument per line
  local name=$1 role=${1%-*}
  printf '%s\n' "$BIN" "--target=$role" \
    "--web.listen-address=127.0.0.1:$(http_port "$name")" \
    "--server.grpc-listen-address=127.0.0.1:$(grpc_port "$name")" \
    "--storage.path=$DIR/$name" \
    "--ingester.ring.members=$(members "${INGESTERS[@]}")" \
    "--ingester.ring.replication-factor=3" \
    "--store-gateway.sharding-ring.members=$(members store-gateway-1)" \
    "--store-gateway.sharding-ring.instance-id=store-gateway-1"
  bucket_flags
  if is_ingester "$name"; then
    echo "--ingester.ring.instance-id=$name"
    [ "$PROXY" = 1 ] && echo "--ingester.raft.peer-routes=$(peer_routes "$name")"
  fi
  if [ -n "${HEARTH_CLUSTER_FLAGS:-}" ]; then
    # shellcheck disable=SC2086
    printf '%s\n' $HEARTH_CLUSTER_FLAGS
  fi
}

launch() { # name: starts it from its recorded command line
  local args=()
  mapfile -t args < "$DIR/$1.cmd"
  nohup "${args[@]}" >>"$DIR/$1.log" 2>&1 &
  echo $! > "$DIR/$1.pid"
}

start_one() { # name
  local name=$1
  running "$name" && die "$name already runs (PID $(pid_of "$name"))"
  mkdir -p "$DIR/$name"
  command_of "$name" > "$DIR/$name.cmd"
  launch "$name"
}

gone() { # pid: exited, or a zombie nobody reaped yet
  [ ! -e "/proc/$1" ] || grep -q '^[^)]*) Z' "/proc/$1/stat" 2>/dev/null
}

stop_pid() { # pid name
  local pid=$1
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 150); do
      gone "$pid" && break
      sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$DIR/$2.pid"
}

start_moto() {
  command -v moto_server >/dev/null 2>&1 ||
    die "moto_server not found: install it (python3 -m pip install 'moto[server]') or set HEARTH_CLUSTER_BUCKET=filesystem"
  nohup moto_server -H 127.0.0.1 -p "$S3_PORT" >>"$DIR/moto.log" 2>&1 &
  echo $! > "$DIR/moto.pid"
  for _ in $(seq 1 300); do
    curl -sf -X PUT "http://127.0.0.1:$S3_PORT/hearth" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  die "moto's S3 server did not start; see $DIR/moto.log"
}

start_proxy() {
  local specs=() a b
  for a in "${INGESTERS[@]}"; do
    for b in "${INGESTERS[@]}"; do
      [ "$a" = "$b" ] || specs+=("${a}_to_${b}:$(link_port "$a" "$b"):$(grpc_port "$b")")
    done
  done
  [ "$BUCKET_KIND" = filesystem ] || specs+=("bucket:$LINK_bucket:$S3_PORT")
  mkdir -p "$DIR/links"
  nohup python3 "$ROOT/deploy/local/faultproxy.py" "$DIR/links" "${specs[@]}" >>"$DIR/faultproxy.log" 2>&1 &
  echo $! > "$DIR/faultproxy.pid"
}

set_link() { # from to mode
  echo "$3" > "$DIR/links/$1_to_$2.mode"
}

wait_links() { # every link's mode in effect
  local f m
  for _ in $(seq 1 100); do
    local pending=0
    for f in "$DIR"/links/*.mode; do
      [ -e "$f" ] || continue
      m=$(cat "$f")
      [ "$(cat "${f%.mode}.applied" 2>/dev/null)" = "$m" ] || pending=1
    done
    [ $pending = 0 ] && return 0
    sleep 0.1
  done
  die "the fault proxy did not apply the link modes; see $DIR/faultproxy.log"
}

partition() { # node inbound-mode outbound-mode
  [ "$PROXY" = 1 ] || die "partition needs the fault proxy (HEARTH_CLUSTER_PROXY=1 at up)"
  is_ingester "$1" || die "$1 is not an ingester node"
  local n
  for n in "${INGESTERS[@]}"; do
    [ "$n" = "$1" ] && continue
    set_link "$n" "$1" "$2"
    set_link "$1" "$n" "$3"
  done
  wait_links
}

cmd=${1:-}
case "$cmd" in
  up)
    mkdir -p "$DIR"
    DIR=$(cd "$DIR" && pwd)
    BIN=$(hearth_bin)
    ports
    for n in "${ALL[@]}"; do
      running "$n" && die "$n already runs (PID $(pid_of "$n")); run down first"
    done
    if [ "$BUCKET_KIND" = filesystem ]; then mkdir -p "$DIR/bucket"; else start_moto; fi
    [ "$PROXY" = 1 ] && start_proxy
    # Ingesters first (distributors and queriers reach them), then the rest. The
    # ingesters start together: each group needs a majority of its replicas to form.
    for n in "${INGESTERS[@]}" store-gateway-1 compactor-1; do start_one "$n"; done
    for n in "${INGESTERS[@]}" store-gateway-1 compactor-1; do wait_ready "$n"; done
    for n in "${DISTRIBUTORS[@]}" "${QUERIERS[@]}"; do start_one "$n"; done
    for n in "${DISTRIBUTORS[@]}" "${QUERIERS[@]}"; do wait_ready "$n"; done
    for n in "${DISTRIBUTORS[@]}"; do
      [ "$n" = distributor-1 ] && label=push || label="push-${n#distributor-}"
      echo "$label: http://127.0.0.1:$(http_port "$n")/api/v1/push"
    done
    for n in "${QUERIERS[@]}"; do
      [ "$n" = querier-1 ] && label=query || label="query-${n#querier-}"
      echo "$label: http://127.0.0.1:$(http_port "$n")"
    done
    echo "dir: $DIR"
    ;;
  down)
    [ -d "$DIR" ] || exit 0
    # The front doors first, so nothing new reaches the ingesters as they stop.
    for n in "${DISTRIBUTORS[@]}" "${QUERIERS[@]}" compactor-1 store-gateway-1 "${INGESTERS[@]}"; do
      kill -CONT "$(pid_of "$n")" 2>/dev/null || true
      stop_pid "$(pid_of "$n")" "$n"
    done
    stop_pid "$(pid_of faultproxy)" faultproxy
    stop_pid "$(pid_of moto)" moto
    ;;
  status)
    [ -f "$DIR/ports.env" ] || die "no cluster in $DIR"
    ports
    printf '%-16s %-8s %-8s %-6s %s\n' NAME PID STATE READY HTTP
    for n in "${ALL[@]}"; do
      state=stopped; r=no
      running "$n" && state=running
      [ "$state" = running ] && ready "$n" && r=yes
      printf '%-16s %-8s %-8s %-6s %s\n' "$n" "$(pid_of "$n")" "$state" "$r" "127.0.0.1:$(http_port "$n")"
    done
    # The shard groups, as a querier sees them.
    for q in "${QUERIERS[@]}"; do
      if running "$q"; then
        echo
        "$(head -n 1 "$DIR/$q.cmd")" cluster status --url "127.0.0.1:$(http_port "$q")" || true
        break
      fi
    done
    ;;
  start)
    [ -n "${2:-}" ] || die "start NODE"
    [ -f "$DIR/$2.cmd" ] || die "$2: no such process in $DIR (run up first)"
    DIR=$(cd "$DIR" && pwd)
    ports
    running "$2" && die "$2 already runs"
    launch "$2"
    if [ "${3:-}" = --no-wait ]; then
      echo "$2: started (PID $(pid_of "$2"))"
    else
      wait_ready "$2"
      echo "$2: ready (PID $(pid_of "$2"))"
    fi
    ;;
  wait)
    [ -n "${2:-}" ] || die "wait NODE"
    [ -f "$DIR/$2.cmd" ] || die "$2: no such process in $DIR (run up first)"
    DIR=$(cd "$DIR" && pwd)
    ports
    wait_ready "$2"
    echo "$2: ready (PID $(pid_of "$2"))"
    ;;
  stop)
    [ -n "${2:-}" ] || die "stop NODE"
    kill -CONT "$(pid_of "$2")" 2>/dev/null || true
    stop_pid "$(pid_of "$2")" "$2"
    ;;
  kill)
    [ -n "${2:-}" ] || die "kill NODE"
    pid=$(pid_of "$2")
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || die "$2 does not run"
    kill -KILL "$pid"
    for _ in $(seq 1 100); do gone "$pid" && break; sleep 0.1; done
    gone "$pid" || die "$2 (PID $pid) survived kill -9"
    rm -f "$DIR/$2.pid"
    echo "$2: killed (PID $pid)"
    ;;
  partition)
    [ -n "${2:-}" ] || die "partition NODE [--asymmetric]"
    ports
    if [ "$2" = bucket ]; then
      [ "$PROXY" = 1 ] && [ "$BUCKET_KIND" != filesystem ] || die "partition bucket needs the fault proxy and the S3 bucket"
      echo drop > "$DIR/links/bucket.mode"
      wait_links
      echo "bucket: unreachable from every process"
      exit 0
    fi
    if [ "${3:-}" = --asymmetric ]; then
      # Its requests reach its peers, their answers and requests never reach it.
      partition "$2" drop oneway
      echo "$2: can send to its peers but hears nothing back"
    else
      partition "$2" drop drop
      echo "$2: cut off from its peers"
    fi
    ;;
  slow)
    [ -n "${2:-}" ] || die "slow NODE"
    ports
    partition "$2" slow pass
    echo "$2: its peers reach it over a slow link"
    ;;
  heal)
    [ -n "${2:-}" ] || die "heal NODE"
    ports
    if [ "$2" = bucket ]; then
      echo pass > "$DIR/links/bucket.mode"
      wait_links
      echo "bucket: reachable again"
      exit 0
    fi
    partition "$2" pass pass
    echo "$2: reaches its peers again"
    ;;
  *)
    sed -n '2,43p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
    ;;
esac
