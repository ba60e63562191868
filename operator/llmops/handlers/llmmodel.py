"""LLMModel: gather the observation, call the pure plan; its wiring."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import pydantic

from ..api.common import API_VERSION
from ..api.evalsuite import EvalSuite
from ..api.llmmodel import LLMModel
from ..kube import read
from ..plan.common import Plan, labels
from ..plan.llmmodel import (
    GATE_ROLES,
    LLMModelObservation,
    active_gate,
    build_hash,
    build_job_name,
    claims_to_read,
    gate_deployment_name,
    plan_llmmodel,
    reads_serving_pods,
    reference_build,
    repository_claim_name,
    source_of,
)
from ..plan.rollout import held_replicas
from ..settings import Settings
from . import indexes
from .reconciler import Reconciler, on_event, watch

SETTINGS = Settings.from_env()
log = logging.getLogger(__name__)


BuildObservation = tuple[dict[str, Any] | None, list[dict[str, Any]], list[dict[str, Any]]]
NO_BUILD: BuildObservation = (None, [], [])


async def build_job_of(ns: str, name: str) -> BuildObservation:
    """A build Job, its pods, and why it has none when it has none."""
    job = await read.get("batch/v1", "Job", ns, name, cached=True)
    pods: list[dict[str, Any]] = []
    events: list[dict[str, Any]] = []
    if job is not None:
        pods = await read.job_pods(job)
        if not pods:
            events = await read.creation_failures(ns, name)
    return job, pods, events


async def gate_suite(ns: str, name: str) -> EvalSuite | None:
    suite = await read.get(API_VERSION, "EvalSuite", ns, name)
    try:
        return EvalSuite.model_validate(suite) if suite else None
    except pydantic.ValidationError:
        log.debug("EvalSuite %s/%s does not parse: the quality gate waits for it", ns, name)
        return None


async def observe(model: LLMModel) -> LLMModelObservation:
    ns = model.namespace
    fine_tune = None
    if model.spec.source.fine_tune_job:
        fine_tune = await read.get(API_VERSION, "FineTuneJob", ns, model.spec.source.fine_tune_job.name)
    source_uri, _, _ = source_of(model, LLMModelObservation(fine_tune_job=fine_tune))
    if source_uri is None:
        return await observe_serving(model, fine_tune)
    hash_ = build_hash(model, source_uri, SETTINGS)
    if serves_build(model, hash_):
        # The plan looks at a build, and at the quality gate judging it, only until it is the
        # artifact: a served model does not read its finished build Job and pods on every resync.
        return await observe_serving(model, fine_tune)
    build = await build_job_of(ns, build_job_name(model, hash_))
    claims = {}
    for claim in claims_to_read(build[1]):
        # Only our own claim is among the copies; a source's claim of the user's is read from the apiserver.
        ours = claim == repository_claim_name(model)
        claims[claim] = await read.get("v1", "PersistentVolumeClaim", ns, claim, cached=ours)
    gate = active_gate(model)
    reference = NO_BUILD
    suite = None
    if gate is not None:
        reference_hash = build_hash(model, source_uri, SETTINGS, reference_build(model))
        reference = await build_job_of(ns, build_job_name(model, reference_hash))
        suite = await gate_suite(ns, gate.eval_suite)
    gate_deployments: dict[str, dict[str, Any]] = {}
    if model.status.quality_gate is not None:
        for role in GATE_ROLES:
            found = await read.get("apps/v1", "Deployment", ns, gate_deployment_name(model.name, role), cached=True)
            if found is not None:
                gate_deployments[role] = found
    return dataclasses.replace(
        await observe_serving(model, fine_tune),
        build_job=build[0],
        build_pods=build[1],
        build_job_events=build[2],
        reference_build_job=reference[0],
        reference_build_pods=reference[1],
        reference_build_job_events=reference[2],
        gate_deployments=gate_deployments,
        gate_suite=suite,
        build_claims=claims,
    )


def serves_build(model: LLMModel, hash_: str) -> bool:
    """The build of this hash is already the model's artifact."""
    return model.status.artifact is not None and model.status.artifact.build_hash == hash_


async def observe_serving(model: LLMModel, fine_tune: dict[str, Any] | None) -> LLMModelObservation:
    """What every reconcile reads: the serving Deployment, its pods, and the canary replicas a Rollout holds."""
    ns = model.namespace
    deployment = await read.get("apps/v1", "Deployment", ns, model.name, cached=True)
    pods: list[dict[str, Any]] = []
    if reads_serving_pods(model, deployment):
        pods = await read.list_("v1", "Pod", ns, read.selector(labels(model, "serving")), cached=True)
    return LLMModelObservation(
        fine_tune_job=fine_tune,
        deployment=deployment,
        serving_pods=pods,
        held_replicas=held_replicas(model.name, indexes.rollouts(ns)),
    )


async def plan(model: LLMModel, now: datetime) -> Plan:
    return plan_llmmodel(model, await observe(model), SETTINGS, now)


RECONCILER = Reconciler(LLMModel, plan)
watch(RECONCILER, "llmmodels", SETTINGS.resync_seconds)


@on_event("finetunejobs")
async def fine_tune_changed(namespace: str, name: str, **_: Any) -> None:
    """A model built from a FineTuneJob's output waits for it: look again when the job changes."""
    for model in await read.list_(API_VERSION, "LLMModel", namespace, ""):
        if model.get("spec", {}).get("source", {}).get("fineTuneJob", {}).get("name") == name:
            await RECONCILER.reconcile(namespace, model["metadata"]["name"])


@on_event("rollouts")
async def rollout_changed(namespace: str, body: Mapping[str, Any], **_: Any) -> None:
    """A replicaRatio rollout scales its candidate through status.canaryReplicas."""
    candidate = body.get("spec", {}).get("candidate", {}).get("name")
    if candidate:
        await RECONCILER.reconcile(namespace, candidate)


@on_event("evalsuites")
async def eval_suite_changed(namespace: str, name: str, **_: Any) -> None:
    """A quality gate decides from its EvalSuite's runs: look again when the suite changes."""
    for model in await read.list_(API_VERSION, "LLMModel", namespace, ""):
        gate = ((model.get("spec") or {}).get("build") or {}).get("qualityGate") or {}
        if gate.get("evalSuite") == name:
            await RECONCILER.reconcile(namespace, model["metadata"]["name"])
