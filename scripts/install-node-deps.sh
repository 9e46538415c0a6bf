#!/usr/bin/env bash
# Node tools the test suite starts: Azurite (the Azure Storage emulator), pinned in
# scripts/node/package-lock.json and installed from the npm registry under
# scripts/node/node_modules. Installs Node itself from Debian when it is missing.
# Instant when the locked tree is already there.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
node_dir="$here/node"
stamp="$node_dir/node_modules/.rc-installed"
if ! command -v npm >/dev/null 2>&1; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "installing system packages: nodejs npm" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null
fi
if [ -f "$stamp" ] && [ "$stamp" -nt "$node_dir/package-lock.json" ] && [ -x "$node_dir/node_modules/.bin/azurite-blob" ]; then
  exit 0
fi
echo "installing node packages (scripts/node/package-lock.json)" >&2
npm ci --prefix "$node_dir" --no-audit --no-fund --ignore-scripts --loglevel=error >/dev/null
touch "$stamp"
