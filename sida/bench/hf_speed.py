"""Baseline for `sida bench`: Hugging Face transformers' SwitchTransformers encoder on PyTorch (CPU).

usage: hf_speed.py CHECKPOINT_DIR REQUESTS_FILE THREADS
Runs the encoder over every request (batch 1, one warm-up pass over the first two) and prints
JSON: requests, input tokens, wall seconds, requests/s, tokens/s. Exit 3 without transformers.
"""
import json
import sys
import time

try:
    import torch
    from transformers import SwitchTransformersForConditionalGeneration
except ImportError as error:
    print(f"transformers/torch not available: {error}", file=sys.stderr)
    sys.exit(3)


def main():
    ckpt, requests_file, threads = sys.argv[1], sys.argv[2], int(sys.argv[3])
    torch.set_num_threads(threads)
    requests = [[int(t) for t in line.split()] for line in open(requests_file) if line.strip()]
    model = SwitchTransformersForConditionalGeneration.from_pretrained(ckpt, torch_dtype=torch.float32)
    model.eval()
    encoder = model.get_encoder()
    with torch.no_grad():
        for r in requests[:2]:
            encoder(input_ids=torch.tensor([r]))
        start = time.perf_counter()
        latencies = []
        for r in requests:
            t0 = time.perf_counter()
            encoder(input_ids=torch.tensor([r]))
            latencies.append(time.perf_counter() - t0)
        wall = time.perf_counter() - start
    tokens = sum(len(r) for r in requests)
    latencies.sort()
    print(json.dumps({"requests": len(requests), "input_tokens": tokens, "wall_s": wall,
                      "requests_per_s": len(requests) / wall, "input_tokens_per_s": tokens / wall,
                      "latency_p50_ms": 1e3 * latencies[len(latencies) // 2],
                      "torch": torch.__version__, "threads": threads}))


if __name__ == "__main__":
    main()
