#!/usr/bin/env bash
# The demo: a sample people table synced to both mock APIs, first with a
# DBA's ad hoc SELECT (synchronous push), then the main job: a trigger on
# the table queues each change, the background worker sends it at commit.
# Installs what it needs, builds, starts a throwaway cluster (campus_sync
# preloaded, its worker serving the database demo) and the mock APIs,
# cleans up.
set -euo pipefail
. "$(dirname "$0")/../test/lib.sh"
trap cs_cleanup EXIT
cs_setup "shared_preload_libraries = 'campus_sync'" "campus_sync.database = 'demo'" >/dev/null

received() {   # what the mock APIs received since the last call
  "$SYS_PYTHON" - "$MOCK_CONTROL" "$1" <<'PY'
import json, sys, urllib.request
control, since = sys.argv[1], int(sys.argv[2])
for r in json.load(urllib.request.urlopen(f"{control}/_mock/requests?since={since}")):
    body = (r["body"] or "").replace("opscom-test-token-0123456789", "<api token>")
    body = body.replace("pat-test-0123456789abcdef", "<persistent access token>")
    query = "?" + r["query"] if r["query"] else ""
    print(f"  {r['method']:4} {r['path']}{query} -> {r['status']}\n       {body}")
PY
}
seq_now() { curl -s "$MOCK_CONTROL/_mock/stats" | "$SYS_PYTHON" -c 'import json,sys; print(json.load(sys.stdin)["requests_total"])'; }

"$PG_BIN/psql" -X -q -d postgres -c "CREATE DATABASE demo"
run_sql() { "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -d demo -v mock_api="$MOCK_API" -f "$CS_ROOT/demo/$1"; }

run_sql 1_setup.sql
start=$(seq_now)
run_sql 2_adhoc.sql
cs_log "what the mock APIs received"
received "$start"
start=$(seq_now)
run_sql 3_trigger_and_queue.sql
cs_log "what the mock APIs received from the background worker"
received "$start"
