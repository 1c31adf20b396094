#!/usr/bin/env bash
# What the ONNX tests (test/model/onnx/) compare against, installed where it can be: Debian's
# python3-onnx (the ONNX checker), python3-torch 1.13 and python3-torchvision (a torchvision
# AlexNet exported with torch.onnx.export), by apt as root. Never fails the build: where they
# cannot be installed it says so, and those tests skip with a message naming what is missing.
set -u
PY=${ALEXNET_PYTHON:-/usr/bin/python3}

if ! "$PY" -c 'import onnx, torch, torchvision' >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "ensure-python: installing Debian's python3-onnx, python3-torch and python3-torchvision for the ONNX tests (apt-get)"
    pkgs="python3-onnx python3-torch python3-torchvision"
    apt="$(dirname "$0")/apt-get-locked.sh"
    $apt install -y --no-install-recommends $pkgs >/dev/null 2>&1 \
      || { $apt update >/dev/null 2>&1 && $apt install -y --no-install-recommends $pkgs >/dev/null 2>&1; } \
      || echo "ensure-python: WARNING: could not install $pkgs: the ONNX checker and torchvision tests will be skipped"
  else
    echo "ensure-python: WARNING: $PY cannot import onnx, torch and torchvision, and installing them needs root and apt-get: the ONNX checker and torchvision tests will be skipped"
  fi
fi
exit 0
