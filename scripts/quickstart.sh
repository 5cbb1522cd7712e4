#!/usr/bin/env bash
# Runs examples/quickstart.yaml on a fresh machine: venv + libtorch, build, demo data, run.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
# The binary and the stages library its workers load (src/worker.rs).
cargo build --release -p histodiff -p histodiff-stages
exec target/release/histodiff run examples/quickstart.yaml "$@"
