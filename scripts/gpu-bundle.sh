#!/usr/bin/env bash
# Packs what scripts/gpu-check.sh needs into one file small enough to carry to a GPU machine
# that has Node.js 20+ but no npm access: dist/ and only the node_modules files that a run of
# gpu-check.sh loads (recorded on this machine, on the software Vulkan device), plus the files
# they read without require (webgpu's ES module and Dawn, the wasm backend's .wasm, zeromq's
# addon manifest and Linux x64 addons, sharp's libvips). Linux x64 only (Dawn's prebuilt for other platforms is left out).
#
#   scripts/gpu-bundle.sh [OUT]     # default runs/gpu-bundle.tgz; prints its size
#   # on the GPU machine:
#   mkdir b && tar xzf gpu-bundle.tgz -C b && b/scripts/gpu-check.sh
#
# It checks itself: the bundle is unpacked into an empty folder and gpu-check.sh runs there
# (--software, tiny sizes); a file it forgot fails that run.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=${1:-runs/gpu-bundle.tgz}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
npx tsc -p tsconfig.json
TRY=(--software --preset small --batch 2 --reps 1 --workers 1,2)

echo "gpu-bundle: recording what gpu-check.sh loads (on this machine's adapter)"
NODE_OPTIONS="--require $ROOT/scripts/record-loaded.cjs" ALEXNET_RECORD_LOADED="$WORK/loaded" \
  scripts/gpu-check.sh "${TRY[@]}" >"$WORK/record.log" 2>&1 || { tail -n 20 "$WORK/record.log"; exit 1; }

# Every loaded file under node_modules, and every package.json of its package: dual packages
# mark their CommonJS half with a package.json of its own ({"type": "commonjs"}), which the
# resolver reads but require.cache does not list.
grep "^$ROOT/node_modules/" "$WORK/loaded" | sed "s|^$ROOT/||" | sort -u >"$WORK/files"
sed -E 's|^((.*/)?node_modules/(@[^/]+/)?[^/]+)/.*|\1|' "$WORK/files" | sort -u | while read -r pkg; do
  find "$pkg" -name package.json -not -path "$pkg/node_modules/*"
done >>"$WORK/files"
# Whole folders of the native addons (their shared libraries sit beside them or in @img).
grep '\.node$' "$WORK/files" | xargs -r -n1 dirname | sort -u | while read -r d; do find "$d" -maxdepth 1 -type f; done >>"$WORK/files"
{
  echo node_modules/webgpu/index.js
  echo node_modules/webgpu/package.json
  find node_modules/webgpu/dist/linux-x64 -type f
  find node_modules/@tensorflow/tfjs-backend-wasm/dist -maxdepth 1 -name '*.wasm'
  # zeromq picks its Linux x64 addon (glibc or musl, by Node's ABI) through this manifest.
  echo node_modules/zeromq/build/manifest.json
  find node_modules/zeromq/build/linux/x64 -type f
  [ -d node_modules/@img/sharp-libvips-linux-x64 ] && find node_modules/@img/sharp-libvips-linux-x64 -type f
  find dist -type f ! -name '*.map'
  echo package.json
  echo scripts/gpu-check.sh
} >>"$WORK/files"
mkdir -p "$(dirname "$OUT")"
sort -u "$WORK/files" | tar czf "$OUT" -T -
echo "gpu-bundle: $OUT, $(du -h "$OUT" | cut -f1) ($(sort -u "$WORK/files" | wc -l) files)"

echo "gpu-bundle: checking it in an empty folder"
mkdir "$WORK/unpacked"
tar xzf "$OUT" -C "$WORK/unpacked"
(cd "$WORK/unpacked" && scripts/gpu-check.sh "${TRY[@]}") >"$WORK/check.log" 2>&1 \
  || { tail -n 30 "$WORK/check.log"; echo "gpu-bundle: the unpacked bundle failed (above)"; exit 1; }
tail -n 4 "$WORK/check.log"
echo "gpu-bundle: ok"
