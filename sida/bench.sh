#!/usr/bin/env bash
# sida benchmarks (results go into docs/benchmarks.md, SiDA section). Argument: the build folder.
#   switch-base-8 shapes (fp32, 2.4 GiB, fits in RAM): all-resident vs lru vs prefetch at 100/50/25%
#   of expert bytes, encoder-only (request by request and window execution) and short generation,
#   plus the engine against PyTorch.
#   SIDA_BENCH_LARGE=1 adds switch-base-128 shapes (fp32, 27.6 GiB on disk) at 2, 4 and 8 GiB,
#   64 requests (one run-ahead window).
# Checkpoints are written once under SIDA_BENCH_DIR (default: BUILD/sida-bench).
# Not run from here: sida beside llama.cpp on a Mixtral-shaped model, sida/bench/llama_side_by_side.sh
# BUILD (it installs llama-cpp-python, which builds llama.cpp for minutes, and writes 9 GB).
set -euo pipefail
build="${1:-build/release}"
sida="$build/sida/sida"
dir="${SIDA_BENCH_DIR:-$build/sida-bench}"
"$sida" bench --preset switch-base-8 --dir "$dir/switch-base-8" --requests "${SIDA_BENCH_REQUESTS:-64}" \
  --budgets 100%,50%,25% --policies all-resident,lru,prefetch --executions request,window \
  --json "$dir/switch-base-8.json"
if [ "${SIDA_BENCH_LARGE:-0}" = "1" ]; then
  "$sida" bench --preset switch-base-128 --dir "$dir/switch-base-128" --requests "${SIDA_BENCH_LARGE_REQUESTS:-64}" \
    --modes encode --budgets 2GiB,4GiB,8GiB --policies lru,prefetch --executions request,window --no-hf --json "$dir/switch-base-128.json"
else
  echo "(switch-base-128 on-disk benchmark skipped; SIDA_BENCH_LARGE=1 runs it: 27.6 GiB written once)"
fi
echo "(sida beside llama.cpp: sida/bench/llama_side_by_side.sh $build, run separately)"
