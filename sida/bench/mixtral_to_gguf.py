#!/usr/bin/env python3
"""Writes a Mixtral checkpoint folder (Hugging Face config.json + safetensors, one file or shards)
as one GGUF file that llama.cpp runs, with the same weights: no quantization.

    mixtral_to_gguf.py CKPT OUT.gguf [--dtype f16|f32]

What llama.cpp expects of a Mixtral (its "llama" architecture with experts):
  * tensor names token_embd, blk.{i}.attn_{norm,q,k,v,output}, blk.{i}.ffn_norm,
    blk.{i}.ffn_gate_inp (the router), blk.{i}.ffn_{gate,up,down}_exps (the experts of a layer
    stacked: [experts, out, in]), output_norm, output;
  * the rows of q_proj and k_proj permuted per head: Hugging Face rotates the two halves of a
    head (rotate_half), llama.cpp's rope for this architecture rotates adjacent pairs, so row
    (h, j) of a head's [2, hd/2] halves moves to (h, j, 2) of its pairs. K uses the K/V heads;
  * a tokenizer: a vocabulary of vocab_size tokens (<unk>, <s>, </s>, the 256 byte tokens, then
    filler pieces); the benchmark feeds token ids, so the pieces only need to be distinct.

Types: matrices take --dtype (f16 from an F16 or BF16 checkpoint is exact only for F16: BF16
values are rounded); norms and the router stay f32 (as llama.cpp's own converter keeps them).
Errors name the file and the tensor or key.
"""
import argparse
import json
import os
import struct
import sys

import numpy as np

try:
    import gguf
except ImportError:
    sys.exit("mixtral_to_gguf: the Python package 'gguf' is missing (pip install -r scripts/deps/bench/sida.pip)")


def die(msg):
    sys.exit("mixtral_to_gguf: " + msg)


class Checkpoint:
    """Tensors of a safetensors checkpoint (one file or shards), memory-mapped."""

    DTYPES = {"F32": np.float32, "F16": np.float16, "BF16": np.uint16}

    def __init__(self, folder):
        self.folder = folder
        self.where = {}
        index = os.path.join(folder, "model.safetensors.index.json")
        if os.path.exists(index):
            with open(index) as f:
                files = sorted(set(json.load(f)["weight_map"].values()))
        elif os.path.exists(os.path.join(folder, "model.safetensors")):
            files = ["model.safetensors"]
        else:
            die(f"{folder}: no model.safetensors nor model.safetensors.index.json")
        for name in files:
            path = os.path.join(folder, name)
            with open(path, "rb") as f:
                (n,) = struct.unpack("<Q", f.read(8))
                header = json.loads(f.read(n))
            data = np.memmap(path, dtype=np.uint8, mode="r", offset=8 + n)
            for tensor, info in header.items():
                if tensor == "__metadata__":
                    continue
                self.where[tensor] = (path, data, info)

    def get(self, name):
        """The tensor as float32."""
        if name not in self.where:
            die(f"{self.folder}: tensor {name!r} is missing")
        path, data, info = self.where[name]
        if info["dtype"] not in self.DTYPES:
            die(f"{path}: tensor {name!r}: dtype {info['dtype']} (expected F32, F16 or BF16)")
        begin, end = info["data_offsets"]
        raw = data[begin:end].view(self.DTYPES[info["dtype"]]).reshape(info["shape"])
        if info["dtype"] == "BF16":
            return (raw.astype(np.uint32) << 16).view(np.float32)
        return raw.astype(np.float32)


def permute_rope_rows(w, heads):
    """Hugging Face's rotate_half layout of q/k rows -> llama.cpp's adjacent pairs."""
    rows = w.shape[0]
    return w.reshape(heads, 2, rows // heads // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("checkpoint")
    ap.add_argument("output")
    ap.add_argument("--dtype", choices=["f16", "f32"], default="f16")
    args = ap.parse_args()

    config_path = os.path.join(args.checkpoint, "config.json")
    try:
        with open(config_path) as f:
            cfg = json.load(f)
    except (OSError, ValueError) as e:
        die(f"{config_path}: {e}")

    def key(name, default=None):
        if name not in cfg or cfg[name] is None:
            if default is None:
                die(f"{config_path}: key {name!r} is missing")
            return default
        return cfg[name]

    if key("model_type") != "mixtral":
        die(f"{config_path}: key 'model_type' is {cfg.get('model_type')!r}; only 'mixtral' is converted")
    d = key("hidden_size")
    layers = key("num_hidden_layers")
    heads = key("num_attention_heads")
    kv_heads = key("num_key_value_heads", heads)
    experts = key("num_local_experts")
    vocab = key("vocab_size")
    if vocab < 259:
        die(f"{config_path}: key 'vocab_size' is {vocab}; the vocabulary needs room for 3 special and 256 byte tokens")
    if cfg.get("tie_word_embeddings"):
        die(f"{config_path}: tie_word_embeddings is not converted (Mixtral checkpoints have lm_head.weight)")

    ck = Checkpoint(args.checkpoint)
    mat_type = np.float16 if args.dtype == "f16" else np.float32

    w = gguf.GGUFWriter(args.output, "llama")
    w.add_name("sida mixtral-shaped benchmark model")
    w.add_context_length(key("max_position_embeddings", 4096))
    w.add_embedding_length(d)
    w.add_block_count(layers)
    w.add_feed_forward_length(key("intermediate_size"))
    w.add_rope_dimension_count(d // heads)
    w.add_head_count(heads)
    w.add_head_count_kv(kv_heads)
    w.add_layer_norm_rms_eps(float(key("rms_norm_eps", 1e-5)))
    w.add_rope_freq_base(float(key("rope_theta", 1e6)))
    w.add_expert_count(experts)
    w.add_expert_used_count(key("num_experts_per_tok", 2))
    w.add_vocab_size(vocab)
    w.add_file_type(gguf.LlamaFileType.MOSTLY_F16 if args.dtype == "f16" else gguf.LlamaFileType.ALL_F32)

    tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)]
    types = [gguf.TokenType.UNKNOWN, gguf.TokenType.CONTROL, gguf.TokenType.CONTROL] + [gguf.TokenType.BYTE] * 256
    tokens += [f"\u2581t{i}" for i in range(len(tokens), vocab)]
    types += [gguf.TokenType.NORMAL] * (vocab - len(types))
    w.add_tokenizer_model("llama")
    w.add_token_list(tokens)
    w.add_token_scores([0.0] * vocab)
    w.add_token_types(types)
    w.add_bos_token_id(int(key("bos_token_id", 1)))
    w.add_eos_token_id(int(key("eos_token_id", 2)))
    w.add_unk_token_id(0)
    w.add_add_bos_token(False)

    # (gguf name, producer) in file order; producers read the checkpoint only when written.
    plan = [("token_embd.weight", lambda: ck.get("model.embed_tokens.weight").astype(mat_type))]
    for i in range(layers):
        p = f"model.layers.{i}."
        b = f"blk.{i}."
        plan += [
            (b + "attn_norm.weight", lambda p=p: ck.get(p + "input_layernorm.weight")),
            (b + "attn_q.weight", lambda p=p: permute_rope_rows(ck.get(p + "self_attn.q_proj.weight"), heads).astype(mat_type)),
            (b + "attn_k.weight", lambda p=p: permute_rope_rows(ck.get(p + "self_attn.k_proj.weight"), kv_heads).astype(mat_type)),
            (b + "attn_v.weight", lambda p=p: ck.get(p + "self_attn.v_proj.weight").astype(mat_type)),
            (b + "attn_output.weight", lambda p=p: ck.get(p + "self_attn.o_proj.weight").astype(mat_type)),
            (b + "ffn_norm.weight", lambda p=p: ck.get(p + "post_attention_layernorm.weight")),
            (b + "ffn_gate_inp.weight", lambda p=p: ck.get(p + "block_sparse_moe.gate.weight")),
        ]
        for gguf_name, hf in (("ffn_gate_exps", "w1"), ("ffn_down_exps", "w2"), ("ffn_up_exps", "w3")):
            plan.append((b + gguf_name + ".weight", lambda p=p, hf=hf: np.stack(
                [ck.get(f"{p}block_sparse_moe.experts.{e}.{hf}.weight").astype(mat_type) for e in range(experts)])))
    plan += [
        ("output_norm.weight", lambda: ck.get("model.norm.weight")),
        ("output.weight", lambda: ck.get("lm_head.weight").astype(mat_type)),
    ]

    # Tensor infos first (shapes and types from the checkpoint's headers), then the data one
    # tensor at a time, so memory holds one tensor, not the model.
    def info(name):
        return ck.where[name][2]

    def shape_of(gguf_name):
        if gguf_name.startswith("token_embd"):
            return info("model.embed_tokens.weight")["shape"]
        if gguf_name.startswith("output_norm"):
            return info("model.norm.weight")["shape"]
        if gguf_name.startswith("output"):
            return info("lm_head.weight")["shape"]
        i = int(gguf_name.split(".")[1])
        p = f"model.layers.{i}."
        part = gguf_name.split(".")[2]
        hf = {"attn_norm": "input_layernorm", "attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj",
              "attn_v": "self_attn.v_proj", "attn_output": "self_attn.o_proj", "ffn_norm": "post_attention_layernorm",
              "ffn_gate_inp": "block_sparse_moe.gate", "ffn_gate_exps": "block_sparse_moe.experts.0.w1",
              "ffn_down_exps": "block_sparse_moe.experts.0.w2", "ffn_up_exps": "block_sparse_moe.experts.0.w3"}[part]
        name = p + hf + ".weight"
        if name not in ck.where:
            die(f"{args.checkpoint}: tensor {name!r} is missing")
        shape = info(name)["shape"]
        return [experts] + shape if part.endswith("_exps") else shape

    def is_f32(gguf_name):
        return gguf_name.endswith("norm.weight") or "ffn_gate_inp" in gguf_name

    for name, _ in plan:
        shape = shape_of(name)
        dt = np.dtype(np.float32) if is_f32(name) else np.dtype(mat_type)
        w.add_tensor_info(name, shape, dt, int(np.prod(shape)) * dt.itemsize)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    for name, produce in plan:
        t = np.ascontiguousarray(produce())
        if list(t.shape) != list(shape_of(name)):
            die(f"{args.checkpoint}: {name}: shape {list(t.shape)}, expected {shape_of(name)}")
        w.write_tensor_data(t)
    w.close()
    print(f"mixtral_to_gguf: wrote {args.output} ({os.path.getsize(args.output) / 2**30:.2f} GiB, {args.dtype})")


if __name__ == "__main__":
    main()
