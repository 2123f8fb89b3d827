#!/usr/bin/env bash
# Installs what a fresh machine lacks for Drover's tests and demo: redis-server,
# PostgreSQL (started if not running), libfaketime; for the tests also a Redis >= 7.2 and
# Chromium with Playwright (skipped with `--demo`). Safe to run again.
set -euo pipefail
need=()
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
if ! command -v pg_ctlcluster >/dev/null 2>&1 && ! command -v pg_ctl >/dev/null 2>&1; then
  need+=(postgresql)
fi
command -v python3 >/dev/null 2>&1 || need+=(python3 python3-venv)
# cargo's linker and the C parts of some crates; make and pkg-config build Redis 8
# (tests/redis8.sh); curl drives the demo and the API checks.
command -v cc >/dev/null 2>&1 || need+=(build-essential)
command -v make >/dev/null 2>&1 || need+=(make)
command -v pkg-config >/dev/null 2>&1 || need+=(pkg-config)
command -v curl >/dev/null 2>&1 || need+=(curl)
# libfaketime: a worker test runs one process with its clock an hour behind Redis's.
[ -e /usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1 ] || need+=(faketime)
if [ ${#need[@]} -gt 0 ]; then
  echo "== installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${need[@]}" >/dev/null
fi
# PostgreSQL: start the local cluster when nothing answers on 5432 and no DATABASE_URL
# points elsewhere; stop, saying what to do, when it still does not answer.
if [ -z "${DATABASE_URL:-}" ] && command -v pg_isready >/dev/null 2>&1; then
  if ! pg_isready -q -h 127.0.0.1 -p 5432; then
    if command -v pg_ctlcluster >/dev/null 2>&1 && [ -d /etc/postgresql ]; then
      ver=$(ls /etc/postgresql | sort -V | tail -n1)
      pg_ctlcluster --skip-systemctl-redirect "$ver" main start || true
    fi
  fi
  # Every test and the demo use a database on this server: without one answering, nothing
  # can run, so stop here and say what to do.
  if ! pg_isready -q -h 127.0.0.1 -p 5432; then
    {
      echo "error: PostgreSQL is not answering on 127.0.0.1:5432, and the tests and the demo need it."
      if command -v pg_lsclusters >/dev/null 2>&1; then
        echo "  its clusters (pg_lsclusters):"
        pg_lsclusters 2>&1 | sed 's/^/    /'
        echo "  Start one: pg_ctlcluster <version> <cluster> start (its log is in /var/log/postgresql/);"
        echo "  a cluster on another port works too: set DATABASE_URL (below) to it."
      else
        echo "  Start the local server (pg_ctl start -D <data dir>)."
      fi
      echo "  Or point DATABASE_URL at a server where user postgres logs in without a password, and run"
      echo "  again: for the tests its maintenance database (postgres://postgres@127.0.0.1:5433/postgres;"
      echo "  each test makes its own database there), for deploy/run-local.sh the demo's own database"
      echo "  (postgres://postgres@127.0.0.1:5433/drover, made with createdb)."
    } >&2
    exit 1
  fi
  # The tests and the demo log in as user postgres over loopback without a password.
  # Debian's own pg_hba.conf asks for one there: when that is what stops the login,
  # let postgres in from 127.0.0.1 and ::1 (trust), and say so.
  if pg_isready -q -h 127.0.0.1 -p 5432 && ! psql -h 127.0.0.1 -U postgres -w -tAc 'SELECT 1' >/dev/null 2>&1; then
    hba=$(runuser -u postgres -- psql -tAc 'SHOW hba_file' 2>/dev/null || true)
    if [ -n "$hba" ] && [ -w "$hba" ]; then
      echo "== PostgreSQL: user postgres may now log in from 127.0.0.1 and ::1 without a password (trust, in $hba)"
      sed -i '1i host all postgres 127.0.0.1/32 trust\nhost all postgres ::1/128 trust' "$hba"
      runuser -u postgres -- psql -qtAc 'SELECT pg_reload_conf()' >/dev/null
    fi
    # Every test and the demo log in this way: without it nothing can run, so stop here
    # (not after a long build whose every database test then fails).
    if ! psql -h 127.0.0.1 -U postgres -w -tAc 'SELECT 1' >/dev/null 2>&1; then
      echo "error: cannot log in to PostgreSQL at 127.0.0.1:5432 as user postgres without a password," \
        "and its pg_hba.conf is out of reach: let postgres in from 127.0.0.1 (trust), or set DATABASE_URL" \
        "(postgres://<user>:<password>@127.0.0.1:5432/postgres, a user that may create databases)" >&2
      exit 1
    fi
  fi
fi
# `--demo` (deploy/run-local.sh): what the demo needs is installed by now; the rest is
# only for the tests.
if [ "${1:-}" = "--demo" ]; then
  exit 0
fi
# A Redis >= 7.2 for the `queue.durability = aof` tests (Debian's redis-server is 7.0, no
# WAITAOF): built once into ~/.cache/drover/redis8 (a few minutes); those tests fail,
# naming this script, while it is missing.
bash "$(dirname "$0")/redis8.sh" >/dev/null || echo "warning: tests/redis8.sh failed: the aof durability tests will fail" >&2
# Chromium and a Playwright venv for the console's browser suite (ui_browser::); that
# suite fails, naming this script, while they are missing.
bash "$(dirname "$0")/ui/setup.sh" >/dev/null || echo "warning: tests/ui/setup.sh failed: the console's browser suite (ui_browser::) will fail" >&2
