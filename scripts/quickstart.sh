#!/usr/bin/env bash
# Runs examples/quickstart.yaml on a fresh machine: venv + libtorch, build, demo data, run.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
cargo build --release --bin histodiff
exec target/release/histodiff run examples/quickstart.yaml "$@"
