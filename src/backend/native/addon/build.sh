#!/usr/bin/env bash
# Builds the oneDNN addon (dnnl_addon.cc) into $1 (default dist/native/alexnet_native.node).
#
# Called by `make native` (and so by `make build`, `make train`, `make test`). Native compute is
# optional: where it cannot be built (not Linux, no g++, no Node headers, no libdnnl-dev and no
# way to install it) this prints ONE line saying why and exits 0, and the runs use wasm.
# libdnnl-dev is installed with apt-get when missing and we are root.
set -u
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ADDON=native
ADDON_FALLBACK="the wasm backend will be used"
lib="$here/../../../../scripts/addon-build-lib.sh"
source "$lib"
src="$here/dnnl_addon.cc"
out="${1:-dist/native/alexnet_native.node}"
log="$(dirname "$out")/build.log"
dnnl_header=/usr/include/oneapi/dnnl/dnnl.hpp

addon_need_toolchain
addon_node_include node_api.h
addon_apt_install "$dnnl_header" "$log" libdnnl-dev
addon_up_to_date "$out" "$src" "$dnnl_header" "$0" "$lib" && exit 0

# -fopenmp: the addon sets oneDNN's OpenMP thread count (Debian's libdnnl uses libgomp).
# -O3 -fno-math-errno: the element-wise, LRN and update loops vectorise (sqrt included; nothing
# reads errno). No -ffast-math, and -ffp-contract=off (GCC fuses a * b + c into one rounding by
# default where the target has FMA, as the AVX-512 clones do): results stay those of the scalar
# loops, bit for bit, on every machine.
addon_compile "$out" "$log" " (oneDNN $(dpkg-query -W -f='${Version}' libdnnl-dev 2>/dev/null || echo '?'))" \
  -O3 -fno-math-errno -ffp-contract=off -std=c++17 -shared -fPIC -fopenmp -Wall -Wextra -I"$NODE_INCLUDE" \
  -DNODE_GYP_MODULE_NAME=alexnet_native "$src" -ldnnl
