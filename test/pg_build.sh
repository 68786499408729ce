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
log() { printf '\033[1m== %s\033[0m\n' "$*" >&2; }

if [ -x "$prefix/bin/pg_config" ] && "$prefix/bin/pg_config" --version | grep -q "PostgreSQL $major\."; then
  echo "$prefix/bin"
  exit 0
fi

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

# what the build needs, from Debian 12's own packages
need=(dpkg-dev gcc make bison flex perl zlib1g-dev pkg-config)
missing=()
for p in "${need[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  log "installing Debian packages: ${missing[*]}"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The mirror: the first Debian archive the machine's apt sources name.
mirror=$( { grep -hs '^URIs:' /etc/apt/sources.list.d/*.sources | awk '{print $2}';
            grep -hs '^deb ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list | awk '{print $2}'; } |
          grep -v -- '-security' | grep -m1 '/debian/\?$' || true)
[ -n "$mirror" ] || { echo "no Debian mirror found in the machine's apt sources" >&2; exit 1; }

apt_dir=$cache/apt
work=$cache/src-$major
mkdir -p "$apt_dir/lists/partial" "$apt_dir/archives/partial" "$work"
echo "deb-src $mirror unstable main" >"$apt_dir/sources.list"
apt_opts=(-o "Dir::Etc::SourceList=$apt_dir/sources.list" -o Dir::Etc::SourceParts=/dev/null
          -o "Dir::State::Lists=$apt_dir/lists" -o "Dir::Cache::Archives=$apt_dir/archives"
          -o APT::Sandbox::User=root)
log "fetching the source of postgresql-$major (Debian unstable)"
apt-get "${apt_opts[@]}" -qq update
(cd "$work" && apt-get "${apt_opts[@]}" -qq source --download-only "postgresql-$major" >/dev/null)
tarball=$(ls "$work"/postgresql-"$major"_*.orig.tar.* | head -1)
rm -rf "$work/build" && mkdir "$work/build"
tar -xf "$tarball" -C "$work/build" --strip-components=1

log "building PostgreSQL $major into $prefix (once; about ten minutes on 2 cores)"
cd "$work/build"
./configure --prefix="$prefix" --without-icu --without-readline >"$work/configure.log" 2>&1 \
  || { tail -20 "$work/configure.log" >&2; exit 1; }
make -s -j"$(nproc)" >"$work/make.log" 2>&1 || { tail -30 "$work/make.log" >&2; exit 1; }
make -s install >"$work/install.log" 2>&1 || { tail -30 "$work/install.log" >&2; exit 1; }
rm -rf "$work/build"
echo "$prefix/bin"
