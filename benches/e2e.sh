#!/usr/bin/env bash
# End-to-end ingest benchmark: Hearth, Prometheus 2.42 and VictoriaMetrics 1.79 (Debian
# packages) take the same load from hearth-loadgen in one run, one after the other, on
# loopback. Prints one JSON line per server and a markdown table with ratios.
#
#   benches/e2e.sh [SERIES] [ROUNDS] [CONCURRENCY]     (defaults: 100000 20 4)
#
# HEARTH_BASELINE_BIN=<path of another hearth binary> adds it to the same run, first, as
# `hearth-baseline` (an earlier build to compare with), with its ratio to this build.
# REPEAT=<n> runs every server n times, interleaved (baseline, hearth, Prometheus,
# VictoriaMetrics, then again), and reports each one's median run by samples/s: on a
# shared machine one run of a few seconds can be 20% off either way.
set -euo pipefail
cd "$(dirname "$0")/.."
SERIES=${1:-100000}
ROUNDS=${2:-20}
CONC=${3:-4}
. benches/lib.sh
START_MS=$(( ($(date +%s) - ROUNDS * 15) * 1000 ))
RESULTS="$WORK/results.jsonl"
REPEAT=${REPEAT:-1}

run() { # name pid url data flush
  "$BIN/hearth-loadgen" --name "$1" --pid "$2" --url "$3" --data-dir "$4" ${5:+--flush-url "$5"} \
    --series "$SERIES" --rounds "$ROUNDS" --concurrency "$CONC" --start-ms "$START_MS" | tee -a "$RESULTS"
  kill "$2"; wait "$2" 2>/dev/null || true
}

for _ in $(seq 1 "$REPEAT"); do
  if [ -n "${HEARTH_BASELINE_BIN:-}" ]; then
    P=$(port); rm -rf "$WORK/baseline"; mkdir -p "$WORK/baseline"
    "$HEARTH_BASELINE_BIN" "${UNLIMITED[@]}" --web.listen-address=127.0.0.1:$P --server.grpc-listen-address=127.0.0.1:$(port) \
      --storage.path="$WORK/baseline" --log.level=warn & HB=$!; PIDS+=($HB)
    wait_http "http://127.0.0.1:$P/-/ready"
    run hearth-baseline $HB "http://127.0.0.1:$P/api/v1/push" "$WORK/baseline" ""
  fi

  P=$(port); rm -rf "$WORK/hearth"; mkdir -p "$WORK/hearth"
  "$BIN/hearth" "${UNLIMITED[@]}" --web.listen-address=127.0.0.1:$P --server.grpc-listen-address=127.0.0.1:$(port) \
    --storage.path="$WORK/hearth" --log.level=warn & H=$!; PIDS+=($H)
  wait_http "http://127.0.0.1:$P/-/ready"
  run hearth $H "http://127.0.0.1:$P/api/v1/push" "$WORK/hearth" ""

  P=$(port); rm -rf "$WORK/prom"; mkdir -p "$WORK/prom"
  printf 'global:\n  scrape_interval: 1h\n' > "$WORK/prom.yml"
  prometheus --config.file="$WORK/prom.yml" --storage.tsdb.path="$WORK/prom" --web.listen-address=127.0.0.1:$P \
    --web.enable-remote-write-receiver --log.level=warn 2>"$WORK/prom.log" & PR=$!; PIDS+=($PR)
  wait_http "http://127.0.0.1:$P/-/ready"
  run prometheus $PR "http://127.0.0.1:$P/api/v1/write" "$WORK/prom" ""

  P=$(port); rm -rf "$WORK/vm"; mkdir -p "$WORK/vm"
  victoria-metrics -storageDataPath="$WORK/vm" -httpListenAddr=127.0.0.1:$P -loggerLevel=ERROR 2>"$WORK/vm.log" & VM=$!; PIDS+=($VM)
  wait_http "http://127.0.0.1:$P/health"
  run victoria-metrics $VM "http://127.0.0.1:$P/api/v1/write" "$WORK/vm" "http://127.0.0.1:$P/internal/force_flush"
done

python3 - "$RESULTS" <<'PY'
import json, sys
runs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
# Each server's median run by samples/s (the only run, without REPEAT).
names = list(dict.fromkeys(r["name"] for r in runs))
by = {}
for n in names:
    mine = sorted((r for r in runs if r["name"] == n), key=lambda r: r["samples_per_second"])
    by[n] = mine[len(mine) // 2]
rows = [by[n] for n in names]
vm = by.get("victoria-metrics")
print()
print("| server | samples/s | CPU µs/sample | peak RSS MiB | disk bytes/sample | written bytes/sample | push p50 / p99 ms |")
print("|---|---|---|---|---|---|---|")
for r in rows:
    w = r.get('written_bytes_per_sample')
    print(f"| {r['name']} | {r['samples_per_second']:,.0f} | {r['cpu_us_per_sample']:.3f} | {r['peak_rss_bytes']/2**20:,.0f} | {r['disk_bytes_per_sample']:.2f} | "
          f"{'-' if w is None else f'{w:.2f}'} | {r.get('push_p50_ms') or 0:.1f} / {r.get('push_p99_ms') or 0:.1f} |")
if "hearth-baseline" in by and "hearth" in by:
    h, b = by["hearth"], by["hearth-baseline"]
    print()
    print(f"Hearth / baseline: samples/s {h['samples_per_second']/b['samples_per_second']:.2f}x, "
          f"CPU per sample {h['cpu_us_per_sample']/b['cpu_us_per_sample']:.2f}x, "
          f"peak RSS {h['peak_rss_bytes']/b['peak_rss_bytes']:.2f}x")
if vm and "hearth" in by:
    h = by["hearth"]
    print()
    print(f"Hearth / VictoriaMetrics: CPU per sample {h['cpu_us_per_sample']/vm['cpu_us_per_sample']:.2f}x, "
          f"samples/s {h['samples_per_second']/vm['samples_per_second']:.2f}x, "
          f"peak RSS {h['peak_rss_bytes']/vm['peak_rss_bytes']:.2f}x, "
          f"disk bytes/sample {h['disk_bytes_per_sample']/vm['disk_bytes_per_sample']:.2f}x")
    if "prometheus" in by:
        p = by["prometheus"]
        print(f"Hearth / Prometheus: CPU per sample {h['cpu_us_per_sample']/p['cpu_us_per_sample']:.2f}x, "
              f"samples/s {h['samples_per_second']/p['samples_per_second']:.2f}x, "
              f"peak RSS {h['peak_rss_bytes']/p['peak_rss_bytes']:.2f}x, "
              f"disk bytes/sample {h['disk_bytes_per_sample']/p['disk_bytes_per_sample']:.2f}x")
PY
