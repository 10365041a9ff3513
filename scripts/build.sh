#!/usr/bin/env bash
# Configure and build rems into $1 (default build/) after running the setup.
# Extra arguments go to cmake's configure step.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:-build}
shift || true
bash scripts/setup.sh >/dev/null
cmake -S . -B "$dir" -DREMS_WERROR=ON "$@" >/dev/null
cmake --build "$dir" -j"$(nproc)" 2>&1 | grep -E 'error|warning|Error' || true
test -x "$dir/api/remsd" || { echo "build failed: $dir/api/remsd missing" >&2; exit 1; }
