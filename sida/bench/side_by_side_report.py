#!/usr/bin/env python3
"""The table of sida/bench/llama_side_by_side.sh, from the two engines' JSON results.

    side_by_side_report.py PRECISION:CONFIG.json:SIDA.json:LLAMA.json ...

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


def main():
    rows = []
    for arg in sys.argv[1:]:
        precision, config, sida_file, llama_file = arg.split(":")
        with open(config) as f:
            cfg = json.load(f)
        with open(sida_file) as f:
            sida = json.load(f)
        with open(llama_file) as f:
            llama = json.load(f)
        mat = 2 if precision == "f16" else 4
        sida_expert = 2 if sida["experts"] != "f32" else 4
        sida_bytes = weight_bytes(cfg, mat, 4, sida_expert, mat)
        llama_bytes = weight_bytes(cfg, mat, 4, mat, mat)
        same = 0
        for a, b in zip(sida["ids"], llama["ids"]):
            if a != b:
                break
            same += 1
        rows.append((precision, cfg, sida, llama, sida_bytes, llama_bytes, same))
    print()
    print("| precision | engine | weights per decode token | prompt tokens/s | decode tokens/s | decode bandwidth |")
    print("|---|---|---|---|---|---|")
    for precision, cfg, sida, llama, sb, lb, same in rows:
        for name, r, b in (("sida", sida, sb), ("llama.cpp", llama, lb)):
            print(f"| {precision} | {name} | {b / 1e6:.0f} MB | {r['prompt_tokens_per_s']:.1f} | "
                  f"{r['decode_tokens_per_s']:.2f} | {b * r['decode_tokens_per_s'] / 1e9:.1f} GB/s |")
    print()
    print("| precision | layers | prompt tokens | new tokens | sida/llama.cpp prompt | sida/llama.cpp decode | "
          "greedy ids equal |")
    print("|---|---|---|---|---|---|---|")
    for precision, cfg, sida, llama, sb, lb, same in rows:
        print(f"| {precision} | {cfg['num_hidden_layers']} | {sida['prompt_tokens']} | {sida['new_tokens']} | "
              f"{sida['prompt_tokens_per_s'] / llama['prompt_tokens_per_s']:.2f} | "
              f"{sida['decode_tokens_per_s'] / llama['decode_tokens_per_s']:.2f} | "
              f"first {same} of {len(sida['ids'])} |")
    for precision, cfg, sida, llama, sb, lb, same in rows:
        print(f"\n{precision} ids, sida:      {' '.join(map(str, sida['ids']))}")
        print(f"{precision} ids, llama.cpp: {' '.join(map(str, llama['ids']))}")


if __name__ == "__main__":
    main()
