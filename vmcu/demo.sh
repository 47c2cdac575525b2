#!/usr/bin/env bash
# vmcu demo: build a MobileNetV2-0.35 (144x144) int8 model, run it, and plan it with every
# planner. Argument: the build folder (default build/release). Uses only files it writes itself.
set -euo pipefail
build="${1:-build/release}"
vmcu="$build/vmcu/vmcu"
work="$build/vmcu/demo"
mkdir -p "$work"

cat > "$work/mbv2-w035.json" <<'SPEC'
{"mobilenetv2": {"width": 0.35, "resolution": 144, "classes": 10}, "seed": 1}
SPEC
echo "== build-model: MobileNetV2-0.35, 144x144, 10 classes"
"$vmcu" build-model "$work/mbv2-w035.json" -o "$work/mbv2-w035.tflite"
"$vmcu" inspect "$work/mbv2-w035.tflite" > "$work/inspect.txt"
head -3 "$work/inspect.txt"

echo "== run on a random int8 image"
head -c $((144 * 144 * 3)) /dev/urandom > "$work/input.bin"
"$vmcu" run "$work/mbv2-w035.tflite" --input "$work/input.bin" --output "$work/output.bin"
echo "class scores (int8, scale 1/256, zero point -128):"
od -An -t d1 -v "$work/output.bin"

echo "== tensor-level memory plans (each checked by the independent verifier)"
for planner in naive greedy tinyengine; do
  peak=$("$vmcu" plan "$work/mbv2-w035.tflite" --planner "$planner" --svg "$work/plan-$planner.svg" | tail -1)
  printf '%-11s %s\n' "$planner" "$peak"
done
echo "per-operator live bytes (greedy):"
"$vmcu" plan "$work/mbv2-w035.tflite" --planner greedy > "$work/plan-greedy.txt"
grep ' live ' "$work/plan-greedy.txt" | sort -k4,4n | tail -5
echo "memory timelines written to $work/plan-*.svg"
