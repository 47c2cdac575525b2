#!/usr/bin/env python3
"""Trains a small Switch Transformers model on real English text, for measuring what routing
changes cost in quality (exact routing against the predictor replacing the router).

The text is the quotations of Debian's `fortunes` package (/usr/share/games/fortunes). With
--pretrain-steps N, the model is first pre-trained as Switch Transformers checkpoints are made,
by span corruption (T5's objective: about 15% of a quotation's tokens, in spans of 3 on average,
replaced by sentinel ids above the SentencePiece pieces, which the decoder writes back) on the
model split and the package's other collections, then fine-tuned on the task; by default it
learns the task alone. The task is topic classification as generation: the encoder reads a
quotation, the decoder writes the name of the collection it comes from (one of eight: computers,
definitions, men-women, people, politics, science, work, zippy) as one token, then eos.
Quotations are split three ways by a seeded shuffle, so no quotation is in two splits:
  - model   (80%): trains the Switch model;
  - predictor (10%): what `sida collect-routes` / `train-predictor` may see besides the model
                     split (SiDA trains its predictor on the model's training data);
  - test    (10%): the task metric (accuracy of the generated topic), never trained on.

Writes, under OUT:
  checkpoint/            save_pretrained(safe_serialization) + spiece.model (SentencePiece,
                         trained here on the model split: unigram, pad 0, eos 1, unk 2, then one
                         piece per topic, <topic_computers> ...); when pre-trained, as in T5's
                         checkpoints, the model's vocabulary ends with SENTINELS ids past the
                         pieces, the last one the first sentinel
  model_corpus.txt       token-id lines (inputs) of the model split
  predictor_corpus.txt   token-id lines (inputs) of the predictor split
  test_requests.txt      token-id lines of the test split's inputs
  test_targets.txt       token-id lines: the topic piece + eos
  other_corpus.txt       token-id lines of the quotations of the package's other collections
                         that are not also in a TOPICS collection (so in no split): unlabelled
                         text, which a predictor may learn from as well
  transformers_eval.json transformers' own accuracy and loss on the test split, and the
                         majority-topic baseline
Deterministic under --seed on a given machine and torch build: a fixed number of steps on one
CPU thread, in a fixed order.
"""
import argparse
import json
import os
import random
import sys
import time


TOPICS = ["computers", "definitions", "men-women", "people", "politics", "science", "work", "zippy"]
# Span corruption: T5's noise density and mean span length; ids for at most SENTINELS spans.
SENTINELS = 16
NOISE_DENSITY = 0.15
MEAN_SPAN = 3.0


def split_into_parts(total, parts, rng):
    """total as `parts` positive lengths, uniformly at random (parts <= total)."""
    cuts = sorted(rng.sample(range(1, total), parts - 1))
    return [b - a for a, b in zip([0] + cuts, cuts + [total])]


def span_corruption(ids, sentinel_ids, eos, rng):
    """(input, target) of T5's span corruption for `ids` (a quotation without eos): spans of about
    NOISE_DENSITY of the tokens leave the input, each replaced by its sentinel; the target is
    every sentinel followed by the tokens it stands for, then eos. Kept tokens come first."""
    length = len(ids)
    noise = min(length - 1, max(1, int(NOISE_DENSITY * length + 0.5)))  # half rounds up
    spans = max(1, min(len(sentinel_ids), noise, length - noise, round(noise / MEAN_SPAN)))
    noise_lengths = split_into_parts(noise, spans, rng)
    kept_lengths = split_into_parts(length - noise, spans, rng)
    inp, target, pos = [], [], 0
    for k in range(spans):
        inp += ids[pos : pos + kept_lengths[k]]
        pos += kept_lengths[k]
        inp.append(sentinel_ids[k])
        target.append(sentinel_ids[k])
        target += ids[pos : pos + noise_lengths[k]]
        pos += noise_lengths[k]
    return inp + [eos], target + [eos]


def read_quotations(folder, names=TOPICS):
    """(quotation, collection) pairs of the named collections."""
    pairs = []
    for name in names:
        path = os.path.join(folder, name)
        if not os.path.isfile(path):
            sys.exit(f"train_switch: {path}: not found (Debian package `fortunes`)")
        quotes = []
        with open(path, encoding="utf-8", errors="replace") as f:
            entry = []
            for line in f:
                if line.strip() == "%":
                    quotes.append(" ".join(" ".join(entry).split()))
                    entry = []
                else:
                    entry.append(line.strip())
            if entry:
                quotes.append(" ".join(" ".join(entry).split()))
        # Prose of a sentence or a few: no ASCII art, no very long entries.
        for q in quotes:
            words = q.split()
            letters = sum(c.isalpha() for c in q)
            if 5 <= len(words) <= 40 and letters >= 0.6 * len(q):
                pairs.append((q, name))
    return pairs


def other_collections(folder):
    """The package's collections besides TOPICS (plain files; not the .dat indexes or .u8 copies)."""
    return [n for n in sorted(os.listdir(folder))
            if n not in TOPICS and "." not in n and os.path.isfile(os.path.join(folder, n))]


def other_quotations(folder, topic_quotes):
    """The other collections' quotations. Collections repeat some quotations; those also among
    topic_quotes (the TOPICS collections' (quotation, topic) pairs, so possibly in the test split)
    are left out."""
    seen = {q for q, _ in topic_quotes}
    return [q for q, _ in read_quotations(folder, other_collections(folder)) if q not in seen]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-o", "--output", required=True)
    ap.add_argument("--corpus", default="/usr/share/games/fortunes")
    ap.add_argument("--seed", type=int, default=1)
    # Training stops after a number of steps, not a time: a time budget would give a less trained
    # model on a busier machine. --seconds only caps the time if given.
    ap.add_argument("--pretrain-steps", type=int, default=0,
                    help="span-corruption optimizer steps before the task (batch 32; 0: none)")
    ap.add_argument("--max-steps", type=int, default=800, help="task optimizer steps (batch 32)")
    ap.add_argument("--seconds", type=float, default=None, help="optional cap on training time")
    ap.add_argument("--vocab", type=int, default=1000)
    # One thread: float sums then run in one order, so the same seed gives the same weights
    # whatever else the machine runs (800 steps take about 12 minutes).
    ap.add_argument("--threads", type=int, default=1)
    # Hugging Face's default (0.001) let this small model's routers collapse onto one expert per
    # layer (99% of tokens), which leaves nothing for a predictor to predict; the Switch
    # Transformers paper trains with 0.01.
    ap.add_argument("--router-aux-loss-coef", type=float, default=0.02,
                    help="weight of the load-balancing loss")
    # Hugging Face's capacity is per expert and per sequence: a token past it skips its expert. At
    # 64, sequences of at most 48 tokens never meet it; the Switch Transformers paper balances its
    # experts with a binding capacity (capacity factor 1.0-1.25: 6-8 here for 48 tokens).
    ap.add_argument("--expert-capacity", type=int, default=64,
                    help="tokens of a sequence an expert takes (Hugging Face's expert_capacity)")
    args = ap.parse_args()

    import sentencepiece as spm
    import torch
    from transformers import SwitchTransformersConfig, SwitchTransformersForConditionalGeneration

    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    rng = random.Random(args.seed)
    if not os.path.isdir(args.corpus):
        sys.exit(f"train_switch: {args.corpus}: not found (Debian package `fortunes`)")
    quotes = read_quotations(args.corpus)  # sorted by topic, then file order: deterministic
    rng.shuffle(quotes)
    n = len(quotes)
    model_split = quotes[: int(0.8 * n)]
    predictor_split = quotes[int(0.8 * n) : int(0.9 * n)]
    test_split = quotes[int(0.9 * n) :]
    print(f"train_switch: {n} quotations: {len(model_split)} model, {len(predictor_split)} predictor, "
          f"{len(test_split)} test", flush=True)

    ckpt = os.path.join(args.output, "checkpoint")
    os.makedirs(ckpt, exist_ok=True)
    text_file = os.path.join(args.output, "model_split.txt")
    with open(text_file, "w") as f:
        f.write("\n".join(q for q, _ in model_split) + "\n")
    topic_pieces = [f"<topic_{t}>" for t in TOPICS]
    spm.SentencePieceTrainer.train(
        input=text_file, model_prefix=os.path.join(ckpt, "spiece"), vocab_size=args.vocab, model_type="unigram",
        pad_id=0, eos_id=1, unk_id=2, bos_id=-1, user_defined_symbols=topic_pieces, character_coverage=1.0,
        input_sentence_size=1000000, shuffle_input_sentence=False, num_threads=1, minloglevel=2)
    sp = spm.SentencePieceProcessor(model_file=os.path.join(ckpt, "spiece.model"))
    eos = 1
    topic_id = {t: sp.piece_to_id(p) for t, p in zip(TOPICS, topic_pieces)}

    def examples(split):
        return [(sp.encode(q)[:47] + [eos], [topic_id[t], eos]) for q, t in split]

    train = examples(model_split)
    predictor = examples(predictor_split)
    test = examples(test_split)
    counts = {t: sum(1 for _, u in model_split if u == t) for t in TOPICS}
    majority = max(counts, key=counts.get)
    majority_accuracy = sum(1 for _, t in test_split if t == majority) / max(1, len(test_split))

    others = [sp.encode(q)[:47] for q in other_quotations(args.corpus, quotes)]  # cut as the inputs
    # Sentinel ids only when pre-training, so --pretrain-steps 0 gives the model of earlier
    # versions of this script, to the bit.
    vocab_total = args.vocab + (SENTINELS if args.pretrain_steps > 0 else 0)
    sentinel_ids = [vocab_total - 1 - k for k in range(SENTINELS)]  # <extra_id_0> is the last id
    # Pre-training text: the model split (its inputs without eos) and the other collections, never
    # the predictor's or the test split's quotations.
    pretrain_texts = [x for x in [x[:-1] for x, _ in train] + others if len(x) >= 2]

    config = SwitchTransformersConfig(
        vocab_size=vocab_total, d_model=128, d_kv=32, d_ff=256, num_heads=4, num_layers=4,
        num_sparse_encoder_layers=2, num_decoder_layers=2, num_sparse_decoder_layers=1, num_experts=8,
        expert_capacity=args.expert_capacity, router_jitter_noise=0.0, dropout_rate=0.0, pad_token_id=0, eos_token_id=1,
        decoder_start_token_id=0, router_aux_loss_coef=args.router_aux_loss_coef)
    model = SwitchTransformersForConditionalGeneration(config)
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=0.01)

    def batch_tensors(items):
        li = max(len(x) for x, _ in items)
        lt = max(len(y) for _, y in items)
        inp = torch.zeros((len(items), li), dtype=torch.long)
        att = torch.zeros_like(inp)
        lab = torch.full((len(items), lt), -100, dtype=torch.long)
        for k, (x, y) in enumerate(items):
            inp[k, : len(x)] = torch.tensor(x)
            att[k, : len(x)] = 1
            lab[k, : len(y)] = torch.tensor(y)
        return inp, att, lab

    start = time.time()
    model.train()

    def out_of_time():
        return args.seconds is not None and time.time() - start >= args.seconds

    def run_steps(phase, count, items, make_example):
        """`count` AdamW steps over shuffled batches of 32 of items, each made into (input,
        target) by make_example (called again every epoch: new spans each time)."""
        step = 0
        order = list(range(len(items)))
        while step < count and not out_of_time():
            rng.shuffle(order)
            for b in range(0, len(order) - 31, 32):
                inp, att, lab = batch_tensors([make_example(items[i]) for i in order[b : b + 32]])
                loss = model(input_ids=inp, attention_mask=att, labels=lab).loss
                opt.zero_grad()
                loss.backward()
                opt.step()
                step += 1
                if step % 50 == 0:
                    print(f"train_switch: {phase} step {step}  loss {loss.item():.3f}  "
                          f"{time.time() - start:.0f} s", flush=True)
                if step >= count or out_of_time():
                    break
        return step

    pretrain_steps = run_steps("span corruption", args.pretrain_steps, pretrain_texts,
                               lambda x: span_corruption(x, sentinel_ids, eos, rng))
    step = run_steps("task", args.max_steps, train, lambda example: example)

    model.eval()
    correct = 0
    total_loss = 0.0
    with torch.no_grad():
        for k in range(0, len(test), 64):
            chunk = test[k : k + 64]
            inp, att, lab = batch_tensors(chunk)
            total_loss += model(input_ids=inp, attention_mask=att, labels=lab).loss.item() * len(chunk)
            gen = model.generate(input_ids=inp, attention_mask=att, max_new_tokens=2, do_sample=False,
                                 num_beams=1)
            for (x, y), g in zip(chunk, gen.tolist()):
                g = [t for t in g[1:] if t != 0]  # drop the decoder start and padding
                if eos in g:
                    g = g[: g.index(eos) + 1]
                correct += g == y
    model.save_pretrained(ckpt, safe_serialization=True)

    def write_ids(path, rows):
        with open(os.path.join(args.output, path), "w") as f:
            for r in rows:
                f.write(" ".join(map(str, r)) + "\n")

    write_ids("model_corpus.txt", [x for x, _ in train])
    write_ids("predictor_corpus.txt", [x for x, _ in predictor])
    write_ids("test_requests.txt", [x for x, _ in test])
    write_ids("test_targets.txt", [y for _, y in test])
    # The other collections: unlabelled text in no split, which a predictor may learn from too.
    write_ids("other_corpus.txt", [x + [eos] for x in others])
    result = {"pretrain_steps": pretrain_steps, "pretrain_quotations": len(pretrain_texts), "steps": step,
              "train_seconds": round(time.time() - start, 1), "test_examples": len(test),
              "accuracy": correct / max(1, len(test)), "test_loss": total_loss / max(1, len(test)),
              "majority_topic": majority, "majority_accuracy": majority_accuracy}
    with open(os.path.join(args.output, "transformers_eval.json"), "w") as f:
        json.dump(result, f, indent=2)
    print("train_switch: " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
