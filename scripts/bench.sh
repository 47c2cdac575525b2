#!/usr/bin/env bash
# Runs the benchmark of every system (each system's bench.sh), given the build folder.
set -euo pipefail
cd "$(dirname "$0")/.."
build="${1:-build/release}"
for sys in vmcu sida acrobat; do
  echo "==================== $sys ===================="
  "$sys/bench.sh" "$build"
  echo
done
