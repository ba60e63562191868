"""Fixtures for the workload tests: a tiny model, its task data, a fine-tuned copy,
built model repositories and a real tritonserver.

Every workload runs as a real subprocess (python -m llmops_*), as in its image.
Outside CI a missing component skips its tests; with CI=true it fails them.
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
IMAGES = ROOT / "images"
WORKLOAD_PATH = [IMAGES / n for n in ("trainer", "builder", "evaluator", "common")]
sys.path[:0] = [str(HERE), *map(str, WORKLOAD_PATH)]

import tinymodel  # noqa: E402

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
# Small enough for a shared 2-core machine, long enough to learn the task (EM ~0.9).
FULL_STEPS = 700


def require(*modules: str) -> None:
    """Missing component: skip on a laptop, fail loudly in CI."""
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError as e:
            msg = f"{name} is not installed ({e}); run `make dev` (the workloads extra)"
            if IN_CI:
                pytest.fail(msg)
            pytest.skip(msg)


def workload_env(**extra: str) -> dict[str, str]:
    env = os.environ.copy()
    env["PYTHONPATH"] = os.pathsep.join(map(str, WORKLOAD_PATH))
    # One thread per process: torch's default (all cores) thrashes a shared small box.
    env.setdefault("OMP_NUM_THREADS", "1")
    env["HF_HUB_OFFLINE"] = "1"  # nothing is downloaded in tests
    env["TOKENIZERS_PARALLELISM"] = "false"
    env.update(extra)
    return env


class Run:
    def __init__(self, proc: subprocess.CompletedProcess[str]) -> None:
        self.returncode = proc.returncode
        self.stdout = proc.stdout
        self.stderr = proc.stderr

    @property
    def events(self) -> list[dict[str, Any]]:
        out = []
        for line in self.stdout.splitlines():
            if line.startswith("{"):
                obj = json.loads(line)
                if "event" in obj:
                    out.append(obj)
        return out

    @property
    def result(self) -> dict[str, Any]:
        return json.loads(self.stdout.strip().splitlines()[-1])

    def __repr__(self) -> str:
        return f"rc={self.returncode}\nstdout:\n{self.stdout[-3000:]}\nstderr:\n{self.stderr[-3000:]}"


def run_workload(module: str, *args: str, timeout: float = 600, **env: str) -> Run:
    proc = subprocess.run(
        [sys.executable, "-m", module, *map(str, args)],
        env=workload_env(**env),
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
    )
    return Run(proc)


@pytest.fixture(scope="session")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("workloads")


@pytest.fixture(scope="session")
def task(workdir: Path) -> dict[str, Any]:
    train, heldout = tinymodel.task_cases()
    return {
        "train": tinymodel.write_jsonl(workdir / "train.jsonl", train),
        "heldout": tinymodel.write_jsonl(workdir / "heldout.jsonl", heldout),
        "train_cases": train,
        "heldout_cases": heldout,
    }


@pytest.fixture(scope="session")
def tiny_model(workdir: Path, task: dict[str, Any]) -> Path:
    require("torch", "transformers", "tokenizers")
    return tinymodel.make_tiny_model(workdir / "tiny", task["train_cases"])


@pytest.fixture(scope="session")
def finetuned(workdir: Path, tiny_model: Path, task: dict[str, Any]) -> dict[str, Any]:
    """A full fine-tune of the tiny model, loaded through a file:// URI."""
    out = workdir / "finetuned"
    run = run_workload(
        "llmops_trainer",
        "--base-model", f"file://{tiny_model}",
        "--dataset", task["train"],
        "--eval-dataset", task["heldout"],
        "--method", "Full",
        "--output", out,
        "--checkpoint-dir", workdir / "ckpt-full",
        "--checkpoint-every", "200",
        "--max-steps", str(FULL_STEPS),
        "--batch-size", "32",
        "--learning-rate", "3e-3",
        "--log-every", "50",
        "--result-file", workdir / "finetune-result.json",
    )  # fmt: skip
    assert run.returncode == 0, run
    return {"dir": out, "run": run, "result_file": workdir / "finetune-result.json"}


@pytest.fixture(scope="session")
def repository(workdir: Path, finetuned: dict[str, Any], task: dict[str, Any]) -> dict[str, Any]:
    """One repository with the fp32 model ("llm") and its dynamic-int8 twin ("llm-int8")."""
    require("onnx", "onnxruntime", "onnxscript")
    repo = workdir / "repo"
    manifests = {}
    for name, quant in (("llm", "None"), ("llm-int8", "Int8Dynamic")):
        run = run_workload(
            "llmops_builder",
            "--source", finetuned["dir"],
            "--quantization", quant,
            "--repository", repo,
            "--model-name", name,
            "--max-batch-size", "16",
            "--max-new-tokens", "8",
            "--result-file", workdir / f"build-{name}.json",
        )  # fmt: skip
        assert run.returncode == 0, run
        manifests[name] = run.result
    return {"path": repo, "manifests": manifests}


@pytest.fixture(scope="session")
def triton(workdir: Path, repository: dict[str, Any]) -> Iterator[Any]:
    require("tritonclient.http", "tritonclient.grpc", "pytriton")
    import tritonlocal

    server = tritonlocal.start(repository["path"], workdir)
    try:
        yield server
    finally:
        server.stop()
