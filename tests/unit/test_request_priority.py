"""Requests wait for the apiserver in order of priority: a change a user made goes before follow-ups and resyncs."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

import pytest

from llmops.api.llmmodel import LLMModel
from llmops.handlers import reconciler as reconciler_module
from llmops.handlers.reconciler import Reconciler, unobserved
from llmops.kube.client import PRIORITY, Priority, PriorityGate
from llmops.plan.common import Plan


async def served_order(gate: PriorityGate, arrivals: list[tuple[str, Priority]], cancel: str = "") -> list[str]:
    """Hold the only slot while requests arrive, then let go: the order in which they got it."""
    order: list[str] = []

    async def request(name: str, priority: Priority) -> None:
        async with gate.slot(priority):
            order.append(name)
            await asyncio.sleep(0)

    async with gate.slot(Priority.CHANGE):
        waiting = {name: asyncio.create_task(request(name, p)) for name, p in arrivals}
        await asyncio.sleep(0)
        if cancel:
            waiting[cancel].cancel()
    await asyncio.gather(*waiting.values(), return_exceptions=True)
    return order


def test_waiting_requests_go_by_priority_then_arrival() -> None:
    arrivals = [
        ("resync-1", Priority.RESYNC),
        ("child-1", Priority.FOLLOW_UP),
        ("create-1", Priority.CHANGE),
        ("resync-2", Priority.RESYNC),
        ("create-2", Priority.CHANGE),
        ("child-2", Priority.FOLLOW_UP),
    ]
    order = asyncio.run(served_order(PriorityGate(1), arrivals))
    assert order == ["create-1", "create-2", "child-1", "child-2", "resync-1", "resync-2"]


def test_a_cancelled_wait_passes_its_turn_on() -> None:
    arrivals = [("a", Priority.CHANGE), ("b", Priority.RESYNC)]
    order = asyncio.run(served_order(PriorityGate(1), arrivals, cancel="a"))
    assert order == ["b"]


def test_no_more_than_the_slots_in_flight() -> None:
    async def burst() -> int:
        gate, in_flight, most = PriorityGate(3), 0, 0

        async def request(priority: Priority) -> None:
            nonlocal in_flight, most
            async with gate.slot(priority):
                in_flight += 1
                most = max(most, in_flight)
                await asyncio.sleep(0.001)
                in_flight -= 1

        await asyncio.gather(*(request(Priority(i % 3)) for i in range(60)))
        async with gate.slot(Priority.RESYNC):  # every slot came back
            pass
        assert gate._free == 3
        return most

    assert asyncio.run(burst()) == 3


def test_a_change_takes_a_reserved_slot_that_other_work_waits_for() -> None:
    async def reserved() -> list[str]:
        gate, order = PriorityGate(3, reserved=1), []
        release = asyncio.Event()

        async def request(name: str, priority: Priority) -> None:
            async with gate.slot(priority):
                order.append(name)
                await release.wait()

        tasks = [asyncio.create_task(request(f"child-{i}", Priority.FOLLOW_UP)) for i in range(3)]
        await asyncio.sleep(0.01)
        tasks.append(asyncio.create_task(request("create", Priority.CHANGE)))
        await asyncio.sleep(0.01)
        seen = list(order)
        release.set()
        await asyncio.gather(*tasks)
        return seen

    assert asyncio.run(reserved()) == ["child-0", "child-1", "create"]


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"metadata": {"generation": 1}}, True),  # just created
        ({"metadata": {"generation": 2}, "status": {"observedGeneration": 1}}, True),  # spec edited
        ({"metadata": {"generation": 2}, "status": {"observedGeneration": 2}}, False),
    ],
)
def test_unobserved_generation(body: dict[str, Any], expected: bool) -> None:
    assert unobserved(body) is expected


@pytest.fixture
def priorities(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, Priority]]:
    """(name, priority of its requests) of each reconcile."""
    seen: list[tuple[str, Priority]] = []

    async def once(self: Reconciler[Any], namespace: str, name: str) -> Plan | None:
        seen.append((name, PRIORITY.get()))
        return Plan()

    monkeypatch.setattr(Reconciler, "_reconcile_once", once)
    return seen


async def plan(model: LLMModel, now: datetime) -> Plan:
    return Plan()


def test_a_reconcile_makes_its_requests_at_the_priority_of_what_started_it(
    priorities: list[tuple[str, Priority]],
) -> None:
    async def started() -> None:
        reconciler = Reconciler(LLMModel, plan, resync_seconds=0.05)
        reconciler.resource_changed("ADDED", "ns", "created", {"metadata": {"generation": 1}})
        seen = {"metadata": {"generation": 1}, "status": {"observedGeneration": 1}}
        reconciler.resource_changed("MODIFIED", "ns", "relabelled", seen)
        reconciler.child_changed("ns", "child-event")
        reconciler.schedule_resync("ns", "resynced")
        reconciler.schedule_resync("ns", "edited")  # a resync pending, then an edit: served by one reconcile
        reconciler.resource_changed("MODIFIED", "ns", "edited", {"metadata": {"generation": 2}})
        reconciler.resync_seconds = 60
        await asyncio.sleep(1.5)
        for pending in reconciler._scheduled.values():
            pending.cancel()

    asyncio.run(started())
    assert dict(priorities) == {
        "created": Priority.CHANGE,
        "relabelled": Priority.FOLLOW_UP,
        "child-event": Priority.FOLLOW_UP,
        "resynced": Priority.RESYNC,
        "edited": Priority.CHANGE,
    }
    assert len(priorities) == 5


def test_reconciles_in_flight_are_bounded_and_a_change_goes_before_the_backlog(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A burst of follow-ups holds at most the unreserved slots; a create behind them starts next."""
    gate = PriorityGate(3, reserved=1)
    monkeypatch.setattr(reconciler_module, "_reconcile_slots", lambda: gate)
    in_flight, most, started = 0, 0, []

    async def once(self: Reconciler[Any], namespace: str, name: str) -> Plan | None:
        nonlocal in_flight, most
        in_flight += 1
        most = max(most, in_flight)
        started.append(name)
        await asyncio.sleep(0.02)
        in_flight -= 1
        return None

    monkeypatch.setattr(Reconciler, "_reconcile_once", once)

    async def burst() -> None:
        reconciler = Reconciler(LLMModel, plan)
        for i in range(10):
            reconciler.schedule("ns", f"child-{i}", 0)  # a burst of follow-ups, all due at once
        await asyncio.sleep(0.005)
        reconciler.resource_changed("ADDED", "ns", "created", {"metadata": {"generation": 1}})
        while reconciler._running:
            await asyncio.sleep(0.01)

    asyncio.run(burst())
    assert most == 3
    assert started.index("created") == 2  # right after the two follow-ups the unreserved slots let in
    assert len(started) == 11
