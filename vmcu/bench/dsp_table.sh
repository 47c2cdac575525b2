#!/usr/bin/env bash
# The DSP kernels and the vmcu plan on QEMU's Cortex-M4 board (mps2-an386, GCC -O2), per shared
# model and per pointwise layer of the vMCU paper: arena, stack used, flash and instructions of
# one inference for (a) reference kernels + greedy plan, (b) optimized (DSP) kernels + greedy
# plan, (c) optimized (DSP) kernels + vmcu plan, with the ratios c/b and b/a.
# Arguments: the build folder (default build/release), the shared folder (default ../shared),
# the RAM budget (default 512K). Prints a Markdown table.
set -euo pipefail
build="${1:-build/release}"
shared="${2:-../shared}"
ram="${3:-512K}"
vmcu="$build/vmcu/vmcu"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
models=()
for model in "$shared"/models/mcu/*.tflite; do models+=("$model"); done
# The paper's single pointwise layers (H/W, C_in, C_out), int8 in and out.
for shape in 80,16,16 56,32,32 28,64,64 80,16,8 40,32,16 20,48,24 24,16,32 12,32,64 6,64,128; do
  IFS=, read -r hw cin cout <<< "$shape"
  echo "{\"seed\":1,\"input\":[1,$hw,$hw,$cin],\"layers\":[{\"type\":\"pointwise\",\"out_channels\":$cout}]}" \
    > "$work/pw.json"
  "$vmcu" build-model "$work/pw.json" -o "$work/pointwise-${hw}x${hw}-${cin}-${cout}.tflite" > /dev/null
  models+=("$work/pointwise-${hw}x${hw}-${cin}-${cout}.tflite")
done
echo "| model | config | arena B | stack used B | flash B | instructions | bit-exact |"
echo "|---|---|---|---|---|---|---|"
for model in "${models[@]}"; do
  name="$(basename "$model" .tflite)"
  bytes=$("$vmcu" inspect "$model" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["inputs"][0]["bytes"])')
  head -c "$bytes" /dev/urandom > "$work/in.bin"
  for config in "a greedy reference" "b greedy optimized" "c vmcu optimized"; do
    read -r tag planner kernels <<< "$config"
    "$vmcu" deploy "$model" --board mps2-an386 --ram "$ram" --planner "$planner" --kernels "$kernels" \
      --input "$work/in.bin" --output "$work/out.bin" --json > "$work/$tag.json" || true
  done
  python3 - "$name" "$work" <<'PY'
import json, sys
name, work = sys.argv[1:]
rows = {}
labels = {"a": "(a) reference + greedy", "b": "(b) DSP + greedy", "c": "(c) DSP + vmcu"}
for tag in "abc":
    r = json.load(open(f"{work}/{tag}.json"))
    rows[tag] = r
    if r["fits"]:
        print(f"| {name} | {labels[tag]} | {r['arena_bytes']} | {r['stack_high_water_bytes']} | {r['flash_bytes']} | "
              f"{r.get('instructions', '-')} | {'yes' if r['bit_exact'] else 'NO'} |")
    else:
        print(f"| {name} | {labels[tag]} | {r['arena_bytes']} | - | - | short by {r['ram_shortfall']} B | - |")
if all(rows[t]["fits"] and "instructions" in rows[t] for t in "abc"):
    a, b, c = (rows[t]["instructions"] for t in "abc")
    print(f"| {name} | c/b = {c / b:.3f} (target <= 1.05), b/a = {b / a:.3f} (target <= 0.4) | | | | | |")
PY
done
