#!/usr/bin/env bash
# Builds the JPEG addon (jpeg_addon.cc) into $1 (default dist/native/alexnet_jpeg.node).
#
# Called by `make jpeg` (and so by `make build` and `make train`). It needs g++, Node's C
# headers and libjpeg-turbo's (Debian's libjpeg62-turbo-dev, Ubuntu's libjpeg-turbo8-dev,
# installed with apt-get as root when missing). Optional: without it sharp decodes every JPEG.
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
addon_apt_install /usr/include/jpeglib.h "$log" libjpeg62-turbo-dev libjpeg-turbo8-dev libjpeg-dev
addon_up_to_date "$out" "$src" /usr/include/jpeglib.h "$0" "$lib" && exit 0

# -ffp-contract=off: the resample's sums stay separate multiplies and adds, as resample.ts's
# doubles in JS are, so both give the same bytes (no fused multiply-add, no -ffast-math).
addon_compile "$out" "$log" " ($(addon_package_of /usr/include/jpeglib.h))" \
  -O3 -ffp-contract=off -std=c++17 -shared -fPIC -Wall -Wextra -I"$NODE_INCLUDE" "$src" -ljpeg
