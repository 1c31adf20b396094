#!/usr/bin/env bash
# Builds the shared-memory addon (shm_addon.cc and the headers it includes) into $1
# (default dist/native/alexnet_shm.node).
#
# Called by `make shm` (and so by `make build`). It needs only g++ and Node's headers (v8.h,
# node.h): no oneDNN. Optional: where it cannot be built this prints ONE line saying why and
# exits 0, and ranks on one host talk over the ZeroMQ ring as before.
set -u
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ADDON=shm
ADDON_FALLBACK="ranks on one host will use the ZeroMQ ring"
lib="$here/../../../../scripts/addon-build-lib.sh"
source "$lib"
src="$here/shm_addon.cc"
out="${1:-dist/native/alexnet_shm.node}"
log="$(dirname "$out")/shm-build.log"

[ "$(uname -s)" = Linux ] || addon_skip "shared memory with futexes needs Linux, this is $(uname -s)"
addon_need_toolchain
addon_node_include node.h v8.h
# Up to date when newer than every source (shm_addon.cc includes the headers beside it).
addon_up_to_date "$out" "$here"/*.cc "$here"/*.h "$0" "$lib" && exit 0

# -O3: the fold and conversion loops vectorise. No -ffast-math: sums must stay IEEE, element by
# element in the ring's order, so that results match the ZeroMQ ring bit for bit.
addon_compile "$out" "$log" "" -O3 -std=c++17 -shared -fPIC -Wall -Wextra -Wno-unused-parameter \
  -Wno-cast-function-type -I"$NODE_INCLUDE" -DNODE_GYP_MODULE_NAME=alexnet_shm "$src" -lrt
