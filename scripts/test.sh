#!/usr/bin/env bash
# The test command: installs what the tests need on a fresh Debian machine (the real
# Prometheus the interop test talks to, moto's S3 server from PyPI for the object
# storage tests), builds the hearth binary the end-to-end tests start, and runs every
# test of the workspace.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v prometheus >/dev/null 2>&1 || need+=(prometheus)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing ${need[*]} (Debian packages) for the interop tests"
  SUDO=""
  [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}"
fi

if ! command -v moto_server >/dev/null 2>&1; then
  echo "installing moto[server] (PyPI) for the S3 tests"
  python3 -m pip install --quiet 'moto[server]'
fi

# A warm target directory outside the clone keeps CI incremental.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/hearth-target}"
# The PromQL corpus from the Prometheus repository, beside the clone (or in the shared
# folder of this workplace); the corpus test fails loudly without it.
if [ -z "${HEARTH_PROMQLTEST_DIR:-}" ]; then
  for d in ../shared/promqltest /work/shared/promqltest; do
    if [ -d "$d" ]; then
      export HEARTH_PROMQLTEST_DIR="$(cd "$d" && pwd)"
      break
    fi
  done
fi

cargo build -p hearth
cargo test --workspace
