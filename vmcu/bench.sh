#!/usr/bin/env bash
# vmcu benchmarks. Argument: the build folder.
set -euo pipefail
build="${1:-build/release}"
echo "vmcu: no benchmarks yet"
# Ring planner (segment-level plans): peaks per planner and host run time, as Markdown tables.
"$build/vmcu/vmcu_ring_bench"
