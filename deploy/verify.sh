#!/usr/bin/env bash
# Checks deploy/overlay-network.service with `systemd-analyze verify`, against the binary
# given (default: the debug build), since the unit names /usr/local/bin/overlay-network.
# Any warning fails it.
set -euo pipefail
cd "$(dirname "$0")/.."
binary=$(realpath "${1:-target/debug/overlay-network}")
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
sed "s|/usr/local/bin/overlay-network|$binary|" deploy/overlay-network.service \
  > "$tmp/overlay-network.service"
# verify only warns about unknown keys or bad values: any word from it fails the check.
out=$(systemd-analyze verify "$tmp/overlay-network.service" 2>&1) || { echo "$out"; exit 1; }
if [ -n "$out" ]; then
  echo "$out"
  exit 1
fi
echo "deploy/overlay-network.service: verified"
