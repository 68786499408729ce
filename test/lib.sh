# test/lib.sh: shared by the demo, the test runner and the benchmarks.
#
# Installs what is missing (Debian packages), builds and installs the
# extension, and starts a throwaway PostgreSQL 15 cluster (as the postgres
# OS user, on its own socket directory and port) and the mock APIs, all
# under one run directory that cleanup() removes.
#
# Source it from bash with `set -euo pipefail`; call cs_setup, then use
# $PSQL, $PGHOST, $PGPORT, $MOCK_API, $MOCK_CONTROL, $MOCK_TLS, $RUN_DIR.
#
# Optional, for test/sanitize.sh (unset: nothing changes):
#   CS_EXTRA_CFLAGS  compiler flags added to the build (they reach the link
#                    of the shared library too)
#   CS_SERVER_ENV    array of VAR=value put into the server's environment

CS_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# Which PostgreSQL: CS_PG_MAJOR, default 15 (Debian 12's own packages);
# another major is built once from Debian's source into a cache directory
# (test/pg_build.sh) when cs_setup runs.
CS_PG_MAJOR=${CS_PG_MAJOR:-15}
PG_BIN=/usr/lib/postgresql/15/bin
SYS_PYTHON=/usr/bin/python3
CS_PACKAGES=(postgresql-15 postgresql-server-dev-15 libcurl4-openssl-dev libcjson-dev libssl-dev
             pkg-config make gcc curl openssl python3 python3-psycopg2)

# what cs_cleanup stops and removes: only what this script started
unset MOCK_PID NGINX_PID PGDATA_DIR RUN_DIR

cs_log() { printf '\033[1m== %s\033[0m\n' "$*" >&2; }

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

# The server's tools run as postgres, from / (it may not read the caller's cwd).
as_postgres() {
  (cd / && as_root runuser -u postgres -- "$@")
}

# Installs the Debian packages given (default: the project's) that are missing.
cs_ensure_packages() {
  local wanted=("$@") missing=() p
  [ $# -gt 0 ] || wanted=("${CS_PACKAGES[@]}")
  for p in "${wanted[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    cs_log "installing Debian packages: ${missing[*]}"
    as_root apt-get update -qq >&2
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
}

# The Debian archive the machine's own apt sources name (read from them;
# no registry's host name is written in the repository).
cs_debian_mirror() {
  local mirror
  mirror=$( { grep -hs '^URIs:' /etc/apt/sources.list.d/*.sources | awk '{print $2}';
              grep -hs '^deb ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list | awk '{print $2}'; } |
            grep -v -- '-security' | grep -m1 '/debian/\?$' || true)
  [ -n "$mirror" ] || { echo "no Debian mirror found in the machine's apt sources" >&2; return 1; }
  echo "$mirror"
}

# An apt configuration of our own in directory $1 whose only source is the
# line $2 (the machine's sources are not changed); sets CS_APT_OPTS for
# apt-get and updates its lists.
cs_private_apt() {
  local dir=$1
  mkdir -p "$dir/lists/partial" "$dir/archives/partial"
  echo "$2" >"$dir/sources.list"
  CS_APT_OPTS=(-o "Dir::Etc::SourceList=$dir/sources.list" -o Dir::Etc::SourceParts=/dev/null
               -o "Dir::State::Lists=$dir/lists" -o "Dir::Cache::Archives=$dir/archives"
               -o APT::Sandbox::User=root)
  apt-get "${CS_APT_OPTS[@]}" -qq update >&2
}

# Builds with -Werror (a warning fails the build) and installs.
cs_build_install() {
  cs_log "building campus_sync${CS_EXTRA_CFLAGS:+ with $CS_EXTRA_CFLAGS}"
  make -C "$CS_ROOT" -s clean >/dev/null
  make -C "$CS_ROOT" -s EXTRA_CFLAGS="-Werror${CS_EXTRA_CFLAGS:+ $CS_EXTRA_CFLAGS}" PG_CONFIG=$PG_BIN/pg_config
  as_root make -C "$CS_ROOT" -s install PG_CONFIG=$PG_BIN/pg_config >/dev/null
}

cs_free_port() {
  "$SYS_PYTHON" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

cs_cleanup() {
  set +e
  if [ -n "${PGDATA_DIR:-}" ] && [ -f "$PGDATA_DIR/postmaster.pid" ]; then
    as_postgres "$PG_BIN/pg_ctl" -D "$PGDATA_DIR" -m immediate stop >/dev/null 2>&1
  fi
  [ -n "${MOCK_PID:-}" ] && kill "$MOCK_PID" 2>/dev/null && wait "$MOCK_PID" 2>/dev/null
  [ -n "${NGINX_PID:-}" ] && kill "$NGINX_PID" 2>/dev/null
  if [ -n "${RUN_DIR:-}" ] && [ -z "${CS_KEEP_RUN_DIR:-}" ]; then rm -rf "$RUN_DIR"; fi
}

# A self-signed certificate for 127.0.0.1, to test TLS verification.
cs_make_cert() {
  openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=127.0.0.1 \
    -addext subjectAltName=IP:127.0.0.1 \
    -keyout "$RUN_DIR/mock.key" -out "$RUN_DIR/mock.crt" >/dev/null 2>&1
  chmod 644 "$RUN_DIR/mock.crt" "$RUN_DIR/mock.key"
}

cs_start_mock() {
  local ready=$RUN_DIR/mock.ready i
  cs_make_cert
  "$SYS_PYTHON" "$CS_ROOT/test/mock_api.py" --ready-file "$ready" \
    --tls-port 0 --cert "$RUN_DIR/mock.crt" --key "$RUN_DIR/mock.key" \
    >"$RUN_DIR/mock.log" 2>&1 &
  MOCK_PID=$!
  for i in $(seq 1 100); do [ -s "$ready" ] && break; sleep 0.1; done
  [ -s "$ready" ] || { cat "$RUN_DIR/mock.log" >&2; echo "the mock API did not start" >&2; return 1; }
  MOCK_API=http://127.0.0.1:$("$SYS_PYTHON" -c 'import json,sys; print(json.load(open(sys.argv[1]))["api"])' "$ready")
  MOCK_CONTROL=http://127.0.0.1:$("$SYS_PYTHON" -c 'import json,sys; print(json.load(open(sys.argv[1]))["control"])' "$ready")
  MOCK_TLS=https://127.0.0.1:$("$SYS_PYTHON" -c 'import json,sys; print(json.load(open(sys.argv[1]))["tls"])' "$ready")
  export MOCK_API MOCK_CONTROL MOCK_TLS
}

# initdb + start; extra postgresql.conf lines may be given as arguments.
cs_start_cluster() {
  PGDATA_DIR=$RUN_DIR/data
  PGHOST=$RUN_DIR
  PGPORT=$(cs_free_port)
  PGUSER=postgres
  export PGHOST PGPORT PGUSER
  mkdir -p "$PGDATA_DIR"
  # the server (postgres) writes its socket and log here
  chown postgres: "$RUN_DIR" "$PGDATA_DIR"
  as_postgres "$PG_BIN/initdb" -D "$PGDATA_DIR" -U postgres -E UTF8 \
    --locale=C.UTF-8 --auth=trust >"$RUN_DIR/initdb.log" 2>&1 \
    || { cat "$RUN_DIR/initdb.log" >&2; return 1; }
  {
    echo "port = $PGPORT"
    echo "unix_socket_directories = '$RUN_DIR'"
    echo "listen_addresses = ''"
    echo "max_connections = 50"
    echo "logging_collector = off"
    echo "test.mock_api = '${MOCK_API:-}'"
    echo "test.mock_control = '${MOCK_CONTROL:-}'"
    echo "test.mock_tls = '${MOCK_TLS:-}'"
    echo "test.ca_file = '$RUN_DIR/mock.crt'"
    for line in "$@"; do echo "$line"; done
  } >>"$PGDATA_DIR/postgresql.conf"
  local exec_opt=()
  if [ -n "${CS_SERVER_ENV+set}" ]; then
    # Not through our own environment: runuser and pg_ctl would pass it on
    # (and preload LD_PRELOAD into themselves), but a test's own `pg_ctl
    # restart` would start the server without it.  pg_ctl -p runs a wrapper
    # that sets it; exec -a keeps the wrapper's path as argv[0], so
    # postmaster.opts names the wrapper and any restart runs it again
    # (postgres then finds its share and lib directories where it was built
    # to, not next to argv[0]).
    mkdir "$RUN_DIR/server-bin"
    { echo '#!/bin/bash'
      printf 'export %q\n' "${CS_SERVER_ENV[@]}"
      printf 'exec -a "$0" %q "$@"\n' "$PG_BIN/postgres"
    } >"$RUN_DIR/server-bin/postgres"
    chmod 755 "$RUN_DIR/server-bin" "$RUN_DIR/server-bin/postgres"
    exec_opt=(-p "$RUN_DIR/server-bin/postgres")
  fi
  as_postgres "$PG_BIN/pg_ctl" -D "$PGDATA_DIR" -l "$RUN_DIR/postgres.log" "${exec_opt[@]}" -w start >/dev/null \
    || { cat "$RUN_DIR/postgres.log" >&2; return 1; }
  PSQL=("$PG_BIN/psql" -X -v ON_ERROR_STOP=1 -q -d postgres)
}

cs_restart_cluster() {
  as_postgres "$PG_BIN/pg_ctl" -D "$PGDATA_DIR" -l "$RUN_DIR/postgres.log" -w -m "${1:-fast}" restart >/dev/null
}

# The extension installs into the one PostgreSQL on the machine: two runs
# at once (two checkouts) would replace each other's build mid-test.  The
# lock is held until the script exits.
cs_take_install_lock() {
  [ -n "${CS_INSTALL_LOCK_HELD:-}" ] && return 0   # a parent holds it (test/run.sh)
  exec 9>/tmp/campus_sync.install.lock
  if ! flock -n 9; then
    cs_log "waiting for another campus_sync test run to finish"
    flock 9
  fi
  CS_INSTALL_LOCK_HELD=1
  export CS_INSTALL_LOCK_HELD
}

# PG_BIN for CS_PG_MAJOR (built first if it is not 15).
cs_select_pg() {
  if [ "$CS_PG_MAJOR" != 15 ]; then
    PG_BIN=$("$CS_ROOT/test/pg_build.sh" "$CS_PG_MAJOR")
  fi
  export PG_BIN
}

# A suite's result, for test/run.sh's table: cs_result <suite> <ok|FAIL>.
cs_result() {
  if [ -n "${CS_RESULTS:-}" ]; then echo "$CS_PG_MAJOR $1 $2" >>"$CS_RESULTS"; fi
  return 0
}

# Everything a run needs; the caller traps cs_cleanup.
cs_setup() {
  cs_take_install_lock
  cs_ensure_packages
  cs_select_pg
  cs_build_install
  RUN_DIR=$(mktemp -d /tmp/campus_sync.XXXXXX)
  chmod 755 "$RUN_DIR"
  cs_start_mock
  cs_start_cluster "$@"
}

# The suites, against the cluster and mocks cs_setup started: pg_regress,
# the mock's self-test, the integration suites, then a grep of the server
# log for every test secret.  Returns non-zero when any failed.
cs_run_suites() {
  local status=0
  cs_log "pg_regress suite (PostgreSQL $CS_PG_MAJOR: offline)"
  if ! make -C "$CS_ROOT" -s installcheck PG_CONFIG=$PG_BIN/pg_config; then
    [ -f "$CS_ROOT/regression.diffs" ] && cat "$CS_ROOT/regression.diffs"
    status=1
    cs_result pg_regress FAIL
  else
    cs_result pg_regress ok
  fi

  cs_log "pg_regress online suite (PostgreSQL $CS_PG_MAJOR: sends to the mock APIs)"
  if ! make -C "$CS_ROOT" -s installcheck-online PG_CONFIG=$PG_BIN/pg_config; then
    [ -f "$CS_ROOT/test/regress_online/regression.diffs" ] && cat "$CS_ROOT/test/regress_online/regression.diffs"
    status=1
    cs_result pg_regress_online FAIL
  else
    cs_result pg_regress_online ok
  fi

  # the mock does not depend on the server: once per run is enough
  if [ -z "${CS_SKIP_MOCK_SELFTEST:-}" ]; then
    cs_log "mock API self-test"
    if ! "$SYS_PYTHON" "$CS_ROOT/test/mock_selftest.py" >"$RUN_DIR/mock_selftest.log" 2>&1; then
      cat "$RUN_DIR/mock_selftest.log"
      status=1
      cs_result mock_selftest FAIL
    else
      echo "ok: $(grep -c '^ok' "$RUN_DIR/mock_selftest.log") checks of the mock passed"
      cs_result mock_selftest ok
    fi
  fi

  cs_log "integration suites (PostgreSQL $CS_PG_MAJOR)"
  export MOCK_API MOCK_CONTROL MOCK_TLS PGHOST PGPORT PGUSER PG_BIN PGDATA_DIR RUN_DIR
  if ! "$SYS_PYTHON" "$CS_ROOT/test/integration/run.py"; then
    status=1
    cs_result integration FAIL
  else
    cs_result integration ok
  fi

  cs_log "secrets in the server logs"
  local logs=()
  mapfile -t logs < <(cs_server_logs)
  if grep -n -E -f "$CS_ROOT/test/secrets.txt" "${logs[@]}"; then
    echo "FAIL: a secret appears in a server log (lines above)"
    status=1
    cs_result secrets_in_logs FAIL
  else
    echo "ok: none of the test secrets appears in the server logs (${#logs[@]})"
    cs_result secrets_in_logs ok
  fi
  return $status
}

# Every server log of the run, one a line: the suites' cluster's, and those
# of the clusters suites start of their own (test/integration/cluster.py
# keeps each one's log under $RUN_DIR/clusters/).
cs_server_logs() {
  echo "$RUN_DIR/postgres.log"
  [ -d "$RUN_DIR/clusters" ] && find "$RUN_DIR/clusters" -type f -name '*.log' | sort
  return 0
}
