"""kopf wiring for LLMModel: its own events, its children's events, its FineTuneJob's events."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import kopf

from ..api.common import API_VERSION, GROUP, VERSION
from ..api.llmmodel import LLMModel
from ..kube import read
from ..plan.common import MANAGED_BY, Plan, labels
from ..plan.llmmodel import LLMModelObservation, build_hash, build_job_name, plan_llmmodel, source_of
from ..settings import Settings
from .reconciler import Reconciler

SETTINGS = Settings.from_env()
OWNER_LABEL = "llmops.dev/llmmodel"


async def observe(model: LLMModel) -> LLMModelObservation:
    ns = model.namespace
    fine_tune = None
    if model.spec.source.fine_tune_job:
        fine_tune = await read.get(API_VERSION, "FineTuneJob", ns, model.spec.source.fine_tune_job.name)
    source_uri, _, _ = source_of(model, LLMModelObservation(fine_tune_job=fine_tune))
    build_job, build_pods = None, []
    if source_uri is not None:
        name = build_job_name(model, build_hash(model, source_uri, SETTINGS))
        build_job = await read.get("batch/v1", "Job", ns, name)
        if build_job is not None:
            build_pods = await read.list_("v1", "Pod", ns, f"job-name={name}")
    return LLMModelObservation(
        fine_tune_job=fine_tune,
        build_job=build_job,
        build_pods=build_pods,
        deployment=await read.get("apps/v1", "Deployment", ns, model.name),
        serving_pods=await read.list_("v1", "Pod", ns, read.selector(labels(model, "serving"))),
    )


async def plan(model: LLMModel, now: datetime) -> Plan:
    return plan_llmmodel(model, await observe(model), SETTINGS, now)


RECONCILER = Reconciler(LLMModel, plan)
CHILD_LABELS: dict[str, Any] = {**MANAGED_BY, OWNER_LABEL: kopf.PRESENT}


@kopf.on.event(GROUP, VERSION, "llmmodels")
async def model_changed(type: str, namespace: str | None, name: str, **_: Any) -> None:
    if type != "DELETED" and namespace:
        await RECONCILER.reconcile(namespace, name)


@kopf.on.event("batch", "v1", "jobs", labels=CHILD_LABELS)
@kopf.on.event("apps", "v1", "deployments", labels=CHILD_LABELS)
@kopf.on.event("v1", "pods", labels=CHILD_LABELS)
async def child_changed(namespace: str | None, labels: Mapping[str, str], **_: Any) -> None:
    if namespace:
        await RECONCILER.reconcile(namespace, labels[OWNER_LABEL])


@kopf.on.event(GROUP, VERSION, "finetunejobs")
async def fine_tune_changed(namespace: str | None, name: str, **_: Any) -> None:
    """A model built from a FineTuneJob's output waits for it: look again when the job changes."""
    if not namespace:
        return
    models = await read.list_(API_VERSION, "LLMModel", namespace, "")
    for model in models:
        if model.get("spec", {}).get("source", {}).get("fineTuneJob", {}).get("name") == name:
            await RECONCILER.reconcile(namespace, model["metadata"]["name"])


@kopf.timer(GROUP, VERSION, "llmmodels", interval=SETTINGS.resync_seconds, idle=SETTINGS.resync_seconds)
async def resync(namespace: str | None, name: str, **_: Any) -> None:
    """Level-triggered safety net: a missed event is repaired within one resync interval."""
    if namespace:
        await RECONCILER.reconcile(namespace, name)
