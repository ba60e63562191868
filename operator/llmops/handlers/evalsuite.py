"""EvalSuite: gather the observation (models, Rollouts, evaluator Jobs), call the pure plan; its wiring."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import pydantic

from ..api.common import API_VERSION
from ..api.evalsuite import EvalSuite
from ..api.rollout import Rollout
from ..kube import read
from ..metrics import EVAL_METRIC_VALUE, EVAL_RUNS
from ..plan.common import Plan
from ..plan.evalsuite import EvalSuiteObservation, finished_runs, gated_suites, plan_evalsuite
from ..plan.workloads import job_condition
from ..settings import Settings
from . import indexes
from .reconciler import Reconciler, on_event, watch

SETTINGS = Settings.from_env()
log = logging.getLogger(__name__)


def parsed_rollouts(objects: list[dict[str, Any]]) -> list[Rollout]:
    rollouts = []
    for obj in objects:
        try:
            rollouts.append(Rollout.model_validate(obj))
        except pydantic.ValidationError:
            log.debug("skipping Rollout %s: its spec does not parse", obj.get("metadata", {}).get("name"))
    return rollouts


async def observe(suite: EvalSuite) -> EvalSuiteObservation:
    ns = suite.namespace
    models = {m["metadata"]["name"]: m for m in await read.list_(API_VERSION, "LLMModel", ns, "")}
    rollouts = parsed_rollouts(indexes.rollouts(ns))
    owned = read.selector({"llmops.dev/evalsuite": suite.name})
    jobs = {j["metadata"]["name"]: j for j in await read.list_("batch/v1", "Job", ns, owned)}
    pods = await read.list_("v1", "Pod", ns, owned)
    with_pods = {p.get("metadata", {}).get("labels", {}).get("job-name") for p in pods}
    job_events = {}
    for name, job in jobs.items():
        unfinished = not (job_condition(job, "Complete") or job_condition(job, "Failed"))
        if unfinished and name not in with_pods:
            job_events[name] = await read.creation_failures(ns, name)
    return EvalSuiteObservation(models=models, rollouts=rollouts, jobs=jobs, pods=pods, job_events=job_events)


def record(suite: EvalSuite, plan: Plan) -> None:
    """Count the runs this reconcile ended and keep each metric's last value."""
    after = EvalSuite.model_validate({**suite.wire(), "status": plan.status}).status.runs
    for run in finished_runs(suite.status.runs, after):
        EVAL_RUNS.labels(suite.namespace, suite.name, run.phase).inc()
        for metric in run.metrics:
            if metric.value is not None:
                EVAL_METRIC_VALUE.labels(suite.namespace, suite.name, run.model, metric.name).set(metric.value)


async def plan(suite: EvalSuite, now: datetime) -> Plan:
    result = plan_evalsuite(suite, await observe(suite), SETTINGS, now)
    record(suite, result)
    return result


RECONCILER = Reconciler(EvalSuite, plan)
watch(RECONCILER, "evalsuites", SETTINGS.resync_seconds, index=indexes.EVAL_SUITES)


@on_event("llmmodels")
async def model_changed(namespace: str, name: str, body: Mapping[str, Any], **_: Any) -> None:
    """A target, baseline, gated candidate or quality gate that gets ready or a new digest is judged at once."""
    rollouts = parsed_rollouts(indexes.rollouts(namespace))
    affected = {suite for r in rollouts if r.spec.candidate.name == name for suite in gated_suites(r)}
    quality_gate = (body.get("status") or {}).get("qualityGate") or {}
    if quality_gate.get("evalSuite"):
        affected.add(quality_gate["evalSuite"])
    for suite in indexes.eval_suites(namespace):
        spec = suite.get("spec", {})
        if name in ((spec.get("target") or {}).get("model"), (spec.get("baseline") or {}).get("model")):
            affected.add(suite["metadata"]["name"])
    for suite_name in sorted(affected):
        await RECONCILER.reconcile(namespace, suite_name)


@on_event("rollouts")
async def rollout_changed(namespace: str, body: Mapping[str, Any], **_: Any) -> None:
    """A Rollout reaching an evalGate step starts the gated suite's run at once."""
    for rollout in parsed_rollouts([dict(body)]):
        for suite in sorted(gated_suites(rollout)):
            await RECONCILER.reconcile(namespace, suite)
