#!/usr/bin/env bash
# Compiles campus_sync (warnings are errors) against the server headers of
# PostgreSQL <major> as Debian 13 ships them (postgresql-server-dev-<major>,
# unpacked with dpkg -x into the cache directory, never installed): for a
# version with headers but no server that runs here.  The package comes
# through an apt configuration of this script's own, on the mirror the
# machine's apt sources name.  Prints the server version compiled against.
#
# Usage: test/build_against.sh <major> [suite]   (suite default trixie;
#        CS_CACHE_DIR, default /var/cache/campus_sync)
set -euo pipefail
major=${1:?usage: test/build_against.sh <major> [suite]}
suite=${2:-trixie}
. "$(dirname "$0")/lib.sh"
root=$CS_ROOT
cache=${CS_CACHE_DIR:-/var/cache/campus_sync}
headers=$cache/headers-$major
include=$headers/usr/include/postgresql/$major/server

if [ ! -f "$include/pg_config.h" ]; then
  apt_dir=$cache/apt-$suite
  mkdir -p "$headers"
  cs_private_apt "$apt_dir" "deb $(cs_debian_mirror) $suite main"
  (cd "$apt_dir" && apt-get "${CS_APT_OPTS[@]}" -qq download "postgresql-server-dev-$major" >/dev/null)
  dpkg -x "$apt_dir"/postgresql-server-dev-"$major"_*.deb "$headers"
fi

# PGXS's flags for this compiler (from the machine's 15), 'major's headers
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
cflags=$(/usr/lib/postgresql/15/bin/pg_config --cflags)
version=$(sed -n 's/^#define PG_VERSION "\(.*\)"/\1/p' "$include/pg_config.h")
extversion=$(sed -n "s/^default_version = '\(.*\)'/\1/p" "$root/campus_sync.control")
# The headers were configured for Debian 13's C library, which has strlcpy
# (PostgreSQL's port then declares none); Debian 12's has not: declared here.
echo 'extern size_t strlcpy(char *dst, const char *src, size_t size);' >"$out/glibc_compat.h"
cflags="$cflags -include stddef.h -include $out/glibc_compat.h"
for c in "$root"/src/*.c; do
  # shellcheck disable=SC2086
  gcc $cflags -fPIC -Wall -Wextra -Werror -DEXTVERSION="\"$extversion\"" \
    -isystem "$include" $(pkg-config --cflags libcurl libcjson) \
    -c "$c" -o "$out/$(basename "$c" .c).o"
done
gcc -shared -o "$out/campus_sync.so" "$out"/*.o $(pkg-config --libs libcurl libcjson)
echo "$version"
