#!/usr/bin/env bash
# The GPU benchmark suite in one command, for the device machine (docs/gpu.md):
#   1. installs .device/wheels (made here by scripts/prepare_device.sh) into /tmp/labelengine-site
#      with the image's python3, no index, no deps;
#   2. runs scripts/gpu_bench.py run: every step under a timeout inside GPU_BENCH_BUDGET_S
#      (default 450 s); results in $OUT: gpu_results.md, gpu_results.json, gpu_bench.log,
#      summary.txt, env.txt, pip_install.log.
# DRY_RUN=1 runs the same steps here on CPU with tiny models and the dev venv (plumbing only).
# Extra arguments go to `gpu_bench.py run` (e.g. --only env,click-litemedsam-bf16).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$PWD/gpu_bench_out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 YOLO_OFFLINE=1 YOLO_VERBOSE=false HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export LABELENGINE_MODELS_DIR="$PWD/.device/models"
if [ ! -d .device/wheels ] || [ ! -f .device/models/litemedsam/lite_medsam.pth ]; then
    echo ".device/ is missing or incomplete: run scripts/prepare_device.sh here and carry .device" >&2
    exit 2
fi

if [ "${DRY_RUN:-0}" = 1 ]; then
    PY=${PY:-.venv/bin/python}
    mode=(--dry-run --budget-s "${GPU_BENCH_BUDGET_S:-240}")
else
    PY=${PY:-python3}
    SITE=/tmp/labelengine-site
    if ! "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target "$SITE" .device/wheels/*.whl >"$OUT/pip_install.log" 2>&1; then
        echo "installing .device/wheels failed:" >&2
        tail -20 "$OUT/pip_install.log" >&2
        exit 3
    fi
    mode=(--budget-s "${GPU_BENCH_BUDGET_S:-450}")
fi
export PYTHONPATH="${SITE:+$SITE:}$PWD${PYTHONPATH:+:$PYTHONPATH}"

{
    echo "== nvidia-smi"; nvidia-smi 2>&1 || echo "(no nvidia-smi)"
    echo "== $PY"; "$PY" -c 'import sys; print(sys.executable, sys.version)'
    echo "== pip list"; "$PY" -m pip list 2>/dev/null
    if [ -n "${SITE:-}" ]; then echo "== carried ($SITE)"; "$PY" -m pip list --path "$SITE" 2>/dev/null; fi
} >"$OUT/env.txt" 2>&1

"$PY" scripts/gpu_bench.py run --out "$OUT" "${mode[@]}" "$@"
rc=$?
cat "$OUT/gpu_results.md"
echo; echo "== summary (rc $rc)"; cat "$OUT/summary.txt"
exit $rc
