"""Rollouts and EvalSuites come from indexes kept from their streams: no LLMModel reconcile or event
lists a namespace for them, and a lookup before the stream has listed fails loudly."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

from llmops.api.llmmodel import LLMModel
from llmops.handlers import evalsuite, indexes, llmmodel, rollout
from llmops.handlers.indexes import Index
from llmops.kube import read
from llmops.kube.children import Copy
from llmops.kube.resources import RESOURCES

NS = "ns"


def rollout_body(
    name: str, candidate: str, canary_replicas: int | None = None, gate: str | None = None, namespace: str = NS
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
        "metadata": {"name": name, "namespace": namespace, "uid": f"uid-{name}", "generation": 1},
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
def listed(monkeypatch: pytest.MonkeyPatch) -> None:
    """Both kinds listed cluster-wide, with nothing in them yet."""
    monkeypatch.setattr(RESOURCES, "synced", {("Rollout", None), ("EvalSuite", None)})
    monkeypatch.setattr(indexes, "ROLLOUTS", Index("Rollout"))
    monkeypatch.setattr(indexes, "EVAL_SUITES", Index("EvalSuite"))


def copies(*bodies: dict[str, Any]) -> dict[tuple[str, str], Copy]:
    return {(b["metadata"]["namespace"], b["metadata"]["name"]): Copy.of(b) for b in bodies}


def test_a_lookup_before_the_stream_listed_the_namespace_fails_loudly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(RESOURCES, "synced", {("Rollout", "other")})
    with pytest.raises(RuntimeError, match="Rollouts of ns are not listed yet"):
        indexes.rollouts(NS)
    assert indexes.rollouts("other") == []


@pytest.mark.usefixtures("listed")
def test_a_namespace_without_rollouts_has_none() -> None:
    assert indexes.rollouts("elsewhere") == []
    assert indexes.eval_suites("elsewhere") == []


@pytest.mark.usefixtures("listed")
def test_events_and_lists_keep_the_index_as_the_stream_shows_the_kind() -> None:
    index = indexes.ROLLOUTS
    index.changed("ADDED", rollout_body("a", "m"))
    index.changed("ADDED", rollout_body("b", "m", canary_replicas=1))
    index.changed("MODIFIED", rollout_body("b", "m", canary_replicas=2))
    index.changed("ADDED", rollout_body("c", "m", namespace="other"))
    assert sorted((r["metadata"]["name"], r["status"].get("canaryReplicas")) for r in indexes.rollouts(NS)) == [
        ("a", None),
        ("b", 2),
    ]
    index.changed("DELETED", rollout_body("a", "m"))
    assert [r["metadata"]["name"] for r in indexes.rollouts(NS)] == ["b"]

    # A namespace's re-list replaces that namespace only; the cluster's replaces every one.
    index.relisted(NS, copies(rollout_body("d", "m")))
    assert [r["metadata"]["name"] for r in indexes.rollouts(NS)] == ["d"]
    assert [r["metadata"]["name"] for r in indexes.rollouts("other")] == ["c"]
    index.relisted(None, copies(rollout_body("e", "m", namespace="other")))
    assert indexes.rollouts(NS) == []
    assert [r["metadata"]["name"] for r in indexes.rollouts("other")] == ["e"]


@pytest.mark.usefixtures("listed")
def test_llmmodel_takes_its_canary_replicas_from_the_index(reads: Reads) -> None:
    indexes.ROLLOUTS.changed("ADDED", rollout_body("r", "m", canary_replicas=3))
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


@pytest.mark.usefixtures("listed")
def test_an_llmmodel_event_finds_its_suites_without_listing(reads: Reads, monkeypatch: pytest.MonkeyPatch) -> None:
    indexes.ROLLOUTS.changed("ADDED", rollout_body("r", "m", gate="gate-suite"))
    for suite in (suite_body("target-suite", "m"), suite_body("other", "x")):
        indexes.EVAL_SUITES.changed("ADDED", suite)
    reconciled: list[str] = []

    async def reconcile(namespace: str, name: str) -> None:
        reconciled.append(name)

    monkeypatch.setattr(evalsuite.RECONCILER, "reconcile", reconcile)
    asyncio.run(evalsuite.model_changed(namespace=NS, name="m", body={}, type="MODIFIED"))
    assert sorted(reconciled) == ["gate-suite", "target-suite"]
    assert reads.requests == []


@pytest.mark.usefixtures("listed")
def test_an_llmmodel_event_finds_its_rollouts_without_listing(reads: Reads, monkeypatch: pytest.MonkeyPatch) -> None:
    indexes.ROLLOUTS.changed("ADDED", rollout_body("uses-it", "m"))
    indexes.ROLLOUTS.changed("ADDED", rollout_body("other", "x"))
    reconciled: list[str] = []

    async def reconcile(namespace: str, name: str) -> None:
        reconciled.append(name)

    monkeypatch.setattr(rollout.RECONCILER, "reconcile", reconcile)
    asyncio.run(rollout.reconcile_rollouts_of(NS, model="m"))
    assert reconciled == ["uses-it"]
    assert reads.requests == []
