"""The rollout data plane on this machine: real tritonservers standing in for the serving pods.

- ``good_repository``: the builder's real output for the tiny reversal model (about 20 s);
- ``failing_repository``: a copy whose model answers the same interface but fails a set share
  of requests, the way a broken candidate does;
- ``start_triton``: tritonserver from the nvidia-pytriton wheel with the serving Deployment's
  flags plus per-request latency summaries, which the analysis templates query;
- ``ReadyReplicasWatch``: every change of a Deployment's ready replicas while a test runs.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support.prometheus import Target
from tests.workload import tinymodel, tritonlocal

ROOT = Path(__file__).resolve().parents[2]
WORKLOAD_PATH = [ROOT / "images" / n for n in ("builder", "common")]
MODEL_NAME = "llm"  # the name the operator's build Job gives the model (plan/llmmodel.py)
MODEL_LABEL = "llmops_dev_llmmodel"  # the pod label llmops.dev/llmmodel after a labelmap

# The serving Deployment's tritonserver flags that matter on a laptop, plus the summaries
# (quantiles) of request and queue latency the TritonLatency/TritonQueueTime templates read.
TRITON_FLAGS = ("--strict-readiness=true", "--metrics-config=summary_latencies=true")

FAILING_MODEL = '''"""The builder's model with failures injected into a fixed share of requests."""

import json
import os
import sys

import triton_python_backend_utils as pb_utils

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from served_model import TritonPythonModel as ServedModel  # the builder's model.py


class TritonPythonModel(ServedModel):
    def initialize(self, args):
        super().initialize(args)
        parameters = json.loads(args["model_config"]).get("parameters", {})
        self.failure_share = float(parameters["failure_share"]["string_value"])
        self.executions = 0

    def execute(self, requests):
        # Deterministic: execution n fails when n * share crosses an integer, so every window
        # of requests fails the share exactly. Raising (not error responses, which Triton
        # counts as successes) is what nv_inference_request_failure{reason="BACKEND"} counts.
        self.executions += 1
        n, share = self.executions, self.failure_share
        if int(n * share) > int((n - 1) * share):
            raise pb_utils.TritonModelException("injected failure")
        return super().execute(requests)
'''


def workload_env() -> dict[str, str]:
    env = os.environ.copy()
    env["PYTHONPATH"] = os.pathsep.join(map(str, WORKLOAD_PATH))
    env.setdefault("OMP_NUM_THREADS", "1")
    env["HF_HUB_OFFLINE"] = "1"
    env["TOKENIZERS_PARALLELISM"] = "false"
    return env


def good_repository(workdir: Path, max_new_tokens: int = 4) -> Path:
    """A Triton model repository built by the real builder from a random-init tiny model."""
    repository = workdir / "good-repository"
    if (repository / MODEL_NAME / "config.pbtxt").exists():
        return repository
    train, _ = tinymodel.task_cases()
    source = tinymodel.make_tiny_model(workdir / "tiny-model", train)
    proc = subprocess.run(
        [
            sys.executable, "-m", "llmops_builder",
            "--source", str(source),
            "--quantization", "None",
            "--repository", str(repository),
            "--model-name", MODEL_NAME,
            "--max-batch-size", "16",
            "--max-new-tokens", str(max_new_tokens),
            "--result-file", str(workdir / "build-result.json"),
        ],
        env=workload_env(), capture_output=True, text=True, cwd=ROOT, timeout=600,
    )  # fmt: skip
    if proc.returncode != 0:
        raise RuntimeError(f"builder failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return repository


def failing_repository(good: Path, dest: Path, failure_share: float) -> Path:
    """A copy of a good repository whose model fails `failure_share` of its requests."""
    if not 0 <= failure_share <= 1:
        raise ValueError(f"failure_share must be within [0, 1], got {failure_share}")
    shutil.rmtree(dest, ignore_errors=True)
    shutil.copytree(good, dest, ignore=shutil.ignore_patterns("__pycache__"))
    model = dest / MODEL_NAME
    version = next(p for p in sorted(model.iterdir()) if p.is_dir() and p.name.isdigit())
    (version / "model.py").rename(version / "served_model.py")
    (version / "model.py").write_text(FAILING_MODEL)
    config = model / "config.pbtxt"
    # No dynamic batching: one request per execution, so a failed execution is one failed request.
    lines = [line for line in config.read_text().splitlines() if not line.startswith("dynamic_batching")]
    lines.append(f'parameters {{ key: "failure_share" value: {{ string_value: "{failure_share}" }} }}')
    config.write_text("\n".join(lines) + "\n")
    return dest


def start_triton(repository: Path, workdir: Path) -> tritonlocal.Server:
    workdir.mkdir(parents=True, exist_ok=True)
    return tritonlocal.start(repository, workdir, extra_args=TRITON_FLAGS)


def metrics_target(server: tritonlocal.Server, namespace: str, model: str) -> Target:
    """How Prometheus would see the pods of LLMModel `model` in `namespace`."""
    return Target(
        address=f"127.0.0.1:{server.metrics_port}",
        labels={"namespace": namespace, MODEL_LABEL: model},
    )


@dataclass(frozen=True)
class ReadyReplicas:
    time: float
    ready: int


class ReadyReplicasWatch:
    """Records every change of a Deployment's status.readyReplicas (a watch, so no change is missed)."""

    def __init__(self, api_client: Any, namespace: str, name: str) -> None:
        from kubernetes import client

        self.apps = client.AppsV1Api(api_client)
        self.namespace = namespace
        self.name = name
        self.history: list[ReadyReplicas] = []
        self.error: BaseException | None = None
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"watch-{name}", daemon=True)

    def start(self) -> ReadyReplicasWatch:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join(timeout=10)
        if self.error is not None:
            raise RuntimeError(f"watching Deployment {self.name} failed") from self.error

    def __enter__(self) -> ReadyReplicasWatch:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _record(self, deployment: Any) -> None:
        ready = int((deployment.status and deployment.status.ready_replicas) or 0)
        if not self.history or self.history[-1].ready != ready:
            self.history.append(ReadyReplicas(time.time(), ready))

    def _run(self) -> None:
        from kubernetes import watch
        from kubernetes.client.exceptions import ApiException

        selector = f"metadata.name={self.name}"
        try:
            while not self._stopped.is_set():
                listed = self.apps.list_namespaced_deployment(self.namespace, field_selector=selector)
                for deployment in listed.items:
                    self._record(deployment)
                version = listed.metadata.resource_version
                # Short server-side timeouts so stop() is noticed; resume from the last version seen.
                while not self._stopped.is_set():
                    try:
                        for event in watch.Watch().stream(
                            self.apps.list_namespaced_deployment,
                            self.namespace,
                            field_selector=selector,
                            resource_version=version,
                            timeout_seconds=2,
                        ):
                            version = event["object"].metadata.resource_version
                            if event["type"] in ("ADDED", "MODIFIED"):
                                self._record(event["object"])
                    except ApiException as error:
                        if error.status == 410:  # history compacted: list again
                            break
                        raise
        except BaseException as error:  # surfaced by stop()
            self.error = error

    def minimum_ready(self, since: float = 0.0) -> int | None:
        """The fewest ready replicas at any moment from `since` on (the value in force then counts)."""
        before = [h.ready for h in self.history if h.time <= since]
        during = [h.ready for h in self.history if h.time > since]
        values = before[-1:] + during
        return min(values) if values else None
