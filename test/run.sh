#!/usr/bin/env bash
# Runs every test: builds and installs campus_sync (warnings are errors),
# starts a throwaway cluster and the mock APIs, runs the pg_regress suite
# (sql/, expected/) and the Python integration suites (test/integration/),
# then checks that no secret reached the server log.  Exits non-zero when
# anything fails.  Needs root (apt-get, make install) or sudo.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
trap cs_cleanup EXIT

cs_setup
status=0

cs_log "pg_regress suite"
if ! make -C "$CS_ROOT" -s installcheck PG_CONFIG=$PG_BIN/pg_config; then
  [ -f "$CS_ROOT/regression.diffs" ] && cat "$CS_ROOT/regression.diffs"
  status=1
fi

cs_log "mock API self-test"
if ! "$SYS_PYTHON" "$CS_ROOT/test/mock_selftest.py" >"$RUN_DIR/mock_selftest.log" 2>&1; then
  cat "$RUN_DIR/mock_selftest.log"
  status=1
else
  echo "ok: $(grep -c '^ok' "$RUN_DIR/mock_selftest.log") checks of the mock passed"
fi

cs_log "integration suites"
export MOCK_API MOCK_CONTROL MOCK_TLS PGHOST PGPORT PGUSER PG_BIN PGDATA_DIR RUN_DIR
if ! "$SYS_PYTHON" "$CS_ROOT/test/integration/run.py"; then
  status=1
fi

cs_log "secrets in the server log"
if grep -n -E -f "$CS_ROOT/test/secrets.txt" "$RUN_DIR/postgres.log"; then
  echo "FAIL: a secret appears in the server log (lines above)"
  status=1
else
  echo "ok: none of the test secrets appears in the server log"
fi

[ $status = 0 ] && cs_log "all tests passed" || cs_log "TESTS FAILED"
exit $status
