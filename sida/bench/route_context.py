#!/usr/bin/env python3
"""How much of a model's routing a predictor could read from the tokens alone.

Reads a routes file of `sida collect-routes` (safetensors: tokens, offsets, top_experts,
top_logits, validation) and prints, per encoder MoE layer:
  * how decisive the router is: the mean probability of its choice and the share of tokens
    whose runner-up is within 0.1 of it (softmax over the stored top logits);
  * how much of the choice a lookup table explains, keyed by the token, by (token, position),
    by (previous token, token), by (token, next token) and by all three: fitted on the training
    split and scored on it ("in-sample": the table's ceiling on data it has seen) and on the
    validation split (an unseen key counts as a miss).
A decisive router that no short context explains routes by what it reads further away, which
only a predictor that models the whole request can learn.

    sida/bench/route_context.py ROUTES.safetensors [--json OUT]
"""
import argparse
import json
import sys
from collections import Counter, defaultdict

import numpy as np
from safetensors.numpy import load_file


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("routes", help="routes file of `sida collect-routes`")
    ap.add_argument("--json", help="also write the figures to this file")
    args = ap.parse_args()
    try:
        d = load_file(args.routes)
        tokens, offsets = d["tokens"], d["offsets"]
        experts, logits, validation = d["top_experts"], d["top_logits"], d["validation"]
    except Exception as e:  # a clear message, not a traceback
        sys.exit(f"route_context: {args.routes}: not a routes file of `sida collect-routes` ({e})")
    n = tokens.shape[0]
    # The layout collect-routes writes; anything else is named, never read as garbage.
    problems = []
    if offsets.ndim != 1 or len(offsets) < 1 or offsets[0] != 0 or offsets[-1] != n or np.any(np.diff(offsets) < 0):
        problems.append(f"offsets: expected {{0 ... {n}}} non-decreasing (one more than the requests)")
    elif validation.shape != (len(offsets) - 1,):
        problems.append(f"validation: expected shape ({len(offsets) - 1},), got {validation.shape}")
    if experts.ndim != 3 or experts.shape[0] != n or experts.shape[2] < 1:
        problems.append(f"top_experts: expected shape ({n}, layers, top), got {experts.shape}")
    elif logits.shape != experts.shape:
        problems.append(f"top_logits: expected shape {experts.shape} (as top_experts), got {logits.shape}")
    if problems:
        sys.exit(f"route_context: {args.routes}: " + "; ".join(problems))
    layers = experts.shape[1]
    request = np.repeat(np.arange(len(offsets) - 1), np.diff(offsets))
    position = np.arange(n) - offsets[request]
    first = position == 0
    last = np.append(position[1:] == 0, True)
    previous = np.where(first, -1, np.roll(tokens, 1))
    following = np.where(last, -1, np.roll(tokens, -1))
    train = validation[request] == 0
    keys = {
        "token": list(tokens),
        "token, position (up to 8)": list(zip(tokens, np.minimum(position, 8))),
        "previous token, token": list(zip(previous, tokens)),
        "token, next token": list(zip(tokens, following)),
        "previous, token, next": list(zip(previous, tokens, following)),
    }
    p = np.exp(logits - logits.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    report = {"routes": args.routes, "tokens": int(n), "layers": []}
    print(f"{args.routes}: {n} tokens, {len(offsets) - 1} requests ({int((validation == 0).sum())} training)")
    for layer in range(layers):
        choice = experts[:, layer, 0]
        gap = p[:, layer, 0] - p[:, layer, 1] if p.shape[2] > 1 else np.ones(n)
        entry = {
            "layer": layer,
            "mean_choice_probability": float(p[:, layer, 0].mean()),
            "runner_up_within_0.1": float((gap < 0.1).mean()),
            "tables": {},
        }
        print(f"\nlayer {layer}: router's choice probability {entry['mean_choice_probability']:.3f} on average; "
              f"runner-up within 0.1 for {100 * entry['runner_up_within_0.1']:.1f}% of tokens")
        print(f"  {'table keyed by':28s} {'in-sample':>10s} {'validation':>11s}")
        for name, key in keys.items():
            counts = defaultdict(Counter)
            for i in np.flatnonzero(train):
                counts[key[i]][choice[i]] += 1
            best = {k: c.most_common(1)[0][0] for k, c in counts.items()}
            seen = sum(max(c.values()) for c in counts.values()) / max(1, int(train.sum()))
            held = np.flatnonzero(~train)
            unseen = sum(best.get(key[i], -1) == choice[i] for i in held) / max(1, len(held))
            entry["tables"][name] = {"in_sample": seen, "validation": unseen}
            print(f"  {name:28s} {100 * seen:9.1f}% {100 * unseen:10.1f}%")
        report["layers"].append(entry)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)


if __name__ == "__main__":
    main()
