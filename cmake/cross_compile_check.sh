#!/usr/bin/env bash
# Compiles the given sources with Debian's aarch64 cross compiler (build only: nothing runs), so
# the kernels keep a portable path beside their x86-64 vector code.
#   cross_compile_check.sh SOURCE_DIR FILE...   (FILE relative to SOURCE_DIR)
# Header-only dependencies and OpenBLAS's cblas.h come from the host's /usr/include through a
# folder of links (the host's glibc headers themselves must not reach the cross compiler).
set -euo pipefail
source_dir=$1; shift
cxx=aarch64-linux-gnu-g++
command -v "$cxx" >/dev/null || { echo "cross_compile_check: $cxx not found (Debian package g++-aarch64-linux-gnu)" >&2; exit 1; }
shim=$(mktemp -d)
trap 'rm -rf "$shim"' EXIT
cblas=$(find /usr/include -name cblas.h -path '*openblas*' | head -n 1)
[ -n "$cblas" ] || { echo "cross_compile_check: OpenBLAS's cblas.h not found (libopenblas-dev)" >&2; exit 1; }
ln -s "$cblas" "$shim/cblas.h"
ln -s "$(dirname "$cblas")/openblas_config.h" "$shim/openblas_config.h"
for dir in nlohmann CLI; do ln -s "/usr/include/$dir" "$shim/$dir"; done
includes=()
for inc in core/include vmcu/include vmcu/mcu/include sida/include acrobat/include; do includes+=(-I"$source_dir/$inc"); done
for f in "$@"; do
  "$cxx" -std=c++20 -O2 -Wall -Wextra -Werror "${includes[@]}" -isystem "$shim" -c "$source_dir/$f" -o "$shim/out.o"
  echo "cross_compile_check: $f compiles for aarch64"
done
