#!/usr/bin/env bash
# The test command: builds the binaries the process tests start, then runs every
# suite (unit, conformance, process-level, API, simulator) and the API's schema fuzzing.
# Each test starts its own redis-server on a free port; nothing uses :6379.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/cache/drover/target}"
bash tests/setup.sh
cargo build --workspace --bins --locked
log=$(mktemp)
trap 'rm -f "$log"' EXIT
# A failure does not end the script here: the closing line below is printed either way,
# then the script exits with the first failure's status.
rc=0
cargo test --workspace --all-targets --locked --no-fail-fast -- --test-threads "${TEST_THREADS:-4}" 2>&1 | tee "$log" || rc=$?
if [ -f tests/schemathesis.sh ]; then
  if [ "$rc" = 0 ]; then
    bash tests/schemathesis.sh || rc=$?
  else
    echo "== tests/schemathesis.sh skipped: the cargo tests failed" >&2
  fi
fi
# One closing line over every cargo test binary (doc tests are not run: none exist).
awk '/^test result:/ { p += $4; f += $6 } END { printf "cargo tests: %d passed, %d failed\n", p, f }' "$log"
exit "$rc"
