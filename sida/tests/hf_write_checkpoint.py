"""Writes a Switch Transformers checkpoint with Hugging Face transformers itself, for the tests.

usage: hf_write_checkpoint.py OUT_DIR SPEC_JSON

SPEC_JSON keys (all optional):
  config        keyword arguments of SwitchTransformersConfig (the tiny shapes are the default)
  seed          torch seed of the random initialisation (default 0)
  dtype         "float32" (default), "bfloat16" or "float16": the stored dtype
  max_shard_size  save_pretrained's shard limit, e.g. "64KB"
  save_model    true: rewrite the weights with safetensors.torch.save_model, which keeps the tied
                embedding under the name that library picks instead of shared.weight
  bin_only      true: write pytorch_model.bin instead of safetensors
  drop_config_keys  keys removed from config.json after saving
  no_generation_config  true: remove generation_config.json
  generation_config  keys set in generation_config.json after saving (null removes the key)
  t5            true: a dense T5 model (T5ForConditionalGeneration) of the same tiny shape instead

Exit 3 when transformers is not installed, so the caller can skip.
"""
import json
import os
import sys

try:
    import torch
    from transformers import SwitchTransformersConfig, SwitchTransformersForConditionalGeneration
except ImportError as error:  # the test skips with this message
    print(f"transformers/torch not available: {error}", file=sys.stderr)
    sys.exit(3)

TINY = dict(vocab_size=96, d_model=32, d_ff=48, d_kv=8, num_heads=4, num_layers=4, num_decoder_layers=4,
            num_sparse_encoder_layers=2, num_sparse_decoder_layers=2, num_experts=4, expert_capacity=64,
            decoder_start_token_id=0)


def main():
    out, spec = sys.argv[1], json.loads(sys.argv[2])
    torch.manual_seed(int(spec.get("seed", 0)))
    kwargs = dict(TINY)
    kwargs.update(spec.get("config", {}))
    if spec.get("t5"):
        from transformers import T5Config, T5ForConditionalGeneration
        dense = {k: v for k, v in kwargs.items() if "sparse" not in k and k not in ("num_experts", "expert_capacity")}
        model = T5ForConditionalGeneration(T5Config(**dense))
    else:
        model = SwitchTransformersForConditionalGeneration(SwitchTransformersConfig(**kwargs))
    model.eval()
    dtype = getattr(torch, spec.get("dtype", "float32"))
    model = model.to(dtype)
    save_args = {}
    if "max_shard_size" in spec:
        save_args["max_shard_size"] = spec["max_shard_size"]
    if spec.get("bin_only"):
        save_args["safe_serialization"] = False
    model.save_pretrained(out, **save_args)
    if spec.get("save_model"):
        from safetensors.torch import save_model
        save_model(model, os.path.join(out, "model.safetensors"), metadata={"format": "pt"})
    config_path = os.path.join(out, "config.json")
    drop = spec.get("drop_config_keys", [])
    if drop:
        with open(config_path) as f:
            config = json.load(f)
        for key in drop:
            config.pop(key, None)
        with open(config_path, "w") as f:
            json.dump(config, f, indent=2)
    if "generation_config" in spec:
        path = os.path.join(out, "generation_config.json")
        with open(path) as f:
            generation = json.load(f)
        for key, value in spec["generation_config"].items():
            if value is None:
                generation.pop(key, None)
            else:
                generation[key] = value
        with open(path, "w") as f:
            json.dump(generation, f, indent=2)
    if spec.get("no_generation_config"):
        os.remove(os.path.join(out, "generation_config.json"))


if __name__ == "__main__":
    main()
