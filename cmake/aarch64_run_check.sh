#!/usr/bin/env bash
# Builds core's packed GEMM check for aarch64 (static, Debian's cross compiler) and runs it under
# QEMU's user-mode emulator, so the NEON path is tested bit for bit against its plain-loop twin
# on an x86-64 machine.   aarch64_run_check.sh SOURCE_DIR
set -euo pipefail
source_dir=$1
cxx=aarch64-linux-gnu-g++
qemu=qemu-aarch64-static
command -v "$cxx" >/dev/null || { echo "aarch64_run_check: $cxx not found (Debian package g++-aarch64-linux-gnu)" >&2; exit 1; }
command -v "$qemu" >/dev/null || { echo "aarch64_run_check: $qemu not found (Debian package qemu-user-static)" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$cxx" -static -std=c++20 -O2 -Wall -Wextra -Werror -I"$source_dir/core/include" \
  "$source_dir/core/src/packed_gemm.cpp" "$source_dir/core/src/tensor.cpp" "$source_dir/core/src/status.cpp" \
  "$source_dir/core/tests/packed_gemm_isa_check.cpp" -o "$work/packed_gemm_isa_check"
output=$("$qemu" "$work/packed_gemm_isa_check")
echo "$output"
grep -q '^neon: ' <<<"$output" || { echo "aarch64_run_check: the NEON path was not checked" >&2; exit 1; }
