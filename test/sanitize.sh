#!/usr/bin/env bash
# The whole test suite under AddressSanitizer and UndefinedBehaviorSanitizer.
#
# Builds campus_sync with -fsanitize=address,undefined (gcc, warnings are
# still errors), installs it, starts the throwaway cluster with the
# sanitizer runtimes preloaded into the server (PostgreSQL itself is not
# instrumented; only the extension is), runs the same steps as test/run.sh
# (pg_regress, the mock's self-test, the integration suites, the secrets
# check), then fails when
#   - a test failed,
#   - a sanitizer reported anything: ASan writes one report file per process
#     (ASAN_OPTIONS log_path); UBSan's reports go to the server log (with
#     both of GCC's runtimes loaded, UBSan's log_path only sets ASan's),
#   - a server log shows a server process killed by a signal, or one that
#     died without cleaning up (an ASan error aborts the backend: SIGABRT).
# The server logs are the suites' cluster's and those of the clusters the
# suites start themselves (test/integration/cluster.py starts them through
# the same wrapper, so they run with the same runtimes): cs_server_logs.
# Last, a self-check proves the setup reports errors: a throwaway library
# built with the same flags (test/sanitize/selfcheck.c, not part of the
# extension) is LOADed into a session; it must produce an ASan
# heap-buffer-overflow report, a UBSan signed-overflow report and a backend
# killed by signal 6, found by the same scans.  Without that, the run fails.
#
#   ./test/sanitize.sh                              # about 9 minutes
#   CS_SANITIZE_SELFCHECK_ONLY=1 ./test/sanitize.sh # the self-check alone
#   CS_KEEP_RUN_DIR=1 ./test/sanitize.sh            # keeps the reports
#
# Limits: the extension's palloc'd memory comes from PostgreSQL's memory
# contexts (large malloc'd blocks), so ASan sees overflows of malloc'd
# memory (libcurl transfers, response buffers, cJSON), of the extension's
# stack and globals, and use after free() -- not an overrun inside a palloc
# chunk.  Leak detection is off: the server never frees at exit.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
# and no instrumented object is left for a plain `make install` to pick up
# (the installed library is replaced by the next test/run.sh, demo or bench)
trap 'cs_cleanup; rm -f "$CS_ROOT"/campus_sync.so "$CS_ROOT"/src/*.o "$CS_ROOT"/src/*.bc' EXIT

SAN_CFLAGS="-fsanitize=address,undefined -fno-omit-frame-pointer -g"
status=0

# cs_setup's steps, with the sanitizer's packages, flags and server environment
cs_take_install_lock
started=$SECONDS                                 # not counting the wait for the lock
cs_ensure_packages
cs_ensure_packages libasan8 libubsan1            # gcc 12's sanitizer runtimes
CS_EXTRA_CFLAGS=$SAN_CFLAGS
cs_build_install
if ! readelf -d "$CS_ROOT/campus_sync.so" | grep -q 'NEEDED.*libasan' ||
   ! cmp -s "$CS_ROOT/campus_sync.so" "$("$PG_BIN/pg_config" --pkglibdir)/campus_sync.so"; then
  echo "FAIL: the installed campus_sync.so is not the instrumented build" >&2
  exit 1
fi
RUN_DIR=$(mktemp -d /tmp/campus_sync.XXXXXX)
chmod 755 "$RUN_DIR"

SAN_DIR=$RUN_DIR/sanitizer
REPORTS=$SAN_DIR/reports                         # written by the server
mkdir -p "$REPORTS" "$SAN_DIR/suite-reports"
chown postgres: "$REPORTS"
chmod 755 "$SAN_DIR"
LIBASAN=$(realpath "$(gcc -print-file-name=libasan.so)")
LIBUBSAN=$(realpath "$(gcc -print-file-name=libubsan.so)")
[ -f "$LIBASAN" ] && [ -f "$LIBUBSAN" ] || { echo "FAIL: gcc's libasan or libubsan not found" >&2; exit 1; }
gcc -O2 -Wall -Wextra -Werror -fPIC -shared -o "$SAN_DIR/preload.so" "$CS_ROOT/test/sanitize/preload.c"
gcc $SAN_CFLAGS -O2 -fPIC -shared -I"$("$PG_BIN/pg_config" --includedir-server)" \
  -o "$SAN_DIR/selfcheck.so" "$CS_ROOT/test/sanitize/selfcheck.c"
chmod 755 "$SAN_DIR"/*.so

# libasan first (it must interpose malloc before anything else), then the
# fixes of preload.c (which must come before libubsan's defaults).  The
# same log_path for both: UBSan, when it starts, sets ASan's too.
CS_SERVER_ENV=(
  "LD_PRELOAD=$LIBASAN $SAN_DIR/preload.so $LIBUBSAN"
  "ASAN_OPTIONS=detect_leaks=0:verify_asan_link_order=0:abort_on_error=1:halt_on_error=1:print_legend=0:log_path=$REPORTS/report"
  "UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=0:log_path=$REPORTS/report"
)
cs_start_mock
cs_start_cluster

# the server really runs with the runtimes: its environment and its mappings
postmaster_has_asan() {
  local pid
  pid=$(head -1 "$PGDATA_DIR/postmaster.pid")
  tr '\0' '\n' </proc/"$pid"/environ | grep -q "^LD_PRELOAD=$LIBASAN" &&
    grep -q libasan /proc/"$pid"/maps
}
if ! postmaster_has_asan; then
  echo "FAIL: the postmaster does not run with libasan preloaded" >&2
  exit 1
fi
cs_log "server started with $(basename "$LIBASAN") and $(basename "$LIBUBSAN") preloaded ($((SECONDS - started)) s)"

# Sanitizer output and crashes since byte $1 of each server log given (all
# of them, cs_server_logs, when none is), and report files in $REPORTS;
# prints them, and returns non-zero when there are any.
SAN_LOG_RE='runtime error: |AddressSanitizer|UndefinedBehaviorSanitizer|LeakSanitizer'
# signal 9 is the tests' own kill -9 (crash and interruption tests)
CRASH_RE='terminated by signal ([0-8]|[1-9][0-9])\b|exited with exit code'
# but a background worker's exit code 1 is its ordinary end (SIGTERM, a fast
# shutdown: die() -> proc_exit(1)), which the postmaster logs at LOG too
BGW_END_RE='background worker "[^"]*" \(PID [0-9]+\) exited with exit code 1$'
scan() {
  local from=$1 found=0 f log name logs=("${@:2}")
  [ ${#logs[@]} -gt 0 ] || mapfile -t logs < <(cs_server_logs)
  for f in "$REPORTS"/*; do
    [ -e "$f" ] || continue
    found=1
    echo "---- sanitizer report $(basename "$f")"
    cat "$f"
  done
  for f in "${logs[@]}"; do
    log=$(tail -c +"$((from + 1))" "$f")
    name=${f#"$RUN_DIR"/}
    if grep -q -E "$SAN_LOG_RE" <<<"$log"; then
      found=1
      echo "---- sanitizer output in $name, by place (count):"
      grep -E "$SAN_LOG_RE" <<<"$log" | sed 's/^[0-9-]* [0-9:.]* [A-Z]* \[[0-9]*\] //' | sort | uniq -c | sort -rn
      echo "---- the first of each, with its stack:"
      awk -v re="$SAN_LOG_RE" '
        $0 ~ re { key = $0; show = !(key in seen); seen[key] = 1; if (show) print; next }
        show && /^    #[0-9]/ { print; next }
        { show = 0 }' <<<"$log"
    fi
    if grep -E "$CRASH_RE" <<<"$log" | grep -q -v -E "$BGW_END_RE"; then
      found=1
      echo "---- server processes that crashed, in $name:"
      # each with the line after it (the query it was running)
      awk -v lines="$(grep -n -E "$CRASH_RE" <<<"$log" | grep -v -E "$BGW_END_RE" | cut -d: -f1)" '
        BEGIN { n = split(lines, l, "\n"); for (i = 1; i <= n; i++) crashed[l[i]] = 1 }
        crashed[NR] { print; after = 1; next }
        after { print; print "--"; after = 0 }' <<<"$log"
    fi
  done
  return $found
}

if [ -z "${CS_SANITIZE_SELFCHECK_ONLY:-}" ]; then
  suite_started=$SECONDS
  export CS_SANITIZED=1                         # memory bounds do not apply (helpers.py)
  cs_run_suites || status=1
  suite_seconds=$((SECONDS - suite_started))

  cs_log "sanitizer reports and crashes"
  if ! scan 0; then
    echo "FAIL: the sanitizers reported errors, or a server process crashed (above)"
    status=1
  else
    echo "ok: no sanitizer report, no server process crashed"
  fi
  # out of the self-check's way
  find "$REPORTS" -mindepth 1 -exec mv -t "$SAN_DIR/suite-reports" {} +
  # the suite restarts the server (a crash test): it must still be sanitized
  if ! postmaster_has_asan; then
    echo "FAIL: after the suite the postmaster no longer runs with libasan preloaded"
    status=1
  fi
fi

cs_log "self-check: a deliberate heap-buffer-overflow and signed overflow in a LOADed library"
for _ in $(seq 1 300); do          # after a crash the server recovers first
  "${PSQL[@]}" -c 'SELECT 1' >/dev/null 2>&1 && break
  sleep 0.1
done
mark=$(stat -c %s "$RUN_DIR/postgres.log")
"${PSQL[@]}" -c "LOAD '$SAN_DIR/selfcheck.so'" >"$SAN_DIR/selfcheck.out" 2>&1 && loaded=1 || loaded=0
for _ in $(seq 1 100); do          # the postmaster logs the backend's end
  tail -c +"$((mark + 1))" "$RUN_DIR/postgres.log" | grep -q 'terminated by signal' && break
  sleep 0.1
done
selfcheck=$(scan "$mark" "$RUN_DIR/postgres.log" || true)
if [ $loaded = 0 ] &&
   grep -q -E 'ERROR: AddressSanitizer: heap-buffer-overflow' <<<"$selfcheck" &&
   grep -q -E 'in _PG_init .*selfcheck\.c:' <<<"$selfcheck" &&
   grep -q -E 'selfcheck\.c:[0-9]+:[0-9]+: runtime error: signed integer overflow' <<<"$selfcheck" &&
   grep -q -E 'terminated by signal 6' <<<"$selfcheck"; then
  echo "ok: the scans found the self-check's three errors:"
  grep -m1 -o 'AddressSanitizer: heap-buffer-overflow.*' <<<"$selfcheck" | sed 's/ on address.*//; s/^/    /'
  grep -m1 -o 'in _PG_init .*selfcheck\.c:[0-9]*' <<<"$selfcheck" | sed 's/^/      /'
  grep -m1 -o '[^ /]*selfcheck\.c:[0-9:]* runtime error: .*' <<<"$selfcheck" | sed 's/^/    UBSan: /'
  grep -m1 -o 'server process .*terminated by signal 6.*' <<<"$selfcheck" | sed 's/^/    /'
else
  echo "FAIL: the self-check's errors were not all reported: this run proves nothing. What it saw:"
  cat "$SAN_DIR/selfcheck.out"
  echo "$selfcheck"
  status=1
fi

cs_log "sanitizer run: $((SECONDS - started)) s after the install lock${suite_seconds:+, of which the suite $suite_seconds s}"
[ $status = 0 ] && cs_log "all tests passed under the sanitizers" || cs_log "SANITIZER RUN FAILED"
exit $status
