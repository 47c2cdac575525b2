#!/usr/bin/env bash
# sida beside llama.cpp on the same Mixtral-shaped random weights, batch 1, greedy, every weight in
# RAM, the same prompt ids, 2 threads each (docs/benchmarks.md, "Side by side with llama.cpp").
#
#   sida/bench/llama_side_by_side.sh [BUILD_DIR]        (default build/release; needs sida and
#                                                        sida_decode_bench built there)
#
# Per precision (f16, f32): `sida make-checkpoint --preset mixtral-bench --layers L --dtype P`
# writes the checkpoint, sida/bench/mixtral_to_gguf.py writes the same weights as GGUF (no
# quantization), then sida_decode_bench (experts kept f16 in the fast tier for f16) and
# llama_decode_bench.py (llama-cpp-python) run the same prompt; sida/bench/side_by_side_report.py
# prints prompt and decode tokens/s, the ratios sida / llama.cpp, the weight bandwidth of decoding,
# and how many greedy ids the two engines share. Both engines run in the same invocation and
# alternate, one process each per round (sida, llama.cpp, sida, llama.cpp, ...): a shared host's
# memory bandwidth drifts by tens of per cent over minutes, which one process of each cannot tell
# from a difference between the engines. The report gives every round, the median of each engine
# and the median of the rounds' ratios, which is the figure to read.
#
# Settings (environment): SIDA_LLAMA_LAYERS (16: the issue's 1.5 B-parameter scale point),
# SIDA_LLAMA_PRECISIONS ("f16 f32"), SIDA_LLAMA_PROMPT (prompt tokens, 128),
# SIDA_LLAMA_NEW_TOKENS (32), SIDA_LLAMA_REPEAT (timed runs in each process, 3: the best is kept),
# SIDA_LLAMA_ROUNDS (processes of each engine, alternating, 3),
# SIDA_LLAMA_DIR (checkpoints; default BUILD_DIR/sida-bench/llama), PERFMEM_VENV.
# Disk: 16 layers take 3.0 GB (f16) and 6.0 GB (f32) per engine's copy.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
build="$(cd "${1:-build/release}" && pwd)"
layers="${SIDA_LLAMA_LAYERS:-16}"
precisions="${SIDA_LLAMA_PRECISIONS:-f16 f32}"
prompt_len="${SIDA_LLAMA_PROMPT:-128}"
new_tokens="${SIDA_LLAMA_NEW_TOKENS:-32}"
repeat="${SIDA_LLAMA_REPEAT:-3}"
rounds="${SIDA_LLAMA_ROUNDS:-3}"
dir="${SIDA_LLAMA_DIR:-$build/sida-bench/llama}"
venv="${PERFMEM_VENV:-$HOME/.cache/perfmem/venv}"
sida="$build/sida/sida"
bench="$build/sida/sida_decode_bench"
die() { echo "llama_side_by_side: $*" >&2; exit 1; }

[ -x "$sida" ] && [ -x "$bench" ] || die "build sida and sida_decode_bench first: cmake --build $build --target sida sida_decode_bench"
[ -x "$venv/bin/python" ] || die "no Python venv at $venv: run scripts/install-deps.sh first"
py="$venv/bin/python"
if ! "$py" -c "import llama_cpp, gguf" 2>/dev/null; then
  echo "llama_side_by_side: installing the benchmark's baselines into $venv (scripts/deps/bench/sida.pip:"
  echo "  llama-cpp-python builds llama.cpp from source with -DGGML_NATIVE=ON; this takes several minutes)"
  CMAKE_ARGS="-DGGML_NATIVE=ON" "$py" -m pip install -q --disable-pip-version-check -r "$root/scripts/deps/bench/sida.pip" \
    || die "pip could not install scripts/deps/bench/sida.pip"
fi
[ "$(nproc)" = 2 ] || echo "llama_side_by_side: note: $(nproc) cores; llama.cpp runs 2 threads, sida one per core"

case "$rounds" in '' | *[!0-9]* | 0) die "SIDA_LLAMA_ROUNDS: a positive whole number, not '$rounds'" ;; esac
mkdir -p "$dir"
prompt="$("$py" -c "import random; r = random.Random(2024); print(' '.join(str(r.randrange(3, 32000)) for _ in range($prompt_len)))")"
results=()
# The ratios depend on the CPU as much as on the engines (an f16 product can be bound by
# arithmetic on one design and by memory on another), so the host is part of the result.
cpu_line() { grep -m1 -E "^$1[[:space:]]*:" /proc/cpuinfo 2>/dev/null | cut -d: -f2- | sed 's/^ //'; }
echo "host: $(cpu_line 'model name'), cpu family $(cpu_line 'cpu family'), model $(cpu_line 'model'), $(nproc) cores"
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
for p in $precisions; do
  case "$p" in f16 | f32) ;; *) die "SIDA_LLAMA_PRECISIONS: f16 or f32, not $p" ;; esac
  ckpt="$dir/mixtral-${layers}l-$p"
  if [ ! -f "$ckpt/config.json" ]; then
    "$sida" make-checkpoint --preset mixtral-bench --layers "$layers" --dtype "$p" -o "$ckpt"
  fi
  # No end id in generation: both engines generate exactly the number of tokens asked for.
  echo '{"bos_token_id": 1}' > "$ckpt/generation_config.json"
  gguf_file="$dir/mixtral-${layers}l-$p.gguf"
  [ -f "$gguf_file" ] || "$py" "$root/sida/bench/mixtral_to_gguf.py" "$ckpt" "$gguf_file" --dtype "$p"
  half=()
  [ "$p" = f16 ] && half=(--half-experts)
  sida_runs=()
  llama_runs=()
  for ((round = 1; round <= rounds; round++)); do
    echo "== $p, round $round of $rounds: sida"
    "$bench" "$ckpt" --tokens "$prompt" --new-tokens "$new_tokens" --repeat "$repeat" "${half[@]}" \
      > "$dir/sida-$p-$round.json"
    echo "== $p, round $round of $rounds: llama.cpp"
    "$py" "$root/sida/bench/llama_decode_bench.py" "$gguf_file" --tokens "$prompt" --new-tokens "$new_tokens" \
      --threads 2 --repeat "$repeat" > "$dir/llama-$p-$round.json"
    sida_runs+=("$dir/sida-$p-$round.json")
    llama_runs+=("$dir/llama-$p-$round.json")
  done
  results+=("$p:$ckpt/config.json:$(IFS=,; echo "${sida_runs[*]}"):$(IFS=,; echo "${llama_runs[*]}")")
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
"$py" "$root/sida/bench/side_by_side_report.py" "${results[@]}"
