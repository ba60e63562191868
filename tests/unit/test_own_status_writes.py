"""An event that shows only the reconciler's own status write starts no reconcile: it would change nothing."""

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


@pytest.fixture
def cluster(monkeypatch: pytest.MonkeyPatch) -> FakeCluster:
    fake = FakeCluster()
    monkeypatch.setattr(module.read, "get", fake.get)
    monkeypatch.setattr(status, "_patch", fake.patch_status)
    monkeypatch.setattr(status, "_written", {})
    return fake


async def plan(resource: LLMModel, now: datetime) -> Plan:
    return Plan(status={"phase": "Pending", "observedGeneration": resource.generation})


def event(reconciler: Reconciler[LLMModel], type_: str | None, version: str) -> None:
    async def deliver() -> None:
        await reconciler.resource_changed(type_, NS, NAME, {"metadata": {"resourceVersion": version}})
        await asyncio.sleep(0.01)  # the reconcile it started, if any, begins
        while reconciler._running:
            await asyncio.gather(*reconciler._running)
        for pending in list(reconciler._scheduled.values()):
            pending.cancel()

    asyncio.run(deliver())


def written(cluster: FakeCluster) -> Reconciler[LLMModel]:
    reconciler: Reconciler[LLMModel] = Reconciler(LLMModel, plan)
    event(reconciler, "ADDED", "1")
    assert cluster.body["status"]["phase"] == "Pending"
    return reconciler


def test_the_event_of_our_own_status_write_is_not_reconciled(cluster: FakeCluster) -> None:
    reconciler = written(cluster)
    reads = cluster.reads
    event(reconciler, "MODIFIED", cluster.body["metadata"]["resourceVersion"])
    assert cluster.reads == reads


def test_a_change_after_our_write_is_reconciled(cluster: FakeCluster) -> None:
    reconciler = written(cluster)
    reads = cluster.reads
    event(reconciler, "MODIFIED", str(cluster.version + 1))  # someone wrote after us
    assert cluster.reads > reads


def test_kopfs_listing_is_always_reconciled(cluster: FakeCluster) -> None:
    reconciler = written(cluster)
    reads = cluster.reads
    event(reconciler, None, cluster.body["metadata"]["resourceVersion"])
    assert cluster.reads > reads


def test_a_deletion_is_not_reconciled(cluster: FakeCluster) -> None:
    reconciler = written(cluster)
    reads = cluster.reads
    event(reconciler, "DELETED", "99")
    assert cluster.reads == reads


def test_a_forgotten_resource_keeps_no_record_of_its_writes(cluster: FakeCluster) -> None:
    reconciler = written(cluster)
    reconciler.forget((NS, NAME))
    assert status._written == {}
