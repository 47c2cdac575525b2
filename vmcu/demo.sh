#!/usr/bin/env bash
# vmcu demo on built-in defaults. Argument: the build folder.
set -euo pipefail
build="${1:-build/release}"
"$build/vmcu/vmcu" --help
