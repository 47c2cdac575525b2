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
# Ring planner (segment-level plans): peaks per planner and host run time, as Markdown tables.
"$build/vmcu/vmcu_ring_bench"
# Deployed on QEMU's Cortex-M4 board: arena, stack, static RAM, flash and instructions per planner.
if command -v arm-none-eabi-gcc > /dev/null && command -v qemu-system-arm > /dev/null; then
  echo
  echo "### Deployed on QEMU mps2-an386 (Cortex-M4), 512 KB RAM budget"
  echo
  "$(dirname "$0")/bench/deploy_table.sh" "$build" "${PERFMEM_SHARED_DIR:-../shared}" 512K
  echo
  echo "### Kernels on QEMU mps2-an386 (Cortex-M4, GCC -O2): instructions per MAC"
  echo
  "$(dirname "$0")/bench/kernel_table.sh" "$build"
  echo
  echo "### Reference vs DSP kernels, greedy vs vmcu plan, on QEMU mps2-an386 (Cortex-M4), 512 KB RAM budget"
  echo
  "$(dirname "$0")/bench/dsp_table.sh" "$build" "${PERFMEM_SHARED_DIR:-../shared}" 512K
  echo
  echo "### Largest MobileNetV2 per RAM budget and planner"
  echo
  "$(dirname "$0")/bench/mbv2_fit.sh" "$build"
fi
