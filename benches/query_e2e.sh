#!/usr/bin/env bash
# End-to-end query latency: Hearth, Prometheus 2.42 and VictoriaMetrics 1.79 (Debian
# packages) hold the same hearth-loadgen data (100k series, 15 s interval) and answer
# the same range queries, one server after the other, in one run. Prints the median of
# 5 runs per query and server, and Hearth's ratio to VictoriaMetrics.
#
#   benches/query_e2e.sh [SERIES] [ROUNDS]      (defaults: 100000 80, i.e. 20 minutes)
set -euo pipefail
cd "$(dirname "$0")/.."
SERIES=${1:-100000}
ROUNDS=${2:-80}
. benches/lib.sh
START_MS=$(( ($(date +%s) - ROUNDS * 15 - 120) * 1000 ))
load() { "$BIN/hearth-loadgen" --name "$1" --url "$2" --series "$SERIES" --rounds "$ROUNDS" --concurrency 4 --start-ms "$START_MS" >/dev/null; }

HP=$(port); mkdir -p "$WORK/hearth"
"$BIN/hearth" "${UNLIMITED[@]}" --web.listen-address=127.0.0.1:$HP --storage.path="$WORK/hearth" --log.level=warn & PIDS+=($!)
wait_http "http://127.0.0.1:$HP/-/ready"; load hearth "http://127.0.0.1:$HP/api/v1/push"

PP=$(port); mkdir -p "$WORK/prom"; printf 'global:\n  scrape_interval: 1h\n' > "$WORK/prom.yml"
prometheus --config.file="$WORK/prom.yml" --storage.tsdb.path="$WORK/prom" --web.listen-address=127.0.0.1:$PP \
  --web.enable-remote-write-receiver --log.level=warn 2>"$WORK/prom.log" & PIDS+=($!)
wait_http "http://127.0.0.1:$PP/-/ready"; load prometheus "http://127.0.0.1:$PP/api/v1/write"

VP=$(port); mkdir -p "$WORK/vm"
victoria-metrics -storageDataPath="$WORK/vm" -httpListenAddr=127.0.0.1:$VP -loggerLevel=ERROR -search.latencyOffset=0s 2>"$WORK/vm.log" & PIDS+=($!)
wait_http "http://127.0.0.1:$VP/health"; load victoria-metrics "http://127.0.0.1:$VP/api/v1/write"
curl -sf "http://127.0.0.1:$VP/internal/force_flush" >/dev/null; sleep 2

python3 - "$HP" "$PP" "$VP" "$START_MS" "$ROUNDS" <<'PY'
import json, statistics, sys, time, urllib.parse, urllib.request
hp, pp, vp, start_ms, rounds = sys.argv[1:]
start = int(start_ms) / 1000 + 6 * 60
end = int(start_ms) / 1000 + int(rounds) * 15
queries = [
    "sum by (job) (rate(node_cpu_seconds_total[5m]))",
    "histogram_quantile(0.99, sum by (job, le) (rate(http_request_duration_seconds_bucket[5m])))",
    "topk(10, rate(node_network_receive_bytes_total[5m]))",
    "count({__name__=~\".+\"})",
]
servers = [("hearth", hp, {}), ("prometheus", pp, {}), ("victoria-metrics", vp, {"nocache": "1"})]
res = {}
for q in queries:
    for name, port, extra in servers:
        params = {"query": q, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": "60", **extra}
        url = f"http://127.0.0.1:{port}/api/v1/query_range?" + urllib.parse.urlencode(params)
        times = []
        for _ in range(5):
            t0 = time.perf_counter()
            body = urllib.request.urlopen(url, timeout=300).read()
            times.append(time.perf_counter() - t0)
            series = len(json.loads(body)["data"]["result"])
        res[(q, name)] = (statistics.median(times), series)
print("| query | hearth ms | prometheus ms | victoria-metrics ms | hearth / VM |")
print("|---|---|---|---|---|")
for q in queries:
    h, p, v = (res[(q, n)] for n, _, _ in servers)
    print(f"| `{q}` | {h[0]*1000:.1f} | {p[0]*1000:.1f} | {v[0]*1000:.1f} | {h[0]/v[0]:.2f}x |")
PY
