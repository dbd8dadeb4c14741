#!/usr/bin/env bash
# Query latency over 7 days of history served by a store gateway, cold and warm, with
# VictoriaMetrics 1.79 holding the same data as the reference, in one run.
#   1. hearth-loadgen backfills SERIES node_exporter-like series, 7 days at 15 s, into
#      Hearth (shipping 2 h blocks to a filesystem bucket as it goes) and into
#      VictoriaMetrics;
#   2. Hearth's head is flushed; `--target=compactor` merges the blocks into 24 h ones
#      and writes the bucket index;
#   3. a store gateway starts on the bucket (ready time printed) and a fresh Hearth
#      reads history from it over gRPC;
#   4. each query runs once on the cold gateway (no labels file or chunk page read yet;
#      the OS page cache is warm, as the bucket is a local directory), then 5 times warm
#      (median); beside it the median of 5 from a Hearth reading the same bucket
#      in-process (the cost of the gRPC hop) and from VictoriaMetrics (its rollup cache
#      off, so repeated queries are computed, not served from cache).
#
#   benches/gateway_latency.sh [SERIES]     (default: 1000)
set -euo pipefail
cd "$(dirname "$0")/.."
SERIES=${1:-1000}
DAYS=7
ROUNDS=$(( DAYS * 24 * 240 ))
. benches/lib.sh
DAY_MS=86400000
START_MS=$(( ( $(date +%s) * 1000 - (DAYS + 1) * DAY_MS ) / DAY_MS * DAY_MS ))
load() { "$BIN/hearth-loadgen" --name "$1" --url "$2" --series "$SERIES" --rounds "$ROUNDS" --concurrency 2 --start-ms "$START_MS" >/dev/null; }
common=(--blocks-storage.filesystem.dir="$WORK/bucket" --log.level=warn)

# 1. Backfill.
P=$(port); mkdir -p "$WORK/ingest"
"$BIN/hearth" "${UNLIMITED[@]}" --web.listen-address=127.0.0.1:$P --storage.path="$WORK/ingest" "${common[@]}" \
  --blocks-storage.tsdb.ship-interval=2s --compactor.compaction-interval=24h & H=$!; PIDS+=($H)
wait_http "http://127.0.0.1:$P/-/ready"
t0=$(date +%s); load hearth "http://127.0.0.1:$P/api/v1/push"
curl -sf -X POST "http://127.0.0.1:$P/ingester/flush" >/dev/null
echo "hearth: backfilled and shipped in $(( $(date +%s) - t0 )) s"
kill $H; wait $H 2>/dev/null || true

VP=$(port); mkdir -p "$WORK/vm"
victoria-metrics -storageDataPath="$WORK/vm" -httpListenAddr=127.0.0.1:$VP -retentionPeriod=100y \
  -loggerLevel=ERROR -search.latencyOffset=0s -search.disableCache 2>"$WORK/vm.log" & PIDS+=($!)
wait_http "http://127.0.0.1:$VP/health"
load victoria-metrics "http://127.0.0.1:$VP/api/v1/write"
curl -sf "http://127.0.0.1:$VP/internal/force_flush" >/dev/null; sleep 2

# 2. Compaction and the bucket index.
P=$(port)
"$BIN/hearth" "${UNLIMITED[@]}" --target=compactor --web.listen-address=127.0.0.1:$P --storage.path="$WORK/c" "${common[@]}" & C=$!; PIDS+=($C)
wait_http "http://127.0.0.1:$P/-/ready"
for _ in $(seq 1 600); do
  curl -sf "http://127.0.0.1:$P/metrics" | grep -q '^hearth_compactor_runs_total [1-9]' && break; sleep 1
done
echo "compactor: $(curl -sf "http://127.0.0.1:$P/metrics" | grep -E '^hearth_compactor_(runs|blocks_written)_total')" | tr '\n' ' '; echo
kill $C; wait $C 2>/dev/null || true

# 3. A store gateway and a querier.
GP=$(port); GG=$(port); QP=$(port)
t0=$(date +%s%N)
"$BIN/hearth" "${UNLIMITED[@]}" --target=store-gateway --web.listen-address=127.0.0.1:$GP --storage.path="$WORK/gw" "${common[@]}" \
  --store-gateway.sharding-ring.members=gw-1=127.0.0.1:$GG --server.grpc-listen-address=127.0.0.1:$GG & PIDS+=($!)
wait_http "http://127.0.0.1:$GP/-/ready"
echo "store gateway: ready in $(( ($(date +%s%N) - t0) / 1000000 )) ms with $(curl -sf "http://127.0.0.1:$GP/metrics" | grep '^hearth_bucket_store_blocks ' | cut -d' ' -f2) blocks"
"$BIN/hearth" "${UNLIMITED[@]}" --web.listen-address=127.0.0.1:$QP --storage.path="$WORK/q" "${common[@]}" \
  --store-gateway.sharding-ring.members=gw-1=127.0.0.1:$GG --compactor.compaction-interval=24h & PIDS+=($!)
wait_http "http://127.0.0.1:$QP/-/ready"
# The same bucket read in-process (no gateway, no gRPC), for the cost of the hop.
IP=$(port)
"$BIN/hearth" "${UNLIMITED[@]}" --web.listen-address=127.0.0.1:$IP --storage.path="$WORK/i" "${common[@]}" --compactor.compaction-interval=24h & PIDS+=($!)
wait_http "http://127.0.0.1:$IP/-/ready"
sleep 1

# 4. Queries.
python3 - "$QP" "$IP" "$VP" "$START_MS" "$ROUNDS" <<'PY'
import json, statistics, sys, time, urllib.parse, urllib.request
qp, ip, vp, start_ms, rounds = sys.argv[1:]
start = int(start_ms) / 1000 + 600
end = int(start_ms) / 1000 + int(rounds) * 15
queries = [
    ("sum by (job) (rate(node_cpu_seconds_total[5m]))", 3600),
    ("max_over_time(node_memory_MemAvailable_bytes[1h])", 3600),
    ("topk(5, rate(node_network_receive_bytes_total[1h]))", 21600),
    ("count({__name__=~\".+\"})", 86400),
]
def run(port, q, step):
    url = f"http://127.0.0.1:{port}/api/v1/query_range?" + urllib.parse.urlencode(
        {"query": q, "start": start, "end": end, "step": step})
    t = time.perf_counter()
    body = json.load(urllib.request.urlopen(url, timeout=600))
    took = time.perf_counter() - t
    assert body["status"] == "success", body
    return took, sum(len(r["values"]) for r in body["data"]["result"])
print("\n| query (7 days) | step | points (Hearth / VM) | cold gateway | warm gateway | in-process bucket store | VictoriaMetrics | warm gateway / VM |")
print("|---|---|---|---|---|---|---|---|")
for q, step in queries:
    cold, points = run(qp, q, step)
    warm = statistics.median(run(qp, q, step)[0] for _ in range(5))
    run(ip, q, step)
    local = statistics.median(run(ip, q, step)[0] for _ in range(5))
    _, vm_points = run(vp, q, step)
    vm = statistics.median(run(vp, q, step)[0] for _ in range(5))
    print(f"| `{q}` | {step}s | {points} / {vm_points} | {cold*1000:.0f} ms | {warm*1000:.0f} ms | {local*1000:.0f} ms | {vm*1000:.0f} ms | {warm/vm:.2f}x |")
PY
