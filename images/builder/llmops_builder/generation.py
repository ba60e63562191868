"""Greedy text generation with an exported ONNX graph and a tokenizers tokenizer.

This file is copied verbatim into every model repository's version directory, next to
model.py: the Triton Python backend imports it from there. It must depend only on numpy,
onnxruntime and tokenizers (no torch, no transformers, nothing from this package).

The graph takes (input_ids, attention_mask), both int64 [batch, seq], left-padded, and
returns logits of the last position [batch, vocab]. There is no KV cache: each new token
re-runs the whole sequence. For the short completions this project serves that keeps one
graph that every quantization mode handles; see the builder README for the trade-off.
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

GENERATION_CONFIG = "generation.json"


def providers(kind: str = "AUTO", device_id: int = 0) -> list[Any]:
    """CUDA when the GPU build of onnxruntime is installed and asked for, else CPU."""
    available = ort.get_available_providers()
    if kind in ("AUTO", "GPU") and "CUDAExecutionProvider" in available:
        return [("CUDAExecutionProvider", {"device_id": device_id}), "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


class Generator:
    def __init__(self, model_dir: str, kind: str = "AUTO", device_id: int = 0, threads: int = 0):
        with open(os.path.join(model_dir, GENERATION_CONFIG)) as f:
            self.config = json.load(f)
        self.tokenizer = Tokenizer.from_file(os.path.join(model_dir, "tokenizer.json"))
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
        self.session = ort.InferenceSession(
            os.path.join(model_dir, self.config["onnx_file"]),
            sess_options=opts,
            providers=providers(kind, device_id),
        )
        self.eos = self.config.get("eos_token_id")
        self.pad = self.config.get("pad_token_id")
        if self.pad is None:
            self.pad = self.eos if self.eos is not None else 0
        self.max_positions = int(self.config.get("max_positions") or 1024)
        self.default_new_tokens = int(self.config.get("max_new_tokens") or 32)

    def logits(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        return self.session.run(["logits"], {"input_ids": ids, "attention_mask": mask})[0]

    def generate(self, prompts: list[str], max_new_tokens: list[int] | None = None) -> list[str]:
        """Greedy decoding of a batch; each prompt stops at EOS or its own token budget."""
        if not prompts:
            return []
        budgets = max_new_tokens or [self.default_new_tokens] * len(prompts)
        budgets = [max(0, int(b)) for b in budgets]
        seqs = [self.tokenizer.encode(p).ids for p in prompts]
        out: list[list[int]] = [[] for _ in prompts]
        done = [b == 0 for b in budgets]
        for _ in range(max(budgets)):
            if all(done):
                break
            active = [i for i, d in enumerate(done) if not d]
            ids, mask = self._left_pad([seqs[i] + out[i] for i in active])
            nxt = self.logits(ids, mask).argmax(-1)
            for row, i in enumerate(active):
                tok = int(nxt[row])
                if tok == self.eos:
                    done[i] = True
                    continue
                out[i].append(tok)
                if len(out[i]) >= budgets[i]:
                    done[i] = True
        return [self.tokenizer.decode(o, skip_special_tokens=True) for o in out]

    def _left_pad(self, seqs: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
        # Keep the most recent tokens when a sequence outgrows the model's context.
        seqs = [s[-self.max_positions :] for s in seqs]
        width = max(1, max(len(s) for s in seqs))
        ids = np.full((len(seqs), width), self.pad, dtype=np.int64)
        mask = np.zeros((len(seqs), width), dtype=np.int64)
        for r, s in enumerate(seqs):
            if s:
                ids[r, width - len(s) :] = s
                mask[r, width - len(s) :] = 1
        return ids, mask
