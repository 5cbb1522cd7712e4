#!/usr/bin/env bash
# clippy over every crate and target with warnings as errors (the lint policy is
# [workspace.lints] in Cargo.toml). Sources env.sh: torch-sys needs libtorch to build.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
cargo clippy --workspace --all-targets -- -D warnings
