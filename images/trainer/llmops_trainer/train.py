"""Fine-tuning loop: LoRA or full, data parallel, checkpoint and resume.

A plain torch loop rather than transformers.Trainer: the operator's contract
(progress lines, checkpoint every N steps, resume with the step continuing,
exit codes) is easier to keep exact when every step is visible here.
"""

from __future__ import annotations

import math
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from llmops_common.data import load_jsonl
from llmops_common.models import load_causal_lm
from llmops_common.report import event
from llmops_common.uri import ConfigError, local_path

CKPT_PREFIX = "ckpt-"
DONE_MARKER = "COMPLETE"
KEEP_CHECKPOINTS = 2


@dataclass
class Config:
    base_model: str
    dataset: str
    eval_dataset: str | None
    method: str
    output: str
    checkpoint_dir: str | None
    checkpoint_every: int
    epochs: int
    max_steps: int
    learning_rate: float
    batch_size: int
    lora_r: int
    lora_alpha: int
    lora_dropout: float
    lora_target_modules: list[str] | None
    merge_lora: bool
    seed: int
    log_every: int
    max_seq_len: int | None


@dataclass
class Dist:
    rank: int
    world: int
    local_rank: int
    device: torch.device

    @property
    def main(self) -> bool:
        return self.rank == 0


def setup_distributed() -> Dist:
    """Read the torchrun environment; gloo on CPU, nccl on GPUs."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if torch.cuda.is_available():
        device = torch.device("cuda", local_rank % torch.cuda.device_count())
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return Dist(rank, world, local_rank, device)


def tokenize(cases: list[dict[str, str]], tokenizer: Any, max_len: int) -> list[dict[str, list[int]]]:
    """Prompt tokens are masked out of the loss: the model learns the completion."""
    eos = tokenizer.eos_token_id
    out = []
    for c in cases:
        # The prompt is encoded as at serving time (with the BOS a template may add).
        p = tokenizer(c["prompt"])["input_ids"]
        comp = tokenizer(c["completion"], add_special_tokens=False)["input_ids"]
        ids = (p + comp + ([eos] if eos is not None else []))[:max_len]
        labels = ([-100] * len(p) + comp + ([eos] if eos is not None else []))[:max_len]
        if all(label == -100 for label in labels):
            continue  # the prompt alone fills the window: nothing to learn
        out.append({"input_ids": ids, "labels": labels})
    return out


def collate(rows: list[dict[str, list[int]]], pad_id: int) -> dict[str, torch.Tensor]:
    width = max(len(r["input_ids"]) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    labels = torch.full((len(rows), width), -100, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        n = len(r["input_ids"])
        ids[i, :n] = torch.tensor(r["input_ids"])
        labels[i, :n] = torch.tensor(r["labels"])
        mask[i, :n] = 1
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def batch_for_step(data: list, step: int, cfg: Config, d: Dist, steps_per_epoch: int) -> list:
    """The batch is a pure function of (seed, step, rank): resuming needs no sampler state."""
    epoch, index = divmod(step, steps_per_epoch)
    g = torch.Generator().manual_seed(cfg.seed + epoch)
    order = torch.randperm(len(data), generator=g).tolist()
    per_rank = len(data) // d.world
    mine = order[d.rank * per_rank : (d.rank + 1) * per_rank]
    return [data[i] for i in mine[index * cfg.batch_size : (index + 1) * cfg.batch_size]]


def lr_at(step: int, total: int, peak: float) -> float:
    """Linear warmup over 5% of the steps, then linear decay to 10% of the peak."""
    warmup = max(1, total // 20)
    if step < warmup:
        return peak * (step + 1) / warmup
    frac = (step - warmup) / max(1, total - warmup)
    return peak * (1.0 - 0.9 * frac)


def latest_checkpoint(ckpt_dir: Path | None) -> Path | None:
    if ckpt_dir is None or not ckpt_dir.is_dir():
        return None
    done = [p for p in ckpt_dir.glob(f"{CKPT_PREFIX}*") if (p / DONE_MARKER).exists() and p.is_dir()]
    return max(done, key=lambda p: int(p.name[len(CKPT_PREFIX) :]), default=None)


def save_checkpoint(ckpt_dir: Path, step: int, model: Any, opt: Any, cfg: Config) -> Path:
    """Write into a temp dir, then rename: a kill mid-write never leaves a bad checkpoint."""
    final = ckpt_dir / f"{CKPT_PREFIX}{step:08d}"
    tmp = ckpt_dir / f".tmp-{CKPT_PREFIX}{step:08d}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    trainable = {n: p.detach().cpu() for n, p in model.named_parameters() if p.requires_grad}
    torch.save(
        {"step": step, "method": cfg.method, "trainable": trainable, "optimizer": opt.state_dict()},
        tmp / "state.pt",
    )
    (tmp / DONE_MARKER).write_text(str(step))
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    old = sorted(ckpt_dir.glob(f"{CKPT_PREFIX}*"), key=lambda p: p.name)[:-KEEP_CHECKPOINTS]
    for p in old:
        shutil.rmtree(p, ignore_errors=True)
    return final


def load_checkpoint(path: Path, model: Any, opt: Any, cfg: Config) -> int:
    # weights_only: a checkpoint on a shared PVC is data, never code to run (no pickled objects).
    state = torch.load(path / "state.pt", map_location="cpu", weights_only=True)
    if state.get("method") != cfg.method:
        raise ConfigError(f"checkpoint {path} was written by a {state.get('method')} run, not {cfg.method}")
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, value in state["trainable"].items():
            params[name].copy_(value)
    opt.load_state_dict(state["optimizer"])
    return int(state["step"])


def build_model(cfg: Config, d: Dist) -> tuple[Any, Any]:
    torch.manual_seed(cfg.seed)  # same LoRA init on every rank
    model, tokenizer = load_causal_lm(cfg.base_model)
    if cfg.method == "LoRA":
        from peft import LoraConfig, get_peft_model

        targets: Any = cfg.lora_target_modules
        if targets == ["all-linear"]:
            targets = "all-linear"
        lora = LoraConfig(
            r=cfg.lora_r,
            lora_alpha=cfg.lora_alpha,
            lora_dropout=cfg.lora_dropout,
            target_modules=targets,
            task_type="CAUSAL_LM",
        )
        try:
            model = get_peft_model(model, lora)
        except ValueError as e:  # unknown target modules for this architecture
            raise ConfigError(f"LoRA config does not fit the model: {e}") from e
    return model.to(d.device), tokenizer


@torch.no_grad()
def evaluate_loss(model: Any, data: list, pad_id: int, batch_size: int, device: Any) -> float:
    model.eval()
    total, count = 0.0, 0
    for i in range(0, len(data), batch_size):
        batch = {k: v.to(device) for k, v in collate(data[i : i + batch_size], pad_id).items()}
        n = int((batch["labels"][:, 1:] != -100).sum())
        total += float(model(**batch).loss) * n
        count += n
    model.train()
    return total / max(1, count)


def train(cfg: Config) -> dict[str, Any]:
    d = setup_distributed()
    train_cases = load_jsonl(cfg.dataset)
    eval_cases = load_jsonl(cfg.eval_dataset) if cfg.eval_dataset else None
    ckpt_dir = local_path(cfg.checkpoint_dir, must_exist=False) if cfg.checkpoint_dir else None
    output = local_path(cfg.output, must_exist=False)

    model, tokenizer = build_model(cfg, d)
    mconf = model.config
    max_len = cfg.max_seq_len or getattr(mconf, "n_positions", None)
    max_len = max_len or getattr(mconf, "max_position_embeddings", 1024)
    data = tokenize(train_cases, tokenizer, max_len)
    if len(data) < d.world:
        raise ConfigError(f"dataset has {len(data)} usable cases, fewer than {d.world} workers")
    pad_id = tokenizer.pad_token_id

    steps_per_epoch = max(1, math.ceil((len(data) // d.world) / cfg.batch_size))
    total = cfg.max_steps if cfg.max_steps > 0 else cfg.epochs * steps_per_epoch

    trainable = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(trainable, lr=cfg.learning_rate, weight_decay=0.0)

    start, resumed_from = 0, None
    ckpt = latest_checkpoint(ckpt_dir)
    if ckpt is not None:
        start = resumed_from = load_checkpoint(ckpt, model, opt, cfg)
        if d.main:
            event("resumed", step=start, checkpoint=str(ckpt))

    ddp = model
    if d.world > 1:
        from torch.nn.parallel import DistributedDataParallel

        ddp = DistributedDataParallel(model, device_ids=[d.device] if d.device.type == "cuda" else None)
    ddp.train()

    window_loss, window_n, window_tokens = 0.0, 0, 0
    window_start = run_start = time.monotonic()
    run_tokens, last_loss = 0, float("nan")
    for step in range(start, total):
        for group in opt.param_groups:
            group["lr"] = lr_at(step, total, cfg.learning_rate)
        rows = batch_for_step(data, step, cfg, d, steps_per_epoch)
        batch = {k: v.to(d.device) for k, v in collate(rows, pad_id).items()}
        loss = ddp(**batch).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

        tokens = int(batch["attention_mask"].sum()) * d.world
        window_loss += loss.item()
        window_n += 1
        window_tokens += tokens
        run_tokens += tokens
        done = step + 1
        if done % cfg.log_every == 0 or done == total:
            last_loss = window_loss / window_n
            if d.world > 1:  # report the loss averaged over all workers
                t = torch.tensor([last_loss], device=d.device)
                dist.all_reduce(t)
                last_loss = float(t) / d.world
            now = time.monotonic()
            tps = window_tokens / max(1e-9, now - window_start)
            per_step = (now - run_start) / (done - start)
            if d.main:
                event(
                    "progress",
                    step=done,
                    total=total,
                    epoch=round(done / steps_per_epoch, 3),
                    loss=round(last_loss, 5),
                    lr=lr_at(step, total, cfg.learning_rate),
                    tokens_per_s=round(tps, 1),
                    eta_s=round(per_step * (total - done), 1),
                )
            window_loss, window_n, window_tokens, window_start = 0.0, 0, 0, now
        if ckpt_dir and cfg.checkpoint_every > 0 and done % cfg.checkpoint_every == 0 and done < total:
            if d.main:
                path = save_checkpoint(ckpt_dir, done, model, opt, cfg)
                event("checkpoint", step=done, path=str(path))
            if d.world > 1:
                dist.barrier()  # nobody runs ahead of a checkpoint being written

    elapsed = time.monotonic() - run_start
    result: dict[str, Any] = {
        "output": str(output),
        "final_loss": round(last_loss, 6) if not math.isnan(last_loss) else None,
        "eval_loss": None,
        "steps": total,
        "resumed_from": resumed_from,
        "method": cfg.method,
        "world_size": d.world,
        "tokens_per_s": round(run_tokens / elapsed, 1) if elapsed > 0 and run_tokens else None,
    }
    if d.main:
        if eval_cases:
            eval_data = tokenize(eval_cases, tokenizer, max_len)
            result["eval_loss"] = round(evaluate_loss(model, eval_data, pad_id, cfg.batch_size, d.device), 6)
        save_output(model, tokenizer, output, cfg)
        if ckpt_dir:
            # A finished run leaves a final checkpoint so a retried pod ends at once.
            save_checkpoint(ckpt_dir, total, model, opt, cfg)
    if d.world > 1:
        dist.barrier()
        dist.destroy_process_group()
    return result


def save_output(model: Any, tokenizer: Any, output: Path, cfg: Config) -> None:
    tmp = output.with_name(output.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    if cfg.method == "LoRA" and cfg.merge_lora:
        model = model.merge_and_unload()  # a plain model: the builder needs no peft
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    shutil.rmtree(output, ignore_errors=True)
    os.replace(tmp, output)
