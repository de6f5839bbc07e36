#!/usr/bin/env bash
# The benchmark harness, one command: release builds, the token/argon2 ceilings, then
# deploy/bench.py (services on PostgreSQL + Redis, 10 000 books, wrk). See README "Performance".
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
command -v wrk >/dev/null || { echo "wrk is required (apt-get install wrk)" >&2; exit 2; }
cargo build --release -p auth-service -p books-service -p authbooks-bench
cargo bench -p auth-service --bench tokens
python3 deploy/bench.py
