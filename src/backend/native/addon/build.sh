#!/usr/bin/env bash
# Builds the oneDNN addon (dnnl_addon.cc) into $1 (default dist/native/alexnet_native.node).
#
# Called by `make native` (and so by `make build`, `make train`, `make test`). Native compute is
# optional: where it cannot be built (not Linux, no g++, no Node headers, no libdnnl-dev and no
# way to install it) this prints ONE line saying why and exits 0, and the runs use wasm.
# libdnnl-dev is installed with apt-get when missing and we are root (npm 11 does not run
# unapproved install scripts, so the Makefile does this, not an npm hook).
set -u
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
src="$here/dnnl_addon.cc"
out="${1:-dist/native/alexnet_native.node}"
log="$(dirname "$out")/build.log"

skip() {
  echo "native: not built, the wasm backend will be used ($1)"
  exit 0
}

[ "$(uname -s)" = Linux ] || skip "native compute needs Linux, this is $(uname -s)"
command -v g++ >/dev/null 2>&1 || skip "no C++ compiler: apt-get install g++"

node_include=""
for dir in "$(dirname "$(command -v node)")/../include/node" /usr/include/node /usr/local/include/node; do
  if [ -f "$dir/node_api.h" ]; then node_include="$dir"; break; fi
done
[ -n "$node_include" ] || skip "Node's C headers (node_api.h) not found: apt-get install libnode-dev"

dnnl_header=/usr/include/oneapi/dnnl/dnnl.hpp
if [ ! -f "$dnnl_header" ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "native: installing libdnnl-dev (oneDNN) with apt-get"
    mkdir -p "$(dirname "$out")"
    # The project's apt-get lock: make test may be installing its own packages meanwhile.
    apt="$(dirname "$0")/../../../../scripts/apt-get-locked.sh"
    started=$(date +%s)
    if ! { $apt update && $apt install -y libdnnl-dev; } >"$log" 2>&1; then
      skip "apt-get install libdnnl-dev failed (see $log)"
    fi
    echo "native: libdnnl-dev installed in $(($(date +%s) - started)) s"
  else
    skip "oneDNN headers missing: apt-get install libdnnl-dev (as root)"
  fi
fi

if [ -f "$out" ] && [ "$out" -nt "$src" ] && [ "$out" -nt "$dnnl_header" ] && [ "$out" -nt "$0" ]; then
  exit 0
fi

mkdir -p "$(dirname "$out")"
# -fopenmp: the addon sets oneDNN's OpenMP thread count (Debian's libdnnl uses libgomp).
# -O3 -fno-math-errno: the element-wise, LRN and update loops vectorise (sqrt included; nothing
# reads errno). No -ffast-math: results stay those of the scalar loops, bit for bit.
if g++ -O3 -fno-math-errno -std=c++17 -shared -fPIC -fopenmp -Wall -Wextra -I"$node_include" \
  -DNODE_GYP_MODULE_NAME=alexnet_native -o "$out.tmp" "$src" -ldnnl >"$log" 2>&1; then
  mv "$out.tmp" "$out"
  echo "native: built $out (oneDNN $(dpkg-query -W -f='${Version}' libdnnl-dev 2>/dev/null || echo '?'))"
else
  rm -f "$out.tmp"
  skip "compiling the addon failed (see $log)"
fi
