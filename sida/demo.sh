#!/usr/bin/env bash
# sida demo: make a small Switch Transformers checkpoint, record the routes of 40 requests, then
# serve them with a fast tier that holds a quarter of the experts, first with the lru baseline,
# then with prefetching from the route table (one request after another, and with the window's
# requests advancing layer by layer together); the generated ids must be identical. Finally,
# `sida serve` on the same checkpoint: a few requests with curl (one streamed), its /metrics, and
# a SIGTERM that drains it (exit status 0).
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

echo
echo "--- sida serve: an HTTP server on a loopback port (fast tier $budget, windows of up to 8 requests)"
"$sida" serve "$work/tiny" --budget "$budget" --port 0 > "$work/serve.out" 2> "$work/serve.err" &
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
