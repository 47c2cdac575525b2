#!/usr/bin/env bash
# Instructions per multiply-accumulate of single layers on QEMU's Cortex-M4 board (mps2-an386),
# GCC -O2: the reference kernels, the ring kernels in their plain form (VMCU_NO_DSP) and with the
# DSP extension, beside the CMSIS-NN figures the vMCU deployment issue gives for the same layers
# (measured there on the same emulated board with GCC 12 -O2; CMSIS-NN is not built here).
# Counts come from the instruction-counting plugin built beside vmcu (vmcu/qemu/icount_plugin.c).
# Arguments: the build folder (default build/release). Prints a Markdown table.
set -euo pipefail
build="${1:-build/release}"
root="$(cd "$(dirname "$0")/../.." && pwd)"
plugin="$build/vmcu/libvmcu_icount.so"
[ -f "$plugin" ] || { echo "kernel_table: $plugin not built (cmake --build $build --target vmcu_icount)" >&2; exit 1; }
plugin="$(cd "$(dirname "$plugin")" && pwd)/$(basename "$plugin")"
mcu="$root/vmcu/mcu"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
sed -e 's/@FLASH_BYTES@/4194304/;s/@RAM_BYTES@/2097152/;s/@STACK_BYTES@/8192/' "$mcu/board/link.ld.in" > "$work/link.ld"
for variant in dsp plain; do
  extra=""
  [ "$variant" = plain ] && extra="-DVMCU_NO_DSP"
  # shellcheck disable=SC2086
  arm-none-eabi-gcc -mcpu=cortex-m4 -mfpu=fpv4-sp-d16 -mthumb -mfloat-abi=hard $extra -std=c99 -O2 -Wall -Wextra \
    -Werror -ffunction-sections -fdata-sections -I"$mcu/board" -I"$mcu/include" "$root/vmcu/bench/kernel_bench.c" \
    "$mcu"/src/*.c "$mcu/board/startup.c" -nostartfiles --specs=nano.specs -Wl,--gc-sections -T"$work/link.ld" \
    -o "$work/$variant.elf"
  begin=$(arm-none-eabi-nm "$work/$variant.elf" | awk '$3 == "vmcu_board_count_begin" {print "0x" $1}')
  end=$(arm-none-eabi-nm "$work/$variant.elf" | awk '$3 == "vmcu_board_count_end" {print "0x" $1}')
  timeout -k 2 120 qemu-system-arm -M mps2-an386 -display none -monitor none -serial none \
    -semihosting-config enable=on,target=native -plugin "$plugin,begin=$begin,end=$end,out=$work/$variant.counts" \
    -kernel "$work/$variant.elf" < /dev/null > "$work/$variant.log" 2>&1
  grep -q "vmcu-kernel-bench: done" "$work/$variant.log" || { cat "$work/$variant.log" >&2; exit 1; }
done
python3 - "$work" <<'PY'
import sys
work = sys.argv[1]
cmsis = {"pointwise 16x16, 32->64": 2.70, "pointwise 20x20, 16->48": 3.97, "pointwise 10x10, 144->24": 1.74,
         "depthwise 3x3 s1 SAME, 20x20x48": 8.05, "depthwise 3x3 s1 SAME, 10x10x144": 7.75,
         "fully connected 640->128": 1.95, "fully connected 128->128": 2.27,
         "conv 3x3 s1 SAME, 16x16, 16->32": 2.14}
def load(variant):
    rows = [l.split(": ", 1)[1].strip().split("|") for l in open(f"{work}/{variant}.log")
            if l.startswith("vmcu-kernel-bench: ") and "|" in l]
    counts = [int(x) for x in open(f"{work}/{variant}.counts").read().split()]
    assert len(rows) == len(counts), (len(rows), len(counts))
    return {(layer, kernel): (int(macs), n) for (layer, kernel, macs), n in zip(rows, counts)}
dsp, plain = load("dsp"), load("plain")
print("| layer | MACs | reference instr/MAC | ring plain instr/MAC | ring DSP instr/MAC | CMSIS-NN instr/MAC (issue) | DSP at or below |")
print("|---|---|---|---|---|---|---|")
for layer, target in cmsis.items():
    macs, ref = dsp[(layer, "reference")]
    per = lambda n: n / macs
    d = per(dsp[(layer, "ring")][1])
    print(f"| {layer} | {macs} | {per(ref):.2f} | {per(plain[(layer, 'ring')][1]):.2f} | {d:.2f} | {target:.2f} | "
          f"{'yes' if d <= target else 'no'} |")
PY
