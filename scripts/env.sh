# Sourced by scripts/quickstart.sh and scripts/test.sh: makes the project-local Python
# venv (torch 2.13.0 for tch 0.26 plus the parity peers) and exports what cargo and the
# binary need. Idempotent: a second call only checks a stamp file.
set -euo pipefail
HISTODIFF_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${HISTODIFF_VENV:-$HISTODIFF_ROOT/.venv}"
# Bump when the pinned set changes so every checkout reinstalls once.
REQ_STAMP="torch2.13.0-tv0.28-peers-v4"

# torch is pinned with torchvision: without the pin, timm pulls torchvision 0.29 → torch 2.14
# and tch 0.26 (built for libtorch 2.13.0) no longer links.
PINS=(torch==2.13.0 'torchvision==0.28.*')
# snakemake and dvc: the peers of benches/engine_vs_peers.py. playwright drives Debian's
# Chromium in the browser tests (it never downloads a browser of its own); rocrate and
# roc-validator check the provenance export, prov its PROV-JSON form; tensorboard reads the
# metrics export back.
PEERS=(numpy safetensors scipy scikit-learn timm diffusers pytorch-fid snakemake dvc
  playwright rocrate roc-validator prov tensorboard)

histodiff_venv() {
  if [ -f "$VENV/.stamp" ] && [ "$(cat "$VENV/.stamp")" = "$REQ_STAMP" ]; then
    return 0
  fi
  echo "histodiff: setting up $VENV (torch 2.13.0 + peers; first time only)" >&2
  [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
  # No pip cache: PyPI's torch wheel with its CUDA libraries is several GB, and a cached copy
  # would double that on a CI disk.
  "$VENV/bin/pip" install -q --no-cache-dir --disable-pip-version-check "${PINS[@]}" "${PEERS[@]}"
  "$VENV/bin/python" - <<'PY'
import torch, sys
assert torch.__version__.startswith("2.13.0"), f"torch {torch.__version__} is not 2.13.0: tch 0.26 needs libtorch 2.13.0"
PY
  echo "$REQ_STAMP" > "$VENV/.stamp"
}

histodiff_venv
TORCH_LIB="$("$VENV/bin/python" -c 'import torch, os; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')"
export LIBTORCH_USE_PYTORCH=1
export PATH="$VENV/bin:$PATH"
export LD_LIBRARY_PATH="$TORCH_LIB${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export HISTODIFF_PYTHON="$VENV/bin/python"
