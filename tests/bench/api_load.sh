#!/usr/bin/env bash
# Load benchmark of POST /v1/jobs (not a test): wrk on loopback against a release build
# of drover-api, a private redis-server and test workers draining the queue. Prints
# requests/s and p50/p99 latency, then checks that every job that got a 202 exists.
#
# Usage: tests/bench/api_load.sh
#   env: DURATION=20s CONNECTIONS=32 THREADS=2 WORKERS=1 WORKER_CONCURRENCY=50
#        CARGO_TARGET_DIR (default ./target)
# Everything started here is stopped by PID on exit; traffic goes to 127.0.0.1 only.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
DURATION="${DURATION:-20s}"
CONNECTIONS="${CONNECTIONS:-32}"
THREADS="${THREADS:-2}"
WORKERS="${WORKERS:-1}"
WORKER_CONCURRENCY="${WORKER_CONCURRENCY:-50}"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"

if ! command -v wrk >/dev/null 2>&1; then
  echo "installing wrk (Debian package)"
  apt-get install -y -qq wrk >/dev/null
fi

(cd "$ROOT" && CARGO_TARGET_DIR="$TARGET_DIR" cargo build --quiet --release -p drover-api)
(cd "$ROOT" && CARGO_TARGET_DIR="$TARGET_DIR" cargo build --quiet --release -p drover-tests --bin test_worker)
API_BIN="$TARGET_DIR/release/drover-api"
WORKER_BIN="$TARGET_DIR/release/test_worker"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wait_for() { # $1: what, $2: command
  for _ in $(seq 1 200); do
    if eval "$2" >/dev/null 2>&1; then return 0; fi
    sleep 0.05
  done
  echo "$1 did not start" >&2
  return 1
}

WORK="$(mktemp -d)"
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

REDIS_PORT="$(free_port)"
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly yes --appendfsync everysec \
  --daemonize no --dir "$WORK" --logfile "$WORK/redis.log" &
PIDS+=($!)
wait_for redis-server "redis-cli -p $REDIS_PORT ping | grep -q PONG"

API_PORT="$(free_port)"
KEY="bench-$(date +%s%N)"
DROVER_API__LISTEN="127.0.0.1:$API_PORT" \
DROVER_API__REDIS_URL="redis://127.0.0.1:$REDIS_PORT" \
DROVER_API__KEYS="bench:submit:$("$API_BIN" hash-key "$KEY")" \
DROVER_API__RATE_LIMIT__PER_MINUTE=6000000 \
DROVER_API__RATE_LIMIT__BURST=1000000 \
RUST_LOG=warn \
  "$API_BIN" >"$WORK/api.log" 2>&1 &
PIDS+=($!)
wait_for drover-api "curl -sf http://127.0.0.1:$API_PORT/readyz" || { cat "$WORK/api.log"; exit 1; }

for i in $(seq 1 "$WORKERS"); do
  DROVER_WORKER__REDIS_URL="redis://127.0.0.1:$REDIS_PORT" \
  DROVER_WORKER__CONCURRENCY__SYNC=0 \
  DROVER_WORKER__CONCURRENCY__BACKFILL=0 \
  DROVER_WORKER__CONCURRENCY__CLEANUP="$WORKER_CONCURRENCY" \
  RUST_LOG=warn \
    "$WORKER_BIN" >"$WORK/worker-$i.log" 2>&1 &
  PIDS+=($!)
done

# Each wrk thread writes the ids it got a 202 for to its own file.
cat >"$WORK/post_jobs.lua" <<LUA
local threads = {}
function setup(thread)
  table.insert(threads, thread)
  thread:set("tid", #threads)
end
function init(args)
  ids = io.open(args[1] .. "/ids-" .. tid .. ".txt", "w")
  ids:setvbuf("line")
  accepted, other = 0, 0
end
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer $KEY"
wrk.body = '{"kind":"cleanup","payload":{"account_id":"t.ok","marketplace_id":"ATVPDKIKX0DER","skus":["SKU-1","SKU-2"]}}'
function response(status, headers, body)
  if status == 202 then
    accepted = accepted + 1
    ids:write(string.match(body, '"id":"([^"]+)"'), "\n")
  else
    other = other + 1
  end
end
function done(summary, latency, requests)
  local acc, oth = 0, 0
  for _, t in ipairs(threads) do
    acc = acc + t:get("accepted")
    oth = oth + t:get("other")
  end
  io.write(string.format("RESULT requests_per_s=%.0f p50_ms=%.2f p99_ms=%.2f max_ms=%.2f accepted=%d other=%d errors=%d\n",
    summary.requests / (summary.duration / 1e6), latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    latency.max / 1000, acc, oth,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout))
end
LUA

echo "wrk: $THREADS threads, $CONNECTIONS connections, $DURATION, POST /v1/jobs on 127.0.0.1:$API_PORT"
wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency -s "$WORK/post_jobs.lua" \
  "http://127.0.0.1:$API_PORT/v1/jobs" -- "$WORK" | tee "$WORK/wrk.txt"
RESULT="$(grep '^RESULT' "$WORK/wrk.txt")"
accepted="$(sed -E 's/.*accepted=([0-9]+).*/\1/' <<<"$RESULT")"

# Let the workers drain what was accepted (bounded), then check every 202'd id exists.
drain_start=$(date +%s)
for _ in $(seq 1 600); do
  left="$(curl -sf -H "Authorization: Bearer $KEY" "http://127.0.0.1:$API_PORT/v1/queues" |
    python3 -c 'import json,sys; q=[x for x in json.load(sys.stdin)["queues"] if x["kind"]=="cleanup"][0]["counts"]; print(q["queued"]+q["running"]+q["retrying"]+q["scheduled"])')"
  [ "$left" = "0" ] && break
  sleep 0.5
done
drain_s=$(( $(date +%s) - drain_start ))

cat "$WORK"/ids-*.txt | sort -u >"$WORK/ids.txt"
unique="$(wc -l <"$WORK/ids.txt")"
sed 's/.*/EXISTS "drover:{cleanup}:job:&"/' "$WORK/ids.txt" >"$WORK/exists.cmds"
missing="$(redis-cli -p "$REDIS_PORT" <"$WORK/exists.cmds" | grep -cv '^1$' || true)"
succeeded="$(redis-cli -p "$REDIS_PORT" ZCARD "drover:{cleanup}:state:succeeded")"

echo
echo "ids recorded: $unique (202s: $accepted), missing in Redis: $missing"
# Slightly more may succeed than were counted: wrk stops with requests in flight whose
# jobs were created but whose 202 it never read.
echo "workers: $succeeded jobs succeeded; $left left in the queue ${drain_s}s after wrk ended"
if [ "$unique" != "$accepted" ] || [ "$missing" != "0" ]; then
  echo "FAIL: some accepted jobs are not stored" >&2
  exit 1
fi
echo "OK: every job that got a 202 exists"
