#!/usr/bin/env bash
# Builds the JPEG addon (jpeg_addon.cc) into $1 (default dist/native/alexnet_jpeg.node).
#
# Called by `make jpeg` (and so by `make build` and `make train`). It needs g++, Node's C
# headers and libjpeg-turbo's (libjpeg62-turbo-dev, installed with apt-get as root when
# missing). Optional: without it every JPEG is decoded by sharp, as before.
set -u
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ADDON=jpeg
ADDON_FALLBACK="sharp will decode every JPEG"
lib="$here/../../../../scripts/addon-build-lib.sh"
source "$lib"
src="$here/jpeg_addon.cc"
out="${1:-dist/native/alexnet_jpeg.node}"
log="$(dirname "$out")/jpeg-build.log"

addon_need_toolchain
addon_node_include node_api.h
addon_apt_install /usr/include/jpeglib.h libjpeg62-turbo-dev "$log"
addon_up_to_date "$out" "$src" /usr/include/jpeglib.h "$0" "$lib" && exit 0

# -ffp-contract=off: the resample's sums stay separate multiplies and adds, as resample.ts's
# doubles in JS are, so both give the same bytes (no fused multiply-add, no -ffast-math).
version="$(dpkg-query -W -f='${Version}' libjpeg62-turbo-dev 2>/dev/null || echo '?')"
addon_compile "$out" "$log" " (libjpeg-turbo $version)" \
  -O3 -ffp-contract=off -std=c++17 -shared -fPIC -Wall -Wextra -I"$NODE_INCLUDE" "$src" -ljpeg
