#!/usr/bin/env bash
# Fill .device/ (git-ignored) with what scripts/gpu_bench.sh needs on the device machine,
# which has no network: wheels of the packages its image lacks (cp312, manylinux x86_64),
# the bundled weights and a BERT uncased tokenizer. Runs HERE, never on the device.
# Then checks the wheels install for CPython 3.12 on x86_64 and prints what will travel
# (the working tree + .device must stay under the 64 MiB limit). See docs/gpu.md.
#
#   scripts/prepare_device.sh            # idempotent: re-downloads nothing already there
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PY:-.venv/bin/python}
DEST=.device
MODELS_SRC=${LABELENGINE_MODELS_DIR:-$HOME/.cache/labelengine/models}
LIMIT_BYTES=$((64 * 1024 * 1024))
# Imported by the GPU suite and missing from the device image (docs/gpu.md says how this list
# was found). Versions are the dev venv's, so what runs there is what the tests run here.
# Not carried: polars, ultralytics-thop, ultralytics-platform (ultralytics imports them lazily),
# ray, spacy (no GPU benchmark imports them), greenlet (SQLAlchemy's asyncio only).
PACKAGES=(
    segment-anything ultralytics
    pydantic pydantic-core annotated-types typing-inspection typing-extensions
    pydantic-settings python-dotenv
    fastapi starlette uvicorn opentelemetry-api anyio
    sqlalchemy pycocotools
)
PLATFORMS=(manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64
    manylinux2014_x86_64 manylinux1_x86_64)
TAGS=(--only-binary=:all: --python-version 3.12 --implementation cp)
for p in "${PLATFORMS[@]}"; do TAGS+=(--platform "$p"); done

mkdir -p "$DEST/wheels" "$DEST/models/litemedsam" "$DEST/models/yolo11n" "$DEST/bert-tokenizer"

pins=$("$PY" - "${PACKAGES[@]}" <<'EOF'
import sys
from importlib.metadata import version

print(" ".join(f"{name}=={version(name)}" for name in sys.argv[1:]))
EOF
)
echo "wheels: $pins"
# shellcheck disable=SC2086  # $pins is a list of requirement strings
"$PY" -m pip download -q --no-deps "${TAGS[@]}" -d "$DEST/wheels" $pins \
    2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)

# One version of each package: a stale second wheel stops the whole install there.
"$PY" - "$DEST/wheels" <<'EOF'
import sys
from collections import Counter
from pathlib import Path

names = Counter(p.name.split("-")[0].lower() for p in Path(sys.argv[1]).glob("*.whl"))
twice = sorted(n for n, k in names.items() if k > 1)
if twice:
    sys.exit(f"more than one wheel of {twice} in {sys.argv[1]}: delete the stale ones")
EOF

for rel in litemedsam/lite_medsam.pth yolo11n/yolo11n.pt; do
    if [ ! -f "$MODELS_SRC/$rel" ]; then
        echo "missing $MODELS_SRC/$rel: run .venv/bin/labelengine models pull" >&2
        exit 1
    fi
    cp -p "$MODELS_SRC/$rel" "$DEST/models/$rel"
done

tokenizer_src=$("$PY" -c 'from engine.training.ner import bundled_encoder_dir; print(bundled_encoder_dir())')
for f in tokenizer.json tokenizer_config.json special_tokens_map.json vocab.txt; do
    cp -p "$tokenizer_src/$f" "$DEST/bert-tokenizer/$f"
done

# Every wheel must install on the device's CPython 3.12 / x86_64 (resolution only, no network).
"$PY" -m pip install -q --dry-run --ignore-installed --no-index --no-deps "${TAGS[@]}" \
    --target /tmp/prepare-device-check "$DEST"/wheels/*.whl
echo "wheels resolve for cp312 manylinux x86_64: $(ls "$DEST"/wheels/*.whl | wc -l) files"

size_of() { if [ $# -gt 0 ]; then du -cb "$@" | tail -1 | cut -f1; else echo 0; fi; }
mapfile -t tracked < <(git ls-files)
mapfile -t untracked < <(git ls-files -o --exclude-standard)
tracked_bytes=$(size_of "${tracked[@]}")
untracked_bytes=$(size_of "${untracked[@]}")
wheels_bytes=$(size_of "$DEST/wheels")
models_bytes=$(size_of "$DEST/models" "$DEST/bert-tokenizer")
total=$((tracked_bytes + untracked_bytes + wheels_bytes + models_bytes))
mib() { awk -v b="$1" 'BEGIN { printf "%.1f MiB", b / 1048576 }'; }
echo "tracked files:              $(mib "$tracked_bytes")"
echo "untracked, not ignored:     $(mib "$untracked_bytes")"
echo "$DEST/wheels:              $(mib "$wheels_bytes")"
echo "$DEST/models + tokenizer:  $(mib "$models_bytes")"
echo "travels with carry=[\"$DEST\"]: $(mib "$total") of $(mib "$LIMIT_BYTES")"
if [ "$total" -gt "$LIMIT_BYTES" ]; then
    echo "over the device tool's 64 MiB limit: ignore or remove untracked files first" >&2
    exit 1
fi
echo 'next: the device tool'"'"'s run with {"command": "bash scripts/gpu_bench.sh", "carry": [".device"], "timeout_s": 560}'
