#!/usr/bin/env bash
# A private PostgreSQL cluster for tests and benchmarks: a temp dir, a free loopback port,
# trust auth, fsync off. Never touches a system cluster.
#
#   source scripts/postgres-cluster.sh   # defines pg_cluster_start / pg_cluster_stop
#   pg_cluster_start                     # exports TEST_POSTGRES_URL
#   pg_cluster_stop
set -euo pipefail

pg_bin_dir() {
  local d
  d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
  if [ -z "$d" ] || [ ! -x "$d/initdb" ]; then
    echo "PostgreSQL server binaries not found; installing them from Debian" >&2
    apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >&2
    d=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
  fi
  echo "$d"
}

# Runs a command as the cluster's owner: initdb refuses to run as root.
as_pg_owner() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

pg_cluster_start() {
  local bin port
  bin=$(pg_bin_dir)
  PG_CLUSTER_DIR=$(mktemp -d /tmp/drydock-pg.XXXXXX)
  if [ "$(id -u)" = 0 ]; then chown postgres "$PG_CLUSTER_DIR"; fi
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  as_pg_owner "$bin/initdb" -D "$PG_CLUSTER_DIR/data" -A trust -U postgres --no-sync >/dev/null
  as_pg_owner "$bin/pg_ctl" -D "$PG_CLUSTER_DIR/data" -l "$PG_CLUSTER_DIR/server.log" -w -t 60 \
    -o "-p $port -k $PG_CLUSTER_DIR -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c max_connections=400" \
    start >/dev/null
  export PG_CLUSTER_DIR PG_CLUSTER_BIN="$bin"
  export TEST_POSTGRES_URL="postgres://postgres@127.0.0.1:$port/postgres"
  echo "PostgreSQL test cluster: $TEST_POSTGRES_URL ($PG_CLUSTER_DIR)" >&2
}

pg_cluster_stop() {
  if [ -n "${PG_CLUSTER_DIR:-}" ] && [ -d "$PG_CLUSTER_DIR/data" ]; then
    as_pg_owner "$PG_CLUSTER_BIN/pg_ctl" -D "$PG_CLUSTER_DIR/data" -m fast -w stop >/dev/null 2>&1 || true
    rm -rf "$PG_CLUSTER_DIR"
  fi
}
