"""The trainer as a real process: learning, LoRA, kill and resume, two workers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import tinymodel
from conftest import FULL_STEPS, ROOT, require, run_workload, workload_env

pytestmark = pytest.mark.workload


def test_full_finetune_learns_the_task(tiny_model: Path, finetuned: dict[str, Any], task: dict[str, Any]) -> None:
    heldout = task["heldout_cases"]
    before = tinymodel.exact_match_transformers(tiny_model, heldout[:30])
    after = tinymodel.exact_match_transformers(finetuned["dir"], heldout)
    print(f"held-out exact match: before={before:.2f} after={after:.2f}")
    assert before <= 0.1
    assert after >= 0.8


def test_progress_and_result_contract(finetuned: dict[str, Any]) -> None:
    run = finetuned["run"]
    progress = [e for e in run.events if e["event"] == "progress"]
    assert progress, run
    for key in ("step", "total", "epoch", "loss", "tokens_per_s", "eta_s"):
        assert key in progress[-1]
    assert progress[-1]["step"] == progress[-1]["total"] == FULL_STEPS
    assert progress[0]["loss"] > progress[-1]["loss"]
    assert [e["step"] for e in run.events if e["event"] == "checkpoint"] == [200, 400, 600]
    result = run.result
    assert set(result) >= {"output", "final_loss", "eval_loss", "steps", "resumed_from"}
    assert result["steps"] == FULL_STEPS and result["resumed_from"] is None
    assert result["eval_loss"] < 0.5
    # The same compact JSON goes to --result-file and to the last stdout line.
    assert json.loads(finetuned["result_file"].read_text()) == result
    assert len(finetuned["result_file"].read_bytes()) < 4096


def test_lora_trains_and_merges(
    workdir: Path, tiny_model: Path, task: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    require("peft")
    # Loaded through pvc://, resolved under LLMOPS_PVC_ROOT as the operator mounts it.
    pvc_root = workdir / "pvc"
    (pvc_root / "models").mkdir(parents=True, exist_ok=True)
    link = pvc_root / "models" / "tiny"
    if not link.exists():
        link.symlink_to(tiny_model)
    out = workdir / "lora-merged"
    run = run_workload(
        "llmops_trainer",
        "--base-model", "pvc://models/tiny",
        "--dataset", task["train"],
        "--method", "LoRA",
        "--lora-r", "8", "--lora-alpha", "16", "--lora-dropout", "0.0",
        "--lora-target-modules", "c_attn,c_proj,c_fc",
        "--output", out,
        "--max-steps", "120", "--batch-size", "32", "--learning-rate", "5e-3",
        "--log-every", "20", "--merge-lora",
        LLMOPS_PVC_ROOT=str(pvc_root),
    )  # fmt: skip
    assert run.returncode == 0, run
    losses = [e["loss"] for e in run.events if e["event"] == "progress"]
    assert losses[-1] < losses[0] - 0.1, losses

    # Merged: a plain transformers model (no adapter files), with weights that moved.
    import torch
    from transformers import AutoModelForCausalLM

    assert not (out / "adapter_config.json").exists()
    base = AutoModelForCausalLM.from_pretrained(tiny_model)
    merged = AutoModelForCausalLM.from_pretrained(out)
    w0 = base.transformer.h[0].attn.c_attn.weight
    w1 = merged.transformer.h[0].attn.c_attn.weight
    assert not torch.allclose(w0, w1)
    # Only the adapted layers changed: embeddings are untouched by LoRA.
    assert torch.equal(base.transformer.wte.weight, merged.transformer.wte.weight)


def test_lora_without_merge_writes_an_adapter(workdir: Path, tiny_model: Path, task: dict[str, Any]) -> None:
    require("peft")
    out = workdir / "lora-adapter"
    run = run_workload(
        "llmops_trainer",
        "--base-model", tiny_model, "--dataset", task["train"], "--method", "LoRA",
        "--output", out, "--max-steps", "5", "--batch-size", "8", "--no-merge-lora",
    )  # fmt: skip
    assert run.returncode == 0, run
    assert (out / "adapter_config.json").exists()


def test_sigkill_then_restart_resumes_from_checkpoint(workdir: Path, tiny_model: Path, task: dict[str, Any]) -> None:
    ckpt = workdir / "ckpt-resume"
    args = [
        sys.executable, "-m", "llmops_trainer",
        "--base-model", str(tiny_model), "--dataset", str(task["train"]),
        "--method", "Full", "--output", str(workdir / "resumed"),
        "--checkpoint-dir", str(ckpt), "--checkpoint-every", "40",
        "--max-steps", "200", "--batch-size", "16", "--learning-rate", "3e-3",
        "--log-every", "10",
    ]  # fmt: skip
    proc = subprocess.Popen(
        args, env=workload_env(), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        text=True, cwd=ROOT,
    )  # fmt: skip
    killed_after = None
    assert proc.stdout is not None
    deadline = time.monotonic() + 300
    for line in proc.stdout:
        if line.startswith('{"event": "checkpoint"') and json.loads(line)["step"] >= 80:
            killed_after = json.loads(line)["step"]
            os.kill(proc.pid, signal.SIGKILL)  # no chance to clean up, as when a node dies
            break
        assert time.monotonic() < deadline, "no checkpoint in time"
    proc.wait()
    assert killed_after is not None and proc.returncode == -signal.SIGKILL

    run = run_workload(*args[2:3], *args[3:])  # same flags, fresh process
    assert run.returncode == 0, run
    resumed = [e for e in run.events if e["event"] == "resumed"]
    assert len(resumed) == 1 and resumed[0]["step"] >= killed_after, run.events[:3]
    steps = [e["step"] for e in run.events if e["event"] == "progress"]
    assert steps[0] == resumed[0]["step"] + 10  # the step count continues, not restarts
    assert steps[-1] == 200
    assert run.result["resumed_from"] == resumed[0]["step"]
    assert run.result["steps"] == 200

    # A retried pod of a finished job ends at once from the final checkpoint.
    again = run_workload(*args[2:3], *args[3:])
    assert again.returncode == 0, again
    assert again.result["resumed_from"] == 200


def test_two_cpu_workers_data_parallel(workdir: Path, tiny_model: Path, task: dict[str, Any]) -> None:
    out = workdir / "ddp"
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
        "-m", "llmops_trainer",
        "--base-model", str(tiny_model), "--dataset", str(task["train"]),
        "--method", "Full", "--output", str(out),
        "--checkpoint-dir", str(workdir / "ckpt-ddp"), "--checkpoint-every", "10",
        "--max-steps", "20", "--batch-size", "8", "--log-every", "5",
        "--result-file", str(workdir / "ddp-result.json"),
    ]  # fmt: skip
    proc = subprocess.run(
        cmd,
        env=workload_env(),
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads((workdir / "ddp-result.json").read_text())
    assert result["world_size"] == 2 and result["steps"] == 20
    assert (out / "config.json").exists()
    assert (workdir / "ckpt-ddp" / "ckpt-00000010").exists()
    # Only rank 0 reports progress: one line per logged step, not two.
    steps = [json.loads(x)["step"] for x in proc.stdout.splitlines() if '"progress"' in x]
    assert steps == [5, 10, 15, 20]


@pytest.mark.parametrize(
    "args",
    [
        ["--base-model", "pvc://nope/model", "--method", "Full"],
        ["--base-model", "ftp://x/y"],
        ["--method", "QLoRA"],
        ["--base-model", "TINY", "--batch-size", "0"],
        ["--base-model", "TINY", "--dataset", "BADDATA"],
    ],
)
def test_configuration_errors_exit_2(args: list[str], workdir: Path, tiny_model: Path, task: dict[str, Any]) -> None:
    bad = workdir / "bad.jsonl"
    bad.write_text('{"prompt": "only a prompt"}\n')
    defaults = {"--base-model": str(tiny_model), "--dataset": str(task["train"])}
    flags = dict(zip(args[::2], args[1::2], strict=True))
    merged = {**defaults, **flags, "--output": str(workdir / "never")}
    merged = {k: (str(tiny_model) if v == "TINY" else str(bad) if v == "BADDATA" else v)
              for k, v in merged.items()}  # fmt: skip
    run = run_workload("llmops_trainer", *[x for kv in merged.items() for x in kv])
    assert run.returncode == 2, run
    assert run.result["kind"] == "config"
