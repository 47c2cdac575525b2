"""Reference outputs from Hugging Face transformers' SwitchTransformers for the conformance test.

usage: hf_oracle.py CHECKPOINT_DIR OUT.json MAX_NEW_TOKENS "ids of request 1" ["ids of request 2" ...]

Writes JSON: encoder hidden states of the padded batch (with the attention mask generate() builds:
real positions whose id is not the generation config's pad id, unless that id also ends
sequences), the argmax expert of every encoder MoE layer's router per token, and per request the
greedy tokens of generate(), the raw decoder logits of every generation step and the argmax
expert of every decoder MoE layer per step (from a teacher-forced pass over the generated tokens). Exit 3 when transformers is not installed, so the
caller can skip.
"""
import json
import sys

try:
    import torch
    from transformers import SwitchTransformersForConditionalGeneration
except ImportError as error:  # the test skips with this message
    print(f"transformers/torch not available: {error}", file=sys.stderr)
    sys.exit(3)


def router_choices(per_block):
    """Argmax expert per token of every sparse block (dense blocks report no router)."""
    choices = []
    for item in per_block:
        if item is None or item[0] is None or item[0].dim() < 3:
            continue
        choices.append(torch.argmax(item[0], dim=-1).flatten().tolist())
    return choices


def main():
    ckpt, out_path, max_new = sys.argv[1], sys.argv[2], int(sys.argv[3])
    requests = [[int(t) for t in r.split()] for r in sys.argv[4:]]
    torch.set_num_threads(2)
    model = SwitchTransformersForConditionalGeneration.from_pretrained(ckpt, torch_dtype=torch.float32)
    model.eval()
    cfg = model.config
    # generate() masks its generation config's pad id unless that id also ends sequences (with no
    # pad id it pads with the first end id, which is never masked).
    gen = model.generation_config
    eos = gen.eos_token_id if isinstance(gen.eos_token_id, list) else [gen.eos_token_id]
    masked_pad = gen.pad_token_id if gen.pad_token_id is not None and gen.pad_token_id not in eos else None
    mask_pads = masked_pad is not None
    longest = max(len(r) for r in requests)
    ids = torch.full((len(requests), longest), cfg.pad_token_id, dtype=torch.long)
    mask = torch.zeros((len(requests), longest), dtype=torch.long)
    for b, r in enumerate(requests):
        ids[b, : len(r)] = torch.tensor(r)
        mask[b, : len(r)] = 1
        if mask_pads:
            mask[b, : len(r)] = (torch.tensor(r) != masked_pad).long()
    result = {"lengths": [len(r) for r in requests]}
    with torch.no_grad():
        enc = model.encoder(input_ids=ids, attention_mask=mask, output_router_logits=True, return_dict=True)
        result["encoder_hidden"] = enc.last_hidden_state.flatten().tolist()
        result["encoder_router_choice"] = router_choices(enc.router_probs)
        generations = []
        for r in requests:
            x = torch.tensor([r])
            out = model.generate(x, max_new_tokens=max_new, do_sample=False, num_beams=1,
                                 return_dict_in_generate=True, output_logits=True)
            tokens = out.sequences[0, 1:].tolist()  # drop the decoder start token
            # Raw logits of each incremental step (a teacher-forced pass would apply expert
            # capacity across the whole decoder sequence, which generation never does).
            logits = torch.cat([step[0:1] for step in out.logits], dim=0)
            forced_mask = (x != masked_pad).long() if mask_pads else None
            forced = model(input_ids=x, attention_mask=forced_mask, decoder_input_ids=out.sequences[:, :-1],
                           output_router_logits=True, return_dict=True)
            generations.append({"tokens": tokens, "logits": logits.flatten().tolist(),
                                "vocab": int(logits.shape[-1]),
                                "decoder_router_choice": router_choices(forced.decoder_router_logits)})
        result["generations"] = generations
    with open(out_path, "w") as f:
        json.dump(result, f)


if __name__ == "__main__":
    main()
