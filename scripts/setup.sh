#!/usr/bin/env bash
# Idempotent setup shared by `make demo` and `make test`: installs only what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(gcc make libc6-dev libseccomp-dev libseccomp2 python3-simgrid iproute2 strace tshark curl wget
              golang-go nginx-light redis-server memcached libmemcached-tools iperf3 haproxy python3-venv
              libpython3.11-dev)   # Python.h: the tracer's C fast path (simterpose/tracer/stops.c)
# Debian's CPython 3.11: the interpreter python3-simgrid is built for, and built with PGO and LTO (a
# pyenv or python.org build without them ran the tracer loop ~8 % slower, benchmarks/net_pingpong.py).
PYTHON=${PYTHON:-/usr/bin/python3.11}
VENV=.venv

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: apt-get install ${missing[*]}"
  if [ "$(id -u)" != 0 ]; then
    echo "setup: these Debian packages are missing and installing them needs root: ${missing[*]}" >&2
    exit 1
  fi
  # tshark asks whether non-root users may capture; answer no without a prompt.
  echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections
  # The real programs the tests run (nginx, redis, memcached) are daemons: installing them must not
  # start them (policy-rc.d "101: action forbidden", honoured by invoke-rc.d and systemd's helper).
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod +x /usr/sbin/policy-rc.d
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# A venv made by another interpreter (an older setup, another PYTHON) is made again.
want_home=$(dirname "$(readlink -f "$PYTHON")")
if [ -x "$VENV/bin/python" ] && ! grep -qx "home = $want_home" "$VENV/pyvenv.cfg" 2>/dev/null; then
  echo "setup: $VENV was not made by $PYTHON: making it again"
  rm -rf "$VENV"
fi
if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
fi
# Reinstall only when the project's metadata changed since the last install.
stamp="$VENV/.installed-$(sha1sum pyproject.toml | cut -c1-12)"
if [ ! -f "$stamp" ]; then
  "$VENV/bin/pip" install -q -e '.[dev]'
  rm -f "$VENV"/.installed-*
  touch "$stamp"
fi

# SimGrid's Python module comes from Debian (python3-simgrid, built for CPython 3.11). Link that one
# file into the venv rather than adding dist-packages to the path, so Debian's other packages don't leak in.
site=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
so=$(ls /usr/lib/python3/dist-packages/simgrid.cpython-*-x86_64-linux-gnu.so 2>/dev/null | head -n1 || true)
if [ -n "$so" ] && [ ! -e "$site/$(basename "$so")" ]; then
  ln -sf "$so" "$site/$(basename "$so")"
fi
"$VENV/bin/python" -c 'import simgrid' || { echo "setup: 'import simgrid' fails in $VENV" >&2; exit 1; }

# Byte-compile our modules (and the venv's): with PYTHONDONTWRITEBYTECODE set, as on some machines,
# every `simterpose run` and `ctrld` start would otherwise compile them again (~60 ms per start).
# compileall rewrites only what changed.
PYTHONDONTWRITEBYTECODE= "$VENV/bin/python" -m compileall -q simterpose ctrld "$site" >/dev/null
