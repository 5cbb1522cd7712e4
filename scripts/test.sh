#!/usr/bin/env bash
# Runs every test of histodiff on a fresh machine: sets up the venv (torch 2.13.0 + the
# PyTorch peers), starts the services the cluster tests need, generates the parity
# fixtures from the peers, then runs the whole cargo test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh

export HISTODIFF_FIXTURES="${HISTODIFF_FIXTURES:-$PWD/target/fixtures}"
mkdir -p "$HISTODIFF_FIXTURES"
for gen in tests/fixtures/gen_*.py; do
  [ -e "$gen" ] || continue
  echo "fixtures: $gen" >&2
  "$HISTODIFF_PYTHON" "$gen" --out "$HISTODIFF_FIXTURES"
done

for svc in scripts/services/*.sh; do
  [ -e "$svc" ] || continue
  echo "service: $svc" >&2
  source "$svc"
done

# The dev profile (dependencies at opt-level 2, see Cargo.toml) keeps CI to one build:
# the heavy work is in libtorch either way.
cargo test --workspace --no-fail-fast "$@"
