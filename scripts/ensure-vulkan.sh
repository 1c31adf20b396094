#!/usr/bin/env bash
# What the webgpu tests (test/backend/webgpu/*.test.ts) need: a Vulkan driver that Dawn (npm's
# `webgpu`) accepts. On a machine without a GPU that is Mesa's software device, lavapipe; Debian
# bookworm's own Mesa 22.3 is too old for Dawn, bookworm-backports' (25.x) works. So, as root
# with apt on bookworm: add the backports suite (same archive address as the machine's bookworm
# source) and install mesa-vulkan-drivers from it. Never fails the build: where it cannot, it
# says so in one line and the webgpu tests skip loudly (CI sets ALEXNET_REQUIRE_WEBGPU=1, which
# turns that skip into a failure).
set -u
cd "$(dirname "$0")/.."
MIN_MESA=24
apt=scripts/apt-get-locked.sh

mesa_version() { dpkg-query -W -f='${Version}' mesa-vulkan-drivers 2>/dev/null || true; }

mesa_ok() {
  local v
  v=$(mesa_version)
  [ -n "$v" ] && dpkg --compare-versions "$v" ge "$MIN_MESA"
}

# The address of the machine's bookworm source (deb822 .sources or a one-line .list).
debian_archive() {
  local f
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    awk '/^URIs:/ { uri = $2 } /^Suites:/ && / bookworm( |$)/ { print uri; exit }' "$f"
  done | head -n 1
  grep -hE '^deb .* bookworm( |$).* main' /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null \
    | awk '{ for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) { print $i; exit } }' | head -n 1
}

if mesa_ok; then exit 0; fi

codename=$(. /etc/os-release 2>/dev/null && echo "${VERSION_CODENAME:-}")
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "ensure-vulkan: WARNING: no Mesa >= $MIN_MESA Vulkan driver, and installing it needs root and apt-get: the webgpu tests will be skipped"
  exit 0
fi
if [ "$codename" != bookworm ]; then
  # Newer Debian releases ship a recent enough Mesa in their own suite.
  echo "ensure-vulkan: installing mesa-vulkan-drivers (apt-get, $codename) for the webgpu tests"
  { $apt update >/dev/null 2>&1 && $apt install -y mesa-vulkan-drivers >/dev/null 2>&1; } \
    || echo "ensure-vulkan: WARNING: could not install mesa-vulkan-drivers: the webgpu tests will be skipped"
  mesa_ok || echo "ensure-vulkan: WARNING: mesa-vulkan-drivers $(mesa_version) is older than $MIN_MESA: the webgpu tests will be skipped"
  exit 0
fi

archive=$(debian_archive | head -n 1)
if [ -z "$archive" ]; then
  echo "ensure-vulkan: WARNING: found no bookworm source in /etc/apt to derive bookworm-backports from: the webgpu tests will be skipped"
  exit 0
fi
list=/etc/apt/sources.list.d/bookworm-backports.sources
if ! grep -rqs 'bookworm-backports' /etc/apt/sources.list /etc/apt/sources.list.d/; then
  echo "ensure-vulkan: adding bookworm-backports ($archive) as an apt source, for Mesa's lavapipe"
  printf 'Types: deb\nURIs: %s\nSuites: bookworm-backports\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' "$archive" >"$list"
fi
echo "ensure-vulkan: installing mesa-vulkan-drivers from bookworm-backports (apt-get) for the webgpu tests"
{ $apt update >/dev/null 2>&1 && $apt install -y -t bookworm-backports mesa-vulkan-drivers >/dev/null 2>&1; } \
  || echo "ensure-vulkan: WARNING: could not install mesa-vulkan-drivers from bookworm-backports: the webgpu tests will be skipped"
mesa_ok || echo "ensure-vulkan: WARNING: mesa-vulkan-drivers is $(mesa_version), older than $MIN_MESA: the webgpu tests will be skipped"
exit 0
