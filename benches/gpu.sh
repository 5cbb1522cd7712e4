#!/usr/bin/env bash
# Paper-size throughput on a CUDA machine: every paper-size stage — autoencoder training
# (kl-f4, 256², batch 6), diffusion training (official 295 M UNet, 64² latents, batch 4),
# latent classifier ϕ (batch 32), ViT-B/16 (batch 128) and classifier-guided DDIM sampling
# (batch 10, 200 steps) — for a few steps, in our Rust models (tch) and in PyTorch eager on
# the reference modules of tests/fixtures/gen_*.py, on the same card, and prints one
# Markdown table per precision with images/s side by side.
#
# Usage: benches/gpu.sh [extra models_vs_pytorch.py arguments, e.g. --batch 2 or --write BENCHMARKS.md]
# Environment: PRECISIONS (default "bf16 f32"; fp16 also works), DEVICE (default cuda),
#              ITERS (timed steps per round, default 3), ROUNDS (default 2).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v nvidia-smi >/dev/null 2>&1; then
  echo "gpu.sh: nvidia-smi not found: this benchmark needs an NVIDIA GPU and its driver" >&2
  exit 1
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader

source scripts/env.sh
python - <<'PY'
import sys, torch
if not torch.cuda.is_available():
    sys.exit(f"gpu.sh: torch {torch.__version__} in the venv sees no CUDA device (CUDA build: {torch.version.cuda})")
print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, {torch.cuda.get_device_name(0)}")
PY

cargo build --release -p histodiff-stages --example bench_models
BIN=target/release/examples/bench_models
# tch links libtorch_cuda only when it was found at build time: check before timing.
"$BIN" --size paper --device "${DEVICE:-cuda}" --list >/dev/null

for precision in ${PRECISIONS:-bf16 f32}; do
  echo "== paper size, ${DEVICE:-cuda}, $precision ==" >&2
  python benches/models_vs_pytorch.py --rust-bin "$BIN" --size paper --device "${DEVICE:-cuda}" \
    --precision "$precision" --iters "${ITERS:-3}" --rounds "${ROUNDS:-2}" "$@"
done
