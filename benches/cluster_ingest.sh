#!/usr/bin/env bash
# Ingest through the gRPC hop: the same load (hearth-loadgen, SERIES series x ROUNDS
# rounds) into one process (--target=all) and into the local cluster of
# deploy/local/cluster.sh through one distributor, in one run. CPU per sample is summed
# over the processes that do the work (the distributor and the three ingesters);
# peak RSS likewise. Prints one JSON line each and the ratio.
#
#   benches/cluster_ingest.sh [SERIES] [ROUNDS] [CONCURRENCY]   (defaults: 100000 20 4)
set -euo pipefail
cd "$(dirname "$0")/.."
SERIES=${1:-100000}
ROUNDS=${2:-20}
CONC=${3:-4}
. benches/lib.sh
START_MS=$(( ($(date +%s) - ROUNDS * 15) * 1000 ))
RESULTS="$WORK/results.jsonl"
load() { # name pids url
  "$BIN/hearth-loadgen" --name "$1" --pid "$2" --url "$3" \
    --series "$SERIES" --rounds "$ROUNDS" --concurrency "$CONC" --start-ms "$START_MS" | tee -a "$RESULTS"
}

P=$(port)
"$BIN/hearth" "${UNLIMITED[@]}" --web.listen-address=127.0.0.1:$P --storage.path="$WORK/single" --log.level=warn & H=$!; PIDS+=($H)
wait_http "http://127.0.0.1:$P/-/ready"
load single-process "$H" "http://127.0.0.1:$P/api/v1/push"
kill "$H"; wait "$H" 2>/dev/null || true

export HEARTH_CLUSTER_PROXY=0 HEARTH_CLUSTER_DIR="$WORK/cluster" HEARTH_CLUSTER_FLAGS="${UNLIMITED[*]} --log.level=warn"
trap 'deploy/local/cluster.sh down; cleanup' EXIT
PATH="$BIN:$PATH" deploy/local/cluster.sh up > "$WORK/up.txt"
PUSH=$(awk '/^push:/ {print $2}' "$WORK/up.txt")
pid() { cat "$HEARTH_CLUSTER_DIR/$1.pid"; }
load "distributor+3-ingesters" "$(pid distributor-1),$(pid ingester-1),$(pid ingester-2),$(pid ingester-3)" "$PUSH"

python3 - "$RESULTS" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
single, cluster = rows[0], rows[1]
print()
print("| setup | CPU us/sample | samples/s | peak RSS MiB (sum) |")
print("|---|---|---|---|")
for r in rows:
    print(f"| {r['name']} | {r['cpu_us_per_sample']:.3f} | {r['samples_per_second']:.0f} | {r['peak_rss_bytes']/2**20:.0f} |")
print()
print(f"CPU per sample, cluster / single process: {cluster['cpu_us_per_sample']/single['cpu_us_per_sample']:.2f}x")
PY
