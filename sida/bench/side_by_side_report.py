#!/usr/bin/env python3
"""The table of sida/bench/llama_side_by_side.sh, from the two engines' JSON results.

    side_by_side_report.py PRECISION:CONFIG.json:SIDA1.json[,SIDA2.json...]:LLAMA1.json[,LLAMA2.json...] ...

Round i pairs the i-th result of each engine (the script runs them alternately, sida first). Each
engine's row is its median over the rounds; the ratios to read are the medians of the rounds'
ratios, printed beside the lowest and highest round.

Decode bandwidth = bytes of weights read per decode token x decode tokens/s, counting every matrix
a token passes through once, in the type each engine keeps it in: per layer the attention
projections (q, k, v, o), the router, the two norms and the experts_per_token experts it is routed
to (gate, up, down); then the final norm and the LM head (the embedding row is one row). KV-cache
reads are left out (a few hundred positions: under 1% of the weights here). A sida decoding step
streams the attention projections and the LM head in the checkpoint's type (16-bit copies kept
beside the packed fp32 ones that prompts use), the router in fp32, and its experts in fp32, or in
f16 with a 16-bit fast tier; llama.cpp keeps the matrices in the GGUF's type and norms and router
in f32.
"""
import json
import statistics
import sys


def weight_bytes(cfg, resident_bytes, router_bytes, expert_bytes, head_bytes):
    d = cfg["hidden_size"]
    heads = cfg["num_attention_heads"]
    kv = cfg.get("num_key_value_heads", heads)
    hd = d // heads
    ff = cfg["intermediate_size"]
    k = cfg["num_experts_per_tok"]
    experts = cfg["num_local_experts"]
    attention = d * heads * hd * 2 + d * kv * hd * 2
    per_layer = attention * resident_bytes + experts * d * router_bytes + 2 * d * 4 + k * 3 * d * ff * expert_bytes
    return cfg["num_hidden_layers"] * per_layer + d * 4 + cfg["vocab_size"] * d * head_bytes + d * head_bytes


def load_runs(files):
    runs = []
    for name in files.split(","):
        with open(name) as f:
            runs.append(json.load(f))
    return runs


def shared_prefix(a, b):
    same = 0
    for x, y in zip(a, b):
        if x != y:
            break
        same += 1
    return same


def ratio_text(values):
    """'median (lowest-highest)', or the one value of a single round."""
    if len(values) == 1:
        return f"{values[0]:.2f}"
    return f"{statistics.median(values):.2f} ({min(values):.2f}-{max(values):.2f})"


def main():
    rows = []
    for arg in sys.argv[1:]:
        precision, config, sida_files, llama_files = arg.split(":")
        with open(config) as f:
            cfg = json.load(f)
        sida_runs = load_runs(sida_files)
        llama_runs = load_runs(llama_files)
        if len(sida_runs) != len(llama_runs):
            sys.exit(f"side_by_side_report: {precision}: {len(sida_runs)} sida results against "
                     f"{len(llama_runs)} llama.cpp results; rounds pair one of each")
        mat = 2 if precision == "f16" else 4
        sida_expert = 2 if sida_runs[0]["experts"] != "f32" else 4
        sida_bytes = weight_bytes(cfg, mat, 4, sida_expert, mat)
        llama_bytes = weight_bytes(cfg, mat, 4, mat, mat)
        same = min(shared_prefix(s["ids"], l["ids"]) for s, l in zip(sida_runs, llama_runs))
        rows.append((precision, cfg, sida_runs, llama_runs, sida_bytes, llama_bytes, same))

    print()
    print("| precision | round | engine | weights per decode token | prompt tokens/s | decode tokens/s | "
          "decode bandwidth |")
    print("|---|---|---|---|---|---|---|")
    for precision, cfg, sida_runs, llama_runs, sb, lb, same in rows:
        rounds = list(zip(sida_runs, llama_runs))
        labels = [str(i + 1) for i in range(len(rounds))]
        for label, (s, l) in zip(labels, rounds):
            for name, r, b in (("sida", s, sb), ("llama.cpp", l, lb)):
                print(f"| {precision} | {label} | {name} | {b / 1e6:.0f} MB | {r['prompt_tokens_per_s']:.1f} | "
                      f"{r['decode_tokens_per_s']:.2f} | {b * r['decode_tokens_per_s'] / 1e9:.1f} GB/s |")
        if len(rounds) > 1:
            for name, runs, b in (("sida", sida_runs, sb), ("llama.cpp", llama_runs, lb)):
                prompt = statistics.median(r["prompt_tokens_per_s"] for r in runs)
                decode = statistics.median(r["decode_tokens_per_s"] for r in runs)
                print(f"| {precision} | median | {name} | {b / 1e6:.0f} MB | {prompt:.1f} | {decode:.2f} | "
                      f"{b * decode / 1e9:.1f} GB/s |")
    print()
    print("| precision | layers | prompt tokens | new tokens | rounds | sida/llama.cpp prompt | "
          "sida/llama.cpp decode | greedy ids equal |")
    print("|---|---|---|---|---|---|---|---|")
    for precision, cfg, sida_runs, llama_runs, sb, lb, same in rows:
        prompt = [s["prompt_tokens_per_s"] / l["prompt_tokens_per_s"] for s, l in zip(sida_runs, llama_runs)]
        decode = [s["decode_tokens_per_s"] / l["decode_tokens_per_s"] for s, l in zip(sida_runs, llama_runs)]
        print(f"| {precision} | {cfg['num_hidden_layers']} | {sida_runs[0]['prompt_tokens']} | "
              f"{sida_runs[0]['new_tokens']} | {len(sida_runs)} | {ratio_text(prompt)} | {ratio_text(decode)} | "
              f"first {same} of {len(sida_runs[0]['ids'])} in every round |")
    for precision, cfg, sida_runs, llama_runs, sb, lb, same in rows:
        print(f"\n{precision} ids, sida:      {' '.join(map(str, sida_runs[0]['ids']))}")
        print(f"{precision} ids, llama.cpp: {' '.join(map(str, llama_runs[0]['ids']))}")


if __name__ == "__main__":
    main()
