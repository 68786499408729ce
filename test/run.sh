#!/usr/bin/env bash
# Runs every test on every PostgreSQL version within reach: for each of
# CS_PG_VERSIONS (default "15 18"; 15 is Debian 12's, 18 is built once from
# Debian's source into a cache, test/pg_build.sh) it builds and installs
# campus_sync (warnings are errors), starts a throwaway cluster and the mock
# APIs, runs the pg_regress suite (sql/, expected/) and the Python
# integration suites (test/integration/), then checks that no secret
# reached a server log.  For CS_PG_HEADER_VERSIONS (default "17": headers,
# no server that runs here) it compiles against the headers
# (test/build_against.sh).  Then it builds the Debian package and runs
# installcheck against it (test/package.sh; CS_SKIP_PACKAGE=1 skips).
# Prints a version x suite table; exits non-zero when anything fails.
# Needs root (apt-get, make install) or sudo.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

cs_take_install_lock              # held for every version's run
CS_RESULTS=$(mktemp /tmp/campus_sync.results.XXXXXX)
export CS_RESULTS
trap 'rm -f "$CS_RESULTS"' EXIT
status=0

for version in ${CS_PG_VERSIONS-15 18}; do
  # each version in a subshell of its own: its cluster, mock and clean-up
  if ! (CS_PG_MAJOR=$version
        trap cs_cleanup EXIT
        cs_setup
        cs_run_suites); then
    status=1
  fi
  grep -q "^$version " "$CS_RESULTS" || { echo "$version setup FAIL" >>"$CS_RESULTS"; status=1; }
  export CS_SKIP_MOCK_SELFTEST=1
done

for version in ${CS_PG_HEADER_VERSIONS-17}; do
  cs_log "building against PostgreSQL $version's headers"
  if built=$("$CS_ROOT/test/build_against.sh" "$version"); then
    echo "ok: compiled against $built"
    echo "$version build_against_headers ok" >>"$CS_RESULTS"
  else
    echo "$version build_against_headers FAIL" >>"$CS_RESULTS"
    status=1
  fi
done

# the Debian package, built and installed, passes installcheck (15)
if [ -z "${CS_SKIP_PACKAGE:-}" ]; then
  if CS_PG_MAJOR=15 "$CS_ROOT/test/package.sh"; then
    echo "15 debian_package ok" >>"$CS_RESULTS"
  else
    echo "15 debian_package FAIL" >>"$CS_RESULTS"
    status=1
  fi
fi

cs_log "results"
"$SYS_PYTHON" - "$CS_RESULTS" <<'PY'
import collections, sys
results = collections.OrderedDict()
suites = []
for line in open(sys.argv[1]):
    version, suite, result = line.split()
    results.setdefault(version, {})[suite] = result
    if suite not in suites:
        suites.append(suite)
width = max(len(s) for s in suites)
print("| PostgreSQL | " + " | ".join(suites) + " |")
print("|---" * (len(suites) + 1) + "|")
for version, by_suite in results.items():
    print(f"| {version} | " + " | ".join(by_suite.get(s, "-") for s in suites) + " |")
PY

[ $status = 0 ] && cs_log "all tests passed" || cs_log "TESTS FAILED"
exit $status
