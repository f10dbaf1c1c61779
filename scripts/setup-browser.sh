#!/usr/bin/env bash
# Chromium and its WebDriver for tests/ui_browser.rs (Debian packages).
# Idempotent: does nothing when /usr/bin/chromedriver is already there.
set -euo pipefail
if [ -x /usr/bin/chromedriver ]; then
  exit 0
fi
if ! command -v apt-get >/dev/null; then
  echo "setup-browser: no apt-get here; install chromium and chromium-driver yourself" >&2
  exit 0
fi
SUDO=""
if [ "$(id -u)" != 0 ]; then
  if command -v sudo >/dev/null; then SUDO="sudo"; else
    echo "setup-browser: not root and no sudo; install chromium and chromium-driver yourself" >&2
    exit 0
  fi
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq chromium chromium-driver >/dev/null
/usr/bin/chromedriver --version
