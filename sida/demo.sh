#!/usr/bin/env bash
# sida demo: make a small Switch Transformers checkpoint and a corpus of token-id requests; train
# SiDA's expert predictor on the routes of 400 of them (collect-routes, train-predictor,
# eval-predictor); then serve 40 other requests with a fast tier that holds a quarter of the
# experts: lru against prefetching planned by the predictor (its cost counted), one request after
# another and with the window's requests advancing layer by layer, beside the upper bound of an
# oracle route table; in exact mode every policy generates the ids of all-resident. Then SiDA's
# router replacement, and `sida serve` with the predictor: a few requests with curl (one
# streamed), its /metrics, and a SIGTERM that drains it (exit status 0).
# Argument: the build folder.
set -euo pipefail
build="${1:-build/release}"
sida="$build/sida/sida"
work="$(mktemp -d)"
server_pid=""
trap '[ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null; rm -rf "$work"' EXIT

echo "--- make a tiny checkpoint (Hugging Face layout, random weights)"
"$sida" make-checkpoint --preset tiny -o "$work/tiny"
echo
echo "--- one request, all experts resident"
"$sida" run "$work/tiny" --tokens "12 7 33 41 5 1" --policy all-resident --max-new-tokens 6
# A corpus of 440 requests of 10-60 token ids and eos (1), a few ids far more frequent than the
# rest, as in text: the first 400 train the predictor, the last 40 are served.
awk 'BEGIN { srand(11); for (r = 0; r < 440; r++) { n = 10 + int(rand() * 51); line = "";
  for (i = 0; i < n; i++) { u = rand(); line = line (i ? " " : "") (2 + int(94 * u * u * u)) }
  print line " 1" } }' > "$work/corpus.txt"
head -n 400 "$work/corpus.txt" > "$work/train.txt"
tail -n 40 "$work/corpus.txt" > "$work/requests.txt"
echo
echo "--- SiDA's predictor: the routes of 400 requests (every tenth for validation), trained by"
echo "    truncated knowledge distillation, then its hit rate beside two simple baselines"
"$sida" collect-routes "$work/tiny" --corpus "$work/train.txt" -o "$work/routes.safetensors"
"$sida" train-predictor "$work/tiny" --routes "$work/routes.safetensors" -o "$work/predictor" \
  --hidden 32 --epochs 20 --threads 1
"$sida" eval-predictor "$work/tiny" --predictor "$work/predictor" --routes "$work/routes.safetensors"

budget=48KiB   # 4 of the 16 experts (12 KiB each in fp32)
requests=(--requests "$work/requests.txt")
echo
echo "--- encoder only (the classification setting) on the 40 other requests, fast tier $budget:"
echo "    lru one request after another, then prefetch planned by the predictor ahead of inference"
"$sida" run "$work/tiny" "${requests[@]}" --encoder-only --policy lru --budget "$budget"
"$sida" run "$work/tiny" "${requests[@]}" --encoder-only --policy prefetch --budget "$budget" \
  --predictor "$work/predictor"
echo
echo "--- the same, the window's requests advancing layer by layer (each expert read once per window)"
"$sida" run "$work/tiny" "${requests[@]}" --encoder-only --policy prefetch --budget "$budget" \
  --predictor "$work/predictor" --execution window --window 40
echo
echo "--- ablation: prefetch from an oracle route table (a recorded extra pass; an upper bound, not SiDA)"
"$sida" record-routes "$work/tiny" "${requests[@]}" --encoder-only -o "$work/routes-enc.json"
"$sida" run "$work/tiny" "${requests[@]}" --encoder-only --policy prefetch --budget "$budget" \
  --routes "$work/routes-enc.json" --execution window --window 40

echo
echo "--- generation (4 tokens each), fast tier $budget: lru, then the predictor's prefetch"
for policy in lru prefetch; do
  plan=()
  [ "$policy" = prefetch ] && plan=(--predictor "$work/predictor")
  echo "- $policy"
  "$sida" run "$work/tiny" "${requests[@]}" --max-new-tokens 4 --policy "$policy" --budget "$budget" \
    "${plan[@]}" > "$work/out-$policy.txt"
done
echo "- prefetch, window execution (the window's requests decode together)"
"$sida" run "$work/tiny" "${requests[@]}" --max-new-tokens 4 --policy prefetch --budget "$budget" \
  --predictor "$work/predictor" --execution window > "$work/out-window.txt"
"$sida" run "$work/tiny" "${requests[@]}" --max-new-tokens 4 --policy all-resident > "$work/out-all.txt" 2>/dev/null
echo
if cmp -s "$work/out-lru.txt" "$work/out-all.txt" && cmp -s "$work/out-prefetch.txt" "$work/out-all.txt" &&
   cmp -s "$work/out-window.txt" "$work/out-all.txt"; then
  echo "exact mode: lru, prefetch and prefetch with window execution generated the same ids as all-resident ($(wc -l < "$work/out-all.txt") requests)"
else
  echo "exact mode violated: outputs differ" >&2
  exit 1
fi
echo
echo "--- SiDA's router replacement: encoder tokens go to the predicted experts, no router run there;"
echo "    the report says how far the outputs moved from exact mode"
"$sida" run "$work/tiny" "${requests[@]}" --max-new-tokens 4 --policy prefetch --budget "$budget" \
  --predictor "$work/predictor" --replace-router > /dev/null
echo

echo "--- sida serve: an HTTP server on a loopback port (fast tier $budget, windows of up to 8 requests,"
echo "    prefetch planned by the predictor)"
"$sida" serve "$work/tiny" --budget "$budget" --predictor "$work/predictor" --port 0 > "$work/serve.out" 2> "$work/serve.err" &
server_pid=$!
for _ in $(seq 100); do
  grep -q "listening on" "$work/serve.out" 2>/dev/null && break
  sleep 0.1
done
cat "$work/serve.out"
base="$(grep -o 'http://[0-9.]*:[0-9]*' "$work/serve.out")"
[ -n "$base" ] || { echo "the server did not start:" >&2; cat "$work/serve.err" >&2; exit 1; }
echo
echo "\$ curl $base/health"
curl -sS "$base/health"; echo
echo "\$ curl $base/v1/completions -d '{\"prompt\": [12, 7, 33, 41, 5, 1], \"max_tokens\": 6}'"
answer="$(curl -sS "$base/v1/completions" -H 'Content-Type: application/json' \
  -d '{"prompt": [12, 7, 33, 41, 5, 1], "max_tokens": 6}')"
echo "$answer"
echo "\$ curl -N $base/v1/completions -d '{\"prompt\": [12, 7, 33, 41, 5, 1], \"max_tokens\": 4, \"stream\": true}'"
curl -sSN "$base/v1/completions" -H 'Content-Type: application/json' \
  -d '{"prompt": [12, 7, 33, 41, 5, 1], "max_tokens": 4, "stream": true}'
echo "\$ curl $base/v1/encode -d '{\"input\": [12, 7, 33, 1], \"pooling\": \"mean\"}'"
curl -sS "$base/v1/encode" -H 'Content-Type: application/json' -d '{"input": [12, 7, 33, 1], "pooling": "mean"}'
echo
echo "\$ curl $base/v1/completions -d '{\"prompt\": [12, 500]}'   (an id outside the vocabulary)"
curl -sS "$base/v1/completions" -H 'Content-Type: application/json' -d '{"prompt": [12, 500]}'
echo
# The server's answer is exact mode: the same ids as `sida run` on the same request.
served="$(echo "$answer" | sed 's/.*"token_ids":\[\([0-9,]*\)\].*/\1/' | tr ',' ' ')"
ran="$("$sida" run "$work/tiny" --tokens "12 7 33 41 5 1" --max-new-tokens 6 --budget "$budget" 2>/dev/null)"
if [ "$served" = "$ran" ]; then
  echo "exact mode: the server generated the same ids as sida run ($ran)"
else
  echo "exact mode violated: the server gave \"$served\", sida run \"$ran\"" >&2
  exit 1
fi
echo
echo "\$ curl $base/metrics   (samples only)"
curl -sS "$base/metrics" | grep -v '^#' | grep -v '_bucket{'
echo
echo "--- SIGTERM: the server finishes what is in flight, then exits"
kill -TERM "$server_pid"
status=0
wait "$server_pid" || status=$?
server_pid=""
cat "$work/serve.err"
if [ "$status" -ne 0 ]; then
  echo "sida serve exited with status $status after SIGTERM" >&2
  exit 1
fi
echo "sida serve exited with status 0"
