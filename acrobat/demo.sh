#!/usr/bin/env bash
# acrobat demo on built-in data: one model under each scheduler, same results, different speed.
# Argument: the build folder.
set -euo pipefail
build="${1:-build/release}"
cli="$build/acrobat/acrobat"
echo "== acrobat check treelstm"
"$cli" check treelstm
for s in none dynet-agenda dynet-depth acrobat; do
  echo "== acrobat run treelstm --batch 8 --scheduler $s (complete binary trees of height 6, H=256)"
  "$cli" run treelstm --batch 8 --minibatches 5 --scheduler "$s" --verify
done
echo "== acrobat run birnn --size small --batch 8 --scheduler acrobat (phase change before the classifier)"
"$cli" run birnn --batch 8 --minibatches 5 --scheduler acrobat
