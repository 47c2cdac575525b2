"""Decoder-only MoE checkpoints (Mixtral, Qwen2-MoE) and reference outputs from Hugging Face
transformers, for the conformance tests.

usage: hf_decoder_only.py write OUT_DIR SPEC_JSON
       hf_decoder_only.py oracle CHECKPOINT_DIR OUT.json MAX_NEW_TOKENS "ids of request 1" ["ids of request 2" ...]
       hf_decoder_only.py text CHECKPOINT_DIR OUT.json MAX_NEW_TOKENS "text 1" ["text 2" ...]

write: a MixtralForCausalLM (or Qwen2MoeForCausalLM with "family": "qwen2_moe") of tiny shapes,
randomly initialised (torch seed), saved with save_pretrained. SPEC_JSON keys (all optional):
family ("mixtral" or "qwen2_moe"), config (keyword arguments of the config class over the tiny
defaults), seed (0), dtype ("float32", "bfloat16" or "float16": the stored dtype),
max_shard_size (save_pretrained's shard limit, e.g. "40KB").

oracle: per request, the greedy tokens of generate() (do_sample=False), the raw logits of every
generation step, and per MoE layer the experts the router picks for every position of the
prompt and the generated tokens but the last (top num_experts_per_tok of softmax(router logits),
descending, from a forward pass over that sequence with generate()'s attention mask and
positions; dense layers have none). A pad id in the generation config that is not an end id is
masked inside the prompts as generate() masks it. Exit 3 when
transformers is not installed.

text: trains a small SentencePiece BPE model with Llama's special ids (unk 0, bos 1, eos 2) and
the checkpoint's vocabulary size, saves it as Mixtral's checkpoints ship it (LlamaTokenizer with
legacy=True, save_pretrained: tokenizer.model, tokenizer_config.json), then per text: the ids the
tokenizer gives, the greedy ids generate() continues them with, and their decoding
(skip_special_tokens=True).
"""
import json
import os
import sys

try:
    import torch
    from transformers import (AutoModelForCausalLM, MixtralConfig, MixtralForCausalLM, Qwen2MoeConfig,
                              Qwen2MoeForCausalLM)
except ImportError as error:  # the test skips with this message
    print(f"transformers/torch not available: {error}", file=sys.stderr)
    sys.exit(3)

# initializer_range 0.2 (not 0.02): router logits and LM logits far enough apart that the top-k
# choices and the greedy argmax are not decided by rounding.
TINY = dict(vocab_size=96, hidden_size=32, intermediate_size=48, num_hidden_layers=3, num_attention_heads=4,
            num_key_value_heads=2, num_local_experts=4, num_experts_per_tok=2, max_position_embeddings=512,
            rope_theta=1e6, rms_norm_eps=1e-5, initializer_range=0.2, bos_token_id=1, eos_token_id=2)
QWEN_TINY = dict(vocab_size=96, hidden_size=32, intermediate_size=40, moe_intermediate_size=24,
                 shared_expert_intermediate_size=56, num_hidden_layers=6, num_attention_heads=4, num_key_value_heads=2,
                 num_experts=6, num_experts_per_tok=2, decoder_sparse_step=2, norm_topk_prob=False,
                 max_position_embeddings=512, sliding_window=512, rope_theta=10000.0, rms_norm_eps=1e-6,
                 initializer_range=0.2, bos_token_id=1, eos_token_id=2)


def write(out, spec):
    torch.manual_seed(int(spec.get("seed", 0)))
    qwen = spec.get("family", "mixtral") == "qwen2_moe"
    kwargs = dict(QWEN_TINY if qwen else TINY)
    kwargs.update(spec.get("config", {}))
    model = Qwen2MoeForCausalLM(Qwen2MoeConfig(**kwargs)) if qwen else MixtralForCausalLM(MixtralConfig(**kwargs))
    model.eval()
    model = model.to(getattr(torch, spec.get("dtype", "float32")))
    save_args = {}
    if "max_shard_size" in spec:
        save_args["max_shard_size"] = spec["max_shard_size"]
    model.save_pretrained(out, **save_args)


def oracle(ckpt, out_path, max_new, requests):
    torch.set_num_threads(2)
    model = AutoModelForCausalLM.from_pretrained(ckpt, torch_dtype=torch.float32, attn_implementation="eager")
    model.eval()
    k = model.config.num_experts_per_tok
    # generate() masks its generation config's pad id inside a prompt (the attention mask it builds
    # is ids != pad) unless that id also ends sequences; the positions are then the mask's cumsum - 1
    # (a pad's: 1), as its prepare_inputs_for_generation computes them.
    gen = model.generation_config
    eos = gen.eos_token_id if isinstance(gen.eos_token_id, list) else [gen.eos_token_id]
    masked_pad = gen.pad_token_id if gen.pad_token_id is not None and gen.pad_token_id not in eos else None
    generations = []
    with torch.no_grad():
        for r in requests:
            x = torch.tensor([r])
            common = dict(max_new_tokens=max_new, do_sample=False, num_beams=1, return_dict_in_generate=True,
                          output_logits=True)
            if masked_pad is None:
                out = model.generate(x, attention_mask=torch.ones_like(x), pad_token_id=gen.eos_token_id, **common)
            else:  # the mask is generate()'s own
                out = model.generate(x, pad_token_id=masked_pad, **common)
            tokens = out.sequences[0, len(r):].tolist()
            logits = torch.cat([step[0:1] for step in out.logits], dim=0)
            seq = out.sequences[:, :-1]
            mask = torch.ones_like(seq)
            if masked_pad is not None:
                mask[0, :len(r)] = (x[0] != masked_pad).long()
            positions = mask.cumsum(-1) - 1
            positions.masked_fill_(mask == 0, 1)
            forced = model(input_ids=seq, attention_mask=mask, position_ids=positions, output_router_logits=True,
                           return_dict=True)
            layers = []
            for router_logits in forced.router_logits:  # [positions, experts] per sparse layer
                if router_logits is None:
                    continue
                probs = torch.softmax(router_logits.float(), dim=-1)
                layers.append(torch.topk(probs, k, dim=-1).indices.tolist())
            generations.append({"tokens": tokens, "logits": logits.flatten().tolist(), "vocab": int(logits.shape[-1]),
                                "router_choice": layers})
    with open(out_path, "w") as f:
        json.dump({"generations": generations}, f)


def text(ckpt, out_path, max_new, texts):
    try:
        import sentencepiece as spm
        from transformers import LlamaTokenizer
    except ImportError as error:
        print(f"sentencepiece not available: {error}", file=sys.stderr)
        sys.exit(3)
    torch.set_num_threads(2)
    model = AutoModelForCausalLM.from_pretrained(ckpt, torch_dtype=torch.float32, attn_implementation="eager")
    model.eval()
    corpus = os.path.join(ckpt, "corpus.txt")
    words = ["a", "very", "good", "movie", "with", "great", "story", "the", "film", "was", "bad", "and", "acting",
             "worse", "an", "enjoyable", "moving", "plot", "music", "scenes"]
    with open(corpus, "w") as f:
        for i in range(400):
            f.write(" ".join(words[(i * 7 + j * 3) % len(words)] for j in range(6 + i % 5)) + "\n")
    spm.SentencePieceTrainer.train(input=corpus, model_prefix=os.path.join(ckpt, "tokenizer"),
                                   vocab_size=model.config.vocab_size, model_type="bpe", unk_id=0, bos_id=1,
                                   eos_id=2, pad_id=-1, minloglevel=2)
    tokenizer = LlamaTokenizer(vocab_file=os.path.join(ckpt, "tokenizer.model"), legacy=True)
    tokenizer.save_pretrained(ckpt)
    results = []
    with torch.no_grad():
        for t in texts:
            ids = tokenizer(t).input_ids
            x = torch.tensor([ids])
            out = model.generate(x, attention_mask=torch.ones_like(x), max_new_tokens=max_new, do_sample=False,
                                 num_beams=1, pad_token_id=model.generation_config.eos_token_id)
            generated = out[0, len(ids):].tolist()
            results.append({"ids": ids, "generated": generated,
                            "text": tokenizer.decode(generated, skip_special_tokens=True)})
    with open(out_path, "w") as f:
        json.dump({"texts": results}, f)


def main():
    if sys.argv[1] == "write":
        write(sys.argv[2], json.loads(sys.argv[3]))
    elif sys.argv[1] == "text":
        text(sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5:])
    else:
        requests = [[int(t) for t in r.split()] for r in sys.argv[5:]]
        oracle(sys.argv[2], sys.argv[3], int(sys.argv[4]), requests)


if __name__ == "__main__":
    main()
