"""Rollouts and EvalSuites come from kopf's indexes: no LLMModel reconcile or event lists a namespace for them."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Iterator
from typing import Any

import kopf
import pytest

from llmops.api.llmmodel import LLMModel
from llmops.handlers import evalsuite, indexes, llmmodel, rollout
from llmops.handlers.operator import IndexedKindsMemories
from llmops.kube import read

NS = "ns"


def rollout_body(
    name: str, candidate: str, canary_replicas: int | None = None, gate: str | None = None
) -> dict[str, Any]:
    steps: list[dict[str, Any]] = [{"setWeight": 10}]
    if gate:
        steps.append({"evalGate": {"evalSuite": gate}})
    status: dict[str, Any] = {"phase": "Progressing", "currentStep": len(steps) - 1}
    if canary_replicas is not None:
        status["canaryReplicas"] = canary_replicas
    return {
        "apiVersion": "llmops.dev/v1alpha1",
        "kind": "Rollout",
        "metadata": {"name": name, "namespace": NS, "uid": f"uid-{name}", "generation": 1},
        "spec": {"stable": {"name": "stable"}, "candidate": {"name": candidate}, "steps": steps},
        "status": status,
    }


def suite_body(name: str, target: str) -> dict[str, Any]:
    return {
        "apiVersion": "llmops.dev/v1alpha1",
        "kind": "EvalSuite",
        "metadata": {"name": name, "namespace": NS},
        "spec": {"target": {"model": target}},
    }


class Reads:
    """The kube.read functions, answering 'nothing there' and recording every request."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, ...]] = []

    async def get(self, api_version: str, kind: str, namespace: str, name: str, cached: bool = False) -> None:
        self.requests.append(("get", kind, name))

    async def list_(
        self, api_version: str, kind: str, namespace: str, selector: str, fields: str = "", cached: bool = False
    ) -> list[Any]:
        self.requests.append(("list", kind))
        return []

    async def creation_failures(self, namespace: str, job: str) -> list[Any]:
        self.requests.append(("events", "Job", job))
        return []

    def kinds(self) -> set[str]:
        return {r[1] for r in self.requests}


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> Iterator[Reads]:
    fake = Reads()
    for name in ("get", "list_", "creation_failures"):
        monkeypatch.setattr(read, name, getattr(fake, name))
    yield fake


@pytest.fixture
def indexed(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[dict[str, Any]]]:
    """Index contents by kind; kopf's indexes are namespace -> objects."""
    contents: dict[str, list[dict[str, Any]]] = {"Rollout": [], "EvalSuite": []}
    monkeypatch.setattr(indexes, "_indexes", {})
    indexes.use({NS: contents["Rollout"]}, {NS: contents["EvalSuite"]})
    return contents


def test_an_indexed_rollout_is_a_copy_of_what_the_watch_saw() -> None:
    body = rollout_body("r", "cand", canary_replicas=1)
    indexed = indexes.rollouts_by_namespace(namespace=NS, body=kopf.Body(body))
    body["status"]["canaryReplicas"] = 5
    assert indexed[NS]["status"]["canaryReplicas"] == 1


def test_a_lookup_before_kopf_started_fails_loudly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(indexes, "_indexes", {})
    with pytest.raises(RuntimeError, match="index"):
        indexes.rollouts(NS)


def test_a_namespace_without_rollouts_has_none(indexed: dict[str, list[dict[str, Any]]]) -> None:
    assert indexes.rollouts("elsewhere") == []
    assert indexes.eval_suites("elsewhere") == []


def test_llmmodel_takes_its_canary_replicas_from_the_index(
    indexed: dict[str, list[dict[str, Any]]], reads: Reads
) -> None:
    indexed["Rollout"].append(rollout_body("r", "m", canary_replicas=3))
    model = LLMModel.model_validate(
        {
            "apiVersion": "llmops.dev/v1alpha1",
            "kind": "LLMModel",
            "metadata": {"name": "m", "namespace": NS, "uid": "u", "generation": 1},
            "spec": {"source": {"uri": "s3://bucket/m"}},
        }
    )
    observed = asyncio.run(llmmodel.observe(model))
    assert observed.held_replicas == 3
    assert "Rollout" not in reads.kinds()


def test_an_llmmodel_event_finds_its_suites_without_listing(
    indexed: dict[str, list[dict[str, Any]]], reads: Reads, monkeypatch: pytest.MonkeyPatch
) -> None:
    indexed["Rollout"].append(rollout_body("r", "m", gate="gate-suite"))
    indexed["EvalSuite"] += [suite_body("target-suite", "m"), suite_body("other", "x")]
    reconciled: list[str] = []

    async def reconcile(namespace: str, name: str) -> None:
        reconciled.append(name)

    monkeypatch.setattr(evalsuite.RECONCILER, "reconcile", reconcile)
    asyncio.run(evalsuite.model_changed(namespace=NS, name="m", body=kopf.Body({}), type="MODIFIED"))
    assert sorted(reconciled) == ["gate-suite", "target-suite"]
    assert reads.requests == []


def test_an_llmmodel_event_finds_its_rollouts_without_listing(
    indexed: dict[str, list[dict[str, Any]]], reads: Reads, monkeypatch: pytest.MonkeyPatch
) -> None:
    indexed["Rollout"] += [rollout_body("uses-it", "m"), rollout_body("other", "x")]
    reconciled: list[str] = []

    async def reconcile(namespace: str, name: str) -> None:
        reconciled.append(name)

    monkeypatch.setattr(rollout.RECONCILER, "reconcile", reconcile)
    asyncio.run(rollout.reconcile_rollouts_of(NS, model="m"))
    assert reconciled == ["uses-it"]
    assert reads.requests == []


def test_kopf_keeps_its_memory_of_the_indexed_kinds_objects_only() -> None:
    async def recall() -> None:
        memories = IndexedKindsMemories()
        rollout = {"kind": "Rollout", "metadata": {"uid": "r"}}
        model = {"kind": "LLMModel", "metadata": {"uid": "m"}}
        assert await memories.recall(rollout) is await memories.recall(rollout)
        assert await memories.recall(model) is not await memories.recall(model)
        assert list(memories.iter_all_memories()) == [await memories.recall(rollout)]

    asyncio.run(recall())
    assert "memories" in inspect.signature(kopf.operator).parameters
