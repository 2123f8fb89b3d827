#!/usr/bin/env bash
# Builds a Redis new enough for `queue.durability = aof` (WAITAOF needs >= 7.2; Debian's
# redis-server is 7.0) once, from Debian's source package, into a cache directory, and
# prints the binary's path. Skipped when REDIS8_SERVER names a binary or the cached one
# exists. The same recipe as /work/shared/bench/peers/setup.sh (its cache is reused).
# tests/tests/durability.rs finds the binary at $REDIS8_SERVER or the default path below.
set -euo pipefail
if [ -n "${REDIS8_SERVER:-}" ] && [ -x "$REDIS8_SERVER" ]; then echo "$REDIS8_SERVER"; exit 0; fi
cache=${XDG_CACHE_HOME:-$HOME/.cache}
REDIS8_DIR=${REDIS8_DIR:-$cache/drover/redis8}
peer="$cache/peerbench/redis8/bin/redis-server"
if [ ! -x "$REDIS8_DIR/bin/redis-server" ] && [ -x "$peer" ]; then
  mkdir -p "$REDIS8_DIR/bin"; cp "$peer" "$REDIS8_DIR/bin/"
fi
if [ ! -x "$REDIS8_DIR/bin/redis-server" ]; then
  REDIS8_DEB=${REDIS8_DEB:-5:8.6.3-1}   # Debian source version (experimental); override if it moved
  for t in make gcc pkg-config; do command -v $t >/dev/null || { echo "$t is needed to build Redis" >&2; exit 1; }; done
  src=$(mktemp -d /tmp/drover-redis8src.XXXXXX)
  trap 'rm -rf "$src"' EXIT
  mkdir -p "$src/apt/lists/partial" "$src/apt/cache/archives/partial"
  here=$(dirname "${BASH_SOURCE[0]:-$0}")
  [ -f "$here/debian_mirror.sh" ] || { echo "run tests/redis8.sh from the repository (it reads tests/debian_mirror.sh)" >&2; exit 1; }
  mirror=${DEBIAN_MIRROR:-$(bash "$here/debian_mirror.sh" || true)}
  [ -n "$mirror" ] || { echo "no Debian mirror found in /etc/apt; set DEBIAN_MIRROR" >&2; exit 1; }
  for suite in experimental sid; do
    echo "deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror $suite main"
  done >"$src/apt/sources.list"
  APTO=(-o Dir::Etc::SourceList="$src/apt/sources.list" -o Dir::Etc::SourceParts=/nonexistent
        -o Dir::State::Lists="$src/apt/lists" -o Dir::Cache="$src/apt/cache" -o APT::Sandbox::User=root)
  apt-get "${APTO[@]}" update >/dev/null
  # The pinned version, or (once it has left the archive) the newest of sid and
  # experimental, which is newer still.
  (cd "$src" && { apt-get "${APTO[@]}" source --download-only "redis=$REDIS8_DEB" >/dev/null 2>&1 ||
    { echo "redis=$REDIS8_DEB is gone from Debian's archive; building the newest of sid and experimental" >&2;
      apt-get "${APTO[@]}" source --download-only redis >/dev/null; }; })
  tar xzf "$src"/redis_*.orig.tar.gz -C "$src"
  dir=$(find "$src" -maxdepth 1 -type d -name 'redis-[0-9]*' | head -1)
  make -C "$dir" -j"$(nproc)" BUILD_TLS=no USE_SYSTEMD=no >"$src/build.log" 2>&1 || { tail -30 "$src/build.log" >&2; exit 1; }
  mkdir -p "$REDIS8_DIR/bin"
  cp "$dir"/src/redis-server "$REDIS8_DIR/bin/"
fi
"$REDIS8_DIR/bin/redis-server" --version >&2
echo "$REDIS8_DIR/bin/redis-server"
