#!/usr/bin/env bash
# acrobat benchmarks: the latency table of docs/benchmarks.md (ACRoBat section) and the
# packed-kernel vs OpenBLAS crossover by row count.
# Argument: the build folder. Writes the JSON next to it (acrobat-bench.json,
# acrobat-gemm-crossover.json).
set -euo pipefail
build="${1:-build/release}"
# Single-threaded, like the DyNet reference figures. Setting the thread count from inside the
# program (openblas_set_num_threads) is not enough: OpenBLAS starts its worker threads when the
# library loads, and an idle worker spins on the other core for a while, which slowed small
# unbatched calls about 2x in our runs. With the variable set, no worker is started.
export OPENBLAS_NUM_THREADS=1
echo "== ACRoBat: OPENBLAS_NUM_THREADS=1 $build/acrobat/bench/acrobat_bench --json $build/acrobat-bench.json --svg $build/acrobat-bench.svg"
"$build/acrobat/bench/acrobat_bench" --json "$build/acrobat-bench.json" --svg "$build/acrobat-bench.svg"
echo "== ACRoBat: OPENBLAS_NUM_THREADS=1 $build/acrobat/bench/acrobat_gemm_crossover --json $build/acrobat-gemm-crossover.json"
"$build/acrobat/bench/acrobat_gemm_crossover" --json "$build/acrobat-gemm-crossover.json"
