"""LLMModel: gather the observation, call the pure plan; kopf wiring."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import kopf

from ..api.common import API_VERSION, GROUP, VERSION
from ..api.llmmodel import LLMModel
from ..kube import read
from ..plan.common import Plan, labels
from ..plan.llmmodel import LLMModelObservation, build_hash, build_job_name, plan_llmmodel, source_of
from ..plan.rollout import held_replicas
from ..settings import Settings
from .reconciler import Reconciler, watch

SETTINGS = Settings.from_env()


async def observe(model: LLMModel) -> LLMModelObservation:
    ns = model.namespace
    fine_tune = None
    if model.spec.source.fine_tune_job:
        fine_tune = await read.get(API_VERSION, "FineTuneJob", ns, model.spec.source.fine_tune_job.name)
    source_uri, _, _ = source_of(model, LLMModelObservation(fine_tune_job=fine_tune))
    build_job, build_pods, build_job_events = None, [], []
    if source_uri is not None:
        name = build_job_name(model, build_hash(model, source_uri, SETTINGS))
        build_job = await read.get("batch/v1", "Job", ns, name)
        if build_job is not None:
            build_pods = await read.list_("v1", "Pod", ns, f"job-name={name}")
            if not build_pods:
                build_job_events = await read.warning_events(ns, "Job", name)
    return LLMModelObservation(
        fine_tune_job=fine_tune,
        build_job=build_job,
        build_pods=build_pods,
        build_job_events=build_job_events,
        deployment=await read.get("apps/v1", "Deployment", ns, model.name),
        serving_pods=await read.list_("v1", "Pod", ns, read.selector(labels(model, "serving"))),
        held_replicas=held_replicas(model.name, await read.list_(API_VERSION, "Rollout", ns, "")),
    )


async def plan(model: LLMModel, now: datetime) -> Plan:
    return plan_llmmodel(model, await observe(model), SETTINGS, now)


RECONCILER = Reconciler(LLMModel, plan)
watch(RECONCILER, "llmmodels", SETTINGS.resync_seconds)


@kopf.on.event(GROUP, VERSION, "finetunejobs", id="llmmodels-from-finetunejobs")
async def fine_tune_changed(namespace: str | None, name: str, **_: Any) -> None:
    """A model built from a FineTuneJob's output waits for it: look again when the job changes."""
    if not namespace:
        return
    for model in await read.list_(API_VERSION, "LLMModel", namespace, ""):
        if model.get("spec", {}).get("source", {}).get("fineTuneJob", {}).get("name") == name:
            await RECONCILER.reconcile(namespace, model["metadata"]["name"])


@kopf.on.event(GROUP, VERSION, "rollouts", id="llmmodels-from-rollouts")
async def rollout_changed(namespace: str | None, body: kopf.Body, **_: Any) -> None:
    """A replicaRatio rollout scales its candidate through status.canaryReplicas."""
    candidate = body.get("spec", {}).get("candidate", {}).get("name")
    if namespace and candidate:
        await RECONCILER.reconcile(namespace, candidate)
