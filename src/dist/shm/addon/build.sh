#!/usr/bin/env bash
# Builds the shared-memory addon (shm_addon.cc and the headers it includes) into $1 (default dist/native/alexnet_shm.node).
#
# Called by `make shm` (and so by `make build`). It needs only g++ and Node's headers (v8.h,
# node.h): no oneDNN. Optional: where it cannot be built this prints ONE line saying why and
# exits 0, and ranks on one host talk over the ZeroMQ ring as before.
set -u
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
src="$here/shm_addon.cc"
out="${1:-dist/native/alexnet_shm.node}"
log="$(dirname "$out")/shm-build.log"

skip() {
  echo "shm: not built, ranks on one host will use the ZeroMQ ring ($1)"
  exit 0
}

[ "$(uname -s)" = Linux ] || skip "shared memory with futexes needs Linux, this is $(uname -s)"
command -v g++ >/dev/null 2>&1 || skip "no C++ compiler: apt-get install g++"

node_include=""
for dir in "$(dirname "$(command -v node)")/../include/node" /usr/include/node /usr/local/include/node; do
  if [ -f "$dir/node.h" ] && [ -f "$dir/v8.h" ]; then node_include="$dir"; break; fi
done
[ -n "$node_include" ] || skip "Node's C++ headers (node.h, v8.h) not found: apt-get install libnode-dev"

# Up to date when newer than every source (shm_addon.cc includes the headers beside it).
fresh=1
for f in "$here"/*.cc "$here"/*.h "$0"; do
  [ -f "$out" ] && [ "$out" -nt "$f" ] || fresh=0
done
[ "$fresh" = 1 ] && exit 0

mkdir -p "$(dirname "$out")"
# -O3: the fold and conversion loops vectorise. No -ffast-math: sums must stay IEEE, element by
# element in the ring's order, so that results match the ZeroMQ ring bit for bit.
if g++ -O3 -std=c++17 -shared -fPIC -Wall -Wextra -Wno-unused-parameter -Wno-cast-function-type -I"$node_include" \
  -DNODE_GYP_MODULE_NAME=alexnet_shm -o "$out.tmp" "$src" -lrt >"$log" 2>&1; then
  mv "$out.tmp" "$out"
  echo "shm: built $out"
else
  rm -f "$out.tmp"
  skip "compiling the addon failed (see $log)"
fi
