#!/usr/bin/env bash
# acrobat benchmarks: the latency table of docs/benchmarks.md (ACRoBat section) and the
# packed-kernel vs OpenBLAS crossover by row count.
# Argument: the build folder. Writes the JSON next to it (acrobat-bench.json,
# acrobat-gemm-crossover.json).
set -euo pipefail
build="${1:-build/release}"
echo "== ACRoBat: $build/acrobat/bench/acrobat_bench --json $build/acrobat-bench.json --svg $build/acrobat-bench.svg"
"$build/acrobat/bench/acrobat_bench" --json "$build/acrobat-bench.json" --svg "$build/acrobat-bench.svg"
echo "== ACRoBat: $build/acrobat/bench/acrobat_gemm_crossover --json $build/acrobat-gemm-crossover.json"
"$build/acrobat/bench/acrobat_gemm_crossover" --json "$build/acrobat-gemm-crossover.json"
