#!/usr/bin/env bash
# Installs a finished build into a scratch prefix, checks the layout, then configures, builds
# and runs cmake/consumer (a project that only does find_package(perfmem)) against it.
#   install_test.sh BUILD_DIR SOURCE_DIR
set -euo pipefail
build=$1 source=$2
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
prefix=$scratch/prefix
cmake --install "$build" --prefix "$prefix" >/dev/null
for f in bin/vmcu bin/sida bin/acrobat include/perfmem/core/status.h include/perfmem/vmcu/ring_plan.h \
         include/vmcu/kernels.h share/perfmem/acrobat/models/treelstm.acr share/perfmem/sida/hf_speed.py lib/cmake/perfmem/perfmemConfig.cmake; do
  [ -e "$prefix/$f" ] || { echo "install_test: $f missing from the install tree" >&2; exit 1; }
done
"$prefix/bin/vmcu" --version
cmake -S "$source/cmake/consumer" -B "$scratch/consumer" -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_PREFIX_PATH="$prefix" >/dev/null
cmake --build "$scratch/consumer" >/dev/null
"$scratch/consumer/consumer"
