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

cs_run_suites || status=1

[ $status = 0 ] && cs_log "all tests passed" || cs_log "TESTS FAILED"
exit $status
