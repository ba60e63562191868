"""A replica that kopf pauses (peering) stops its own resync timers too: the hook into kopf holds."""

from __future__ import annotations

import asyncio
import inspect
from datetime import datetime

from kopf._cogs.aiokits.aiotoggles import ToggleSet
from kopf._core.reactor import orchestration, running

from llmops.api.llmmodel import LLMModel
from llmops.handlers import peering
from llmops.handlers.reconciler import Reconciler
from llmops.plan.common import Plan


def test_kopf_still_hands_its_pause_toggles_to_the_orchestrator_we_wrap() -> None:
    # spawn_tasks looks the orchestrator up on the module at call time, with operator_paused
    assert orchestration.orchestrator is peering._orchestrator
    source = inspect.getsource(running.spawn_tasks)
    assert "orchestration.orchestrator(" in source
    assert "operator_paused=operator_paused" in source
    assert "operator_paused" in inspect.signature(peering._kopf_orchestrator).parameters


def test_a_paused_replica_holds_its_timers_without_reconciling() -> None:
    planned: list[str] = []

    async def plan(model: LLMModel, now: datetime) -> Plan:
        planned.append(model.name)
        return Plan()

    async def scenario() -> tuple[bool, bool]:
        toggles = ToggleSet(any)
        leader_alive = await toggles.make_toggle(True, name="a peer with a higher priority")
        peering._pause = toggles
        reconciler = Reconciler(LLMModel, plan, resync_seconds=30)
        try:
            await reconciler.reconcile("ns", "model")  # e.g. its resync timer fired
            held = ("ns", "model") in reconciler._scheduled
            await leader_alive.turn_to(False)
            return peering.paused(), held
        finally:
            for handle in reconciler._scheduled.values():
                handle.cancel()
            peering._pause = None

    still_paused, held = asyncio.run(scenario())
    assert planned == [] and held and not still_paused


def test_without_kopf_running_nothing_is_paused() -> None:
    assert peering._pause is None
    assert not peering.paused()


def test_kopf_still_sets_its_pause_up_before_it_starts_the_watches_we_start_ours_with() -> None:
    # adjust_tasks looks spawn_missing_watchers up on the module at call time, after the peerings
    assert orchestration.spawn_missing_watchers is peering._spawn_missing_watchers
    source = inspect.getsource(orchestration.adjust_tasks)
    assert source.index("await spawn_missing_peerings(") < source.index("await spawn_missing_watchers(")
    assert "is_preactivated = settings.peering.mandatory" in inspect.getsource(orchestration.spawn_missing_peerings)


def test_each_resume_is_told_and_a_start_unpaused_is_not() -> None:
    resumes: list[str] = []

    async def scenario() -> None:
        toggles = ToggleSet(any)
        telling = asyncio.create_task(peering._tell_resumes(toggles))
        await asyncio.sleep(0.01)
        assert resumes == []  # never paused: the streams' first lists start every reconcile
        leader_alive = await toggles.make_toggle(True, name="a peer with a higher priority")
        await asyncio.sleep(0.01)
        await leader_alive.turn_to(False)
        await asyncio.sleep(0.01)
        await leader_alive.turn_to(True)
        await asyncio.sleep(0.01)
        await leader_alive.turn_to(False)
        await asyncio.sleep(0.01)
        telling.cancel()

    peering.when_resumed(lambda: resumes.append("resumed"))
    try:
        asyncio.run(scenario())
    finally:
        peering._resumed.pop()
    assert resumes == ["resumed", "resumed"]
