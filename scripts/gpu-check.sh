#!/usr/bin/env bash
# On a machine with GPUs: is the webgpu path right, and how fast is it?
#   1. lists the Vulkan devices and Dawn's adapter (vendor, name, hardware or software);
#   2. runs the webgpu tests (test/backend/webgpu/webgpu.test.ts: every kernel of the three
#      presets against the cpu backend and one training step of each against wasm, 1e-4) pinned
#      to the first hardware GPU;
#   3. times the paper preset at batch 128 per worker, with 1 worker and then with every GPU
#      (one worker process per GPU, each pinned to its own), and prints one table: img/s,
#      scaling efficiency, and a step split into compute, readback, all-reduce and update.
#
#   scripts/gpu-check.sh                 # needs a built checkout (make build, or this builds it)
#   scripts/gpu-check.sh --software --preset small --batch 8 --reps 1
#                                        # the same on a software adapter (lavapipe): tries the script itself
# Options: --preset P (paper), --batch N per worker (128), --reps N (3), --workers LIST (1,<GPUs>).
# Results: runs/gpu-check/ (train.json, webgpu.tap, table.md). Needs a Vulkan driver and
# nothing else (no CUDA); Mesa's device-select layer (mesa-vulkan-drivers) for more than one GPU.
set -euo pipefail
cd "$(dirname "$0")/.."
PRESET=paper BATCH=128 REPS=3 WORKERS= SOFTWARE=0
while [ $# -gt 0 ]; do
  case "$1" in
    --preset) PRESET=$2; shift 2 ;;
    --batch) BATCH=$2; shift 2 ;;
    --reps) REPS=$2; shift 2 ;;
    --workers) WORKERS=$2; shift 2 ;;
    --software) SOFTWARE=1; shift ;;
    *) echo "gpu-check: unknown option $1 (see the header of $0)" >&2; exit 2 ;;
  esac
done
OUT=runs/gpu-check
mkdir -p "$OUT"
# A checkout builds here; a bundle (scripts/gpu-bundle.sh) comes built.
[ -f dist/scripts/gpu-check.js ] || npx tsc -p tsconfig.json

echo "== 1. adapters"
status=0
node dist/scripts/gpu-check.js adapters || status=$?
if [ "$status" = 3 ] && [ "$SOFTWARE" = 0 ]; then
  echo "gpu-check: no hardware GPU adapter here (--software runs the checks on a software one)"; exit 1
elif [ "$status" != 0 ] && [ "$status" != 3 ]; then
  exit "$status"
fi
GPUS=$(node -e "const d = require('./dist/src/devices/discover'); console.log(d.vulkanGpuIds(d.discoverVulkanDevices()).length)")
if [ "$SOFTWARE" = 1 ] && [ "$GPUS" = 0 ]; then GPUS=1; fi
WORKERS=${WORKERS:-$([ "$GPUS" -gt 1 ] && echo "1,$GPUS" || echo 1)}

echo "== 2. kernel checks and training steps vs the cpu and wasm backends ($([ "$SOFTWARE" = 1 ] && echo "the software adapter" || echo "first hardware GPU"))"
PIN=()
if [ "$SOFTWARE" = 0 ]; then mapfile -t PIN < <(node dist/scripts/gpu-check.js pin); fi
# The compiled test under plain node (no tap runner, no TypeScript): it also runs from a bundle.
env "${PIN[@]}" ALEXNET_REQUIRE_WEBGPU=1 TAP_TIMEOUT=600 node dist/test/backend/webgpu/webgpu.test.js >"$OUT/webgpu.tap" 2>&1 \
  || { grep -E 'not ok|# \{' "$OUT/webgpu.tap" | head -n 20; echo "gpu-check: webgpu checks failed ($OUT/webgpu.tap)"; exit 1; }
grep -E '^# \{' "$OUT/webgpu.tap"

echo "== 3. $PRESET at batch $BATCH per worker, workers $WORKERS"
GPU_FLAG=$([ "$SOFTWARE" = 0 ] && echo --gpus || true)
node dist/bench/train.js --backend webgpu $GPU_FLAG --presets "$PRESET" --workers "$WORKERS" --batch "$BATCH" --reps "$REPS" --no-torch \
  --out "$OUT/train.json" >"$OUT/train.log" 2>&1 || { tail -n 20 "$OUT/train.log"; exit 1; }
node dist/scripts/gpu-check.js table "$OUT/train.json" | tee "$OUT/table.md"
