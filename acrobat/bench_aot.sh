#!/usr/bin/env bash
# Record + schedule cost per tensor op, compiled ahead of time (`acrobat run --aot`) against
# interpreted, on the four shared workloads (TreeLSTM, MV-RNN, BiRNN, NestedRNN), small and
# large, batch 8 and 64, scheduler acrobat. Prints a markdown table (docs/benchmarks.md).
# Argument: the build folder. MODELS and SIZES (space-separated) choose other models and sizes.
set -euo pipefail
build="${1:-build/release}"
cli="$build/acrobat/acrobat"
echo "| model | size | B | tensor ops | interpreted record / schedule ms | AOT record / schedule ms | interpreted ns per tensor op | AOT ns per tensor op | AOT speedup |"
echo "|---|---|---|---|---|---|---|---|---|"
for model in ${MODELS:-treelstm mvrnn birnn nestedrnn}; do
  for size in ${SIZES:-small large}; do
    for batch in 8 64; do
      interp=$("$cli" run "$model" --size "$size" --batch "$batch" --json)
      aot=$("$cli" run "$model" --size "$size" --batch "$batch" --json --aot)
      python3 - "$model" "$size" "$batch" "$interp" "$aot" <<'PY'
import json, sys
model, size, batch, interp, aot = sys.argv[1:]
i = json.loads(interp[interp.index("{"):])
a = json.loads(aot[aot.index("{"):])
assert i["checksum"] == a["checksum"] and i["ops_recorded"] == a["ops_recorded"], "AOT and interpreted runs differ"
ni, na = i["record_and_schedule_ns_per_tensor_op"], a["record_and_schedule_ns_per_tensor_op"]
bi, ba = i["breakdown_ms"], a["breakdown_ms"]
print(f"| {model} | {size} | {batch} | {i['tensor_ops']:.0f} | {bi['record']:.3f} / {bi['schedule']:.3f} | "
      f"{ba['record']:.3f} / {ba['schedule']:.3f} | {ni:.1f} | {na:.1f} | {ni / na:.2f}x |")
PY
    done
  done
done
