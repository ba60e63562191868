"""FineTuneJob: (job, observed training pods and logs, settings, now) -> training Job, output LLMModel, status.

Progress comes from the rank-0 trainer's stdout (JSON lines; the operator reads the last lines
of its log) and the result from its termination message. Checkpoints and the output live on
the checkpoint PVC under <namespace>/<job>/, so a replacement pod resumes where the lost one
checkpointed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ..api.common import API_VERSION, Condition, now_rfc3339
from ..api.finetunejob import FineTuneJob, FineTunePhase, Progress
from ..settings import Settings
from .common import (
    RESTRICTED_CONTAINER_SECURITY,
    RESTRICTED_POD_SECURITY,
    Manifest,
    Plan,
    child_metadata,
    child_name,
    container_resources,
    pod_scheduling,
    set_condition,
    transition_events,
)
from .workloads import (
    PVC_ROOT,
    SCRATCH,
    WORKLOAD_UID,
    creation_problem,
    job_condition,
    parse_result,
    pod_failure_policy,
    pod_problem,
    pvc_claims,
    pvc_volumes,
    termination_message,
)

TRAINER = "trainer"
RENDEZVOUS_PORT = 29500
KUEUE_QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
# The mountPath of the training pod's own Memory emptyDir, where torch workers share tensors:
# a path inside the pod, not a file the operator opens (bandit B108).
SHARED_MEMORY = "/dev/shm"  # nosec B108
WARNING_REASONS = {"TrainingFailed", "Unschedulable", "ImagePullBackOff", "CrashLoopBackOff", "PodCreationFailed"}


@dataclass(frozen=True)
class FineTuneObservation:
    base_model: dict[str, Any] | None = None
    """The LLMModel named by spec.baseModel.model."""
    job: dict[str, Any] | None = None
    pods: list[dict[str, Any]] = field(default_factory=list)
    """The training Job's pods."""
    log_tail: str | None = None
    """The last lines of the rank-0 trainer's log."""
    job_events: list[dict[str, Any]] = field(default_factory=list)
    """Why the training Job cannot create its pods (its FailedCreate Events)."""


@dataclass(frozen=True)
class Paths:
    checkpoints: str
    output: str
    artifact_uri: str


def paths(job: FineTuneJob) -> Paths:
    claim = job.spec.checkpointing.persistent_volume_claim
    base = f"{job.namespace}/{job.name}"
    return Paths(
        checkpoints=f"{PVC_ROOT}/{claim}/{base}/checkpoints",
        output=f"{PVC_ROOT}/{claim}/{base}/output",
        artifact_uri=f"pvc://{claim}/{base}/output",
    )


def training_job_name(job: FineTuneJob) -> str:
    return child_name(job.name, "train")


def workers_service_name(job: FineTuneJob) -> str:
    return child_name(job.name, "workers")


def base_model_uri(job: FineTuneJob, base_model: dict[str, Any] | None) -> tuple[str | None, str]:
    """(weights to start from, or None and why not)."""
    if job.spec.base_model.uri:
        return job.spec.base_model.uri, ""
    name = job.spec.base_model.model
    if base_model is None:
        return None, f"base LLMModel {name} does not exist"
    source = base_model.get("spec", {}).get("source", {})
    uri = source.get("uri") or base_model.get("status", {}).get("lineage", {}).get("sourceUri")
    if not uri:
        return None, f"base LLMModel {name} has no weights yet"
    return uri, ""


def trainer_args(job: FineTuneJob, base_uri: str) -> list[str]:
    spec, hp, where = job.spec, job.spec.hyperparameters, paths(job)
    args = [
        "--base-model", base_uri,
        "--dataset", spec.dataset.uri,
        "--method", spec.method,
        "--output", where.output,
        "--checkpoint-dir", where.checkpoints,
        "--checkpoint-every", str(spec.checkpointing.every_steps),
        "--epochs", str(hp.epochs),
        "--learning-rate", str(hp.learning_rate),
        "--batch-size", str(hp.batch_size),
        "--seed", str(hp.seed),
        "--result-file", "/dev/termination-log",
    ]  # fmt: skip
    if spec.dataset.eval_uri:
        args += ["--eval-dataset", spec.dataset.eval_uri]
    if hp.max_steps:
        args += ["--max-steps", str(hp.max_steps)]
    if spec.method == "LoRA" and spec.lora is not None:
        lora = spec.lora
        args += ["--lora-r", str(lora.r), "--lora-alpha", str(lora.alpha), "--lora-dropout", str(lora.dropout)]
        if lora.target_modules:
            args += ["--lora-target-modules", ",".join(lora.target_modules)]
        args.append("--merge-lora" if lora.merge else "--no-merge-lora")
    return args


def trainer_command(job: FineTuneJob) -> list[str]:
    """One process per worker pod, or torchrun across GPUs and pods (indexed Job rendezvous)."""
    workers, gpus = job.spec.workers, job.spec.resources.gpus
    if workers == 1 and gpus <= 1:
        return ["python", "-m", "llmops_trainer"]
    master = f"{training_job_name(job)}-0.{workers_service_name(job)}"
    return [
        "torchrun",
        f"--nnodes={workers}",
        f"--nproc-per-node={max(gpus, 1)}",
        "--node-rank=$(JOB_COMPLETION_INDEX)",
        f"--master-addr={master}",
        f"--master-port={RENDEZVOUS_PORT}",
        "-m",
        "llmops_trainer",
    ]


def desired_training_job(job: FineTuneJob, base_uri: str, settings: Settings) -> Manifest:
    spec = job.spec
    checkpoint_claim = spec.checkpointing.persistent_volume_claim
    claims = pvc_claims(base_uri, spec.dataset.uri, spec.dataset.eval_uri, f"pvc://{checkpoint_claim}/")
    volumes, mounts = pvc_volumes(claims, writable=frozenset({checkpoint_claim}))
    volumes += [{"name": "tmp", "emptyDir": {}}, {"name": "shm", "emptyDir": {"medium": "Memory"}}]
    mounts += [{"name": "tmp", "mountPath": SCRATCH}, {"name": "shm", "mountPath": SHARED_MEMORY}]
    container = {
        "name": TRAINER,
        "image": spec.image or settings.trainer_image,
        "command": trainer_command(job),
        "args": trainer_args(job, base_uri),
        "env": [{"name": "LLMOPS_PVC_ROOT", "value": PVC_ROOT}, {"name": "HOME", "value": SCRATCH}],
        "ports": [{"name": "rendezvous", "containerPort": RENDEZVOUS_PORT}],
        "resources": container_resources(spec.resources.gpus, spec.resources.cpu, spec.resources.memory),
        "volumeMounts": mounts,
        "securityContext": RESTRICTED_CONTAINER_SECURITY,
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }
    metadata = child_metadata(job, training_job_name(job), "trainer")
    if spec.scheduling.queue_name:
        metadata["labels"][KUEUE_QUEUE_LABEL] = spec.scheduling.queue_name
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "securityContext": {**RESTRICTED_POD_SECURITY, "runAsUser": WORKLOAD_UID, "fsGroup": WORKLOAD_UID},
        "containers": [container],
        "volumes": volumes,
        **pod_scheduling(spec.scheduling, spec.resources.gpus, spec.resources.gpu_type),
    }
    job_spec: dict[str, Any] = {
        "backoffLimit": spec.backoff_limit,
        "podFailurePolicy": pod_failure_policy(TRAINER),
        "suspend": spec.suspend,
        "template": {"metadata": {"labels": child_metadata(job, "", "trainer")["labels"]}, "spec": pod_spec},
    }
    if spec.workers > 1:
        pod_spec["subdomain"] = workers_service_name(job)
        job_spec.update(completionMode="Indexed", completions=spec.workers, parallelism=spec.workers)
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": metadata, "spec": job_spec}


def desired_workers_service(job: FineTuneJob) -> Manifest:
    """Headless Service giving each indexed worker pod a stable DNS name for the rendezvous."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": child_metadata(job, workers_service_name(job), "trainer"),
        "spec": {
            "clusterIP": "None",
            "publishNotReadyAddresses": True,
            "selector": {"job-name": training_job_name(job)},
            "ports": [{"name": "rendezvous", "port": RENDEZVOUS_PORT}],
        },
    }


def desired_output_model(job: FineTuneJob) -> Manifest:
    """The LLMModel built from the fine-tuned weights. Not owned by the job: it outlives it."""
    output = job.spec.output
    spec: dict[str, Any] = {"source": {"fineTuneJob": {"name": job.name}}}
    if output.build is not None:
        spec["build"] = output.build.wire()
    if output.serving is not None:
        spec["serving"] = output.serving.wire()
    return {
        "apiVersion": API_VERSION,
        "kind": "LLMModel",
        "metadata": {
            "name": output.name,
            "namespace": job.namespace,
            "labels": {"app.kubernetes.io/managed-by": "llmops-operator", "llmops.dev/finetunejob": job.name},
        },
        "spec": spec,
    }


def trainer_events(log_tail: str | None) -> list[dict[str, Any]]:
    events = []
    for line in (log_tail or "").splitlines():
        try:
            value = json.loads(line)
        except ValueError:
            continue
        if isinstance(value, dict) and "event" in value:
            events.append(value)
    return events


def progress_from(events: list[dict[str, Any]], previous: Progress | None, now: datetime) -> Progress | None:
    latest = next((e for e in reversed(events) if e["event"] == "progress"), None)
    if latest is None:
        return previous
    return Progress(
        step=int(latest.get("step", 0)),
        total_steps=latest.get("total"),
        epoch=latest.get("epoch"),
        loss=latest.get("loss"),
        tokens_per_second=latest.get("tokens_per_s"),
        eta_seconds=int(latest["eta_s"]) if latest.get("eta_s") is not None else None,
        updated_at=now_rfc3339(now),
    )


def rank0_pod(job: FineTuneJob, pods: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The newest pod of completion index 0 (or of the only index)."""

    def index(pod: dict[str, Any]) -> str:
        return str(pod.get("metadata", {}).get("annotations", {}).get("batch.kubernetes.io/job-completion-index", "0"))

    candidates = [p for p in pods if index(p) == "0"]
    return max(candidates, key=lambda p: p["metadata"].get("creationTimestamp", ""), default=None)


def plan_finetunejob(job: FineTuneJob, observed: FineTuneObservation, settings: Settings, now: datetime) -> Plan:
    generation = job.generation
    before = job.status.conditions
    conditions: list[Condition] = list(before)
    status = job.status.model_copy(deep=True)
    children: list[Manifest] = []

    def set_(type_: str, value: bool, reason: str, message: str) -> None:
        nonlocal conditions
        conditions = set_condition(conditions, type_, "True" if value else "False", reason, message, now, generation)

    phase: FineTunePhase
    degraded: tuple[str, str] | None = None
    base_uri, why = base_model_uri(job, observed.base_model)
    training = observed.job
    if base_uri is None and training is None:
        phase = "Pending"
        set_("Progressing", False, "WaitingForBaseModel", why)
    else:
        if base_uri is not None:
            children.append(desired_training_job(job, base_uri, settings))
            if job.spec.workers > 1:
                children.append(desired_workers_service(job))
        status.job = training_job_name(job)
        events = trainer_events(observed.log_tail)
        status.progress = progress_from(events, status.progress, now)
        pod = rank0_pod(job, observed.pods)
        pod_name = pod["metadata"]["name"] if pod else None
        if pod_name and status.worker_pod and pod_name != status.worker_pod:
            # A new rank-0 pod while the job is unfinished: the old one was lost and the trainer resumes.
            status.resumes += 1
            status.last_resumed_from_step = status.progress.step if status.progress else 0
        resumed = next((e for e in reversed(events) if e["event"] == "resumed"), None)
        own_result = parse_result(termination_message([pod], TRAINER)) if pod else None
        if resumed is not None:
            status.last_resumed_from_step = int(resumed.get("step", 0))
        elif status.resumes and own_result and own_result.get("resumed_from") is not None:
            # A short run can end before we read its log, whose tail then no longer holds the
            # "resumed" line; the pod's result keeps the step.
            status.last_resumed_from_step = int(own_result["resumed_from"])
        status.worker_pod = pod_name or status.worker_pod
        result = parse_result(termination_message(observed.pods, TRAINER))
        problem = pod_problem(observed.pods) or (creation_problem(observed.job_events) if not observed.pods else None)
        if training is not None and job_condition(training, "Complete"):
            phase = "Succeeded"
            status.artifact_uri = paths(job).artifact_uri
            status.output_model = job.spec.output.name
            status.completion_time = status.completion_time or now_rfc3339(now)
            if result and status.progress is not None:
                status.progress = status.progress.model_copy(
                    update={"loss": result.get("final_loss"), "eval_loss": result.get("eval_loss"), "eta_seconds": 0}
                )
            children.append(desired_output_model(job))
            set_("Progressing", False, "Completed", f"fine-tuned weights at {status.artifact_uri}")
            set_("Succeeded", True, "Completed", f"output LLMModel {job.spec.output.name}")
        elif training is not None and job_condition(training, "Failed"):
            phase = "Failed"
            error = (result or {}).get("error") or termination_message(observed.pods, TRAINER) or "see the pod logs"
            failure = [c for c in training.get("status", {}).get("conditions", []) if c.get("type") == "Failed"]
            message = f"training failed ({failure[0].get('reason') or 'Failed'}): {error}"
            degraded = ("TrainingFailed", message)
            status.completion_time = status.completion_time or now_rfc3339(now)
            set_("Progressing", False, "TrainingFailed", message)
            set_("Succeeded", False, "TrainingFailed", message)
        elif job.spec.suspend:
            phase = "Suspended"
            set_("Progressing", False, "Suspended", "training is suspended; checkpoints are kept")
        elif problem is not None:
            phase = "Pending" if status.progress is None else "Running"
            degraded = problem
            set_("Progressing", False, *problem)
        else:
            phase = "Running" if pod is not None else "Pending"
            status.start_time = status.start_time or (now_rfc3339(now) if pod else None)
            step_text = f"step {status.progress.step}/{status.progress.total_steps}" if status.progress else "starting"
            set_("Progressing", True, "Training", f"{job.spec.workers} worker(s), {step_text}")
    if degraded is not None:
        set_("Degraded", True, *degraded)
    else:
        set_("Degraded", False, "AsExpected", "")
    status.phase = phase
    status.conditions = conditions
    status.observed_generation = generation
    return Plan(
        children=children,
        status=status.wire(),
        events=transition_events(before, conditions, WARNING_REASONS),
        requeue_after=None if phase in ("Succeeded", "Failed") else 15.0,
    )
