"""An LLMModel reconcile reads what can change its plan: not a finished build, nor serving pods it needs not see."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from llmops.api.llmmodel import LLMModel
from llmops.handlers import llmmodel
from llmops.kube import read
from llmops.kube.resources import RESOURCES
from llmops.plan.llmmodel import LLMModelObservation, build_hash, build_job_name, plan_llmmodel

NS = "ns"
NOW = datetime(2026, 1, 1, tzinfo=UTC)
SOURCE = "s3://bucket/m"


def model(quantization: str = "None", built_as: str | None = None) -> LLMModel:
    """A model; built_as: the quantization its artifact was built with (None: not built yet)."""
    body: dict[str, Any] = {
        "apiVersion": "llmops.dev/v1alpha1",
        "kind": "LLMModel",
        "metadata": {"name": "m", "namespace": NS, "uid": "u", "generation": 2},
        "spec": {"source": {"uri": SOURCE}, "build": {"quantization": quantization}, "serving": {"replicas": 1}},
    }
    if built_as is not None:
        earlier = LLMModel.model_validate({**body, "spec": {**body["spec"], "build": {"quantization": built_as}}})
        hash_ = build_hash(earlier, SOURCE, llmmodel.SETTINGS)
        body["status"] = {
            "artifact": {
                "uri": f"/repository/{NS}/m/{hash_}",
                "digest": "sha256:abc",
                "sizeBytes": 1,
                "quantization": built_as,
                "buildHash": hash_,
            }
        }
    return LLMModel.model_validate(body)


SETTLED = {"observedGeneration": 1, "replicas": 1, "updatedReplicas": 1, "readyReplicas": 1, "availableReplicas": 1}


class Reads:
    def __init__(self) -> None:
        self.requests: list[tuple[str, str, str]] = []
        self.deployment_status: dict[str, Any] | None = None
        """The serving Deployment's status; None: there is no Deployment."""
        self.job_created: datetime | None = None
        """When the build Job was created; None: there is no Job."""

    async def get(
        self, api_version: str, kind: str, namespace: str, name: str, cached: bool = False
    ) -> dict[str, Any] | None:
        self.requests.append(("get", kind, name))
        if kind == "Deployment" and self.deployment_status is not None:
            return {"metadata": {"generation": 1}, "spec": {"replicas": 1}, "status": self.deployment_status}
        if kind == "Job" and self.job_created is not None:
            created = self.job_created.strftime("%Y-%m-%dT%H:%M:%SZ")
            return {"metadata": {"name": name, "namespace": namespace, "creationTimestamp": created}}
        return None

    async def list_(
        self, api_version: str, kind: str, namespace: str, selector: str, fields: str = "", cached: bool = False
    ) -> list[Any]:
        self.requests.append(("list", kind, selector))
        return []

    async def creation_failures(self, namespace: str, job: str) -> list[Any]:
        self.requests.append(("events", "Job", job))
        return []


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> Iterator[Reads]:
    fake = Reads()
    for name in ("get", "list_", "creation_failures"):
        monkeypatch.setattr(read, name, getattr(fake, name))
    monkeypatch.setattr(RESOURCES, "synced", {("Rollout", None), ("EvalSuite", None)})  # listed: none there
    yield fake


def test_a_served_model_reads_its_deployment_only(reads: Reads) -> None:
    reads.deployment_status = SETTLED
    asyncio.run(llmmodel.observe(model(built_as="None")))
    assert [(verb, kind) for verb, kind, _ in reads.requests] == [("get", "Deployment")]


def test_a_served_model_short_of_replicas_reads_its_serving_pods(reads: Reads) -> None:
    reads.deployment_status = {**SETTLED, "readyReplicas": 0, "unavailableReplicas": 1}
    asyncio.run(llmmodel.observe(model(built_as="None")))
    assert [(verb, kind) for verb, kind, _ in reads.requests] == [("get", "Deployment"), ("list", "Pod")]
    assert all("serving" in selector for verb, _, selector in reads.requests if verb == "list")


def test_a_model_whose_build_changed_reads_the_new_build_job(reads: Reads) -> None:
    changed = model(quantization="FP16", built_as="None")
    asyncio.run(llmmodel.observe(changed))
    job = build_job_name(changed, build_hash(changed, SOURCE, llmmodel.SETTINGS))
    assert ("get", "Job", job) in reads.requests


def test_a_model_not_built_yet_reads_its_build_job(reads: Reads) -> None:
    fresh = model()
    asyncio.run(llmmodel.observe(fresh))
    assert ("get", "Job", build_job_name(fresh, build_hash(fresh, SOURCE, llmmodel.SETTINGS))) in reads.requests


def test_a_model_not_built_yet_lists_no_serving_pods(reads: Reads) -> None:
    asyncio.run(llmmodel.observe(model()))
    assert not [r for r in reads.requests if r[0] == "list" and "serving" in r[2]]


def test_a_build_job_without_pods_is_asked_why(reads: Reads) -> None:
    fresh = model()
    reads.job_created = NOW
    asyncio.run(llmmodel.observe(fresh))
    assert ("events", "Job", build_job_name(fresh, build_hash(fresh, SOURCE, llmmodel.SETTINGS))) in reads.requests


def test_the_build_job_does_not_change_a_served_models_plan() -> None:
    served = model(built_as="None")
    finished_job = {"metadata": {"name": "x"}, "status": {"conditions": [{"type": "Complete", "status": "True"}]}}
    deployment = {"metadata": {"generation": 1}, "status": {"observedGeneration": 1, "readyReplicas": 1}}
    without = LLMModelObservation(deployment=deployment)
    with_build = LLMModelObservation(deployment=deployment, build_job=finished_job, build_pods=[{"metadata": {}}])
    assert plan_llmmodel(served, without, llmmodel.SETTINGS, NOW) == plan_llmmodel(
        served, with_build, llmmodel.SETTINGS, NOW
    )
