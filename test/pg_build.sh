#!/usr/bin/env bash
# Builds PostgreSQL <major> (16, 17, 18 ...) once from Debian's own source
# package into a cache directory, and prints its bin directory.  Debian 12
# ships only 15; Debian unstable carries postgresql-<major>.  The source
# comes through an apt configuration of this script's own, in the cache
# directory: deb-src lines for unstable on the mirror the machine's own apt
# sources name (read from them, never written here); the machine's sources
# are not changed.
#
# Usage: test/pg_build.sh <major>      (CS_CACHE_DIR, default /var/cache/campus_sync)
set -euo pipefail
major=${1:?usage: test/pg_build.sh <major>}
cache=${CS_CACHE_DIR:-/var/cache/campus_sync}
prefix=$cache/pg$major
. "$(dirname "$0")/lib.sh"

if [ -x "$prefix/bin/pg_config" ] && "$prefix/bin/pg_config" --version | grep -q "PostgreSQL $major\."; then
  echo "$prefix/bin"
  exit 0
fi

# what the build needs, from Debian 12's own packages
cs_ensure_packages dpkg-dev gcc make bison flex perl zlib1g-dev pkg-config

work=$cache/src-$major
mkdir -p "$work"
cs_private_apt "$cache/apt" "deb-src $(cs_debian_mirror) unstable main"
cs_log "fetching the source of postgresql-$major (Debian unstable)"
(cd "$work" && apt-get "${CS_APT_OPTS[@]}" -qq source --download-only "postgresql-$major" >/dev/null)
tarball=$(ls "$work"/postgresql-"$major"_*.orig.tar.* | head -1)
rm -rf "$work/build" && mkdir "$work/build"
tar -xf "$tarball" -C "$work/build" --strip-components=1

cs_log "building PostgreSQL $major into $prefix (once; about ten minutes on 2 cores)"
cd "$work/build"
./configure --prefix="$prefix" --without-icu --without-readline >"$work/configure.log" 2>&1 \
  || { tail -20 "$work/configure.log" >&2; exit 1; }
make -s -j"$(nproc)" >"$work/make.log" 2>&1 || { tail -30 "$work/make.log" >&2; exit 1; }
make -s install >"$work/install.log" 2>&1 || { tail -30 "$work/install.log" >&2; exit 1; }
rm -rf "$work/build"
echo "$prefix/bin"
