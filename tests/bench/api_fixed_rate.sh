#!/usr/bin/env bash
# The HTTP API's load targets (issue 19; issue 4 asked for 40 % and 10 ms), measured in one sitting (a benchmark, not a test):
#
#   1. direct   RedisStore::enqueue, 100 in flight, no HTTP (what `bench` calls
#               "enqueue single, 100 in flight") — the baseline
#   2. closed   wrk, max sustained POST /v1/jobs per second         → target (b): ≥ 50 % of 1.
#   3. closed   the same with test workers draining the queue        (for reference)
#   4. fixed    open loop, 2,000 POST /v1/jobs per second, workers draining, latency from
#               each request's due time                             → target (a): p99 ≤ 3 ms,
#                                                                      every answer a 202
# After every phase each job id that was accepted is checked to exist in Redis; Redis is
# then flushed so phases do not weigh on each other. Phases 1–2 run without workers, as
# `bench` measures enqueue; 3–4 with one test_worker process (WORKER_CONCURRENCY).
#
# Usage: tests/bench/api_fixed_rate.sh
#   env: RATE=2000 FIXED_S=30 WARMUP_S=5 OPEN_CONNECTIONS=64 DIRECT_S=10 DIRECT_INFLIGHT=100
#        CLOSED_S=15s CONNECTIONS=32 THREADS=2 WORKER_CONCURRENCY=50
#        API_LOG=info (the API's RUST_LOG; info is its production default)
#        AOF=everysec|no  OUT=<file to copy the whole output to>
#        CARGO_TARGET_DIR (default /var/cache/drover/target, as tests/run.sh)
#        BIN_DIR=<dir holding release drover-api, test_worker, api_load> (no build: e.g.
#        to compare two commits' binaries in one sitting)
# Everything runs in release mode on 127.0.0.1; everything started here is stopped by PID.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
RATE="${RATE:-2000}"
FIXED_S="${FIXED_S:-30}"
WARMUP_S="${WARMUP_S:-5}"
OPEN_CONNECTIONS="${OPEN_CONNECTIONS:-64}"
DIRECT_S="${DIRECT_S:-10}"
DIRECT_INFLIGHT="${DIRECT_INFLIGHT:-100}"
CLOSED_S="${CLOSED_S:-15s}"
CONNECTIONS="${CONNECTIONS:-32}"
THREADS="${THREADS:-2}"
WORKER_CONCURRENCY="${WORKER_CONCURRENCY:-50}"
API_LOG="${API_LOG:-info}"
AOF="${AOF:-everysec}"
TARGET_DIR="${CARGO_TARGET_DIR:-/var/cache/drover/target}"

if [ -n "${OUT:-}" ]; then
  exec > >(tee "$OUT") 2>&1
fi

if ! command -v wrk >/dev/null 2>&1; then
  echo "installing wrk (Debian package)"
  apt-get update -qq && apt-get install -y -qq wrk >/dev/null
fi

BIN_DIR="${BIN_DIR:-}"
if [ -z "$BIN_DIR" ]; then
  (cd "$ROOT" && CARGO_TARGET_DIR="$TARGET_DIR" cargo build --quiet --release -p drover-api)
  (cd "$ROOT" && CARGO_TARGET_DIR="$TARGET_DIR" cargo build --quiet --release -p drover-tests --bin test_worker --bin api_load)
  BIN_DIR="$TARGET_DIR/release"
fi
API_BIN="$BIN_DIR/drover-api"
WORKER_BIN="$BIN_DIR/test_worker"
LOAD_BIN="$BIN_DIR/api_load"

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
WORKER_PIDS=()
cleanup() {
  for pid in "${WORKER_PIDS[@]}" "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${WORKER_PIDS[@]}" "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  if [ -n "${DROP_DB:-}" ]; then psql -h 127.0.0.1 -U postgres -qc "DROP DATABASE IF EXISTS $PG_DB" >/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT

echo "== api_fixed_rate.sh $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(hostname), $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "   loadavg at start: $(cat /proc/loadavg)"
echo "   git: $(cd "$ROOT" && git rev-parse --short HEAD)$(cd "$ROOT" && git diff --quiet -- api shared tests/src/bin/api_load.rs || echo ' (+ uncommitted changes)'); binaries: $BIN_DIR"

REDIS_PORT="$(free_port)"
if [ "$AOF" = "no" ]; then aof=(--appendonly no); else aof=(--appendonly yes --appendfsync "$AOF"); fi
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' "${aof[@]}" \
  --daemonize no --dir "$WORK" --logfile "$WORK/redis.log" &
PIDS+=($!)
wait_for redis-server "redis-cli -p $REDIS_PORT ping | grep -q PONG"
REDIS_URL="redis://127.0.0.1:$REDIS_PORT"
echo "   $(redis-server --version | cut -d' ' -f1-3), appendonly=${AOF}"

# A private Postgres database (the API applies its migrations there; POST /v1/jobs does not
# touch Postgres, but /readyz waits for it).
PG_DB="drover_bench_$$"
psql -h 127.0.0.1 -U postgres -qc "CREATE DATABASE $PG_DB" >/dev/null
DROP_DB=1

API_PORT="$(free_port)"
KEY="bench-$(date +%s%N)"
DROVER_API__LISTEN="127.0.0.1:$API_PORT" \
DROVER_API__REDIS_URL="$REDIS_URL" \
DROVER_API__KEYS="bench:submit:$("$API_BIN" hash-key "$KEY")" \
DROVER_API__RATE_LIMIT__PER_MINUTE=6000000 \
DROVER_API__RATE_LIMIT__BURST=1000000 \
DROVER_API__JOBS__MAX_UNFINISHED_PER_ACCOUNT=100000000 \
DROVER_API__DEV_MODE=false \
DROVER_API__METRICS_LISTEN="" \
DROVER_API__MARKETPLACE_TOKEN_URL="https://api.amazon.com/auth/o2/token" \
DROVER_API__ENCRYPTION_KEY="$(openssl rand -base64 32)" \
DATABASE_URL="postgres://postgres@127.0.0.1:5432/$PG_DB" \
RUST_LOG="$API_LOG" \
  "$API_BIN" >"$WORK/api.log" 2>&1 &
API_PID=$!
PIDS+=("$API_PID")
wait_for drover-api "curl -sf http://127.0.0.1:$API_PORT/readyz" || { cat "$WORK/api.log"; exit 1; }
API_URL="http://127.0.0.1:$API_PORT"
echo "   drover-api pid $API_PID on $API_URL, RUST_LOG=$API_LOG (rate limiter and the cap on an account's unfinished jobs on, raised out of the way)"

start_workers() {
  DROVER_WORKER__REDIS_URL="$REDIS_URL" \
  DROVER_WORKER__CONCURRENCY__SYNC=0 \
  DROVER_WORKER__CONCURRENCY__BACKFILL=0 \
  DROVER_WORKER__CONCURRENCY__CLEANUP="$WORKER_CONCURRENCY" \
  RUST_LOG=warn,drover::runtime=info \
    "$WORKER_BIN" >"$WORK/worker.log" 2>&1 &
  WORKER_PIDS+=($!)
}

# $1: ids file, $2: how many were accepted. Prints "missing=N"; sets MISSING.
check_ids() {
  local unique
  sort -u "$1" >"$1.u"
  unique="$(wc -l <"$1.u")"
  sed 's/.*/EXISTS "drover:{cleanup}:job:&"/' "$1.u" >"$WORK/exists.cmds"
  MISSING="$(redis-cli -p "$REDIS_PORT" <"$WORK/exists.cmds" | grep -cv '^1$' || true)"
  if [ "$unique" != "$2" ]; then MISSING=$((MISSING + $2 - unique)); fi
  echo "   existence check: $2 accepted, $unique distinct ids recorded, missing in Redis: $MISSING"
}

queue_left() { # queued (the lanes' count) + leased + scheduled + retrying
  redis-cli -p "$REDIS_PORT" EVAL "return tonumber(redis.call('GET', KEYS[1]) or '0') + redis.call('ZCARD', KEYS[2]) + redis.call('ZCARD', KEYS[3]) + redis.call('ZCARD', KEYS[4])" 4 \
    "drover:{cleanup}:queued" "drover:{cleanup}:active" "drover:{cleanup}:scheduled" "drover:{cleanup}:retrying"
}

drain() { # wait (bounded) until the workers emptied the queue
  local t0 left
  t0=$(date +%s)
  for _ in $(seq 1 600); do
    left="$(queue_left)"
    [ "$left" = "0" ] && break
    sleep 0.5
  done
  echo "   drained: $left left $(( $(date +%s) - t0 )) s after the phase"
}

flush() { redis-cli -p "$REDIS_PORT" FLUSHALL >/dev/null; }

field() { python3 -c 'import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])' "$1" "$2"; }

# wrk, closed loop; each wrk thread writes the ids it got a 202 for.
cat >"$WORK/post_jobs.lua" <<LUA
local threads = {}
function setup(thread)
  table.insert(threads, thread)
  thread:set("tid", #threads)
end
function init(args)
  ids = io.open(args[1] .. "/" .. args[2] .. "-" .. tid .. ".txt", "w")
  ids:setvbuf("full")
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

run_wrk() { # $1: tag; sets WRK_RPS, WRK_ACCEPTED, WRK_BAD
  local r
  wrk -t"$THREADS" -c"$CONNECTIONS" -d"$CLOSED_S" --latency -s "$WORK/post_jobs.lua" \
    "$API_URL/v1/jobs" -- "$WORK" "$1" >"$WORK/$1.txt"
  # wrk's ids files are flushed when its threads end; give them a moment.
  sleep 0.5
  sed -n '/Latency Distribution/,/Requests\/sec/p' "$WORK/$1.txt" | sed 's/^/   /'
  r="$(grep '^RESULT' "$WORK/$1.txt")"
  echo "   $r"
  WRK_RPS="$(sed -E 's/.*requests_per_s=([0-9]+).*/\1/' <<<"$r")"
  WRK_ACCEPTED="$(sed -E 's/.*accepted=([0-9]+).*/\1/' <<<"$r")"
  WRK_BAD=$(( $(sed -E 's/.*other=([0-9]+).*/\1/' <<<"$r") + $(sed -E 's/.*errors=([0-9]+).*/\1/' <<<"$r") ))
  cat "$WORK/$1"-*.txt >"$WORK/$1.ids"
}

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

echo
echo "== 1. direct: RedisStore::enqueue, $DIRECT_INFLIGHT in flight, ${DIRECT_S} s (+2 s warm-up), no workers"
"$LOAD_BIN" --direct-redis "$REDIS_URL" --closed "$DIRECT_INFLIGHT" --duration-s "$DIRECT_S" --warmup-s 2 \
  --ids "$WORK/direct.ids" --label direct | sed 's/^/   /' | tee "$WORK/direct.txt"
DIRECT_R="$(grep -o 'RESULT .*' "$WORK/direct.txt" | cut -d' ' -f2-)"
DIRECT_RPS="$(field "$DIRECT_R" achieved_per_s)"
check_ids "$WORK/direct.ids" "$(field "$DIRECT_R" accepted_all)"
DIRECT_MISSING=$MISSING
flush

echo
echo "== 2. closed loop HTTP: wrk -t$THREADS -c$CONNECTIONS -d$CLOSED_S, no workers"
api_cpu0=$(cpu_ticks "$API_PID")
run_wrk closed
api_cpu=$(( $(cpu_ticks "$API_PID") - api_cpu0 ))
HTTP_RPS=$WRK_RPS
HTTP_BAD=$WRK_BAD
echo "   drover-api CPU: $(python3 -c "print(f'{$api_cpu / $(getconf CLK_TCK):.1f} s over ${CLOSED_S}, {1e6 * $api_cpu / $(getconf CLK_TCK) / max(1, $WRK_ACCEPTED):.0f} µs per accepted request')")"
check_ids "$WORK/closed.ids" "$WRK_ACCEPTED"
HTTP_MISSING=$MISSING
flush

start_workers
wait_for test_worker "grep -q 'worker started' $WORK/worker.log" || true

echo
echo "== 3. closed loop HTTP with one test_worker (c$WORKER_CONCURRENCY) draining: wrk -t$THREADS -c$CONNECTIONS -d$CLOSED_S"
run_wrk closedw
HTTPW_RPS=$WRK_RPS
drain
check_ids "$WORK/closedw.ids" "$WRK_ACCEPTED"
HTTPW_MISSING=$MISSING
flush

echo
echo "== 4. open loop: $RATE POST /v1/jobs per second for ${FIXED_S} s (+${WARMUP_S} s warm-up), ≤ $OPEN_CONNECTIONS connections, worker draining"
echo "   loadavg before: $(cat /proc/loadavg)"
"$LOAD_BIN" --url "$API_URL" --key "$KEY" --rate "$RATE" --duration-s "$FIXED_S" --warmup-s "$WARMUP_S" \
  --connections "$OPEN_CONNECTIONS" --ids "$WORK/fixed.ids" --label fixed | sed 's/^/   /' | tee "$WORK/fixed.txt"
FIXED_R="$(grep -o 'RESULT .*' "$WORK/fixed.txt" | cut -d' ' -f2-)"
drain
check_ids "$WORK/fixed.ids" "$(field "$FIXED_R" accepted_all)"
FIXED_MISSING=$MISSING

read -r FIXED_P99 FIXED_ALL FIXED_202 FIXED_ACH <<<"$(python3 -c '
import json,sys; r=json.loads(sys.argv[1]); s=r["status_all"]
print(r["p99_ms"], sum(s.values()), s.get("202", 0), r["achieved_per_s"])' "$FIXED_R")"

echo
echo "== summary (loadavg now: $(cat /proc/loadavg))"
RATIO="$(python3 -c "print(f'{$HTTP_RPS / $DIRECT_RPS:.3f}')")"
echo "   direct enqueue          $DIRECT_RPS jobs/s"
echo "   HTTP closed loop        $HTTP_RPS req/s (with a worker draining: $HTTPW_RPS req/s)"
echo "   HTTP / direct           $RATIO"
echo "   fixed rate $RATE/s      achieved $FIXED_ACH/s, p99 $FIXED_P99 ms, $FIXED_202 of $FIXED_ALL answered 202"
verdict() { if [ "$1" = 1 ]; then echo "MET"; else echo "NOT MET"; fi; }
a=$(python3 -c "print(int($FIXED_P99 <= 3 and $FIXED_202 == $FIXED_ALL and $FIXED_ALL > 0 and $FIXED_MISSING == 0))")
b=$(python3 -c "print(int($RATIO >= 0.50))")
stored=$([ "$DIRECT_MISSING$HTTP_MISSING$HTTPW_MISSING$FIXED_MISSING" = "0000" ] && echo 1 || echo 0)
echo "   target (a) p99 ≤ 3 ms at $RATE/s, all 202, all stored:  $(verdict "$a")"
echo "   target (b) HTTP ≥ 50 % of direct:                    $(verdict "$b")"
echo "   every accepted job exists (all phases):              $(verdict "$stored")"
echo "   wrk non-202 answers/errors in phase 2: $HTTP_BAD"
echo "SUMMARY {\"direct_per_s\": $DIRECT_RPS, \"http_closed_per_s\": $HTTP_RPS, \"http_closed_with_worker_per_s\": $HTTPW_RPS, \"ratio\": $RATIO, \"fixed\": $FIXED_R, \"missing\": [$DIRECT_MISSING, $HTTP_MISSING, $HTTPW_MISSING, $FIXED_MISSING], \"target_a\": $a, \"target_b\": $b}"
[ "$a$b$stored" = 111 ]
