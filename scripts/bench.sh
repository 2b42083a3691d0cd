#!/usr/bin/env bash
# drydock's benchmarks: `bash scripts/bench.sh <benchmark>` (e.g. `api`); see BENCHMARKS.md.
# Installs the load generator if missing, builds the release binaries, starts a private
# PostgreSQL cluster (stopped whatever happens), and runs target/release/drydock-bench.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ $# -eq 0 ]; then
  echo "usage: bash scripts/bench.sh <benchmark> (run 'target/release/drydock-bench --help' for the list)" >&2
  exit 2
fi

if ! command -v wrk >/dev/null 2>&1; then
  echo "wrk not found; installing it from Debian" >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >&2
fi

cargo build --release -p drydock -p drydock-bench

source scripts/postgres-cluster.sh
trap pg_cluster_stop EXIT
pg_cluster_start

# The binaries are where cargo put them (CARGO_TARGET_DIR when set); drydock-bench finds
# drydock there too.
target="${CARGO_TARGET_DIR:-target}"
"$target/release/drydock-bench" "$@"
