#!/usr/bin/env bash
# Checks that every C and C++ source of the project follows .clang-format; prints the files
# that do not and the command that fixes them.   format_check.sh SOURCE_DIR
set -euo pipefail
cd "$1"
command -v clang-format >/dev/null || { echo "format_check: clang-format not found (Debian package clang-format)" >&2; exit 1; }
mapfile -t files < <(find core vmcu sida acrobat cmake \( -name '*.c' -o -name '*.h' -o -name '*.cpp' \) -type f | sort)
bad=()
for f in "${files[@]}"; do
  clang-format --dry-run --Werror "$f" >/dev/null 2>&1 || bad+=("$f")
done
if [ ${#bad[@]} -gt 0 ]; then
  echo "format_check: ${#bad[@]} of ${#files[@]} files do not follow .clang-format:" >&2
  printf '  %s\n' "${bad[@]}" >&2
  echo "fix with: clang-format -i ${bad[*]}" >&2
  exit 1
fi
echo "format_check: ${#files[@]} files follow .clang-format"
