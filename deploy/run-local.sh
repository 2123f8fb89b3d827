#!/usr/bin/env bash
# Runs the whole system on this machine: Redis (a local redis-server unless
# DROVER_REDIS_URL is given), the marketplace simulator with demo accounts, the API
# and two workers. Submits a few jobs and prints where to look. Ctrl-C stops
# everything it started (by PID).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/cache/drover/target}"
bash tests/setup.sh
echo "== building (release)"
cargo build --release --locked -p drover-api -p drover-worker -p drover-tests --bin drover-api --bin drover-worker --bin simulator
bin="$CARGO_TARGET_DIR/release"

run_dir=$(mktemp -d /tmp/drover-run.XXXXXX)
pids=()
cleanup() {
  trap - INT TERM EXIT
  echo; echo "== stopping"
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  echo "logs kept in $run_dir"
}
trap cleanup INT TERM EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

if [ -z "${DROVER_REDIS_URL:-}" ]; then
  port=$(free_port)
  redis-server --port "$port" --bind 127.0.0.1 --dir "$run_dir" --save "" --appendonly yes --appendfsync everysec \
    --daemonize no --logfile "$run_dir/redis.log" &
  pids+=($!)
  DROVER_REDIS_URL="redis://127.0.0.1:$port"
  for _ in $(seq 1 100); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.05; done
fi
export DATABASE_URL="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}"

sim_port=${SIM_PORT:-9100}
"$bin/simulator" --listen "127.0.0.1:$sim_port" --accounts 3 --rate-profile fast > "$run_dir/simulator.log" 2>&1 &
pids+=($!)

api_port=${API_PORT:-8080}
DROVER_API__LISTEN="127.0.0.1:$api_port" DROVER_API__REDIS_URL="$DROVER_REDIS_URL" DROVER_API__DEV_MODE=true \
  DROVER_LOG_FORMAT=text "$bin/drover-api" > "$run_dir/api.log" 2>&1 &
pids+=($!)
for i in 1 2; do
  DROVER_WORKER__REDIS_URL="$DROVER_REDIS_URL" DROVER_LOG_FORMAT=text "$bin/drover-worker" > "$run_dir/worker-$i.log" 2>&1 &
  pids+=($!)
done

api="http://127.0.0.1:$api_port"
for _ in $(seq 1 100); do curl -fsS "$api/readyz" >/dev/null 2>&1 && break; sleep 0.1; done
auth="Authorization: Bearer drover-dev-key"
echo "== submitting demo jobs"
curl -fsS -X POST "$api/v1/jobs" -H "$auth" -H 'content-type: application/json' \
  -d '{"kind":"sync","payload":{"account_id":"acct-1","marketplace_id":"ATVPDKIKX0DER","resources":["orders","listings"]}}'; echo
curl -fsS -X POST "$api/v1/jobs" -H "$auth" -H 'content-type: application/json' \
  -d '{"kind":"cleanup","payload":{"account_id":"acct-2","marketplace_id":"ATVPDKIKX0DER","skus":["SKU-00001","SKU-00002"]}}'; echo

cat <<MSG

Drover is running (logs in $run_dir):
  API         $api        (dev key: drover-dev-key)
  OpenAPI     $api/openapi.json
  Metrics     $api/metrics
  Queues      curl -H '$auth' $api/v1/queues
  Jobs        curl -H '$auth' '$api/v1/jobs?limit=10'
  Submit      curl -X POST $api/v1/jobs -H '$auth' -H 'content-type: application/json' \\
                -d '{"kind":"cleanup","payload":{"account_id":"acct-1","marketplace_id":"ATVPDKIKX0DER","skus":["SKU-00003"]}}'
  Simulator   http://127.0.0.1:$sim_port/_admin/stats
  Redis       $DROVER_REDIS_URL
Ctrl-C stops everything.
MSG
wait
