#!/usr/bin/env bash
# What the dashboard's browser test (test/dashboard/browser.test.ts) needs, installed where it
# can be: Debian's chromium (apt, as root) and playwright-core (a devDependency; installed here
# too when a partial install left it out). Never fails the build: where either cannot be
# installed it says so, and the browser test skips with a loud message.
#
# `ensure-browser.sh chromium` or `ensure-browser.sh playwright` does one half: make test installs
# chromium while npm ci runs, and checks playwright-core once node_modules is there.
set -u
cd "$(dirname "$0")/.."
CHROMIUM=${ALEXNET_CHROMIUM:-/usr/bin/chromium}
part=${1:-both}

if [ "$part" != playwright ] && [ ! -x "$CHROMIUM" ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "ensure-browser: installing Debian's chromium for the dashboard's browser test (apt-get)"
    apt=scripts/apt-get-locked.sh
    $apt install -y chromium >/dev/null 2>&1 \
      || { $apt update >/dev/null 2>&1 && $apt install -y chromium >/dev/null 2>&1; } \
      || echo "ensure-browser: WARNING: could not install chromium: the dashboard's browser test will be skipped"
  else
    echo "ensure-browser: WARNING: no $CHROMIUM, and installing it needs root and apt-get: the dashboard's browser test will be skipped"
  fi
fi

if [ "$part" != chromium ] && ! node -e "require.resolve('playwright-core')" >/dev/null 2>&1; then
  version=$(node -p "require('./package.json').devDependencies['playwright-core']")
  echo "ensure-browser: installing playwright-core@$version (npm)"
  npm install --no-save --no-audit --no-fund "playwright-core@$version" >/dev/null 2>&1 \
    || echo "ensure-browser: WARNING: could not install playwright-core: the dashboard's browser test will be skipped"
fi
exit 0
