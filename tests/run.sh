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
cargo test --workspace --all-targets --locked -- --test-threads "${TEST_THREADS:-4}" 2>&1 | tee "$log"
if [ -f tests/schemathesis.sh ]; then
  bash tests/schemathesis.sh
fi
# One closing line over every cargo test binary (doc tests are not run: none exist).
awk '/^test result:/ { p += $4; f += $6 } END { printf "cargo tests: %d passed, %d failed\n", p, f }' "$log"
