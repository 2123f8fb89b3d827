#!/usr/bin/env bash
# Runs the whole system on this machine: Redis (a local redis-server with the shipped
# deploy/redis/redis.conf unless DROVER_REDIS_URL is given), PostgreSQL (DATABASE_URL, default the local server's
# `drover` database, created if missing), the marketplace simulator with demo accounts,
# the API and two workers. Registers the demo accounts, submits a sync, a backfill and a
# cleanup, and prints where to look. Ctrl-C stops everything it started (by PID).
#
#   --cluster   a local Redis Cluster instead of one redis-server: six cluster-mode nodes
#               on free ports (three primaries, one replica each), created with
#               deploy/redis/cluster-init.sh; API and workers use redis+cluster://...
#               and queue.partitions = 16 (with DROVER_REDIS_URL, that URL and 16).
# DROVER_BIN_DIR: take drover-api, drover (the CLI), drover-worker and simulator from
# there instead of building them (release). Ports: API_PORT (8080), SIM_PORT (9100),
# API_METRICS_PORT (9465), WORKER_METRICS_PORTS ("9464 9466").
# Ctrl-C stops the API and workers gracefully (up to 45 s), then the simulator and Redis;
# a second Ctrl-C meanwhile ends what is left at once. A TERM or a HUP (the terminal
# closed) stops the same way.
# Before it starts anything it checks that those ports are free and that PostgreSQL
# answers; a process that exits or does not get ready while starting ends the script,
# with the end of its log, and what was started is stopped.
set -euo pipefail
cd "$(dirname "$0")/.."
cluster=""
for arg in "$@"; do
  case "$arg" in
    --cluster) cluster=1 ;;
    *) echo "usage: $0 [--cluster]" >&2; exit 2 ;;
  esac
done
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/cache/drover/target}"
bash tests/setup.sh --demo

sim_port=${SIM_PORT:-9100}
api_port=${API_PORT:-8080}
# Metrics: the API on its default port (9465), worker 1 on the worker's (9464), worker 2 on 9466.
api_metrics_port=${API_METRICS_PORT:-9465}
read -r -a worker_metrics <<< "${WORKER_METRICS_PORTS:-9464 9466}"
if [ "${#worker_metrics[@]}" != 2 ]; then
  echo "error: WORKER_METRICS_PORTS=\"${WORKER_METRICS_PORTS:-}\" must name two ports, one per worker (e.g. \"9464 9466\")" >&2
  exit 2
fi

# Every fixed port this script binds must be free (on 127.0.0.1, where it binds them):
# a Drover already on API_PORT (the compose stack, say) would otherwise answer for the one
# started here, and the demo would register its accounts and jobs there. Redis takes free
# ports of its own.
check_ports() {
  python3 - "$@" <<'PY'
import errno, socket, sys
problems, seen = [], {}
for spec in sys.argv[1:]:
    var, value = spec.split("=", 1)
    hint = '"<port> <port>" (two free ones)' if var == "WORKER_METRICS_PORTS" else "<a free port>"
    try:
        port = int(value)
        if not 0 < port < 65536:
            raise ValueError
    except ValueError:
        problems.append(f"{var}: {value!r} is not a port number")
        continue
    if port in seen:
        twice = f"in {var}" if seen[port] == var else f"in {seen[port]} and {var}"
        problems.append(f"port {port} is given twice, {twice}: set {var}={hint}")
        continue
    seen[port] = var
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the binaries bind
    try:
        s.bind(("127.0.0.1", port))
    except OSError as e:
        why = "is in use" if e.errno == errno.EADDRINUSE else f"cannot be bound ({e.strerror})"
        problems.append(f"port {port} {why}: set {var}={hint}, or stop what holds it")
    finally:
        s.close()
for p in dict.fromkeys(problems):
    print(f"error: {p}", file=sys.stderr)
sys.exit(1 if problems else 0)
PY
}
check_ports "SIM_PORT=$sim_port" "API_PORT=$api_port" "API_METRICS_PORT=$api_metrics_port" \
  "WORKER_METRICS_PORTS=${worker_metrics[0]}" "WORKER_METRICS_PORTS=${worker_metrics[1]}"

# PostgreSQL must answer before anything starts (tests/setup.sh has tried to start the
# local server). pg_isready: 0 accepting, 1 starting up, 2 no answer, 3 not checked (a
# DATABASE_URL libpq cannot read; the API reports that one itself).
if command -v pg_isready >/dev/null 2>&1; then
  pg_rc=0
  if [ -n "${DATABASE_URL:-}" ]; then
    pg_isready -q -d "$DATABASE_URL" || pg_rc=$?
    pg_where="DATABASE_URL's server"
  else
    pg_isready -q -h 127.0.0.1 -p 5432 || pg_rc=$?
    pg_where="127.0.0.1:5432"
  fi
  case "$pg_rc" in
    1) pg_why="it rejects connections: starting up or shutting down" ;;
    2) pg_why="no response" ;;
    *) pg_why="" ;;
  esac
  if [ -n "$pg_why" ]; then
    echo "error: PostgreSQL at $pg_where is not answering (pg_isready: $pg_why)." >&2
    echo "  Start it (bash tests/setup.sh starts the local one; pg_lsclusters lists them), or set DATABASE_URL to a server that answers." >&2
    exit 1
  fi
fi

if [ -z "${DATABASE_URL:-}" ]; then
  # The local server's `drover` database (trust auth as user postgres), created once.
  # -w: never a password prompt; a server that wants one is an error, said here.
  if ! psql -w -h 127.0.0.1 -U postgres -tAc 'SELECT 1' >/dev/null; then
    echo "error: cannot log in to PostgreSQL at 127.0.0.1:5432 as user postgres without a password:" \
      "run bash tests/setup.sh (as root, it lets postgres in from 127.0.0.1), or set DATABASE_URL" >&2
    exit 1
  fi
  if ! psql -w -h 127.0.0.1 -U postgres -tAc "SELECT 1 FROM pg_database WHERE datname = 'drover'" | grep -q 1; then
    psql -w -h 127.0.0.1 -U postgres -qc "CREATE DATABASE drover"
  fi
  DATABASE_URL="postgres://postgres@127.0.0.1:5432/drover"
fi
export DATABASE_URL

if [ -n "${DROVER_BIN_DIR:-}" ]; then
  bin="$DROVER_BIN_DIR"
else
  echo "== building (release)"
  cargo build --release --locked -p drover-api -p drover-worker -p drover-simulator --bin drover-api --bin drover --bin drover-worker --bin simulator
  bin="$CARGO_TARGET_DIR/release"
fi

run_dir=$(mktemp -d /tmp/drover-run.XXXXXX)
# Every child runs in a session of its own (setsid), so a Ctrl-C reaches this script only
# and the stop goes in order: API and workers first (one SIGTERM each: a worker hands its
# cut-off jobs back, which needs Redis), then the simulator and Redis.
apps=()
infra=()
# Set by a second Ctrl-C while stopping: what is left gets SIGKILL at once.
hurry=""
stop() {
  for pid in "$@"; do kill -TERM "$pid" 2>/dev/null || true; done
  # Up to 45 s for a graceful stop (a worker waits up to 30 s for its running jobs, then
  # hands them back), then SIGKILL.
  for _ in $(seq 1 450); do
    [ -n "$hurry" ] && break
    alive=0
    for pid in "$@"; do kill -0 "$pid" 2>/dev/null && alive=1; done
    [ "$alive" = 0 ] && break
    sleep 0.1
  done
  for pid in "$@"; do kill -KILL "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
}
cleanup() {
  # A second Ctrl-C (or TERM) cuts the grace short but still ends everything started.
  # Nothing may end the stop part-way: a Ctrl-C also kills the `sleep` it waits on.
  set +e
  trap - EXIT
  trap 'hurry=1; echo "== stopping at once (SIGKILL)"' INT TERM HUP
  echo; echo "== stopping (the workers finish or hand back their running jobs: up to 30 s)"
  stop "${apps[@]}"
  stop "${infra[@]}"
  echo "logs kept in $run_dir"
}
# A Ctrl-C (or TERM, or HUP: the terminal closed; the children, in sessions of their own,
# do not get that one) stops everything and ends the script, whatever step it was at; the
# EXIT trap stops everything when a step fails.
trap 'cleanup; exit 130' INT
trap 'cleanup; exit 143' TERM
trap 'cleanup; exit 129' HUP
trap cleanup EXIT

# wait_ready NAME PID LOG SECONDS COMMAND...: until COMMAND succeeds while PID runs. When
# PID exits first, or COMMAND has not succeeded within SECONDS, prints the end of LOG and
# exits 1 (the EXIT trap stops what was started).
wait_ready() {
  local name=$1 pid=$2 log=$3 secs=$4
  shift 4
  local deadline=$((SECONDS + secs)) why=""
  while :; do
    if ! kill -0 "$pid" 2>/dev/null; then
      why="exited while starting"
      break
    fi
    # Checked again after the answer: it must come from this process, still running.
    if "$@" >/dev/null 2>&1 && kill -0 "$pid" 2>/dev/null; then
      return 0
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
      why="is not ready after $secs s"
      break
    fi
    sleep 0.1
  done
  echo "error: $name (pid $pid) $why; the end of its log, $log:" >&2
  tail -n 20 "$log" 2>/dev/null | sed 's/^/  | /' >&2
  exit 1
}
redis_pong() { [ "$(redis-cli -p "$1" ping 2>/dev/null)" = PONG ]; }

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# A free port whose cluster bus port (port + 10000) is free too.
free_cluster_port() {
  python3 -c 'import socket
while True:
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]
    if p >= 55000: continue
    b = socket.socket()
    try:
        b.bind(("127.0.0.1", p + 10000))
    except OSError:
        continue
    print(p); break'
}

partitions=1
if [ -n "$cluster" ]; then
  partitions=16
fi
if [ -n "$cluster" ] && [ -z "${DROVER_REDIS_URL:-}" ]; then
  echo "== starting a local Redis Cluster (6 nodes)"
  nodes=()
  for i in 1 2 3 4 5 6; do
    port=$(free_cluster_port)
    mkdir -p "$run_dir/redis-node-$i"
    setsid redis-server deploy/redis/redis.conf --port "$port" --bind 127.0.0.1 --dir "$run_dir/redis-node-$i" \
      --cluster-enabled yes --cluster-config-file nodes.conf --cluster-node-timeout 5000 \
      --daemonize no --logfile "$run_dir/redis-node-$i.log" &
    infra+=($!)
    nodes+=("127.0.0.1:$port")
  done
  sh deploy/redis/cluster-init.sh "${nodes[@]}" > "$run_dir/cluster-init.log" 2>&1 \
    || { cat "$run_dir/cluster-init.log"; exit 1; }
  tail -n1 "$run_dir/cluster-init.log"
  DROVER_REDIS_URL="redis+cluster://$(IFS=,; echo "${nodes[*]}")"
elif [ -z "${DROVER_REDIS_URL:-}" ]; then
  port=$(free_port)
  setsid redis-server deploy/redis/redis.conf --port "$port" --bind 127.0.0.1 --dir "$run_dir" \
    --daemonize no --logfile "$run_dir/redis.log" &
  infra+=($!)
  redis_pid=$!
  DROVER_REDIS_URL="redis://127.0.0.1:$port"
  wait_ready redis-server "$redis_pid" "$run_dir/redis.log" 10 redis_pong "$port"
fi

setsid "$bin/simulator" --listen "127.0.0.1:$sim_port" --accounts 3 --rate-profile fast > "$run_dir/simulator.log" 2>&1 &
infra+=($!)
sim_pid=$!
sim="http://127.0.0.1:$sim_port"
wait_ready simulator "$sim_pid" "$run_dir/simulator.log" 30 curl -fsS --max-time 2 "$sim/_admin/stats"

DROVER_CONFIG=deploy/local/drover.toml DROVER_API__LISTEN="127.0.0.1:$api_port" DROVER_API__REDIS_URL="$DROVER_REDIS_URL" DROVER_API__DEV_MODE=true \
  DROVER_API__QUEUE__PARTITIONS="$partitions" DROVER_API__METRICS_LISTEN="127.0.0.1:$api_metrics_port" \
  DROVER_API__MARKETPLACE_TOKEN_URL="$sim/auth/o2/token" \
  DROVER_LOG_FORMAT=text setsid "$bin/drover-api" > "$run_dir/api.log" 2>&1 &
apps+=($!)
api_pid=$!
worker_pids=()
for i in 1 2; do
  DROVER_CONFIG=deploy/local/drover.toml DROVER_WORKER__REDIS_URL="$DROVER_REDIS_URL" \
    DROVER_WORKER__QUEUE__PARTITIONS="$partitions" \
    DROVER_WORKER__METRICS_LISTEN="127.0.0.1:${worker_metrics[$((i - 1))]}" \
    DROVER_WORKER__MARKETPLACE__BASE_URL="$sim" DROVER_LOG_FORMAT=text setsid "$bin/drover-worker" > "$run_dir/worker-$i.log" 2>&1 &
  apps+=($!)
  worker_pids+=($!)
done

api="http://127.0.0.1:$api_port"
# Ready: Redis and Postgres answer and the migrations are applied (a fresh database's
# take a few seconds).
wait_ready drover-api "$api_pid" "$run_dir/api.log" 60 curl -fsS --max-time 2 "$api/readyz"
for i in 1 2; do
  wait_ready "drover-worker $i" "${worker_pids[$((i - 1))]}" "$run_dir/worker-$i.log" 30 \
    curl -fsS --max-time 2 -o /dev/null "http://127.0.0.1:${worker_metrics[$((i - 1))]}/metrics"
done
auth="Authorization: Bearer drover-dev-key"
json='content-type: application/json'
echo "== registering the simulator's demo accounts (credentials checked with its LWA endpoint)"
# Registering an account queues its first sync; acct-1's is the demo's own sync below
# (30 days back), so it is registered without one: one sync per account runs at a time,
# and a second would be answered with the first.
for a in acct-1 acct-2 acct-3; do
  first_sync=true
  [ "$a" = acct-1 ] && first_sync=false
  code=$(curl -sS --max-time 30 -o "$run_dir/account-$a.json" -w '%{http_code}' -X POST "$api/v1/accounts" -H "$auth" -H "$json" \
    -d "{\"id\":\"$a\",\"seller_id\":\"$a\",\"marketplace_ids\":[\"ATVPDKIKX0DER\"],\"client_id\":\"amzn1.application-oa2-client.sim\",\"client_secret\":\"sim-client-secret\",\"refresh_token\":\"rt-$a\",\"first_sync\":$first_sync}")
  case "$code" in 201) echo "  $a registered";; 409) echo "  $a already registered";; *) echo "  $a: HTTP $code"; cat "$run_dir/account-$a.json"; echo;; esac
done
echo "== submitting demo jobs"
since=$(date -u -d '-30 days' +%Y-%m-%dT%H:%M:%SZ)
start=$(date -u -d '-3 days' +%Y-%m-%dT00:00:00Z)
end=$(date -u +%Y-%m-%dT00:00:00Z)
submit() { curl -fsS --max-time 30 -X POST "$api/v1/jobs" -H "$auth" -H "$json" -d "$1" | tee -a "$run_dir/jobs.json"; echo; }
submit "{\"kind\":\"sync\",\"payload\":{\"account_id\":\"acct-1\",\"marketplace_id\":\"ATVPDKIKX0DER\",\"resources\":[\"orders\",\"listings\"],\"since\":\"$since\"}}"
submit "{\"kind\":\"backfill\",\"payload\":{\"account_id\":\"acct-2\",\"marketplace_id\":\"ATVPDKIKX0DER\",\"report_type\":\"GET_FLAT_FILE_ALL_ORDERS_DATA_BY_ORDER_DATE_GENERAL\",\"start\":\"$start\",\"end\":\"$end\"}}"
printf 'sku\nSKU-00001\nSKU-00002\nSKU-00003\nNO-SUCH-SKU\n' > "$run_dir/cleanup.csv"
curl -fsS --max-time 30 -X POST "$api/v1/jobs/cleanup.csv?account_id=acct-3&marketplace_id=ATVPDKIKX0DER" -H "$auth" \
  -H 'content-type: text/csv' --data-binary @"$run_dir/cleanup.csv" | tee -a "$run_dir/jobs.json"; echo

cat <<MSG

Drover is running (logs in $run_dir):
  API         $api        (dev key: drover-dev-key)
  Console     $api/ui   (sign in with drover-dev-key)
  OpenAPI     $api/openapi.json
  Metrics     API http://127.0.0.1:$api_metrics_port/metrics   workers: http://127.0.0.1:${worker_metrics[0]}/metrics, :${worker_metrics[1]}/metrics
  Queues      curl -H '$auth' $api/v1/queues
  Jobs        curl -H '$auth' '$api/v1/jobs?limit=10'
  Job items   curl -H '$auth' $api/v1/jobs/<id>/items        (SKUs, windows, pages)
  Limits      curl -H '$auth' $api/v1/accounts/acct-1/limits (rate limits, cooldown, breakers)
  Schedules   built-in: a sync every 15 min and daily/weekly audit backfills per active account
  Register    curl -X POST $api/v1/accounts -H '$auth' -H 'content-type: application/json' \\
                -d '{"id":"acct-1","seller_id":"acct-1","marketplace_ids":["ATVPDKIKX0DER"],"client_id":"amzn1.application-oa2-client.sim","client_secret":"sim-client-secret","refresh_token":"rt-acct-1"}'
              (done above for acct-1..3; a job for an account not registered fails for good)
  Submit      curl -X POST $api/v1/jobs -H '$auth' -H 'content-type: application/json' \\
                -d '{"kind":"cleanup","payload":{"account_id":"acct-1","marketplace_id":"ATVPDKIKX0DER","skus":["SKU-00003"]}}'
  CLI         DROVER_API=$api DROVER_API_KEY=drover-dev-key $bin/drover jobs ls
  Simulator   $sim/_admin/stats
  Redis       $DROVER_REDIS_URL   (queue.partitions $partitions)
  Postgres    $DATABASE_URL   (tables orders, report_order_lines, listings, job_items, ...)
Ctrl-C stops everything.
MSG
wait
