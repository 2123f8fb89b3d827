#!/usr/bin/env bash
# Installs what the console's browser suite (tests/ui/console_test.py, run by
# `cargo test -p drover-tests --test integration ui_browser::`) needs: Debian's chromium
# and a venv with Playwright for Python at /var/cache/drover/ui-venv. Safe to run again.
# Playwright's own browser download (`playwright install`) is never used: the suite drives
# the system Chromium, so nothing is fetched from outside the package registries.
set -euo pipefail
VENV=/var/cache/drover/ui-venv
PLAYWRIGHT=playwright==1.63.0
# Debian's python3 makes the venv (not a user's pyenv shim, which may come and go); it
# needs python3-venv for ensurepip.
PY=/usr/bin/python3
need=()
[ -x /usr/bin/chromium ] || need+=(chromium)
if [ ! -x "$PY" ] || ! "$PY" -c 'import venv, ensurepip' >/dev/null 2>&1; then
  need+=(python3 python3-venv)
fi
if [ ${#need[@]} -gt 0 ]; then
  echo "== installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${need[@]}" >/dev/null
fi
if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c 'import sys' >/dev/null 2>&1; then
  echo "== creating $VENV"
  rm -rf "$VENV"
  mkdir -p "$(dirname "$VENV")"
  "$PY" -m venv "$VENV"
fi
have=$("$VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("playwright"))' 2>/dev/null || true)
if [ "$have" != "${PLAYWRIGHT#playwright==}" ]; then
  echo "== installing $PLAYWRIGHT into $VENV"
  # A wheel in PIP_FIND_LINKS (/opt/wheels) is used when there; the index otherwise.
  "$VENV/bin/pip" install -q --disable-pip-version-check "$PLAYWRIGHT"
fi
# Debian's chromium wrapper prints a shell warning on some machines; the version is on stdout.
/usr/bin/chromium --version 2>/dev/null
"$VENV/bin/python" -c 'import importlib.metadata as m; print("playwright", m.version("playwright"))'
