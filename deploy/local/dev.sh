#!/usr/bin/env bash
# Runs Jifen locally: installs what is missing, builds, and starts `jifen dev` (portal and demo
# channels on SQLite under ./.jifen). Extra arguments go to `jifen dev` (see --help).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
# shellcheck source=tools.sh
source "$root/deploy/local/tools.sh"
jifen_rust_check
jifen_tools_install
cd "$root"
exec cargo run --quiet -p jifen-cli -- dev "$@"
