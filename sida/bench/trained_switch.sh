#!/usr/bin/env bash
# SiDA on a trained model: a small Switch Transformers model trained by transformers on real text
# (train_switch.py: Debian's `fortunes` quotations, topic classification as generation); the
# task accuracy of the C++ engine with the true router (exact) beside transformers' own; the
# predictor trained on the model's and the predictor's splits, never the test split
# (collect-routes, train-predictor, eval-predictor); and the accuracy and throughput with the
# predictor replacing the router (--replace-router, top-1 and top-3) against exact mode.
#
#   sida/bench/trained_switch.sh [BUILD] [WORK]      # defaults: build/release, BUILD/sida-trained
#
# PREDICTOR_HIDDEN (64) sets the predictor's width; PREDICTOR_BIDIRECTIONAL=1 makes its LSTM read
# both ways (not SiDA's network). The model is trained once per WORK folder (800 steps on one
# thread, 3-12 minutes of CPU by host); delete WORK/checkpoint to train again. For another model
# (--seed, --pretrain-steps, --router-aux-loss-coef, --expert-capacity), run train_switch.py -o WORK
# with it first.
set -euo pipefail
build="${1:-build/release}"
work="${2:-$build/sida-trained}"
sida="$build/sida/sida"
python="${PERFMEM_VENV:-$HOME/.cache/perfmem/venv}/bin/python"
here="$(cd "$(dirname "$0")" && pwd)"
[ -x "$sida" ] || { echo "trained_switch: $sida not built" >&2; exit 1; }
if [ ! -f "$work/checkpoint/config.json" ]; then
  "$python" "$here/train_switch.py" -o "$work"
fi

# Accuracy of generated topics (first generated token + eos against the target line).
accuracy() {  # $1: JSON report of `sida run --json`
  "$python" - "$1" "$work/test_targets.txt" <<'EOF'
import json, sys
report = json.load(open(sys.argv[1]))
targets = [list(map(int, l.split())) for l in open(sys.argv[2]) if l.strip()]
generated = report["generated"]
assert len(generated) == len(targets), (len(generated), len(targets))
hits = 0
for g, t in zip(generated, targets):
    g = g[: g.index(1) + 1] if 1 in g else g
    hits += g == t
print(f"{hits / len(targets):.4f} ({hits} of {len(targets)})")
EOF
}

echo "== transformers (PyTorch) on the test split"
cat "$work/transformers_eval.json"
echo
echo "== sida exact (the true router decides; all experts resident)"
"$sida" run "$work/checkpoint" --requests "$work/test_requests.txt" --max-new-tokens 2 --policy all-resident \
  --json > "$work/sida_exact.json"
echo "accuracy: $(accuracy "$work/sida_exact.json")"

echo
echo "== the predictor, trained on the model and predictor splits (never on the test split)"
cat "$work/model_corpus.txt" "$work/predictor_corpus.txt" > "$work/predictor_training_corpus.txt"
if [ ! -f "$work/routes.safetensors" ]; then
  "$sida" collect-routes "$work/checkpoint" --corpus "$work/predictor_training_corpus.txt" -o "$work/routes.safetensors"
fi
if [ ! -f "$work/predictor/config.json" ]; then
  # One LibTorch thread: this small network gains nothing from two, and loses much on a busy machine.
  "$sida" train-predictor "$work/checkpoint" --routes "$work/routes.safetensors" -o "$work/predictor" \
    --hidden "${PREDICTOR_HIDDEN:-64}" --epochs 24 --seed 1 --threads 1 ${PREDICTOR_BIDIRECTIONAL:+--bidirectional}
fi
"$sida" eval-predictor "$work/checkpoint" --predictor "$work/predictor" --routes "$work/routes.safetensors"
echo
echo "== how decisive the routers are, and how much of their choice a token table explains"
"$python" "$here/route_context.py" "$work/routes.safetensors"

# Router replacement against exact mode, both with the predictor planning the loads where experts
# do not all fit: all experts resident, then a fast tier of half and a quarter of the expert bytes.
expert_bytes=$("$python" -c 'import json, sys
c = json.load(open(sys.argv[1]))
print(c["d_model"] * c["d_ff"] * 2 * 4)' "$work/checkpoint/config.json")
experts=$("$python" -c 'import json, sys
c = json.load(open(sys.argv[1]))
enc = c["num_layers"] // c["encoder_sparse_step"] if c.get("encoder_sparse_step") else c["num_sparse_encoder_layers"]
dec = c["num_decoder_layers"] // c["decoder_sparse_step"] if c.get("decoder_sparse_step") else c["num_sparse_decoder_layers"]
print((enc + dec) * c["num_experts"])' "$work/checkpoint/config.json")
# SiDA's top-1 (SST2's setting) and top-3 with degrading factors (MRPC's and MultiRC's).
for k in 1 3; do
  for setting in "all-resident" "prefetch $((expert_bytes * experts / 2))" "prefetch $((expert_bytes * experts / 4))"; do
    set -- $setting
    budget=()
    [ $# -gt 1 ] && budget=(--budget "$2")
    echo
    echo "== sida --replace-router --replace-top-k $k (the predictor's best $k experts at every encoder MoE layer, no router): $1 ${2:+budget $2 B}"
    "$sida" run "$work/checkpoint" --requests "$work/test_requests.txt" --max-new-tokens 2 --policy "$1" "${budget[@]}" \
      --predictor "$work/predictor" --replace-router --replace-top-k "$k" --json > "$work/sida_replace.json"
    echo "accuracy: $(accuracy "$work/sida_replace.json")"
    "$python" -c 'import json, sys; print(json.dumps(json.load(open(sys.argv[1]))["replace_router_vs_exact"], indent=2))' \
      "$work/sida_replace.json"
  done
done
