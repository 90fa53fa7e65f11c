#!/usr/bin/env bash
# make setup: install what the project needs on a fresh Debian/Ubuntu machine; idempotent.
# Prints one line per step it took or found already done.
set -euo pipefail
cd "$(dirname "$0")/.."
STATE=.ats
mkdir -p "$STATE"

say() { printf 'setup: %s\n' "$*"; }
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
  say "need root for: $*"; exit 1; fi; }
apt_updated=0
apt_install() {
  if [ "$apt_updated" -eq 0 ]; then as_root apt-get update -qq >/dev/null; apt_updated=1; fi
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# 1. uv (from PyPI: the machine reaches package registries only)
if ! command -v uv >/dev/null 2>&1; then
  python3 -m pip install --quiet --disable-pip-version-check uv 2>/dev/null \
    || python3 -m pip install --quiet --user --break-system-packages uv
  export PATH="$HOME/.local/bin:$PATH"
  if ! command -v uv >/dev/null 2>&1; then
    # pip may put the binary where no PATH entry looks (pyenv before a rehash): link it to
    # ~/.local/bin, which the Makefile puts on PATH
    mkdir -p "$HOME/.local/bin"
    ln -sf "$(python3 -c 'import uv; print(uv.find_uv_bin())')" "$HOME/.local/bin/uv"
  fi
  say "installed uv $(uv --version | cut -d' ' -f2)"
else
  say "uv $(uv --version | cut -d' ' -f2) present"
fi

# 2. Python environment from the lock file
uv sync --frozen --quiet
say "python environment synced from uv.lock ($(uv run --frozen python -c 'import sys; print(sys.version.split()[0])'))"

# 3. PostgreSQL server binaries
pg_bindir() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -t/ -k5 -n | tail -1; }
if [ -n "${ATS_DATABASE_URL:-}" ]; then
  say "ATS_DATABASE_URL is set: using an external server, no local PostgreSQL needed"
else
if [ -z "$(pg_bindir)" ] || [ ! -x "$(pg_bindir)/initdb" ]; then
  apt_install postgresql postgresql-contrib
  say "installed PostgreSQL from apt"
fi
BINDIR=$(pg_bindir)
PGVER=$(basename "$(dirname "$BINDIR")")
say "PostgreSQL $PGVER server binaries in $BINDIR"

# 4. TimescaleDB for that server: an installed package, else the distro package, else a build
CONTROL=/usr/share/postgresql/$PGVER/extension/timescaledb.control
if [ -f "$CONTROL" ]; then
  say "TimescaleDB $(sed -n "s/^default_version = '\(.*\)'/\1/p" "$CONTROL") already installed for PostgreSQL $PGVER"
elif apt-cache policy "postgresql-$PGVER-timescaledb" 2>/dev/null | grep -q 'Candidate: [0-9]'; then
  apt_install "postgresql-$PGVER-timescaledb"
  say "installed TimescaleDB from apt (postgresql-$PGVER-timescaledb)"
else
  bash scripts/build_timescaledb.sh "$PGVER"
fi
fi

# 5. Redis for the hot cache (the streaming service and the read API's real-time path)
if ! command -v redis-server >/dev/null 2>&1; then
  apt_install redis-server
  say "installed Redis from apt"
else
  say "Redis $(redis-server --version | sed -E 's/.*v=([0-9.]+).*/\1/') present"
fi

# 6. Headless Chromium: the tests open the data-quality report in a real browser
if ! command -v chromium >/dev/null 2>&1; then
  apt_install chromium
  say "installed Chromium from apt (headless report tests)"
else
  say "Chromium present ($(chromium --version 2>/dev/null | awk '{print $2}'))"
fi
