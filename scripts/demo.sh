#!/usr/bin/env bash
# Runs the demo of every system: each system's demo.sh, given the build folder.
set -euo pipefail
cd "$(dirname "$0")/.."
build="${1:-build/release}"
for sys in vmcu sida acrobat; do
  echo "==================== $sys ===================="
  "$sys/demo.sh" "$build"
  echo
done
