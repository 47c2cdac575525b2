#!/usr/bin/env bash
# acrobat benchmarks: the latency tables of docs/benchmarks.md (ACRoBat section: every model
# compiled ahead of time and interpreted against the baselines, the ablation table), and the
# packed-kernel vs OpenBLAS crossover by row count.
# Argument: the build folder. Writes the JSON next to it (acrobat-bench.json, acrobat-ablation.json,
# acrobat-gemm-crossover.json, and acrobat-vs-dynet.json in a build with real DyNet).
set -euo pipefail
build="${1:-build/release}"
echo "== ACRoBat: $build/acrobat/bench/acrobat_bench --json $build/acrobat-bench.json --svg $build/acrobat-bench.svg"
"$build/acrobat/bench/acrobat_bench" --json "$build/acrobat-bench.json" --svg "$build/acrobat-bench.svg"
# Each optimisation off in turn (TreeLSTM, MV-RNN, BiRNN, DRNN, StackRNN, small, B = 64).
echo "== ACRoBat: $build/acrobat/bench/acrobat_bench --ablation --json $build/acrobat-ablation.json"
"$build/acrobat/bench/acrobat_bench" --ablation --json "$build/acrobat-ablation.json"
echo "== ACRoBat: $build/acrobat/bench/acrobat_gemm_crossover --json $build/acrobat-gemm-crossover.json"
"$build/acrobat/bench/acrobat_gemm_crossover" --json "$build/acrobat-gemm-crossover.json"
# acrobat against real DyNet, side by side: only in a build configured with
# -DPERFMEM_ACROBAT_DYNET=<DyNet install prefix> (see acrobat/bench/setup_dynet.sh).
if [ -x "$build/acrobat/bench/dynet/acrobat_vs_dynet" ]; then
  echo "== ACRoBat: $build/acrobat/bench/dynet/acrobat_vs_dynet --rounds 2 --json $build/acrobat-vs-dynet.json"
  "$build/acrobat/bench/dynet/acrobat_vs_dynet" --check
  "$build/acrobat/bench/dynet/acrobat_vs_dynet" --rounds 2 --json "$build/acrobat-vs-dynet.json"
fi
# Record + schedule per tensor op, compiled ahead of time against interpreted.
echo "== ACRoBat: acrobat/bench_aot.sh $build"
"$(dirname "$0")/bench_aot.sh" "$build"
