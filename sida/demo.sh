#!/usr/bin/env bash
# sida demo: make a small Switch Transformers checkpoint, record the routes of 40 requests, then
# serve them with a fast tier that holds a quarter of the experts, first with the lru baseline,
# then with prefetching from the route table (one request after another, and with the window's
# requests advancing layer by layer together); the generated ids must be identical.
# Argument: the build folder.
set -euo pipefail
build="${1:-build/release}"
sida="$build/sida/sida"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

echo "--- make a tiny checkpoint (Hugging Face layout, random weights)"
"$sida" make-checkpoint --preset tiny -o "$work/tiny"
echo
echo "--- one request, all experts resident"
"$sida" run "$work/tiny" --tokens "12 7 33 41 5 1" --policy all-resident --max-new-tokens 6
echo
echo "--- record the routes of 40 SST2-like requests (the oracle route table)"
"$sida" record-routes "$work/tiny" --synthetic 40 --max-new-tokens 4 -o "$work/routes.json"
budget=48KiB   # 4 of the 16 experts (12 KiB each in fp32)
for policy in lru prefetch; do
  echo
  echo "--- $policy, fast tier $budget"
  "$sida" run "$work/tiny" --synthetic 40 --max-new-tokens 4 --policy "$policy" --budget "$budget" \
    --routes "$work/routes.json" > "$work/out-$policy.txt"
done
echo
echo "--- prefetch, fast tier $budget, window execution (the window's requests decode together)"
"$sida" run "$work/tiny" --synthetic 40 --max-new-tokens 4 --policy prefetch --budget "$budget" \
  --routes "$work/routes.json" --execution window > "$work/out-window.txt"
"$sida" run "$work/tiny" --synthetic 40 --max-new-tokens 4 --policy all-resident > "$work/out-all.txt" 2>/dev/null
echo
if cmp -s "$work/out-lru.txt" "$work/out-all.txt" && cmp -s "$work/out-prefetch.txt" "$work/out-all.txt" &&
   cmp -s "$work/out-window.txt" "$work/out-all.txt"; then
  echo "exact mode: lru, prefetch and prefetch with window execution generated the same ids as all-resident ($(wc -l < "$work/out-all.txt") requests)"
else
  echo "exact mode violated: outputs differ" >&2
  exit 1
fi
echo
echo "--- encoder only (the classification setting): lru one request after another, then prefetch"
echo "    with the window's requests advancing layer by layer (each expert read once per window)"
"$sida" record-routes "$work/tiny" --synthetic 40 --encoder-only -o "$work/routes-enc.json"
"$sida" run "$work/tiny" --synthetic 40 --encoder-only --policy lru --budget "$budget"
"$sida" run "$work/tiny" --synthetic 40 --encoder-only --policy prefetch --budget "$budget" \
  --routes "$work/routes-enc.json" --execution window --window 40
