#!/usr/bin/env bash
# vmcu benchmarks. Argument: the build folder.
set -euo pipefail
build="${1:-build/release}"
echo "vmcu: no benchmarks yet"
