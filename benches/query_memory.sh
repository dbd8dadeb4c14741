#!/usr/bin/env bash
# Peak memory of one query over every series: count({__name__=~".+"}) over SERIES
# series (node_exporter-like, two rounds), answered from the head and, after a flush,
# from blocks. The process' peak RSS is reset (/proc/PID/clear_refs) before each query,
# so each figure is the peak while that query ran; "over" is that peak minus the RSS
# just before the query.
#
#   benches/query_memory.sh [HEARTH_BINARY]      SERIES=1000000 by default
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/lib.sh
HB=${1:-$BIN/hearth}
SERIES=${SERIES:-1000000}
P=$(port)
"$HB" "${UNLIMITED[@]}" --web.listen-address=127.0.0.1:$P --storage.path="$WORK/data" --log.level=warn \
  --query.max-samples=100000000 & H=$!; PIDS+=($H)
wait_http "http://127.0.0.1:$P/-/ready"
NOW=$(date +%s)
"$BIN/hearth-loadgen" --url "http://127.0.0.1:$P/api/v1/push" --series "$SERIES" --rounds 2 \
  --start-ms $(( (NOW - 60) * 1000 )) --concurrency 4 >/dev/null
kb() { awk -v k="$1:" '$1 == k {print $2}' "/proc/$H/status"; }
measure() { # name
  echo 5 > "/proc/$H/clear_refs"
  local before; before=$(kb VmRSS)
  local t0; t0=$(date +%s.%N)
  local out; out=$(curl -sf "http://127.0.0.1:$P/api/v1/query" --data-urlencode 'query=count({__name__=~".+"})' \
    --data-urlencode "time=$((NOW - 30))")
  local t1; t1=$(date +%s.%N)
  local peak; peak=$(kb VmHWM)
  python3 -c "import json,sys; v=json.loads(sys.argv[1])['data']['result'][0]['value'][1]; print(json.dumps({'source': sys.argv[2], 'count': v, 'rss_before_mib': round(int(sys.argv[3])/1024), 'peak_mib': round(int(sys.argv[4])/1024), 'over_mib': round((int(sys.argv[4])-int(sys.argv[3]))/1024), 'seconds': round(float(sys.argv[6])-float(sys.argv[5]),2)}))" \
    "$out" "$1" "$before" "$peak" "$t0" "$t1"
}
measure head
curl -sf -XPOST "http://127.0.0.1:$P/ingester/flush" >/dev/null
measure blocks
