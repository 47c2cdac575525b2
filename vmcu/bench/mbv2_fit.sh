#!/usr/bin/env bash
# The largest MobileNetV2 (width multiplier x input resolution, Keras' grid, 1000 classes, built
# by `vmcu build-model`) whose static RAM fits 128 KB, 256 KB and 512 KB under each planner, with
# its MACs. RAM = the planner's exact arena (vmcu compile: the library's one static array) + the
# MEAN accumulators and the one-pixel stage outside the plan + the output buffer + the reserved
# stack (4 KB) + the board's own static data, measured once by linking and running a small
# model on mps2-an386 (static RAM minus everything above). A first table ignores flash; a second
# keeps only networks whose constants fit 2 MB (an STM32F767ZI's flash) and checks each pick at
# link time: `vmcu deploy --ram BUDGET --flash 2M` must link, run and match the host.
# Arguments: the build folder (default build/release). Prints a Markdown table.
set -euo pipefail
build="${1:-build/release}"
vmcu="$build/vmcu/vmcu"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
widths="0.35 0.5 0.75 1.0 1.3 1.4"
resolutions="96 128 160 192 224"
# The board's static RAM beyond the model's buffers, from one deploy.
echo '{"seed":1,"input":[1,8,8,8],"layers":[{"type":"conv","kernel":3,"out_channels":8}]}' > "$work/small.json"
"$vmcu" build-model "$work/small.json" -o "$work/small.tflite" > /dev/null
head -c 512 /dev/urandom > "$work/small.in"
"$vmcu" deploy "$work/small.tflite" --board mps2-an386 --ram 512K --planner greedy --input "$work/small.in" \
  --output "$work/small.out" --json > "$work/small-deploy.json"
"$vmcu" compile "$work/small.tflite" --planner greedy --target cortex-m4 -o "$work/small-lib" --json \
  > "$work/small-compile.json"
for w in $widths; do
  for r in $resolutions; do
    echo "{\"mobilenetv2\": {\"width\": $w, \"resolution\": $r, \"classes\": 1000}, \"seed\": 1}" > "$work/m.json"
    "$vmcu" build-model "$work/m.json" -o "$work/m.tflite" > /dev/null
    "$vmcu" inspect "$work/m.tflite" --json > "$work/w${w}_r${r}.inspect.json"
    for planner in vmcu greedy tinyengine; do
      "$vmcu" compile "$work/m.tflite" --planner "$planner" --target cortex-m4 -o "$work/lib" --json \
        > "$work/w${w}_r${r}.$planner.json"
      rm -rf "$work/lib"
    done
  done
done
python3 - "$work" "$widths" "$resolutions" <<'PY'
import json, math, sys
work, widths, resolutions = sys.argv[1], sys.argv[2].split(), sys.argv[3].split()
dep = json.load(open(f"{work}/small-deploy.json"))
comp = json.load(open(f"{work}/small-compile.json"))
board = (dep["static_ram_bytes"] - dep["arena_bytes"] - comp["scratch_bytes"] - comp["stage_bytes"]
         - comp["output_bytes"] - dep["stack_reserved_bytes"])
stack = dep["stack_reserved_bytes"]
def macs(path):
    total = 0
    for op in json.load(open(path))["operators"]:
        out = math.prod(op["outputs"][0]["shape"])
        if op["op"] in ("CONV_2D", "FULLY_CONNECTED"):
            total += out * math.prod(op["inputs"][1]["shape"][1:])
        elif op["op"] == "DEPTHWISE_CONV_2D":
            total += out * op["inputs"][1]["shape"][1] * op["inputs"][1]["shape"][2]
    return total
rows = []
for w in widths:
    for r in resolutions:
        m = macs(f"{work}/w{w}_r{r}.inspect.json")
        for planner in ("vmcu", "greedy", "tinyengine"):
            c = json.load(open(f"{work}/w{w}_r{r}.{planner}.json"))
            ram = (c["arena_bytes"] + c["scratch_bytes"] + c["stage_bytes"] + c["output_bytes"] + stack + board)
            rows.append({"planner": planner, "w": w, "r": int(r), "macs": m, "arena": c["arena_bytes"], "ram": ram,
                         "flash": c["constant_bytes"]})
print(f"Board static data beyond the model's buffers: {board} B; stack reserved: {stack} B.\n")
picks = open(f"{work}/picks.txt", "w")
for title, flash_limit in (("any flash", None), ("constants within 2 MB of flash", 2 * 1024 * 1024)):
    print(f"Largest network per budget, {title}:\n")
    print("| budget | planner | largest network (MACs) | width x resolution | arena B | static RAM B | constants B |")
    print("|---|---|---|---|---|---|---|")
    for kb in (128, 256, 512):
        for planner in ("vmcu", "greedy", "tinyengine"):
            fit = [x for x in rows if x["planner"] == planner and x["ram"] <= kb * 1024 and
                   (flash_limit is None or x["flash"] <= flash_limit)]
            if not fit:
                print(f"| {kb} KB | {planner} | none of the grid | - | - | - | - |")
                continue
            b = max(fit, key=lambda x: (x["macs"], -x["ram"]))
            print(f"| {kb} KB | {planner} | {b['macs'] / 1e6:.1f} M | {b['w']} x {b['r']} | {b['arena']} | {b['ram']} | "
                  f"{b['flash']} |")
            if flash_limit:
                picks.write(f"{kb} {planner} {b['w']} {b['r']}\n")
    print()
print("| width x resolution | MACs | constants B | vmcu static RAM B | greedy static RAM B | tinyengine static RAM B |")
print("|---|---|---|---|---|---|")
for w in widths:
    for r in resolutions:
        sel = {x["planner"]: x for x in rows if x["w"] == w and x["r"] == int(r)}
        print(f"| {w} x {r} | {sel['vmcu']['macs'] / 1e6:.1f} M | {sel['vmcu']['flash']} | {sel['vmcu']['ram']} | "
              f"{sel['greedy']['ram']} | {sel['tinyengine']['ram']} |")
PY
# Link-time check of the 2 MB picks: the linker script's RAM region is the budget.
echo
echo "Link-time check (vmcu deploy --board mps2-an386 --ram BUDGET --flash 2M, one random input):"
echo
echo "| budget | planner | width x resolution | links | static RAM B | instructions | bit-exact |"
echo "|---|---|---|---|---|---|---|"
while read -r kb planner w r; do
  echo "{\"mobilenetv2\": {\"width\": $w, \"resolution\": $r, \"classes\": 1000}, \"seed\": 1}" > "$work/m.json"
  "$vmcu" build-model "$work/m.json" -o "$work/m.tflite" > /dev/null
  head -c $((r * r * 3)) /dev/urandom > "$work/m.in"
  "$vmcu" deploy "$work/m.tflite" --board mps2-an386 --ram "${kb}K" --flash 2M --planner "$planner" \
    --input "$work/m.in" --output "$work/m.out" --timeout 300 --json > "$work/m-deploy.json" || true
  python3 - "$kb" "$planner" "$w" "$r" "$work/m-deploy.json" <<'PY'
import json, sys
kb, planner, w, r, path = sys.argv[1:]
j = json.load(open(path))
if j["fits"]:
    print(f"| {kb} KB | {planner} | {w} x {r} | yes | {j['static_ram_bytes']} | {j.get('instructions', '-')} | "
          f"{'yes' if j['bit_exact'] else 'NO'} |")
else:
    print(f"| {kb} KB | {planner} | {w} x {r} | no: RAM short {j['ram_shortfall']} B, flash short "
          f"{j['flash_shortfall']} B | - | - | - |")
PY
done < "$work/picks.txt"
