"""One reconcile reads each object once: the apply after the plan compares with what the plan saw."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import datetime
from typing import Any

import pytest

from llmops.api.llmmodel import LLMModel
from llmops.handlers.reconciler import Reconciler
from llmops.kube import read, status
from llmops.plan.common import Plan

NS = "ns"
MODEL = {
    "apiVersion": "llmops.dev/v1alpha1",
    "kind": "LLMModel",
    "metadata": {"name": "m", "namespace": NS, "generation": 1, "uid": "u", "resourceVersion": "1"},
    "spec": {"source": {"uri": "hf://org/m"}},
    "status": {"phase": "Ready"},
}
SERVICE = {
    "apiVersion": "v1",
    "kind": "Service",
    "metadata": {"name": "m", "namespace": NS},
    "spec": {"ports": [{"name": "http", "port": 8000}]},
}


@pytest.fixture
def requests(monkeypatch: pytest.MonkeyPatch) -> Counter[tuple[str, str]]:
    made: Counter[tuple[str, str]] = Counter()
    objects = {"LLMModel": MODEL, "Service": SERVICE}

    def get(api_version: str, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        made[(kind, name)] += 1
        return objects.get(kind)

    monkeypatch.setattr(read, "_get", get)
    return made


def test_an_object_is_read_once_within_one_look(requests: Counter[tuple[str, str]]) -> None:
    async def twice() -> None:
        with read.one_look():
            await read.get("v1", "Service", NS, "m")
            await read.get("v1", "Service", NS, "m")
            await read.get("v1", "ConfigMap", NS, "missing")
            assert await read.get("v1", "ConfigMap", NS, "missing") is None

    asyncio.run(twice())
    assert requests == {("Service", "m"): 1, ("ConfigMap", "missing"): 1}


def test_outside_a_look_every_get_asks_the_apiserver(requests: Counter[tuple[str, str]]) -> None:
    async def twice() -> None:
        await read.get("v1", "Service", NS, "m")
        await read.get("v1", "Service", NS, "m")

    asyncio.run(twice())
    assert requests[("Service", "m")] == 2


def test_a_reconcile_applies_a_child_it_observed_without_reading_it_again(
    requests: Counter[tuple[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    async def plan(resource: LLMModel, now: datetime) -> Plan:
        observed = await read.get("v1", "Service", NS, "m")  # what an observe step does
        assert observed is not None
        return Plan(children=[SERVICE], status={"phase": "Ready"})

    async def no_status_write(*_: Any) -> bool:
        return False

    monkeypatch.setattr(status, "write_status", no_status_write)
    reconciler: Reconciler[LLMModel] = Reconciler(LLMModel, plan)

    async def once() -> None:
        await reconciler.reconcile(NS, "m")
        for pending in list(reconciler._scheduled.values()):
            pending.cancel()

    asyncio.run(once())
    assert requests == {("LLMModel", "m"): 1, ("Service", "m"): 1}


def test_each_reconcile_looks_afresh(requests: Counter[tuple[str, str]], monkeypatch: pytest.MonkeyPatch) -> None:
    async def plan(resource: LLMModel, now: datetime) -> Plan:
        return Plan(status={"phase": "Ready"})

    async def no_status_write(*_: Any) -> bool:
        return False

    monkeypatch.setattr(status, "write_status", no_status_write)
    reconciler: Reconciler[LLMModel] = Reconciler(LLMModel, plan)

    async def twice() -> None:
        await reconciler.reconcile(NS, "m")
        await reconciler.reconcile(NS, "m")
        for pending in list(reconciler._scheduled.values()):
            pending.cancel()

    asyncio.run(twice())
    assert requests[("LLMModel", "m")] == 2
