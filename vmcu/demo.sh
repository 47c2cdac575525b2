#!/usr/bin/env bash
# vmcu demo: build a MobileNetV2-0.35 (144x144) int8 model, run it, plan it with every
# planner and deploy it to a Cortex-M4 board under QEMU. Argument: the build folder (default
# build/release). Uses only files it writes itself.
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

echo "== vmcu ring plan: segment-level overlap and fused blocks, then its safety verification"
"$vmcu" plan "$work/mbv2-w035.tflite" --planner vmcu --svg "$work/plan-vmcu.svg" | tail -1
"$vmcu" verify "$work/mbv2-w035.tflite"
"$vmcu" run "$work/mbv2-w035.tflite" --planner vmcu --input "$work/input.bin" --output "$work/output-vmcu.bin"
cmp "$work/output.bin" "$work/output-vmcu.bin" && echo "ring run output identical to the reference run"
echo "ring occupancy per layer written to $work/plan-vmcu.svg"

echo "== deploy to a Cortex-M4 board (QEMU mps2-an386) with 256 KB of RAM: compile to C, link, run, compare"
if command -v arm-none-eabi-gcc > /dev/null && command -v qemu-system-arm > /dev/null; then
  "$vmcu" deploy "$work/mbv2-w035.tflite" --board mps2-an386 --ram 256K --input "$work/input.bin" \
    --output "$work/output-m4.bin"
  cmp "$work/output.bin" "$work/output-m4.bin" && echo "board output identical to the host run"
  echo "== the same 256 KB under the greedy (TFLite Micro) plan"
  "$vmcu" deploy "$work/mbv2-w035.tflite" --board mps2-an386 --ram 256K --planner greedy \
    --input "$work/input.bin" --output "$work/output-m4-greedy.bin" || true
else
  echo "(skipped: arm-none-eabi-gcc or qemu-system-arm missing; scripts/deps/vmcu.apt lists them)"
fi
