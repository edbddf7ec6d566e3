#!/usr/bin/env bash
# CTest fixture for the HTML report test: make sure headless Chromium is available.
# Installs Debian's `chromium` package when /usr/bin/chromium is missing and we are root.
# Always exits 0: when no browser can be had, the browser test itself skips (exit 77)
# and says why.
set -u
if [ -x /usr/bin/chromium ]; then
  echo "setup: /usr/bin/chromium present"
  exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "setup: /usr/bin/chromium is missing and cannot be installed here (needs root and apt-get);"
  echo "setup: install it with: sudo apt-get install -y chromium"
  exit 0
fi
echo "setup: installing chromium (Debian package)"
export DEBIAN_FRONTEND=noninteractive
if ! apt-get install -y chromium >/tmp/depass-chromium-install.log 2>&1; then
  apt-get update >>/tmp/depass-chromium-install.log 2>&1 &&
    apt-get install -y chromium >>/tmp/depass-chromium-install.log 2>&1
fi
if [ -x /usr/bin/chromium ]; then
  echo "setup: chromium installed"
else
  echo "setup: chromium could not be installed (see /tmp/depass-chromium-install.log); the browser test will skip"
fi
exit 0
