"""A real trainer on the local node agent, disrupted: evicted mid-run, or misconfigured.

- Evicted (the Eviction API, as a node drain does): the replacement pod resumes from the last
  checkpoint, so at most one checkpoint interval of steps is redone, and the disruption does not
  count against the Job's retry budget (pod failure policy: DisruptionTarget → Ignore).
- A configuration error (the dataset does not exist: the trainer exits 2) fails the FineTuneJob
  after one attempt: no retries of a run that cannot succeed.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from tests.support.operator import OperatorProcess, wait_for

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "e2e"))

import contextlib

import pipeline

CHECKPOINT_EVERY = 100


def finetune(name: str, dataset: str, max_steps: int) -> dict[str, Any]:
    return {
        "apiVersion": "llmops.dev/v1alpha1",
        "kind": "FineTuneJob",
        "metadata": {"name": name},
        "spec": {
            "baseModel": {"uri": "pvc://models/reverse-base"},
            "dataset": {"uri": dataset},
            "method": "Full",
            "hyperparameters": {"maxSteps": max_steps, "batchSize": 8, "learningRate": 0.003},
            "resources": {"gpus": 1, "memory": "4Gi"},
            "checkpointing": {"persistentVolumeClaim": "training-checkpoints", "everySteps": CHECKPOINT_EVERY},
            "output": {"name": f"{name}-model"},
        },
    }


def trainer_events(namespace: str, pod: str) -> list[dict[str, Any]]:
    events = []
    for line in pipeline.kubectl("logs", "-n", namespace, pod, "-c", "trainer", check=False).splitlines():
        if line.startswith("{"):
            with contextlib.suppress(ValueError):
                events.append(json.loads(line))
    return events


def training_pods(namespace: str, job: str) -> list[dict[str, Any]]:
    out = pipeline.kubectl("get", "pods", "-n", namespace, "-l", f"job-name={job}-train", "-o", "json")
    return list(json.loads(out)["items"])


def test_evicted_trainer_resumes_from_its_checkpoint(pipeline_operator: OperatorProcess, namespace: str) -> None:
    pipeline.prepare_namespace(namespace)
    pipeline.seed(namespace)
    pipeline.apply([finetune("evicted", "pvc://datasets/reverse/train.jsonl", 600)], namespace)

    def past_a_checkpoint() -> tuple[str, int] | None:
        running = [p for p in training_pods(namespace, "evicted") if p["status"].get("phase") == "Running"]
        if not running:
            return None
        name = running[0]["metadata"]["name"]
        steps = [e["step"] for e in trainer_events(namespace, name) if e.get("event") == "progress"]
        saved = [e for e in trainer_events(namespace, name) if e.get("event") == "checkpoint"]
        return (name, steps[-1]) if saved and steps and steps[-1] > CHECKPOINT_EVERY + 20 else None

    pod, step_before = wait_for(past_a_checkpoint, 300, "the trainer past its first checkpoint", interval=1)
    eviction = {"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": pod, "namespace": namespace}}
    pipeline.kubectl(
        "create", "--raw", f"/api/v1/namespaces/{namespace}/pods/{pod}/eviction", "-f", "-", input=json.dumps(eviction)
    )
    last_step = max(
        [e["step"] for e in trainer_events(namespace, pod) if e.get("event") == "progress"] or [step_before]
    )

    def finished() -> dict[str, Any] | None:
        job = pipeline.get("FineTuneJob", namespace, "evicted")
        return job if job.get("status", {}).get("phase") in ("Succeeded", "Failed") else None

    job = wait_for(finished, 600, "the evicted FineTuneJob to finish")
    status = job["status"]
    assert status["phase"] == "Succeeded", status
    assert status["resumes"] == 1, status
    resumed_from = status["lastResumedFromStep"]
    assert resumed_from >= CHECKPOINT_EVERY, status
    # At most one checkpoint interval behind the step it had reached when evicted (it may even be
    # ahead: the trainer keeps going, and checkpointing, during its grace period).
    assert last_step - resumed_from <= CHECKPOINT_EVERY + 10, (last_step, resumed_from)
    batch_job = json.loads(pipeline.kubectl("get", "job", "evicted-train", "-n", namespace, "-o", "json"))
    assert batch_job["status"].get("failed", 0) == 0, batch_job["status"]  # the eviction used no retry
    print(f"evicted at step {last_step}, resumed from {resumed_from}: {max(0, last_step - resumed_from)} steps redone")


def test_configuration_error_fails_after_one_attempt(pipeline_operator: OperatorProcess, namespace: str) -> None:
    pipeline.prepare_namespace(namespace)
    pipeline.seed(namespace)
    pipeline.apply([finetune("misconfigured", "pvc://datasets/reverse/missing.jsonl", 50)], namespace)

    def failed() -> dict[str, Any] | None:
        job = pipeline.get("FineTuneJob", namespace, "misconfigured")
        return job if job.get("status", {}).get("phase") == "Failed" else None

    job = wait_for(failed, 300, "the misconfigured FineTuneJob to fail")
    pods = training_pods(namespace, "misconfigured")
    assert len(pods) == 1, [p["metadata"]["name"] for p in pods]
    codes = [s["state"]["terminated"]["exitCode"] for s in pods[0]["status"]["containerStatuses"]]
    assert codes == [2], codes
    message = " ".join(c.get("message", "") for c in job["status"]["conditions"])
    assert "missing.jsonl" in message, job["status"]["conditions"]
