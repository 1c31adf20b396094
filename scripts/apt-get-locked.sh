#!/usr/bin/env bash
# apt-get, one at a time. `make test` installs the test packages (scripts/ensure-*.sh) while
# `make build` may install libdnnl-dev for the native addon; two apt-gets at once would fail on
# dpkg's lock, so every apt-get of the project goes through here: one project lock (flock), and
# dpkg's own lock waited for rather than failed on (another apt on the machine).
set -u
export DEBIAN_FRONTEND=noninteractive
lock=${TMPDIR:-/tmp}/alexnet-apt.lock
if command -v flock >/dev/null 2>&1; then
  exec flock "$lock" apt-get -o DPkg::Lock::Timeout=300 "$@"
fi
exec apt-get -o DPkg::Lock::Timeout=300 "$@"
