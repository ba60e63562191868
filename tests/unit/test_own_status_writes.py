"""An event that shows only the reconciler's own status write starts no reconcile: it would change nothing.

A reconcile an event started decides from that event's body, without reading the resource
again, unless a status write of ours came after it.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

import pytest

from llmops.api.llmmodel import LLMModel
from llmops.handlers import reconciler as module
from llmops.handlers.reconciler import Reconciler
from llmops.kube import status
from llmops.plan.common import Plan

NS, NAME = "ns", "m"


class FakeCluster:
    def __init__(self) -> None:
        self.version = 1
        self.body: dict[str, Any] = {
            "apiVersion": "llmops.dev/v1alpha1",
            "kind": "LLMModel",
            "metadata": {"name": NAME, "namespace": NS, "generation": 1, "uid": "u", "resourceVersion": "1"},
            "spec": {"source": {"uri": "hf://org/m"}},
        }
        self.reads = 0

    async def get(self, *_: Any, **__: Any) -> dict[str, Any]:
        self.reads += 1
        return self.body

    def patch_status(self, plural: str, namespace: str, name: str, patch: dict[str, Any]) -> str:
        self.version += 1
        meta = {**self.body["metadata"], "resourceVersion": str(self.version)}
        self.body = {**self.body, "metadata": meta, "status": {**self.body.get("status", {}), **patch}}
        return str(self.version)

    def at(self, version: str) -> dict[str, Any]:
        """The object as an event shows it at that resourceVersion."""
        return {**self.body, "metadata": {**self.body["metadata"], "resourceVersion": version}}


@pytest.fixture
def cluster(monkeypatch: pytest.MonkeyPatch) -> FakeCluster:
    fake = FakeCluster()
    monkeypatch.setattr(module.read, "get", fake.get)
    monkeypatch.setattr(status, "_patch", fake.patch_status)
    monkeypatch.setattr(status, "_written", {})
    return fake


PLANNED: list[dict[str, Any]] = []
"""The status each reconcile planned from."""


async def plan(resource: LLMModel, now: datetime) -> Plan:
    PLANNED.append(resource.status.model_dump(by_alias=True, exclude_none=True))
    return Plan(status={"phase": "Pending", "observedGeneration": resource.generation})


@pytest.fixture(autouse=True)
def planned() -> list[dict[str, Any]]:
    PLANNED.clear()
    return PLANNED


def event(reconciler: Reconciler[LLMModel], cluster: FakeCluster, type_: str | None, version: str) -> None:
    """An event of the stream; type None: the object in a (re-)list of it."""

    async def deliver() -> None:
        if type_ is None:
            reconciler.relisted({(NS, NAME): module.Copy.of(cluster.at(version))})
        else:
            reconciler.resource_changed(type_, NS, NAME, cluster.at(version))
        await asyncio.sleep(0.01)  # the reconcile it started, if any, begins
        while reconciler._running:
            await asyncio.gather(*reconciler._running)
        for pending in list(reconciler._scheduled.values()):
            pending.cancel()

    asyncio.run(deliver())


def written(cluster: FakeCluster) -> Reconciler[LLMModel]:
    reconciler: Reconciler[LLMModel] = Reconciler(LLMModel, plan)
    event(reconciler, cluster, "ADDED", "1")
    assert cluster.body["status"]["phase"] == "Pending"
    return reconciler


def test_the_event_of_our_own_status_write_is_not_reconciled(cluster: FakeCluster, planned: list[Any]) -> None:
    reconciler = written(cluster)
    event(reconciler, cluster, "MODIFIED", cluster.body["metadata"]["resourceVersion"])
    assert len(planned) == 1


def test_a_create_is_planned_from_its_event_without_a_read(cluster: FakeCluster, planned: list[Any]) -> None:
    written(cluster)
    assert (len(planned), cluster.reads) == (1, 0)


def test_a_change_after_our_write_is_reconciled_from_its_event(cluster: FakeCluster, planned: list[Any]) -> None:
    reconciler = written(cluster)
    event(reconciler, cluster, "MODIFIED", str(cluster.version + 1))  # someone wrote after us
    assert len(planned) == 2
    assert cluster.reads == 0
    assert planned[-1]["phase"] == "Pending"


def test_an_event_older_than_our_write_is_read_again(cluster: FakeCluster, planned: list[Any]) -> None:
    reconciler = written(cluster)  # our write made version 2
    event(reconciler, cluster, None, "1")  # a list from before it
    assert len(planned) == 2
    assert cluster.reads == 1


def test_an_event_is_used_once(cluster: FakeCluster, planned: list[Any]) -> None:
    reconciler = written(cluster)

    async def again() -> None:
        reconciler.child_changed(NS, NAME)
        await asyncio.sleep(module.CHILD_EVENTS_WINDOW + 0.1)
        while reconciler._running:
            await asyncio.gather(*reconciler._running)
        for pending in list(reconciler._scheduled.values()):
            pending.cancel()

    asyncio.run(again())
    assert len(planned) == 2
    assert cluster.reads == 1


def test_a_listing_is_always_reconciled(cluster: FakeCluster, planned: list[Any]) -> None:
    reconciler = written(cluster)
    event(reconciler, cluster, None, cluster.body["metadata"]["resourceVersion"])
    assert len(planned) == 2


def test_a_deletion_is_not_reconciled_and_drops_the_event_kept(cluster: FakeCluster, planned: list[Any]) -> None:
    reconciler = written(cluster)
    reconciler._seen[(NS, NAME)] = module.Copy.of(cluster.at("98"))
    event(reconciler, cluster, "DELETED", "99")
    assert len(planned) == 1
    assert reconciler._seen == {}


def test_a_forgotten_resource_keeps_no_record_of_its_writes(cluster: FakeCluster) -> None:
    reconciler = written(cluster)
    reconciler.forget((NS, NAME))
    assert status._written == {}
