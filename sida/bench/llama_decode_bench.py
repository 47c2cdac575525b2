#!/usr/bin/env python3
"""llama.cpp's half of sida/bench/llama_side_by_side.sh: prompt and decode speed of a GGUF model
through llama-cpp-python, at batch 1, greedy, timed exactly as sida_decode_bench times sida.

    llama_decode_bench.py MODEL.gguf --tokens "1 306 ..." --new-tokens 32 --threads 2 [--repeat 3]

The prompt time is the evaluation of the prompt's ids (its last row's logits give the first
token); each decode step evaluates the last generated id and takes the argmax of its logits.
Prompt tokens/s = prompt tokens / prompt time; decode tokens/s = (new tokens - 1) / the decode
steps' time; the best of --repeat runs of each, after one untimed warm-up. The weights are read
into RAM (no mmap). Prints one JSON object.
"""
import argparse
import json
import sys
import time

try:
    import numpy as np
    import llama_cpp
    from llama_cpp import Llama
except ImportError as e:
    sys.exit(f"llama_decode_bench: {e} (pip install -r scripts/deps/bench/sida.pip)")


def last_logits(llm):
    """The logits of the last evaluated position (Llama.eval keeps them only with logits_all)."""
    return np.ctypeslib.as_array(llm._ctx.get_logits_ith(-1), shape=(llm.n_vocab(),))


def run_once(llm, prompt, new_tokens):
    llm.reset()
    start = time.perf_counter()
    llm.eval(prompt)
    ids = [int(np.argmax(last_logits(llm)))]
    first = time.perf_counter()
    while len(ids) < new_tokens:
        llm.eval([ids[-1]])
        ids.append(int(np.argmax(last_logits(llm))))
    end = time.perf_counter()
    return first - start, end - first, ids


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model")
    ap.add_argument("--tokens", required=True)
    ap.add_argument("--new-tokens", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    prompt = [int(t) for t in args.tokens.replace(",", " ").split()]
    if not prompt or args.new_tokens < 2 or args.repeat < 1:
        sys.exit("llama_decode_bench: need a prompt, --new-tokens >= 2 and --repeat >= 1")
    n_ctx = len(prompt) + args.new_tokens + 8
    llm = Llama(model_path=args.model, n_ctx=n_ctx, n_batch=max(len(prompt), 8), n_ubatch=max(len(prompt), 8),
                n_threads=args.threads, n_threads_batch=args.threads, use_mmap=False, verbose=False)
    run_once(llm, prompt, 2)  # warm-up
    best_prompt = best_decode = float("inf")
    ids = None
    for _ in range(args.repeat):
        p, d, got = run_once(llm, prompt, args.new_tokens)
        if ids is not None and got != ids:
            sys.exit("llama_decode_bench: two repetitions generated different ids")
        ids = got
        best_prompt = min(best_prompt, p)
        best_decode = min(best_decode, d)
    print(json.dumps({
        "engine": "llama.cpp",
        "llama_cpp_python": llama_cpp.__version__,
        "threads": args.threads,
        "prompt_tokens": len(prompt),
        "new_tokens": args.new_tokens,
        "prompt_s": best_prompt,
        "decode_s": best_decode,
        "prompt_tokens_per_s": len(prompt) / best_prompt,
        "decode_tokens_per_s": (args.new_tokens - 1) / best_decode,
        "ids": ids,
    }))


if __name__ == "__main__":
    main()
