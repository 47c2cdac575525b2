#!/usr/bin/env bash
# sida demo on built-in defaults. Argument: the build folder.
set -euo pipefail
build="${1:-build/release}"
"$build/sida/sida" --help
