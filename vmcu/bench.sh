#!/usr/bin/env bash
# vmcu benchmarks: peak activation RAM per planner (real models + the paper's pointwise layers)
# as Markdown. Argument: the build folder (default build/release).
set -euo pipefail
build="${1:-build/release}"
bin="$build/vmcu/vmcu_bench_memory"
if [ ! -x "$bin" ]; then
  echo "vmcu bench: $bin not built (cmake --build --preset release --target vmcu_bench_memory)" >&2
  exit 1
fi
"$bin"
