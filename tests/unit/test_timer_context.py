"""A reconcile's timer keeps nothing of the context it was set in (a kopf handler's holds the event's body)."""

from __future__ import annotations

import asyncio
import contextvars
import gc
import weakref
from datetime import datetime
from typing import Any

import pytest

from llmops.api.llmmodel import LLMModel
from llmops.handlers.reconciler import Reconciler
from llmops.plan.common import Plan

EVENT: contextvars.ContextVar[Any] = contextvars.ContextVar("event")


class Body(dict[str, Any]):
    """Stands for the body of a watch event (weakly referenceable)."""


async def plan(model: LLMModel, now: datetime) -> Plan:
    return Plan()


@pytest.fixture
def reconciles(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    seen: list[Any] = []

    async def once(self: Reconciler[Any], namespace: str, name: str) -> Plan | None:
        seen.append(EVENT.get(None))
        return Plan()

    monkeypatch.setattr(Reconciler, "_reconcile_once", once)
    return seen


def test_a_timer_set_in_a_handler_does_not_keep_the_event(reconciles: list[Any]) -> None:
    async def scenario() -> None:
        reconciler = Reconciler(LLMModel, plan, resync_seconds=60)

        async def handler() -> weakref.ref[Body]:
            body = Body(kind="Deployment", metadata={"name": "m"})
            EVENT.set(body)  # as kopf keeps its cause in context variables
            reconciler.child_changed("ns", "m")
            return weakref.ref(body)

        event = await asyncio.create_task(handler())
        await asyncio.sleep(1.2)  # the reconcile ran and set its 60 s resync
        gc.collect()
        assert event() is None, "a pending timer keeps the event's body alive"
        assert ("ns", "m") in reconciler._scheduled
        reconciler._scheduled[("ns", "m")].cancel()

    asyncio.run(scenario())
    assert reconciles == [None]
