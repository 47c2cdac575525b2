#!/usr/bin/env bash
# acrobat demo on built-in defaults. Argument: the build folder.
set -euo pipefail
build="${1:-build/release}"
"$build/acrobat/acrobat" --help
