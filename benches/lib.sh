# Shared by benches/e2e.sh and benches/query_e2e.sh: build, temporary work directory,
# process cleanup, free ports, waiting for HTTP. Source it; it sets BIN, WORK and PIDS.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/hearth-target}"
cargo build --release -p hearth -p hearth-benches --bins >/dev/null
BIN="$CARGO_TARGET_DIR/release"
WORK=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]:-}"; do kill -9 "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_http() { for _ in $(seq 1 300); do curl -sf "$1" >/dev/null && return 0; sleep 0.1; done; echo "no answer from $1" >&2; return 1; }
# Benchmarks measure throughput, not the per-tenant limits' defaults (Mimir's 10k
# samples/s and 150k series per tenant): every hearth they start lifts them.
UNLIMITED=(--distributor.ingestion-rate-limit=1e12 --distributor.ingestion-burst-size=1000000000000 --ingester.max-global-series-per-user=0)
