#!/usr/bin/env bash
# Deploys every shared model to QEMU's Cortex-M4 board (mps2-an386) under each planner and prints
# a markdown table: arena, stack used, static RAM, flash, instructions of one inference (the QEMU
# plugin built beside vmcu) and whether the board matched the host.
# Arguments: the build folder (default build/release), the shared folder (default ../shared),
# the RAM budget (default 512K; a build that does not fit shows its shortfall).
set -euo pipefail
build="${1:-build/release}"
shared="${2:-../shared}"
ram="${3:-512K}"
vmcu="$build/vmcu/vmcu"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
echo "| model | planner | arena B | stack used B | static RAM B | flash B | instructions | bit-exact |"
echo "|---|---|---|---|---|---|---|---|"
for model in "$shared"/models/mcu/*.tflite; do
  name="$(basename "$model" .tflite)"
  bytes=$("$vmcu" inspect "$model" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["inputs"][0]["bytes"])')
  head -c "$bytes" /dev/urandom > "$work/in.bin"
  for planner in vmcu greedy tinyengine; do
    "$vmcu" deploy "$model" --board mps2-an386 --ram "$ram" --planner "$planner" --input "$work/in.bin" \
      --output "$work/out.bin" --json > "$work/report.json" || true
    python3 - "$name" "$planner" "$work/report.json" <<'PY'
import json, sys
name, planner, path = sys.argv[1:]
r = json.load(open(path))
if r["fits"]:
    print(f"| {name} | {planner} | {r['arena_bytes']} | {r['stack_high_water_bytes']} | {r['static_ram_bytes']} | "
          f"{r['flash_bytes']} | {r.get('instructions', '-')} | {'yes' if r['bit_exact'] else 'NO'} |")
else:
    print(f"| {name} | {planner} | {r['arena_bytes']} | - | short by {r['ram_shortfall']} | - | - | - |")
PY
  done
done
