#!/usr/bin/env bash
# SiDA on a trained model: a small Switch Transformers model trained by transformers on real text
# (train_switch.py: Debian's `fortunes` quotations, topic classification as generation); the
# task accuracy of the C++ engine with the true router (exact) beside transformers' own; the
# predictor trained on the disjoint predictor split (collect-routes, train-predictor,
# eval-predictor); and the accuracy with the predictor replacing the router (--replace-router).
#
#   sida/bench/trained_switch.sh [BUILD] [WORK]      # defaults: build/release, BUILD/sida-trained
#
# The model is trained once per WORK folder (about 5 minutes of CPU; --seconds in the script);
# delete WORK/checkpoint to train again.
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
echo "== the predictor, trained on the predictor split (disjoint from the model's and the test's)"
"$sida" collect-routes "$work/checkpoint" --corpus "$work/predictor_corpus.txt" -o "$work/routes.safetensors"
if [ ! -f "$work/predictor/config.json" ]; then
  "$sida" train-predictor "$work/checkpoint" --routes "$work/routes.safetensors" -o "$work/predictor" --epochs 20 \
    --seed 1
fi
"$sida" eval-predictor "$work/checkpoint" --predictor "$work/predictor" --routes "$work/routes.safetensors"
echo
echo "== sida --replace-router (the predictor's top-1 expert at every encoder MoE layer, no router)"
"$sida" run "$work/checkpoint" --requests "$work/test_requests.txt" --max-new-tokens 2 --policy all-resident \
  --predictor "$work/predictor" --replace-router --json > "$work/sida_replace.json"
echo "accuracy: $(accuracy "$work/sida_replace.json")"
"$python" -c 'import json, sys; print(json.dumps(json.load(open(sys.argv[1]))["replace_router_vs_exact"], indent=2))' \
  "$work/sida_replace.json"
