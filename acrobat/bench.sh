#!/usr/bin/env bash
# acrobat benchmarks: the latency table of docs/benchmarks.md (ACRoBat section).
# Argument: the build folder. Writes the JSON next to it (acrobat-bench.json).
set -euo pipefail
build="${1:-build/release}"
echo "== ACRoBat: $build/acrobat/bench/acrobat_bench --json $build/acrobat-bench.json --svg $build/acrobat-bench.svg"
"$build/acrobat/bench/acrobat_bench" --json "$build/acrobat-bench.json" --svg "$build/acrobat-bench.svg"
