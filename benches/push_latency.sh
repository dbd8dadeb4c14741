#!/usr/bin/env bash
# Remote-write latency while a compaction runs in the same process (--target=all), and
# while nothing else does. A head of HOURS hours (SERIES series, 15 s apart) is
# backfilled and flushed into 2 h blocks; the next start of hearth compacts them
# (2h -> 12h -> 24h, downsampling), and hearth-pushprobe runs PROBES senders (as a
# Prometheus' remote-write shards), each sending a 100-series request every 20 ms, until
# that pass ends, then 20 s more with the process idle.
#
#   benches/push_latency.sh [HEARTH_BINARY]    (default: this checkout's release build)
#   SERIES=6000 HOURS=26 PROBES=4 benches/push_latency.sh
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/lib.sh
HB=${1:-$BIN/hearth}
SERIES=${SERIES:-6000}
HOURS=${HOURS:-26}
P=$(port)
D="$WORK/data"
start() {
  "$HB" "${UNLIMITED[@]}" --web.listen-address=127.0.0.1:$P --storage.path="$D" --log.level=warn \
    --compactor.compaction-interval=24h & H=$!; PIDS+=($H)
  wait_http "http://127.0.0.1:$P/-/ready"
}
start
NOW=$(date +%s)
"$BIN/hearth-loadgen" --url "http://127.0.0.1:$P/api/v1/push" --series "$SERIES" \
  --rounds $((HOURS * 240)) --start-ms $(( (NOW - HOURS * 3600) * 1000 )) --concurrency 2 >/dev/null
curl -sf -XPOST "http://127.0.0.1:$P/ingester/flush" >/dev/null
kill -TERM "$H"; wait "$H" 2>/dev/null || true
start   # compacts at start
"$BIN/hearth-pushprobe" --url "http://127.0.0.1:$P/api/v1/push" --seconds 600 --concurrency "${PROBES:-4}" --name during-compaction \
  --stop-url "http://127.0.0.1:$P/metrics"
curl -sf "http://127.0.0.1:$P/metrics" | grep -E '^hearth_compactor_(runs|blocks_written)_total' >&2
"$BIN/hearth-pushprobe" --url "http://127.0.0.1:$P/api/v1/push" --seconds 20 --concurrency "${PROBES:-4}" --name idle
