#!/usr/bin/env bash
# iproute2 (`ip netns`) for the two-node cluster test (tests/cluster/test_multinode.py; Debian package).
# No-op when already present; without root it only says so (the test then skips, except in CI).
set -euo pipefail
if command -v ip >/dev/null 2>&1 && ip netns list >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq iproute2 >/dev/null
else
  echo "install_iproute2: install iproute2 (e.g. 'sudo apt-get install iproute2') and run as root for the multi-node test" >&2
fi
