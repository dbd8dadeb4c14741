#!/usr/bin/env bash
# A 30-day range query with and without downsampling, in one run: hearth-loadgen
# backfills SERIES node_exporter-like series, 30 days at 15 s, into Hearth (shipping
# 2 h blocks to a filesystem bucket as it goes); `--target=compactor` merges them into
# 24 h blocks and writes their 5 m and 1 h downsampled copies; a fresh Hearth reading
# the bucket answers each query at max_source_resolution=0s (raw), auto and 1h. Prints
# the median of 5 runs (after one warm-up) and the ratio to raw. (With 200 series the
# load generator's data holds two metric families: node_cpu_seconds_total and
# node_network_receive_bytes_total.)
#
#   benches/downsampling.sh [SERIES]     (default: 200)
set -euo pipefail
cd "$(dirname "$0")/.."
SERIES=${1:-200}
DAYS=30
ROUNDS=$(( DAYS * 24 * 240 ))
. benches/lib.sh
DAY_MS=86400000
START_MS=$(( ( $(date +%s) * 1000 - (DAYS + 1) * DAY_MS ) / DAY_MS * DAY_MS ))
common=(--blocks-storage.filesystem.dir="$WORK/bucket" --log.level=warn)

P=$(port); mkdir -p "$WORK/ingest"
"$BIN/hearth" "${UNLIMITED[@]}" --web.listen-address=127.0.0.1:$P --storage.path="$WORK/ingest" "${common[@]}" \
  --blocks-storage.tsdb.ship-interval=2s --compactor.compaction-interval=24h --compactor.downsampling-enabled=false & H=$!; PIDS+=($H)
wait_http "http://127.0.0.1:$P/-/ready"
t0=$(date +%s)
"$BIN/hearth-loadgen" --name hearth --url "http://127.0.0.1:$P/api/v1/push" --series "$SERIES" --rounds "$ROUNDS" \
  --concurrency 2 --start-ms "$START_MS" >/dev/null
curl -sf -X POST "http://127.0.0.1:$P/ingester/flush" >/dev/null
echo "backfilled $(( SERIES * ROUNDS )) samples and shipped them in $(( $(date +%s) - t0 )) s"
kill $H; wait $H 2>/dev/null || true

P=$(port); t0=$(date +%s)
"$BIN/hearth" "${UNLIMITED[@]}" --target=compactor --web.listen-address=127.0.0.1:$P --storage.path="$WORK/c" "${common[@]}" & C=$!; PIDS+=($C)
wait_http "http://127.0.0.1:$P/-/ready"
for _ in $(seq 1 1800); do
  curl -sf "http://127.0.0.1:$P/metrics" | grep -q '^hearth_compactor_runs_total [1-9]' && break; sleep 1
done
echo "compacted and downsampled in $(( $(date +%s) - t0 )) s: $(curl -sf "http://127.0.0.1:$P/metrics" | grep '^hearth_compactor_blocks_written_total')"
kill $C; wait $C 2>/dev/null || true
python3 - "$WORK/bucket/anonymous" <<'PY'
import collections, glob, json, os, sys
res = collections.Counter()
for m in glob.glob(os.path.join(sys.argv[1], "*", "meta.json")):
    if not os.path.exists(os.path.join(os.path.dirname(m), "deletion-mark.json")):
        res[json.load(open(m))["hearth"]["resolution"]] += 1
print("blocks by resolution (ms):", dict(sorted(res.items())))
PY

QP=$(port)
"$BIN/hearth" "${UNLIMITED[@]}" --web.listen-address=127.0.0.1:$QP --storage.path="$WORK/q" "${common[@]}" --compactor.compaction-interval=24h & PIDS+=($!)
wait_http "http://127.0.0.1:$QP/-/ready"

python3 - "$QP" "$START_MS" "$ROUNDS" <<'PY'
import json, statistics, sys, time, urllib.parse, urllib.request
qp, start_ms, rounds = sys.argv[1:]
start = int(start_ms) / 1000 + 3600
end = int(start_ms) / 1000 + int(rounds) * 15
queries = [
    ("sum by (job) (rate(node_cpu_seconds_total[1h]))", 3600),
    ("max by (job) (max_over_time(node_network_receive_bytes_total[6h]))", 21600),
    ("avg(avg_over_time(node_cpu_seconds_total[1d]))", 86400),
]
def run(q, step, res):
    url = f"http://127.0.0.1:{qp}/api/v1/query_range?" + urllib.parse.urlencode(
        {"query": q, "start": start, "end": end, "step": step, "max_source_resolution": res, "stats": "all"})
    t = time.perf_counter()
    body = json.load(urllib.request.urlopen(url, timeout=600))
    took = time.perf_counter() - t
    assert body["status"] == "success", body
    return took, body["data"]["stats"]["samples"]["totalQueryableSamples"], sum(len(r["values"]) for r in body["data"]["result"])
print("\n| query (30 days) | step | resolution | samples read | points | median of 5 | vs raw |")
print("|---|---|---|---|---|---|---|")
for q, step in queries:
    base = None
    for res in ["0s", "auto", "1h"]:
        run(q, step, res)
        times = []
        for _ in range(5):
            took, samples, points = run(q, step, res)
            times.append(took)
        med = statistics.median(times)
        base = base or med
        print(f"| `{q}` | {step // 3600} h | {res} | {samples:,} | {points} | {med*1000:.0f} ms | {med/base:.2f}x |")
PY
