"""Our kinds' events come from our own streams, not kopf's: the reconciler hears them in order,
first and at once, the kind's other listeners after it; a listing and a resume look at every model."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import kopf
import pytest

from llmops.api.llmmodel import LLMModel
from llmops.handlers import reconciler as module
from llmops.handlers.reconciler import Reconciler, streamed_event
from llmops.kube import children, status
from llmops.kube import client as kube_client
from llmops.kube.children import Copy, Kept, Stream
from llmops.kube.client import Priority
from llmops.kube.resources import Resources
from llmops.plan.common import Plan

NS = "ns"


def model(name: str, version: int, generation: int = 1, observed: int | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "apiVersion": "llmops.dev/v1alpha1",
        "kind": "LLMModel",
        "metadata": {"name": name, "namespace": NS, "generation": generation, "resourceVersion": str(version)},
        "spec": {"source": {"uri": "hf://org/m"}},
    }
    if observed is not None:
        body["status"] = {"observedGeneration": observed}
    return body


async def plan(model: LLMModel, now: datetime) -> Plan:
    return Plan()


def cancel_timers(reconciler: Reconciler[Any]) -> None:
    for pending in reconciler._scheduled.values():
        pending.cancel()


def test_the_reconciler_keeps_the_latest_event_while_the_other_listeners_wait(registry: kopf.OperatorRegistry) -> None:
    heard: list[tuple[str, str, str]] = []
    go_on = asyncio.Event()

    @module.on_event("llmmodels")
    async def slow(type: str, name: str, body: dict[str, Any], **_: Any) -> None:
        await go_on.wait()  # e.g. an EvalSuite's handler reconciling the suites it gates
        heard.append((type, name, body["metadata"]["resourceVersion"]))

    async def scenario() -> tuple[Copy, bool]:
        reconciler = Reconciler(LLMModel, plan)
        streamed_event(reconciler, "llmmodels", "ADDED", model("m", 1))
        streamed_event(reconciler, "llmmodels", "MODIFIED", model("m", 2))
        kept = reconciler._seen[(NS, "m")]
        scheduled = (NS, "m") in reconciler._scheduled
        cancel_timers(reconciler)
        go_on.set()
        await asyncio.gather(*module._TELLING)
        return kept, scheduled

    kept, scheduled = asyncio.run(scenario())
    assert kept.resource_version == "2" and scheduled
    assert heard == [("ADDED", "m", "1"), ("MODIFIED", "m", "2")]


def test_the_echo_of_our_own_status_write_still_reaches_the_other_listeners(
    registry: kopf.OperatorRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An EvalSuite or a Rollout waits for a model's status (Ready, a digest): only our writes set it."""
    heard: list[str] = []

    @module.on_event("llmmodels")
    async def listener(name: str, **_: Any) -> None:
        heard.append(name)

    monkeypatch.setitem(status._written, ("llmmodels", NS, "m"), "7")

    async def scenario() -> bool:
        reconciler = Reconciler(LLMModel, plan)
        streamed_event(reconciler, "llmmodels", "MODIFIED", model("m", 7))
        await asyncio.gather(*module._TELLING)
        return (NS, "m") in reconciler._scheduled

    assert asyncio.run(scenario()) is False
    assert heard == ["m"]


def test_a_listing_reconciles_each_model_from_its_copy_changes_first() -> None:
    async def scenario() -> Reconciler[LLMModel]:
        reconciler = Reconciler(LLMModel, plan)
        reconciler.relisted(
            {
                (NS, "unchanged"): Copy.of(model("unchanged", 3, generation=2, observed=2)),
                (NS, "edited"): Copy.of(model("edited", 4, generation=3, observed=2)),
            }
        )
        cancel_timers(reconciler)
        return reconciler

    reconciler = asyncio.run(scenario())
    assert reconciler._priority == {(NS, "unchanged"): Priority.FOLLOW_UP, (NS, "edited"): Priority.CHANGE}
    assert reconciler._seen[(NS, "edited")].body()["metadata"]["resourceVersion"] == "4"


def test_a_resume_makes_every_waiting_timer_due_now() -> None:
    async def scenario() -> list[float]:
        reconciler = Reconciler(LLMModel, plan, resync_seconds=60)
        reconciler.schedule_resync(NS, "a")
        reconciler.schedule(NS, "b", 30)
        loop = asyncio.get_running_loop()
        before = loop.time()
        reconciler.resumed()
        dues = [handle.when() - before for handle in reconciler._scheduled.values()]
        cancel_timers(reconciler)
        return dues

    dues = asyncio.run(scenario())
    assert len(dues) == 2 and all(d < 1 for d in dues)


def test_our_kinds_are_streamed_whole_in_the_watched_namespaces_only() -> None:
    changed: list[str] = []
    resources = Resources()
    resources.handle(
        Kept("llmops.dev/v1alpha1", "LLMModel"), lambda scope, listed: None, lambda t, b: changed.append(t)
    )
    resources.accepts = lambda namespace: namespace == NS
    assert Stream(resources, resources.handlers["LLMModel"].kept, None).selectors == {}
    resources.changed("LLMModel", "ADDED", model("m", 1))
    resources.changed("LLMModel", "ADDED", {**model("m", 1), "metadata": {"name": "m", "namespace": "other"}})
    assert changed == ["ADDED"]


def test_reconciles_wait_until_every_kind_is_listed_in_every_scope() -> None:
    """The indexes of Rollouts and EvalSuites must know every one before a reconcile reads them."""

    async def scenario() -> list[bool]:
        resources = Resources()
        for kind in ("LLMModel", "Rollout"):
            resources.handle(Kept("llmops.dev/v1alpha1", kind), lambda scope, listed: None, lambda t, b: None)
        resources.expect(asyncio.get_running_loop(), ["a", "b"], lambda namespace: True)
        seen = []  # no streams started: their lists are delivered by hand
        for kind, scope in (("LLMModel", "a"), ("Rollout", "a"), ("LLMModel", "b"), ("Rollout", "b")):
            seen.append(resources.first_lists.is_set())
            resources.relisted(kind, scope, {})
        seen.append(resources.first_lists.is_set())
        await resources.listed(0.1)
        return [*seen, resources.knows("Rollout", "a"), resources.knows("Rollout", "c")]

    assert asyncio.run(scenario()) == [False, False, False, False, True, True, False]


class CutWatch:
    """A watch's answer: its events, then the connection is cut."""

    def __init__(self, events: list[dict[str, Any]]) -> None:
        self.events = events

    def stream(self, **_: Any) -> Iterator[bytes]:
        for event in self.events:
            yield json.dumps(event).encode() + b"\n"
        raise ConnectionError("Response ended prematurely")

    def close(self) -> None:
        pass

    def release_conn(self) -> None:
        pass


def test_a_watch_cut_short_resumes_after_the_last_event_it_delivered(monkeypatch: pytest.MonkeyPatch) -> None:
    """Begun again from where the cut watch began, it would deliver again a deleted model's
    creation, and the reconciler, which keeps no copies to compare, would act on its body."""
    asked: list[str] = []
    watches = [
        CutWatch([{"type": "ADDED", "object": model("m", 5)}, {"type": "DELETED", "object": model("m", 6)}]),
        CutWatch([{"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "9"}}}]),
    ]

    class Client:
        def request(self, *_: Any, resource_version: str, **__: Any) -> CutWatch:
            asked.append(resource_version)
            if not watches:
                stream.stopping.set()
                raise ConnectionError("stopped")
            return watches.pop(0)

    delivered: list[str] = []
    resources = Resources()
    resources.handle(Kept("llmops.dev/v1alpha1", "LLMModel"), lambda listed: None, lambda t, b: delivered.append(t))
    monkeypatch.setattr(children, "_watch_client", Client)
    monkeypatch.setattr(Stream, "_path", lambda self: "/apis/llmops.dev/v1alpha1/llmmodels")
    monkeypatch.setattr(children.random, "uniform", lambda low, high: 0.0)  # no pause between tries
    stream = Stream(resources, resources.handlers["LLMModel"].kept, None)
    stream.version = "4"
    monkeypatch.setattr(resources, "deliver", lambda work: work())
    stream.run()
    assert asked == ["4", "6", "9"]
    assert delivered == ["ADDED", "DELETED"]


def test_a_stream_asks_nothing_until_a_retry_after_another_request_was_told_has_passed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    backoff = kube_client.ServerBackoff()
    backoff.hold(0.3)
    monkeypatch.setattr(children, "SERVER_BACKOFF", backoff)
    asked_at: list[float] = []
    resources = Resources()
    resources.handle(Kept("llmops.dev/v1alpha1", "LLMModel"), lambda listed: None, lambda t, b: None)
    stream = Stream(resources, resources.handlers["LLMModel"].kept, None)

    def listed() -> str:
        asked_at.append(time.monotonic())
        stream.stopping.set()
        return "1"

    monkeypatch.setattr(stream, "_list", listed)
    monkeypatch.setattr(stream, "_watch", lambda: None)
    began = time.monotonic()
    stream.run()
    assert asked_at and asked_at[0] - began >= 0.29
