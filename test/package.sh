#!/usr/bin/env bash
# Builds the Debian package with Debian's PostgreSQL extension tooling
# (dpkg-buildpackage, dh --with pgxs, pg_buildext), installs it, runs the
# pg_regress suite (`make installcheck`, which needs no remote) on a
# throwaway cluster against the installed package, and removes the package
# again (the next `make install` puts a build of the tree back).
#
# Usage: test/package.sh     (root or sudo; PostgreSQL 15, Debian 12's)
set -euo pipefail
. "$(dirname "$0")/lib.sh"
trap 'cs_cleanup; rm -rf "$BUILD_DIR"; as_root dpkg -r postgresql-15-campus-sync >/dev/null 2>&1 || true' EXIT

cs_take_install_lock
cs_ensure_packages
cs_ensure_packages postgresql-server-dev-all debhelper dpkg-dev fakeroot

BUILD_DIR=$(mktemp -d /tmp/campus_sync_package.XXXXXX)
cs_log "building the Debian package"
mkdir "$BUILD_DIR/src-tree"
tar -C "$CS_ROOT" --exclude=.git --exclude='*.o' --exclude='*.so' --exclude='*.bc' \
  --exclude=results --exclude='regression.*' -cf - . | tar -C "$BUILD_DIR/src-tree" -xf -
(cd "$BUILD_DIR/src-tree" && dpkg-buildpackage -us -uc -b >"$BUILD_DIR/build.log" 2>&1) \
  || { tail -40 "$BUILD_DIR/build.log" >&2; exit 1; }
deb=$(ls "$BUILD_DIR"/postgresql-15-campus-sync_*.deb)
echo "built $(basename "$deb"):"
dpkg-deb -f "$deb" Package Version Depends | sed 's/^/  /'

cs_log "installing it and running make installcheck against it"
as_root dpkg -i "$deb" >/dev/null
dpkg -L postgresql-15-campus-sync | grep -E 'campus_sync(\.so|\.control|--0\.4\.sql)$' | sed 's/^/  /'
RUN_DIR=$(mktemp -d /tmp/campus_sync.XXXXXX)
chmod 755 "$RUN_DIR"
cs_start_cluster
# the tree's tests, the package's files: installcheck installs nothing
make -C "$BUILD_DIR/src-tree" -s installcheck PG_CONFIG=$PG_BIN/pg_config \
  || { cat "$BUILD_DIR/src-tree/regression.diffs" 2>/dev/null; exit 1; }
cs_log "the package passed installcheck"
