#!/usr/bin/env bash
# The benchmarks: one command.  Installs what they need (nginx with the echo
# module as the remote, wrk, pgbench), builds and installs campus_sync,
# starts a throwaway cluster tuned only to keep checkpoints out of the way,
# and prints every figure as a ratio to a baseline measured in the same run.
# Usage: bench/run.sh [--quick]   (results also go to bench/results.md;
#        BENCH_ONLY=delivery, worker, memory (the delivered-state memory's
#        reload), rss (private memory across a million deliveries) or
#        trigger (sync_trigger's cost) runs only those figures)
set -euo pipefail
. "$(dirname "$0")/../test/lib.sh"
trap 'cs_cleanup' EXIT

cs_take_install_lock
cs_ensure_packages
cs_ensure_packages nginx-light libnginx-mod-http-echo wrk valgrind
cs_build_install
RUN_DIR=$(mktemp -d /tmp/campus_sync_bench.XXXXXX)
chmod 755 "$RUN_DIR"

# The remote: nginx answering like OPS-COM, at once and after 20 ms.
NGINX_FAST=$(cs_free_port)
NGINX_SLOW=$(cs_free_port)
mkdir -p "$RUN_DIR/nginx"
sed -e "s|@DIR@|$RUN_DIR/nginx|g" -e "s|@FAST@|$NGINX_FAST|g" -e "s|@SLOW@|$NGINX_SLOW|g" \
  "$CS_ROOT/bench/nginx.conf.in" >"$RUN_DIR/nginx/nginx.conf"
nginx -c "$RUN_DIR/nginx/nginx.conf"
# libcurl alone against the same remote: what any libcurl deliverer could do
CURL_FLOOR="$RUN_DIR/curl_floor"
gcc -O2 -Wall -o "$CURL_FLOOR" "$CS_ROOT/bench/curl_floor.c" -lcurl
NGINX_PID=$(cat "$RUN_DIR/nginx/nginx.pid")

# The worker serves bench_worker only, a database of its own: the
# deliver() figures, measured in database bench, never share it.
cs_start_cluster "shared_buffers = 1GB" "max_wal_size = 8GB" "checkpoint_timeout = 30min" \
  "autovacuum = off" "max_connections = 50" \
  "shared_preload_libraries = 'campus_sync'" "campus_sync.database = 'bench_worker'"
export PGHOST PGPORT PGUSER RUN_DIR NGINX_FAST NGINX_SLOW CURL_FLOOR
"$SYS_PYTHON" "$CS_ROOT/bench/bench.py" "$@" | tee "$CS_ROOT/bench/results.md"
