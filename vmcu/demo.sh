#!/usr/bin/env bash
# vmcu demo on built-in defaults. Argument: the build folder.
set -euo pipefail
build="${1:-build/release}"
"$build/vmcu/vmcu" --help
# Ring planner: a small MobileNetV2-style network, planned per tensor and per segment, verified.
ring_demo="$(mktemp -d)"
trap 'rm -rf "$ring_demo"' EXIT
cat > "$ring_demo/net.json" <<'SPEC'
{"seed": 1, "input": [1, 40, 40, 3], "layers": [
  {"type": "conv", "kernel": 3, "out_channels": 16, "stride": 2},
  {"type": "bottleneck", "mid_channels": 48, "out_channels": 16, "kernel": 3, "residual": true},
  {"type": "bottleneck", "mid_channels": 48, "out_channels": 24, "kernel": 5, "stride": 2},
  {"type": "global_avgpool"}, {"type": "fully_connected", "units": 2}, {"type": "softmax"}]}
SPEC
"$build/vmcu/vmcu" build-model "$ring_demo/net.json" -o "$ring_demo/net.tflite"
"$build/vmcu/vmcu" plan "$ring_demo/net.tflite" --planner greedy | tail -n 1
"$build/vmcu/vmcu" plan "$ring_demo/net.tflite" --planner vmcu --svg "$build/vmcu_ring_plan.svg"
echo "ring occupancy per layer: $build/vmcu_ring_plan.svg"
"$build/vmcu/vmcu" verify "$ring_demo/net.tflite"
