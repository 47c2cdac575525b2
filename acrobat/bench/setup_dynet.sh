#!/usr/bin/env bash
# Builds real DyNet (C++ library, CPU/Eigen backend) once, into a cache outside the clone, so the
# ACRoBat benchmark can run it side by side with acrobat. Never part of `make test`.
#
#   acrobat/bench/setup_dynet.sh            build (or reuse) the library
#   DYNET_JOBS=1 acrobat/bench/setup_dynet.sh
#
# Source: PyPI's dynet 2.1.2 source distribution, which carries DyNet's full C++ sources; it
# builds against Debian's Eigen 3.4 (libeigen3-dev) without patches. Cache layout under
# $PERFMEM_DYNET (default ~/.cache/perfmem/dynet):
#   dyNET-2.1.2.tar.gz   the downloaded source distribution
#   src/                 unpacked sources      build/   CMake build folder
#   install/             include/dynet/*.h and lib/libdynet.so; install/.built marks completion
# Idempotent: when install/.built exists the script only prints where the library is.
set -euo pipefail
version=2.1.2
cache="${PERFMEM_DYNET:-$HOME/.cache/perfmem/dynet}"
jobs="${DYNET_JOBS:-2}"
eigen="${EIGEN3_INCLUDE_DIR:-/usr/include/eigen3}"
die() { echo "setup_dynet: $*" >&2; exit 1; }

if [ -f "$cache/install/.built" ]; then
  echo "setup_dynet: DyNet $version already built in $cache/install"
  exit 0
fi
[ -f "$eigen/Eigen/Core" ] || die "Eigen headers not found in $eigen (install libeigen3-dev)"
command -v cmake >/dev/null || die "cmake not found"
mkdir -p "$cache"

tarball="$cache/dyNET-$version.tar.gz"
if [ ! -f "$tarball" ]; then
  echo "setup_dynet: downloading the dynet==$version source distribution from PyPI"
  tmp=$(mktemp -d "$cache/download.XXXXXX")
  python3 -m pip download --quiet --disable-pip-version-check --no-binary :all: --no-deps \
    "dynet==$version" -d "$tmp" || die "pip download of dynet==$version failed"
  found=$(find "$tmp" -maxdepth 1 -iname "dynet-$version.tar.gz" | head -n 1)
  [ -n "$found" ] || die "pip did not produce dynet-$version.tar.gz"
  mv "$found" "$tarball"
  rm -rf "$tmp"
fi

rm -rf "$cache/src"
mkdir -p "$cache/src"
tar -xzf "$tarball" -C "$cache/src" --strip-components=1
[ -f "$cache/src/dynet/CMakeLists.txt" ] || die "the source distribution has no dynet/CMakeLists.txt"

# Release build as DyNet configures it (-Ofast -march=native), Eigen backend, no Boost, no
# Python, no examples; shared library installed into install/.
cmake -S "$cache/src" -B "$cache/build" -DCMAKE_BUILD_TYPE=Release -DBACKEND=eigen \
  -DEIGEN3_INCLUDE_DIR="$eigen" -DENABLE_BOOST=OFF -DENABLE_CPP_EXAMPLES=OFF \
  -DCMAKE_INSTALL_PREFIX="$cache/install" >/dev/null
nice -n 19 cmake --build "$cache/build" --target dynet -j "$jobs"
cmake --install "$cache/build" >/dev/null
# config.h is generated into the build folder and included by DyNet's public headers.
[ -f "$cache/build/config.h" ] && cp "$cache/build/config.h" "$cache/install/include/"
touch "$cache/install/.built"
echo "setup_dynet: DyNet $version built in $cache/install"
