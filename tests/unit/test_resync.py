"""Resyncs are spread over the period and never hold back a reconcile that a change asked for."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

import pytest

from llmops.api.llmmodel import LLMModel
from llmops.handlers import reconciler as module
from llmops.handlers.reconciler import Reconciler
from llmops.kube.client import Priority
from llmops.plan.common import Plan

TAKES = 0.1
"""Seconds each reconcile takes."""


@pytest.fixture
def reconciles(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, float]]:
    """(name, loop time) of each reconcile's start."""
    started: list[tuple[str, float]] = []

    async def once(self: Reconciler[Any], namespace: str, name: str) -> Plan | None:
        started.append((name, asyncio.get_running_loop().time()))
        await asyncio.sleep(TAKES)
        return Plan()

    monkeypatch.setattr(Reconciler, "_reconcile_once", once)
    return started


async def plan(model: LLMModel, now: datetime) -> Plan:
    return Plan()


async def settle(reconciler: Reconciler[LLMModel], seconds: float) -> None:
    await asyncio.sleep(seconds)
    while reconciler._running:
        await asyncio.gather(*reconciler._running)
    for pending in list(reconciler._scheduled.values()):
        pending.cancel()


def test_resyncs_are_spread_over_the_last_fifth_of_the_period() -> None:
    async def spread() -> list[float]:
        reconciler = Reconciler(LLMModel, plan, resync_seconds=100)
        loop = asyncio.get_running_loop()
        before = loop.time()
        for i in range(200):
            reconciler.schedule_resync("ns", f"m{i}")
        after = loop.time()  # a busy machine takes its time over the 200
        whens = [handle.when() for handle in reconciler._scheduled.values()]
        await settle(reconciler, 0)
        assert all(when - before >= 80 and when - after <= 100 for when in whens)
        return [when - before for when in whens]

    delays = asyncio.run(spread())
    assert max(delays) - min(delays) > 10, "resources resynced together stay in step"


def test_only_a_resource_being_reconciled_holds_a_lock(reconciles: list[tuple[str, float]]) -> None:
    async def burst() -> None:
        reconciler = Reconciler(LLMModel, plan, resync_seconds=60)
        # One runs, one waits for it, and the third is folded into the one that waits.
        calls = [asyncio.create_task(reconciler.reconcile("ns", "m")) for _ in range(3)]
        await asyncio.sleep(TAKES / 2)
        assert list(reconciler._locks) == [("ns", "m")]
        await asyncio.gather(*calls)
        assert reconciler._locks == {}
        await settle(reconciler, 0)

    asyncio.run(burst())
    assert len(reconciles) == 2


def test_a_deleted_resource_is_never_reconciled_twice_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    running: list[int] = [0]
    most: list[int] = [0]

    async def gone(self: Reconciler[Any], namespace: str, name: str) -> Plan | None:
        running[0] += 1
        most[0] = max(most[0], running[0])
        await asyncio.sleep(TAKES)
        running[0] -= 1
        return None  # deleted: the reconcile forgets the resource

    monkeypatch.setattr(Reconciler, "_reconcile_once", gone)

    async def events() -> None:
        reconciler = Reconciler(LLMModel, plan, resync_seconds=60)
        first = asyncio.create_task(reconciler.reconcile("ns", "m"))  # e.g. its children's deletions
        await asyncio.sleep(0)
        second = asyncio.create_task(reconciler.reconcile("ns", "m"))  # waits for the first
        await asyncio.sleep(1.5 * TAKES)  # the first has forgotten the resource, the second runs
        third = asyncio.create_task(reconciler.reconcile("ns", "m"))
        await asyncio.gather(first, second, third)
        assert reconciler._locks == {}

    asyncio.run(events())
    assert most[0] == 1


def test_a_change_does_not_wait_behind_resyncs(reconciles: list[tuple[str, float]]) -> None:
    async def busy() -> None:
        reconciler = Reconciler(LLMModel, plan, resync_seconds=0.01)
        for i in range(40):  # ten rounds of resync slots
            reconciler.schedule_resync("ns", f"old-{i}")
        reconciler.resync_seconds = 60  # the next ones
        await asyncio.sleep(0.05)
        reconciler.schedule("ns", "new", 0)  # a create
        await asyncio.sleep(3 * TAKES)
        new = [at for name, at in reconciles if name == "new"]
        resyncs_at_once = max(
            sum(1 for name, at in reconciles if name != "new" and at <= t < at + TAKES) for _, t in reconciles
        )
        await settle(reconciler, 0)
        # Counted in resyncs, not seconds, so a busy machine does not change the answer: behind
        # the queue it would start only after the 40.
        assert new, "the change was not reconciled"
        resyncs_before = sum(1 for name, at in reconciles if name != "new" and at < new[0])
        assert resyncs_before <= 2 * module.RESYNCS_AT_ONCE
        assert resyncs_at_once <= module.RESYNCS_AT_ONCE

    asyncio.run(busy())


def test_a_resync_waiting_for_its_slot_is_dropped_when_a_change_reconciled_the_resource(
    reconciles: list[tuple[str, float]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(module, "RESYNCS_AT_ONCE", 1)

    async def overtaken() -> None:
        reconciler = Reconciler(LLMModel, plan, resync_seconds=0.01)
        reconciler.schedule_resync("ns", "a")
        await asyncio.sleep(0.02)  # a holds the only slot
        reconciler.schedule_resync("ns", "b")
        await asyncio.sleep(0.02)  # b waits for it
        reconciler.resync_seconds = 60
        reconciler.schedule("ns", "b", 0)  # an event of b: reconciled at once, its next resync set
        await settle(reconciler, 3 * TAKES)

    asyncio.run(overtaken())
    assert sorted(name for name, _ in reconciles) == ["a", "b"]


def test_an_event_makes_a_pending_resync_a_reconcile_of_its_own(reconciles: list[tuple[str, float]]) -> None:
    async def upgraded() -> None:
        reconciler = Reconciler(LLMModel, plan, resync_seconds=0.05)
        reconciler.schedule_resync("ns", "m")
        reconciler.schedule("ns", "m", 1.0)  # a child event, due after the resync: served by it
        assert reconciler._priority[("ns", "m")] is Priority.FOLLOW_UP
        reconciler.resync_seconds = 60
        await settle(reconciler, 0.3)

    asyncio.run(upgraded())
    assert [name for name, _ in reconciles] == ["m"]
