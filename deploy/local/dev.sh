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
cargo build --quiet -p jifen-cli
# exec: `jifen dev` itself gets SIGINT and SIGTERM (`cargo run` would not pass SIGTERM on, and
# `timeout … dev.sh` left the mesh running); it prints its commands with its own path, so they
# run as printed from any shell.
exec "${CARGO_TARGET_DIR:-$root/target}/debug/jifen" dev "$@"
