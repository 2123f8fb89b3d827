#!/usr/bin/env bash
# The test command: builds the binaries the process tests start, then runs every
# suite (unit, conformance, process-level, API) and the API's schema fuzzing.
# Each test starts its own redis-server on a free port; nothing uses :6379.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/cache/drover/target}"
bash tests/setup.sh
cargo build --workspace --bins --locked
cargo test --workspace --locked -- --test-threads "${TEST_THREADS:-4}"
if [ -f tests/schemathesis.sh ]; then
  bash tests/schemathesis.sh
fi
