#!/usr/bin/env bash
# A local Hearth cluster of separate processes on loopback, over a filesystem bucket:
# 2 distributors, 3 ingesters, 2 queriers, a store gateway and a compactor.
#
#   deploy/local/cluster.sh up        start every process, wait until each is ready,
#                                     print `push: <remote-write URL>` and
#                                     `query: <Prometheus API base URL>`
#   deploy/local/cluster.sh down      stop every process (SIGTERM, then SIGKILL after 15 s)
#   deploy/local/cluster.sh status    each process: its PID, whether it runs and is ready
#   deploy/local/cluster.sh start N   start process N (e.g. ingester-2) again, as `up` did
#   deploy/local/cluster.sh stop N    stop process N
#
# State lives in $HEARTH_CLUSTER_DIR (default ./cluster-data): each process' data
# directory, log (<name>.log), PID (<name>.pid) and command line (<name>.cmd), the
# bucket, and the ports chosen at `up` (ports.env). Extra flags for every process can be
# given in $HEARTH_CLUSTER_FLAGS. The binary is `hearth` on PATH, else the release build
# (built if missing).
set -euo pipefail

DIR=${HEARTH_CLUSTER_DIR:-./cluster-data}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
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

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

pid_of() { cat "$DIR/$1.pid" 2>/dev/null || true; }

running() {
  local pid; pid=$(pid_of "$1")
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null
}

http_port() { local v="HTTP_${1//-/_}"; echo "${!v}"; }

ready() { curl -sf "http://127.0.0.1:$(http_port "$1")/-/ready" >/dev/null 2>&1; }

wait_ready() { # name
  for _ in $(seq 1 600); do
    ready "$1" && return 0
    running "$1" || die "$1 exited; see $DIR/$1.log"
    sleep 0.1
  done
  die "$1 not ready after 60 s; see $DIR/$1.log"
}

# Allocates every port once and keeps them, so restarts of one process keep its address.
ports() {
  if [ ! -f "$DIR/ports.env" ]; then
    {
      for n in "${ALL[@]}"; do
        echo "HTTP_${n//-/_}=$(free_port)"
        echo "GRPC_${n//-/_}=$(free_port)"
      done
    } > "$DIR/ports.env"
  fi
  # shellcheck disable=SC1091
  . "$DIR/ports.env"
}

members() { # prefix names...
  local out=() n v
  for n in "$@"; do
    v="GRPC_${n//-/_}"
    out+=("$n=127.0.0.1:${!v}")
  done
  local IFS=,
  echo "${out[*]}"
}

command_of() { # name -> the command line, one argument per line
  local name=$1 role=${1%-*} v="GRPC_${1//-/_}"
  local common=(
    "--web.listen-address=127.0.0.1:$(http_port "$name")"
    "--server.grpc-listen-address=127.0.0.1:${!v}"
    "--storage.path=$DIR/$name"
    "--blocks-storage.backend=filesystem"
    "--blocks-storage.filesystem.dir=$DIR/bucket"
    "--ingester.ring.members=$(members "${INGESTERS[@]}")"
    "--store-gateway.sharding-ring.members=$(members store-gateway-1)"
    "--store-gateway.sharding-ring.instance-id=store-gateway-1"
  )
  printf '%s\n' "$BIN" "--target=$role" "${common[@]}"
  if [ -n "${HEARTH_CLUSTER_FLAGS:-}" ]; then
    # shellcheck disable=SC2086
    printf '%s\n' $HEARTH_CLUSTER_FLAGS
  fi
}

start_one() { # name
  local name=$1
  running "$name" && die "$name already runs (PID $(pid_of "$name"))"
  mkdir -p "$DIR/$name"
  command_of "$name" > "$DIR/$name.cmd"
  local args=()
  mapfile -t args < "$DIR/$name.cmd"
  nohup "${args[@]}" >>"$DIR/$name.log" 2>&1 &
  echo $! > "$DIR/$name.pid"
}

stop_one() { # name
  local name=$1 pid
  pid=$(pid_of "$name")
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 150); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$DIR/$name.pid"
}

cmd=${1:-}
case "$cmd" in
  up)
    mkdir -p "$DIR/bucket"
    DIR=$(cd "$DIR" && pwd)
    BIN=$(hearth_bin)
    ports
    for n in "${ALL[@]}"; do
      running "$n" && die "$n already runs (PID $(pid_of "$n")); run down first"
    done
    # Ingesters first (distributors and queriers reach them), then the rest.
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
      stop_one "$n"
    done
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
    ;;
  start)
    [ -n "${2:-}" ] || die "start NAME"
    [ -f "$DIR/$2.cmd" ] || die "$2: no such process in $DIR (run up first)"
    DIR=$(cd "$DIR" && pwd)
    ports
    running "$2" && die "$2 already runs"
    mapfile -t args < "$DIR/$2.cmd"
    nohup "${args[@]}" >>"$DIR/$2.log" 2>&1 &
    echo $! > "$DIR/$2.pid"
    wait_ready "$2"
    echo "$2: ready (PID $(pid_of "$2"))"
    ;;
  stop)
    [ -n "${2:-}" ] || die "stop NAME"
    stop_one "$2"
    ;;
  *)
    sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
    ;;
esac
