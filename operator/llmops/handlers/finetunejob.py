"""FineTuneJob: gather the observation (incl. the trainer's log tail), call the pure plan; its wiring."""

from __future__ import annotations

from datetime import datetime

from ..api.common import API_VERSION
from ..api.finetunejob import FineTuneJob
from ..kube import read
from ..metrics import FINETUNE_RUNS
from ..plan.common import Plan
from ..plan.finetunejob import TRAINER, FineTuneObservation, plan_finetunejob, rank0_pod, training_job_name
from ..settings import Settings
from .reconciler import Reconciler, watch

SETTINGS = Settings.from_env()
LOG_LINES = 50


async def observe(job: FineTuneJob) -> FineTuneObservation:
    ns = job.namespace
    base = None
    if job.spec.base_model.model:
        base = await read.get(API_VERSION, "LLMModel", ns, job.spec.base_model.model)
    name = training_job_name(job)
    training = await read.get("batch/v1", "Job", ns, name, cached=True)
    pods, job_events = [], []
    if training is not None:
        pods = await read.job_pods(training)
        if not pods:
            job_events = await read.creation_failures(ns, name)
    rank0 = rank0_pod(job, pods)
    log_tail = None
    if rank0 is not None and rank0.get("status", {}).get("phase") in ("Running", "Succeeded", "Failed"):
        log_tail = await read.pod_log(ns, rank0["metadata"]["name"], TRAINER, LOG_LINES)
    return FineTuneObservation(base_model=base, job=training, pods=pods, log_tail=log_tail, job_events=job_events)


ENDED = ("Succeeded", "Failed")


def record(job: FineTuneJob, plan: Plan) -> None:
    """Count the job once, in the reconcile that ends it (what the fine-tune alert watches)."""
    phase = plan.status.get("phase")
    if phase in ENDED and job.status.phase != phase:
        FINETUNE_RUNS.labels(job.namespace, job.name, phase).inc()


async def plan(job: FineTuneJob, now: datetime) -> Plan:
    result = plan_finetunejob(job, await observe(job), SETTINGS, now)
    record(job, result)
    return result


RECONCILER = Reconciler(FineTuneJob, plan)
watch(RECONCILER, "finetunejobs", SETTINGS.resync_seconds)
