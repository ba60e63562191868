"""Events start reconciles without waiting for them; a burst of a child's events costs one reconcile."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

import pytest

from llmops.api.llmmodel import LLMModel
from llmops.handlers import reconciler as module
from llmops.handlers.reconciler import Reconciler
from llmops.plan.common import Plan

WINDOW = 0.05


@pytest.fixture
def reconciles(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """When each reconcile started (loop time); each takes 0.1 s."""
    started: list[float] = []

    async def once(self: Reconciler[Any], namespace: str, name: str) -> Plan | None:
        started.append(asyncio.get_running_loop().time())
        await asyncio.sleep(0.1)
        return Plan()

    monkeypatch.setattr(Reconciler, "_reconcile_once", once)
    monkeypatch.setattr(module, "CHILD_EVENTS_WINDOW", WINDOW)
    return started


async def plan(model: LLMModel, now: datetime) -> Plan:
    return Plan()


async def settle(reconciler: Reconciler[LLMModel], seconds: float) -> None:
    await asyncio.sleep(seconds)
    while reconciler._running:
        await asyncio.gather(*reconciler._running)
    for pending in list(reconciler._scheduled.values()):
        pending.cancel()


def test_a_burst_of_child_events_costs_one_reconcile(reconciles: list[float]) -> None:
    async def burst() -> None:
        reconciler = Reconciler(LLMModel, plan)
        for _ in range(10):  # a pod scheduled, started, ended; its Job noting each
            reconciler.child_changed("ns", "m")
            await asyncio.sleep(WINDOW / 20)
        await settle(reconciler, WINDOW + 0.2)

    asyncio.run(burst())
    assert len(reconciles) == 1


def test_a_child_event_during_a_reconcile_is_not_lost_to_the_next_resync(reconciles: list[float]) -> None:
    async def during() -> None:
        reconciler = Reconciler(LLMModel, plan, resync_seconds=60)
        running = asyncio.create_task(reconciler.reconcile("ns", "m"))
        await asyncio.sleep(0.02)
        reconciler.child_changed("ns", "m")  # the running reconcile may have read the child before
        await running  # ends by setting the 60 s resync
        await settle(reconciler, 0.5)

    asyncio.run(during())
    assert len(reconciles) == 2


def test_a_timer_due_sooner_is_kept(reconciles: list[float]) -> None:
    async def sooner() -> None:
        reconciler = Reconciler(LLMModel, plan)
        start = asyncio.get_running_loop().time()
        reconciler.schedule("ns", "m", 0.05)
        reconciler.schedule("ns", "m", 60)
        await settle(reconciler, 0.3)
        assert reconciles and reconciles[0] - start < 0.2

    asyncio.run(sooner())


def test_an_event_handler_returns_before_the_reconcile_runs(reconciles: list[float]) -> None:
    async def handler() -> None:
        reconciler = Reconciler(LLMModel, plan)
        reconciler.resource_changed("MODIFIED", "ns", "m", {"metadata": {"resourceVersion": "5"}})
        assert reconciles == []
        await settle(reconciler, 0.2)
        assert len(reconciles) == 1

    asyncio.run(handler())
