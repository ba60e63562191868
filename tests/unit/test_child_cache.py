"""Children read from the watch streams' copies: what the cache answers, and what it leaves to the apiserver."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Hashable
from typing import Any

import pytest

from llmops.handlers.indexes import CachedChildren, Child, child_keys
from llmops.kube import read

NS = "ns"


def pod(name: str, labels: dict[str, str], terminated: str | None = None) -> dict[str, Any]:
    status: dict[str, Any] = {"phase": "Running"}
    if terminated is not None:
        finished = {"name": "builder", "state": {"terminated": {"message": terminated}}}
        status = {"phase": "Succeeded", "containerStatuses": [finished]}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": NS, "labels": labels, "managedFields": [{"manager": "kubelet"}]},
        "status": status,
    }


def index_of(*bodies: dict[str, Any]) -> dict[Hashable, list[Child]]:
    """What kopf's index holds for these objects: key -> the values of every object with that key."""
    index: dict[Hashable, list[Child]] = defaultdict(list)
    for body in bodies:
        for key, child in child_keys(body["metadata"]["namespace"], body).items():
            index[key].append(child)
    return index


BUILD = {"llmops.dev/llmmodel": "m", "job-name": "m-build-1", "controller-uid": "u1"}
SERVING = {"llmops.dev/llmmodel": "m", "app.kubernetes.io/component": "serving"}
OTHER = {"llmops.dev/llmmodel": "other", "app.kubernetes.io/component": "serving"}


@pytest.fixture
def apiserver(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, ...]]:
    """The reads that reach the apiserver; the pod cache holds a build pod and two serving pods."""
    made: list[tuple[str, ...]] = []

    def get(api_version: str, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        made.append(("get", kind, name))
        return None

    def list_(api_version: str, kind: str, namespace: str, selector: str, fields: str) -> list[dict[str, Any]]:
        made.append(("list", kind, selector))
        return [pod("from-the-apiserver", BUILD, terminated='{"digest": "sha256:1"}')]

    monkeypatch.setattr(read, "_get", get)
    monkeypatch.setattr(read, "_list", list_)
    monkeypatch.setattr(read, "_caches", {})
    cache = CachedChildren(index_of(pod("b", BUILD), pod("s", SERVING), pod("o", OTHER)))
    read.use_cache("v1", "Pod", cache)
    return made


def test_a_cached_child_is_stored_without_managed_fields_and_read_as_a_copy() -> None:
    cache = CachedChildren(index_of(pod("s", SERVING)))
    first = cache.get(NS, "s")
    assert first is not None and "managedFields" not in first["metadata"]
    first["metadata"]["labels"]["changed"] = "by a reader"
    assert cache.get(NS, "s") == {**pod("s", SERVING), "metadata": {"name": "s", "namespace": NS, "labels": SERVING}}
    assert cache.get(NS, "missing") is None
    assert cache.get("elsewhere", "s") is None


def test_cached_reads_never_reach_the_apiserver(apiserver: list[tuple[str, ...]]) -> None:
    async def reads() -> tuple[Any, ...]:
        return (
            await read.get("v1", "Pod", NS, "s", cached=True),
            await read.get("v1", "Pod", NS, "gone", cached=True),
            await read.list_("v1", "Pod", NS, read.selector(SERVING), cached=True),
            await read.list_("v1", "Pod", NS, "job-name=m-build-1", cached=True),
        )

    found, gone, serving, build = asyncio.run(reads())
    assert found["metadata"]["name"] == "s" and gone is None
    assert [p["metadata"]["name"] for p in serving] == ["s"]  # not the other model's serving pod
    assert [p["metadata"]["name"] for p in build] == ["b"]
    assert apiserver == []


def test_what_the_cache_cannot_answer_goes_to_the_apiserver(apiserver: list[tuple[str, ...]]) -> None:
    async def reads() -> None:
        await read.get("v1", "Pod", NS, "s")  # not asked for the cache
        await read.get("v1", "Service", NS, "s", cached=True)  # a kind it does not hold
        await read.list_("v1", "Pod", NS, "llmops.dev/llmmodel in (m,other)", cached=True)  # a set
        await read.list_("v1", "Pod", NS, "app.kubernetes.io/component=serving", cached=True)  # no keyed label

    asyncio.run(reads())
    assert [r[:2] for r in apiserver] == [("get", "Pod"), ("get", "Service"), ("list", "Pod"), ("list", "Pod")]


def test_an_ended_jobs_pods_come_from_the_apiserver(apiserver: list[tuple[str, ...]]) -> None:
    """The cache may show the Job complete before the pod with its result: that pod is read afresh."""
    running = {"metadata": {"name": "m-build-1", "namespace": NS}, "status": {"active": 1}}
    complete = {**running, "status": {"conditions": [{"type": "Complete", "status": "True"}]}}
    assert [p["metadata"]["name"] for p in asyncio.run(read.job_pods(running))] == ["b"]
    assert apiserver == []
    assert [p["metadata"]["name"] for p in asyncio.run(read.job_pods(complete))] == ["from-the-apiserver"]
    assert apiserver == [("list", "Pod", "job-name=m-build-1")]


@pytest.mark.parametrize(
    ("selector", "labels"),
    [
        ("a=b", {"a": "b"}),
        ("a=b,llmops.dev/x=y", {"a": "b", "llmops.dev/x": "y"}),
        ("a==b", None),
        ("a!=b", None),
        ("a in (b,c)", None),
        ("!a", None),
        ("a", None),
        ("", None),
    ],
)
def test_only_selectors_of_equalities_are_answered_from_the_cache(selector: str, labels: dict[str, str] | None) -> None:
    assert read.equality_selector(selector) == labels
