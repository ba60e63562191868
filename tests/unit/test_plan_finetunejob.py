"""The FineTuneJob plan: training Job shape, progress, resume, success and failure."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from llmops.api.finetunejob import FineTuneJob
from llmops.plan.finetunejob import FineTuneObservation, plan_finetunejob
from llmops.settings import Settings
from tests.support.invalid_specs import example, patched

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
BASE = {"spec": {"source": {"uri": "pvc://models/tinystories-base"}}}


def ftj(changes: dict[str, Any] | None = None, status: dict[str, Any] | None = None) -> FineTuneJob:
    obj = patched(example("finetunejob"), changes or {})
    obj["metadata"].update(namespace="ml", uid="uid-2", generation=1)
    if status:
        obj["status"] = status
    return FineTuneJob.model_validate(obj)


def step(job: FineTuneJob, observed: FineTuneObservation) -> tuple[Any, FineTuneJob]:
    plan = plan_finetunejob(job, observed, Settings(), NOW)
    return plan, FineTuneJob.model_validate({**job.wire(), "status": plan.status})


def kinds(plan: Any) -> list[str]:
    return [c["kind"] for c in plan.children]


def the(plan: Any, kind: str) -> dict[str, Any]:
    [child] = [c for c in plan.children if c["kind"] == kind]
    return child


def pod(name: str, created: str, **status: Any) -> dict[str, Any]:
    return {"metadata": {"name": name, "creationTimestamp": created}, "status": status}


def job_with(condition: str, reason: str = "") -> dict[str, Any]:
    return {"status": {"conditions": [{"type": condition, "status": "True", "reason": reason}]}}


def log(*events: dict[str, Any]) -> str:
    return "\n".join(["loading model...", *(json.dumps(e) for e in events)])


def conditions(plan: Any) -> dict[str, tuple[str, str]]:
    return {c["type"]: (c["status"], c["reason"]) for c in plan.status["conditions"]}


def test_two_workers_get_an_indexed_job_with_rendezvous_on_gpu_nodes() -> None:
    plan, _ = step(ftj(), FineTuneObservation(base_model=BASE))
    assert kinds(plan) == ["Job", "Service"]
    job = the(plan, "Job")
    spec, pod_spec = job["spec"], job["spec"]["template"]["spec"]
    assert (spec["completionMode"], spec["completions"], spec["parallelism"]) == ("Indexed", 2, 2)
    container = pod_spec["containers"][0]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 2
    assert container["command"][0] == "torchrun" and "--nnodes=2" in container["command"]
    assert "--master-addr=tinystories-ft-train-0.tinystories-ft-workers" in container["command"]
    assert pod_spec["subdomain"] == "tinystories-ft-workers"
    assert pod_spec["priorityClassName"] == "training"
    assert job["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "gpu-team-a"
    assert the(plan, "Service")["spec"]["clusterIP"] == "None"
    args = container["args"]
    assert args[args.index("--base-model") + 1] == "pvc://models/tinystories-base"
    assert args[args.index("--checkpoint-dir") + 1] == "/mnt/pvc/training-checkpoints/ml/tinystories-ft/checkpoints"
    assert args[args.index("--lora-target-modules") + 1] == "c_attn,c_proj"
    rules = spec["podFailurePolicy"]["rules"]
    assert rules[0]["onExitCodes"]["values"] == [2] and rules[1]["action"] == "Ignore"
    mounts = {m["mountPath"]: m["readOnly"] for m in container["volumeMounts"] if m["name"].startswith("pvc-")}
    assert mounts == {"/mnt/pvc/datasets": True, "/mnt/pvc/models": True, "/mnt/pvc/training-checkpoints": False}


def test_one_worker_on_one_gpu_runs_the_trainer_directly() -> None:
    plan, _ = step(ftj({"spec.workers": 1, "spec.resources.gpus": 1}), FineTuneObservation(base_model=BASE))
    assert kinds(plan) == ["Job"]
    job = the(plan, "Job")
    assert "completionMode" not in job["spec"]
    assert job["spec"]["template"]["spec"]["containers"][0]["command"] == ["python", "-m", "llmops_trainer"]


def test_missing_base_model_waits_without_children() -> None:
    plan, _ = step(ftj(), FineTuneObservation())
    assert plan.children == []
    assert conditions(plan)["Progressing"] == ("False", "WaitingForBaseModel")
    assert plan.status["phase"] == "Pending"


def test_progress_comes_from_the_trainers_log() -> None:
    running = [pod("w0", "2026-11-23T11:00:00Z", phase="Running")]
    tail = log({"event": "progress", "step": 40, "total": 300, "epoch": 0.4, "loss": 1.25, "eta_s": 520.4})
    plan, _ = step(ftj(), FineTuneObservation(base_model=BASE, job={}, pods=running, log_tail=tail))
    assert plan.status["phase"] == "Running"
    assert plan.status["progress"]["step"] == 40 and plan.status["progress"]["etaSeconds"] == 520
    assert conditions(plan)["Progressing"] == ("True", "Training")


def test_a_replacement_pod_is_recorded_as_a_resume_from_the_checkpoint() -> None:
    first = [pod("w0-a", "2026-11-23T11:00:00Z", phase="Running")]
    tail = log({"event": "progress", "step": 120, "total": 300})
    _, job = step(ftj(), FineTuneObservation(base_model=BASE, job={}, pods=first, log_tail=tail))
    replacement = [pod("w0-b", "2026-11-23T11:30:00Z", phase="Running")]
    tail = log({"event": "resumed", "step": 100}, {"event": "progress", "step": 110, "total": 300})
    plan, _ = step(job, FineTuneObservation(base_model=BASE, job={}, pods=replacement, log_tail=tail))
    assert plan.status["resumes"] == 1
    assert plan.status["lastResumedFromStep"] == 100
    assert plan.status["progress"]["step"] == 110


def test_a_replacement_that_ended_before_its_log_was_read_is_recorded_from_its_result() -> None:
    first = [pod("w0-a", "2026-11-23T11:00:00Z", phase="Running")]
    _, job = step(ftj(), FineTuneObservation(base_model=BASE, job={}, pods=first))  # no progress seen yet
    result = json.dumps({"output": "/mnt/pvc/x", "final_loss": 0.1, "steps": 300, "resumed_from": 100})
    replacement = [pod("w0-b", "2026-11-23T11:30:00Z", phase="Succeeded", containerStatuses=[
        {"name": "trainer", "state": {"terminated": {"exitCode": 0, "message": result}}}])]  # fmt: skip
    tail = log(*({"event": "progress", "step": s, "total": 300} for s in range(110, 310, 10)))  # "resumed" scrolled out
    plan, _ = step(job, FineTuneObservation(base_model=BASE, job=job_with("Complete"), pods=replacement, log_tail=tail))
    assert plan.status["resumes"] == 1
    assert plan.status["lastResumedFromStep"] == 100


def test_success_produces_the_output_model_with_lineage() -> None:
    result = json.dumps({"output": "/mnt/pvc/x", "final_loss": 0.12, "eval_loss": 0.2, "steps": 300})
    done = [pod("w0", "2026-11-23T11:00:00Z", containerStatuses=[
        {"name": "trainer", "state": {"terminated": {"exitCode": 0, "message": result}}}])]  # fmt: skip
    _, job = step(
        ftj(), FineTuneObservation(base_model=BASE, job={}, pods=done, log_tail=log({"event": "progress", "step": 300}))
    )
    plan, _ = step(job, FineTuneObservation(base_model=BASE, job=job_with("Complete"), pods=done))
    assert plan.status["phase"] == "Succeeded"
    assert plan.status["artifactUri"] == "pvc://training-checkpoints/ml/tinystories-ft/output"
    assert plan.status["progress"]["loss"] == 0.12
    model = the(plan, "LLMModel")
    assert model["metadata"]["name"] == "tinystories-ft"
    assert model["spec"]["source"] == {"fineTuneJob": {"name": "tinystories-ft"}}
    assert model["spec"]["build"]["quantization"] == "Int8Dynamic"
    assert "ownerReferences" not in model["metadata"]  # the produced model outlives the job
    assert conditions(plan)["Succeeded"] == ("True", "Completed")
    assert plan.requeue_after is None


def test_a_configuration_error_fails_with_the_trainers_message() -> None:
    error = json.dumps({"error": "dataset line 3: missing 'completion'", "kind": "config"})
    failed = [pod("w0", "2026-11-23T11:00:00Z", containerStatuses=[
        {"name": "trainer", "state": {"terminated": {"exitCode": 2, "message": error}}}])]  # fmt: skip
    plan, _ = step(ftj(), FineTuneObservation(base_model=BASE, job=job_with("Failed", "PodFailurePolicy"), pods=failed))
    assert plan.status["phase"] == "Failed"
    assert conditions(plan)["Degraded"] == ("True", "TrainingFailed")
    message = next(c["message"] for c in plan.status["conditions"] if c["type"] == "Degraded")
    assert "PodFailurePolicy" in message and "missing 'completion'" in message
    assert any(e.type == "Warning" and e.reason == "TrainingFailed" for e in plan.events)


def test_unschedulable_training_pods_are_reported() -> None:
    pending = [pod("w0", "2026-11-23T11:00:00Z", phase="Pending", conditions=[
        {"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
         "message": "0/3 nodes are available: 3 Insufficient nvidia.com/gpu."}])]  # fmt: skip
    plan, _ = step(ftj({"spec.resources.gpus": 16}), FineTuneObservation(base_model=BASE, job={}, pods=pending))
    assert conditions(plan)["Degraded"] == ("True", "Unschedulable")
    assert conditions(plan)["Progressing"] == ("False", "Unschedulable")


def test_suspend_suspends_the_job() -> None:
    plan, _ = step(ftj({"spec.suspend": True}), FineTuneObservation(base_model=BASE, job={}))
    assert the(plan, "Job")["spec"]["suspend"] is True
    assert plan.status["phase"] == "Suspended"


def test_a_job_that_cannot_create_its_pods_says_why() -> None:
    refused = {
        "reason": "FailedCreate",
        "type": "Warning",
        "message": 'Error creating: pods "ft-train-0-" is forbidden: no PriorityClass with name training was found',
    }
    plan, _ = step(ftj(), FineTuneObservation(base_model=BASE, job={}, pods=[], job_events=[refused]))
    assert conditions(plan)["Degraded"] == ("True", "PodCreationFailed")
    message = next(c["message"] for c in plan.status["conditions"] if c["type"] == "Degraded")
    assert "no PriorityClass with name training" in message
