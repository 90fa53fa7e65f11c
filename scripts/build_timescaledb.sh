#!/usr/bin/env bash
# Build TimescaleDB's Apache edition from Debian's `timescaledb` source package and install it
# for PostgreSQL $1. apt-get source runs against a private sources list (under .ats/build), so
# the system's apt configuration is left as it was.
set -euo pipefail
cd "$(dirname "$0")/.."
PGVER=$1
SUITE=${ATS_TIMESCALEDB_SUITE:-trixie}
WORK=$PWD/.ats/build/timescaledb
say() { printf 'setup: %s\n' "$*"; }
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
  "postgresql-server-dev-$PGVER" cmake gcc make libssl-dev dpkg-dev xz-utils >/dev/null
mkdir -p "$WORK/lists/partial" "$WORK/cache/archives/partial"
cat > "$WORK/sources.list" <<SRC
deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian $SUITE main
SRC
APT=(-o "Dir::Etc::SourceList=$WORK/sources.list" -o "Dir::Etc::SourceParts=/dev/null"
     -o "Dir::State::Lists=$WORK/lists" -o "Dir::Cache=$WORK/cache" -o "APT::Sandbox::User=root")
apt-get "${APT[@]}" update -qq >/dev/null
(cd "$WORK" && apt-get "${APT[@]}" source --download-only -qq timescaledb >/dev/null 2>&1)
ORIG=$(ls "$WORK"/timescaledb_*.orig.tar.* | sort | tail -1)
VERSION=$(basename "$ORIG" | sed -E 's/timescaledb_([0-9.]+).*/\1/')
rm -rf "$WORK/src" && mkdir -p "$WORK/src"
tar -xf "$ORIG" -C "$WORK/src" --strip-components=1
cmake -S "$WORK/src" -B "$WORK/src/build" -DAPACHE_ONLY=ON -DREGRESS_CHECKS=OFF -DTAP_CHECKS=OFF \
  -DWARNINGS_AS_ERRORS=OFF -DCMAKE_BUILD_TYPE=Release \
  -DPG_CONFIG="/usr/lib/postgresql/$PGVER/bin/pg_config" >"$WORK/cmake.log" 2>&1
make -C "$WORK/src/build" -j"$(nproc)" >"$WORK/make.log" 2>&1
as_root make -C "$WORK/src/build" install >"$WORK/install.log" 2>&1
say "built and installed TimescaleDB $VERSION (Apache edition) from Debian $SUITE's source package for PostgreSQL $PGVER"
