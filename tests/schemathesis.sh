#!/usr/bin/env bash
# Property-based API testing with Schemathesis against the generated OpenAPI document,
# after checking that the document is valid OpenAPI 3.1 (openapi-spec-validator).
#
# Starts a private redis-server, a private Postgres database (on the server named by
# DATABASE_URL, default the local one; dropped on exit), the marketplace simulator (so
# POST /v1/accounts can check credentials) and a built drover-api on free loopback
# ports, runs
# `schemathesis run` with an admin key (Authorization: Bearer …), checking that no
# request gets a 5xx and that every response matches its documented schema; exits
# non-zero on any failure. Everything it starts is stopped by PID on exit.
#
# Usage: tests/schemathesis.sh            (env: MAX_EXAMPLES=30, SCHEMATHESIS_SEED=<n>,
#                                          DROVER_CACHE=/var/cache/drover, CARGO_TARGET_DIR,
#                                          API_LOG=<file to keep the API's log in>)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${DROVER_CACHE:-/var/cache/drover}"
SCHEMATHESIS_VERSION="4.32.5"
SPEC_VALIDATOR_VERSION="0.7.2"
MAX_EXAMPLES="${MAX_EXAMPLES:-30}"
TARGET_DIR="${CARGO_TARGET_DIR:-/var/cache/drover/target}"
# Newest first: CPython 3.11.7 / 3.12.1 can raise "AST constructor recursion depth
# mismatch" inside Hypothesis (fixed in 3.11.8 / 3.12.2). pyenv installs that are not
# the global version are found too.
pick_python() {
  local c v
  for c in python3.13 python3.12; do
    if "$c" -c 'import venv' >/dev/null 2>&1; then command -v "$c"; return; fi
  done
  if command -v pyenv >/dev/null 2>&1; then
    for v in 3.13 3.12; do
      v="$(pyenv versions --bare 2>/dev/null | grep "^$v\." | sort -V | tail -n 1)"
      if [ -n "$v" ] && [ -x "$(pyenv root)/versions/$v/bin/python3" ]; then
        echo "$(pyenv root)/versions/$v/bin/python3"
        return
      fi
    done
  fi
  for c in python3.11 python3; do
    if "$c" -c 'import venv' >/dev/null 2>&1; then command -v "$c"; return; fi
  done
}
PYTHON="${PYTHON:-$(pick_python)}"
PY_VERSION="$("$PYTHON" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')"
VENV="$CACHE/schemathesis-venv-py$PY_VERSION"

# 1. Schemathesis in a cached venv.
if ! "$VENV/bin/schemathesis" --version 2>/dev/null | grep -q "$SCHEMATHESIS_VERSION"; then
  echo "installing schemathesis $SCHEMATHESIS_VERSION into $VENV"
  mkdir -p "$CACHE"
  "$PYTHON" -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
fi
if ! "$VENV/bin/pip" show openapi-spec-validator 2>/dev/null | grep -q "^Version: $SPEC_VALIDATOR_VERSION$"; then
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "openapi-spec-validator==$SPEC_VALIDATOR_VERSION"
fi

# 2. The API binary.
(cd "$ROOT" && CARGO_TARGET_DIR="$TARGET_DIR" cargo build --quiet -p drover-api -p drover-simulator --bin drover-api --bin simulator)
API_BIN="$TARGET_DIR/debug/drover-api"
SIM_BIN="$TARGET_DIR/debug/simulator"

free_port() { "$PYTHON" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wait_for() { # $1: what, $2: command
  for _ in $(seq 1 200); do
    if eval "$2" >/dev/null 2>&1; then return 0; fi
    sleep 0.05
  done
  echo "$1 did not start" >&2
  return 1
}

WORK="$(mktemp -d)"
REDIS_PID=""
API_PID=""
SIM_PID=""
PG_SERVER="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
PG_DB="drover_schemathesis_$(date +%s%N)"
cleanup() {
  [ -n "${API_LOG:-}" ] && cp "$WORK/api.log" "$API_LOG" 2>/dev/null || true
  [ -n "$API_PID" ] && kill "$API_PID" 2>/dev/null && wait "$API_PID" 2>/dev/null || true
  [ -n "$SIM_PID" ] && kill "$SIM_PID" 2>/dev/null && wait "$SIM_PID" 2>/dev/null || true
  [ -n "$REDIS_PID" ] && kill "$REDIS_PID" 2>/dev/null && wait "$REDIS_PID" 2>/dev/null || true
  psql "$PG_SERVER" -qc "DROP DATABASE IF EXISTS $PG_DB WITH (FORCE)" >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT

# 3. A private redis-server.
REDIS_PORT="$(free_port)"
(cd "$WORK" && exec redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no \
  --daemonize no --dir "$WORK" --logfile "$WORK/redis.log") &
REDIS_PID=$!
wait_for redis-server "redis-cli -p $REDIS_PORT ping | grep -q PONG"

# 3b. A private database and the simulator.
psql "$PG_SERVER" -qc "CREATE DATABASE $PG_DB"
PG_URL="$("$PYTHON" -c 'import sys,urllib.parse as u; p=u.urlsplit(sys.argv[1]); print(u.urlunsplit(p._replace(path="/"+sys.argv[2])))' "$PG_SERVER" "$PG_DB")"
SIM_PORT="$(free_port)"
"$SIM_BIN" --listen "127.0.0.1:$SIM_PORT" --accounts 1 --rate-profile fast >"$WORK/simulator.log" 2>&1 &
SIM_PID=$!
wait_for simulator "curl -s -o /dev/null http://127.0.0.1:$SIM_PORT/_admin/stats"

# 4. The API: one admin key, a rate limit Schemathesis will not reach, and event streams
#    cut after 2 s (no worker runs here, so a streamed job would never end).
API_PORT="$(free_port)"
KEY="schemathesis-$(date +%s%N)"
HASH="$("$API_BIN" hash-key "$KEY")"
DROVER_API__LISTEN="127.0.0.1:$API_PORT" \
DROVER_API__REDIS_URL="redis://127.0.0.1:$REDIS_PORT" \
DROVER_API__KEYS="schemathesis:admin:$HASH" \
DROVER_API__RATE_LIMIT__PER_MINUTE=6000000 \
DROVER_API__RATE_LIMIT__BURST=100000 \
DROVER_API__EVENTS_MAX_MS=2000 \
DROVER_API__ENCRYPTION_KEY="$(head -c 32 /dev/urandom | base64)" \
DROVER_API__DATABASE__URL="$PG_URL" \
DROVER_API__MARKETPLACE_TOKEN_URL="http://127.0.0.1:$SIM_PORT/auth/o2/token" \
DROVER_API__INSECURE_MARKETPLACE_HTTP=true \
DROVER_API__METRICS_LISTEN="" \
DROVER_API__SCHEDULER__ENABLED=false \
RUST_LOG="${RUST_LOG:-warn}" \
  "$API_BIN" >"$WORK/api.log" 2>&1 &
API_PID=$!
wait_for drover-api "curl -sf http://127.0.0.1:$API_PORT/readyz" || { cat "$WORK/api.log"; exit 1; }

# 5. The document is valid OpenAPI (client generators refuse an invalid one).
curl -sf "http://127.0.0.1:$API_PORT/openapi.json" -o "$WORK/openapi.json"
"$VENV/bin/openapi-spec-validator" "$WORK/openapi.json"

# 6. The run. `timeout` bounds it whatever Schemathesis decides to do.
SEED_ARGS=()
[ -n "${SCHEMATHESIS_SEED:-}" ] && SEED_ARGS=(--seed "$SCHEMATHESIS_SEED")
set +e
timeout 900 "$VENV/bin/schemathesis" run "http://127.0.0.1:$API_PORT/openapi.json" \
  -H "Authorization: Bearer $KEY" \
  --checks not_a_server_error,response_schema_conformance \
  --max-examples "$MAX_EXAMPLES" \
  --request-timeout 15 \
  --workers 2 \
  --no-color \
  "${SEED_ARGS[@]}"
status=$?
set -e
if [ "$status" -ne 0 ]; then
  echo "--- drover-api log (last 50 lines) ---"
  tail -n 50 "$WORK/api.log"
fi
exit "$status"
