#!/usr/bin/env bash
# Headless Chromium for the report-rendering test (Debian package). No-op when already present.
set -euo pipefail
if command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
else
  echo "install_chromium: please install Chromium (e.g. 'sudo apt-get install chromium') for the report test" >&2
  exit 1
fi
