#!/usr/bin/env bash
# sida benchmarks. Argument: the build folder.
set -euo pipefail
build="${1:-build/release}"
echo "sida: no benchmarks yet"
