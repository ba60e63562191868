"""A tiny GPT-2-style model and a task where learning is measurable.

The task is string reversal: {"prompt": "reverse: abc =", "completion": " cba"}.
A random-init model scores ~0 exact match; a few hundred CPU steps of full
fine-tuning reach > 0.8 on held-out strings. Nothing is downloaded: the
tokenizer is trained here with the tokenizers library and both are saved with
save_pretrained, so the workloads load them through their real URI code.
"""

from __future__ import annotations

import itertools
import json
import random
from pathlib import Path

ALPHABET = "abcdefghij"
SPECIALS = ["<pad>", "<eos>", "<unk>"]


def task_cases(seed: int = 0) -> tuple[list[dict], list[dict]]:
    """All strings of 3-5 distinct letters' reversals, split train/held-out."""
    rng = random.Random(seed)
    words = []
    for n in (3, 4, 5):
        words += ["".join(p) for p in itertools.product(ALPHABET, repeat=n)]
    rng.shuffle(words)
    cases = [{"prompt": f"reverse: {w} =", "completion": f" {w[::-1]}"} for w in words]
    return cases[:4000], cases[4000:4100]


def write_jsonl(path: Path, cases: list[dict]) -> Path:
    path.write_text("".join(json.dumps(c) + "\n" for c in cases))
    return path


def make_tokenizer(texts: list[str]):
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    # Character-level BPE: every character is its own pre-token, so no merges
    # happen and each letter is one token (reversal stays learnable).
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    tok.decoder = decoders.Fuse()
    trainer = trainers.BpeTrainer(vocab_size=64, special_tokens=SPECIALS, show_progress=False)
    tok.train_from_iterator(texts, trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token="<pad>",
        eos_token="<eos>",
        unk_token="<unk>",
        bos_token="<eos>",
    )


def make_tiny_model(out: Path, cases: list[dict], seed: int = 0) -> Path:
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    tok = make_tokenizer([c["prompt"] + c["completion"] for c in cases])
    config = GPT2Config(
        vocab_size=len(tok),
        n_positions=32,
        n_embd=64,
        n_layer=2,
        n_head=4,
        n_inner=256,
        bos_token_id=tok.eos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    model = GPT2LMHeadModel(config)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


def exact_match_transformers(model_dir: Path, cases: list[dict], max_new_tokens: int = 8) -> float:
    """Greedy decoding with plain transformers: the reference the ONNX path must match."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    hits = 0
    with torch.no_grad():
        for c in cases:
            ids = tok(c["prompt"], return_tensors="pt")
            out = model.generate(
                **ids,
                max_new_tokens=max_new_tokens,
                do_sample=False,
                pad_token_id=tok.pad_token_id,
                eos_token_id=tok.eos_token_id,
            )
            text = tok.decode(out[0, ids["input_ids"].shape[1] :], skip_special_tokens=True)
            hits += text.strip() == c["completion"].strip()
    return hits / len(cases)
