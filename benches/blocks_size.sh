#!/usr/bin/env bash
# Bytes per sample at rest in long-term storage: the load generator's node_exporter-like
# data (SERIES series, 2 h at 15 s) goes to Hearth, Prometheus 2.42 and VictoriaMetrics
# 1.79 in one run, and the bytes of what each keeps for it are divided by the samples:
#   - Hearth: its bucket after POST /ingester/flush (labels.parquet, chunks.parquet,
#     meta.json), with XOR chunks (the default) and with the decimal-delta encoding;
#   - Prometheus: the 2 h block it cuts from its head (index, chunks, meta.json; the
#     head is pushed past 3 h by one extra sample so it cuts the block);
#   - VictoriaMetrics: its whole data directory (data and indexdb) after force_flush
#     and force_merge.
#
#   benches/blocks_size.sh [SERIES]     (default: 20000)
set -euo pipefail
cd "$(dirname "$0")/.."
SERIES=${1:-20000}
ROUNDS=480
. benches/lib.sh
TWO_H=7200000
START_MS=$(( ( $(date +%s) * 1000 - 4 * TWO_H ) / TWO_H * TWO_H ))
RESULTS="$WORK/results.jsonl"
load() { # name url [flush]
  "$BIN/hearth-loadgen" --name "$1" --url "$2" ${3:+--flush-url "$3"} \
    --series "$SERIES" --rounds "$ROUNDS" --concurrency 2 --start-ms "$START_MS" >/dev/null
}
bytes() { du -sb "$1" | cut -f1; }
SAMPLES=$(( SERIES * ROUNDS ))

# Hearth
P=$(port); mkdir -p "$WORK/hearth"
"$BIN/hearth" "${UNLIMITED[@]}" --web.listen-address=127.0.0.1:$P --storage.path="$WORK/hearth" \
  --blocks-storage.filesystem.dir="$WORK/bucket" --blocks-storage.tsdb.ship-interval=24h --log.level=warn & H=$!; PIDS+=($H)
wait_http "http://127.0.0.1:$P/-/ready"
load hearth "http://127.0.0.1:$P/api/v1/push"
curl -sf -X POST "http://127.0.0.1:$P/ingester/flush" >/dev/null
echo "{\"name\":\"hearth\",\"bytes\":$(bytes "$WORK/bucket"),\"samples\":$SAMPLES}" >> "$RESULTS"
kill $H; wait $H 2>/dev/null || true

# Hearth, decimal-delta sample encoding
P=$(port); mkdir -p "$WORK/hearth-dd"
"$BIN/hearth" "${UNLIMITED[@]}" --web.listen-address=127.0.0.1:$P --storage.path="$WORK/hearth-dd" \
  --blocks-storage.filesystem.dir="$WORK/bucket-dd" --blocks-storage.tsdb.ship-interval=24h \
  --blocks-storage.block-sample-encoding=decimal-delta --log.level=warn & H=$!; PIDS+=($H)
wait_http "http://127.0.0.1:$P/-/ready"
load hearth "http://127.0.0.1:$P/api/v1/push"
curl -sf -X POST "http://127.0.0.1:$P/ingester/flush" >/dev/null
echo "{\"name\":\"hearth-decimal-delta\",\"bytes\":$(bytes "$WORK/bucket-dd"),\"samples\":$SAMPLES}" >> "$RESULTS"
kill $H; wait $H 2>/dev/null || true

# Prometheus
P=$(port); mkdir -p "$WORK/prom"
printf 'global:\n  scrape_interval: 1h\n' > "$WORK/prom.yml"
prometheus --config.file="$WORK/prom.yml" --storage.tsdb.path="$WORK/prom" --web.listen-address=127.0.0.1:$P \
  --web.enable-remote-write-receiver --log.level=warn 2>"$WORK/prom.log" & PR=$!; PIDS+=($PR)
wait_http "http://127.0.0.1:$P/-/ready"
load prometheus "http://127.0.0.1:$P/api/v1/write"
# One sample 3.5 h after the start (for the first series) moves the head past 1.5 block
# ranges: Prometheus then cuts [start, start+2h) into a block at its next compaction
# (every minute).
"$BIN/hearth-loadgen" --name tick --url "http://127.0.0.1:$P/api/v1/write" --series 1 --rounds 1 \
  --start-ms $(( START_MS + 7 * TWO_H / 4 )) >/dev/null
BLOCK=""
for _ in $(seq 1 180); do
  BLOCK=$(find "$WORK/prom" -maxdepth 2 -name meta.json -printf '%h\n' | head -1)
  [ -n "$BLOCK" ] && break; sleep 1
done
[ -n "$BLOCK" ] || { echo "Prometheus cut no block" >&2; exit 1; }
sleep 2
PSAMPLES=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["stats"]["numSamples"])' "$BLOCK/meta.json")
echo "{\"name\":\"prometheus\",\"bytes\":$(bytes "$BLOCK"),\"samples\":$PSAMPLES}" >> "$RESULTS"
kill $PR; wait $PR 2>/dev/null || true

# VictoriaMetrics
P=$(port); mkdir -p "$WORK/vm"
victoria-metrics -storageDataPath="$WORK/vm" -httpListenAddr=127.0.0.1:$P -retentionPeriod=100y -loggerLevel=ERROR 2>"$WORK/vm.log" & VM=$!; PIDS+=($VM)
wait_http "http://127.0.0.1:$P/health"
load victoria-metrics "http://127.0.0.1:$P/api/v1/write" "http://127.0.0.1:$P/internal/force_flush"
curl -sf "http://127.0.0.1:$P/internal/force_merge" >/dev/null || true
sleep 10
echo "{\"name\":\"victoria-metrics\",\"bytes\":$(bytes "$WORK/vm"),\"samples\":$SAMPLES}" >> "$RESULTS"
kill $VM; wait $VM 2>/dev/null || true

python3 - "$RESULTS" "$SERIES" <<'PY'
import json, sys
rows = {r["name"]: r for r in (json.loads(l) for l in open(sys.argv[1]) if l.strip())}
print(f"\n{sys.argv[2]} series, 2 h at 15 s\n")
print("| store | bytes | samples | bytes/sample |")
print("|---|---|---|---|")
bps = {}
for n in ["hearth", "hearth-decimal-delta", "prometheus", "victoria-metrics"]:
    r = rows[n]; bps[n] = r["bytes"] / r["samples"]
    print(f"| {n} | {r['bytes']:,} | {r['samples']:,} | {bps[n]:.3f} |")
for n in ["hearth", "hearth-decimal-delta"]:
    print(f"\n{n} vs VictoriaMetrics: {bps[n]/bps['victoria-metrics']:.2f}x; vs Prometheus: {bps[n]/bps['prometheus']:.2f}x")
PY
