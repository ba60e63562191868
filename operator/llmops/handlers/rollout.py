"""Rollout: gather the observation (models, traffic, eval runs, Prometheus), call the pure plan."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from ..api.common import API_VERSION
from ..api.rollout import Rollout
from ..kube import prometheus, read
from ..metrics import ANALYSIS_QUERIES, ROLLBACKS, ROLLOUT_PHASE, ROLLOUT_WEIGHT
from ..plan.common import Plan
from ..plan.rollout import RolloutObservation, gate_suite, measurement_due, plan_rollout
from ..settings import Settings
from . import indexes, streams
from .reconciler import Reconciler, on_event, watch

SETTINGS = Settings.from_env()
HTTP_ROUTE = "gateway.networking.k8s.io/v1"


async def observe(rollout: Rollout, now: datetime) -> RolloutObservation:
    ns, spec = rollout.namespace, rollout.spec
    route = None
    if spec.traffic_routing.http_route is not None:
        route = await read.get(HTTP_ROUTE, "HTTPRoute", ns, spec.traffic_routing.http_route.name)
    pods: list[dict[str, Any]] = []
    if spec.traffic_routing.http_route is None:
        models = ",".join(sorted((spec.stable.name, spec.candidate.name)))
        selector = f"llmops.dev/llmmodel in ({models}),app.kubernetes.io/component=serving"
        pods = await read.list_("v1", "Pod", ns, selector)
    suite = gate_suite(rollout)
    measurements = None
    queries = measurement_due(rollout, now)
    if queries is not None:
        measurements = await prometheus.query_all(spec.prometheus or SETTINGS.prometheus_url, queries)
        for measurement in measurements.values():
            outcome = "error" if measurement.error else "no_data" if measurement.value is None else "value"
            ANALYSIS_QUERIES.labels(outcome).inc()
    return RolloutObservation(
        stable=await read.get(API_VERSION, "LLMModel", ns, spec.stable.name),
        candidate=await read.get(API_VERSION, "LLMModel", ns, spec.candidate.name),
        candidate_deployment=await read.get("apps/v1", "Deployment", ns, spec.candidate.name),
        route=route,
        serving_pods=pods,
        eval_suite=await read.get(API_VERSION, "EvalSuite", ns, suite) if suite else None,
        measurements=measurements,
    )


async def plan(rollout: Rollout, now: datetime) -> Plan:
    result = plan_rollout(rollout, await observe(rollout, now), now)
    ns, name = rollout.namespace, rollout.name
    ROLLOUT_WEIGHT.labels(ns, name).set(result.status.get("canaryWeight") or 0)
    for phase in ("Pending", "Progressing", "Paused", "Promoted", "RolledBack", "Aborted"):
        ROLLOUT_PHASE.labels(ns, name, phase).set(1 if result.status.get("phase") == phase else 0)
    if any(e.reason == "RolledBack" for e in result.events):
        ROLLBACKS.labels(ns, name).inc()
    return result


RECONCILER = Reconciler(Rollout, plan)
watch(RECONCILER, "rollouts", SETTINGS.resync_seconds, index=indexes.ROLLOUTS)


def rollouts_using(namespace: str, model: str | None = None, suite: str | None = None) -> list[str]:
    """The rollouts that use a model (stable or candidate) or wait on an eval suite."""
    found = []
    for body in indexes.rollouts(namespace):
        spec = body.get("spec", {})
        uses_model = model in (spec.get("stable", {}).get("name"), spec.get("candidate", {}).get("name"))
        steps = spec.get("steps", [])
        uses_suite = suite is not None and any((s.get("evalGate") or {}).get("evalSuite") == suite for s in steps)
        if uses_model or uses_suite:
            found.append(body["metadata"]["name"])
    return found


async def reconcile_rollouts_of(namespace: str, model: str | None = None, suite: str | None = None) -> None:
    """Look again at the rollouts that use a model or wait on an eval suite."""
    for name in rollouts_using(namespace, model, suite):
        await RECONCILER.reconcile(namespace, name)


@on_event("llmmodels")
async def model_changed(namespace: str, name: str, **_: Any) -> None:
    """A new candidate digest restarts a rollout; a stable one being rebuilt holds it."""
    await reconcile_rollouts_of(namespace, model=name)


@on_event("evalsuites")
async def suite_changed(namespace: str, name: str, **_: Any) -> None:
    """An eval gate passes or fails when its run finishes."""
    await reconcile_rollouts_of(namespace, suite=name)


def serving_pod_changed(kind: str, namespace: str, labels: Mapping[str, str]) -> None:
    """replicaRatio endpoints follow serving pods becoming ready or going away."""
    model = labels.get("llmops.dev/llmmodel")
    if kind == "Pod" and model and labels.get("app.kubernetes.io/component") == "serving":
        for rollout in rollouts_using(namespace, model=model):
            RECONCILER.child_changed(namespace, rollout)


streams.listen(serving_pod_changed)
