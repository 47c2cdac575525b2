#!/usr/bin/env bash
# acrobat benchmarks. Argument: the build folder.
set -euo pipefail
build="${1:-build/release}"
echo "acrobat: no benchmarks yet"
