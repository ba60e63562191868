"""A child the apiserver refuses as invalid: the resource says so once and is not retried for ever."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from llmops.api.llmmodel import LLMModel
from llmops.handlers import reconciler as module
from llmops.handlers.reconciler import Reconciler
from llmops.kube.apply import ChildRejected, rejection
from llmops.kube.client import is_namespace_terminating
from llmops.plan.common import Event, Plan

CHILD = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "m", "namespace": "ns"}}


def invalid(status: int, message: str) -> ApiException:
    error = ApiException(status=status, reason="Invalid")
    error.body = json.dumps({"kind": "Status", "message": message})
    return error


@pytest.mark.parametrize(("status", "refused"), [(422, True), (400, True), (409, False), (403, False), (500, False)])
def test_only_bad_request_and_invalid_are_rejections(status: int, refused: bool) -> None:
    assert (rejection(invalid(status, "nope")) is not None) is refused


def test_an_apply_the_apiserver_cannot_decode_is_a_rejection_though_answered_500() -> None:
    message = (
        "failed to convert new object (ns/m; batch/v1, Kind=Job) to proper version: unable to convert unstructured"
        " object to batch/v1, Kind=Job: quantities must match the regular expression '^([+-]?[0-9.]+)...'"
    )
    assert rejection(invalid(500, message)) == message


def test_rejection_carries_the_apiservers_message() -> None:
    assert rejection(invalid(422, 'Deployment.apps "m" is invalid: spec.template...')) == (
        'Deployment.apps "m" is invalid: spec.template...'
    )


class FakeCluster:
    def __init__(self) -> None:
        self.body: dict[str, Any] = {
            "apiVersion": "llmops.dev/v1alpha1",
            "kind": "LLMModel",
            "metadata": {"name": "m", "namespace": "ns", "generation": 1, "uid": "u"},
            "spec": {"source": {"uri": "hf://org/m"}},
        }
        self.applies = 0
        self.events: list[Event] = []

    async def get(self, *_: Any, **__: Any) -> dict[str, Any]:
        return self.body

    async def apply_all(self, manifests: list[dict[str, Any]]) -> int:
        self.applies += 1
        raise ChildRejected(manifests[0], "spec.template.spec.nodeSelector: Invalid value: 'a b'")

    async def write_status(self, resource: Any, old: dict[str, Any], new: dict[str, Any]) -> bool:
        self.body = {**self.body, "status": new}
        return True

    async def emit(self, resource: Any, events: list[Event]) -> None:
        self.events += events


def test_a_rejected_child_degrades_the_resource_once_without_retrying(monkeypatch: pytest.MonkeyPatch) -> None:
    cluster = FakeCluster()
    monkeypatch.setattr(module.read, "get", cluster.get)
    monkeypatch.setattr(module, "apply_all", cluster.apply_all)
    monkeypatch.setattr(module.status, "write_status", cluster.write_status)
    monkeypatch.setattr(module.events, "emit", cluster.emit)

    async def plan(model: LLMModel, now: datetime) -> Plan:
        return Plan(children=[CHILD])

    async def scenario() -> Reconciler[LLMModel]:
        reconciler = Reconciler(LLMModel, plan, resync_seconds=1)
        for _ in range(3):  # the status write and later events bring it back
            await reconciler.reconcile("ns", "m")
        return reconciler

    reconciler = asyncio.run(scenario())
    assert cluster.applies == 1
    assert not reconciler._scheduled and not reconciler._failures
    [degraded] = [c for c in cluster.body["status"]["conditions"] if c["type"] == "Degraded"]
    assert (degraded["status"], degraded["reason"]) == ("True", "ChildRejected")
    assert "Deployment m" in degraded["message"] and "nodeSelector" in degraded["message"]
    assert [e.reason for e in cluster.events] == ["ChildRejected"]

    # a new spec is tried again
    cluster.body["metadata"]["generation"] = 2
    asyncio.run(reconciler.reconcile("ns", "m"))
    assert cluster.applies == 2


def terminating(kind: str) -> ApiException:
    error = ApiException(status=403, reason="Forbidden")
    error.body = json.dumps(
        {
            "kind": "Status",
            "reason": "Forbidden",
            "message": f'{kind} "m" is forbidden: unable to create new content in namespace ns because it is being '
            "terminated",
            "details": {"causes": [{"reason": "NamespaceTerminating", "field": "metadata.namespace"}]},
        }
    )
    return error


def test_only_a_namespace_being_deleted_reads_as_terminating() -> None:
    assert is_namespace_terminating(terminating("jobs.batch"))
    assert not is_namespace_terminating(invalid(403, "forbidden: RBAC"))
    assert not is_namespace_terminating(invalid(422, "nope"))


def test_a_resource_whose_namespace_is_being_deleted_is_not_retried(monkeypatch: pytest.MonkeyPatch) -> None:
    cluster = FakeCluster()

    async def refused(manifests: list[dict[str, Any]]) -> int:
        cluster.applies += 1
        raise terminating("jobs.batch")

    monkeypatch.setattr(module.read, "get", cluster.get)
    monkeypatch.setattr(module, "apply_all", refused)

    async def plan(model: LLMModel, now: datetime) -> Plan:
        return Plan(children=[CHILD])

    async def scenario() -> Reconciler[LLMModel]:
        reconciler = Reconciler(LLMModel, plan, resync_seconds=1)
        await reconciler.reconcile("ns", "m")
        return reconciler

    reconciler = asyncio.run(scenario())
    assert cluster.applies == 1
    assert not reconciler._scheduled and not reconciler._failures
    assert "status" not in cluster.body and not cluster.events
