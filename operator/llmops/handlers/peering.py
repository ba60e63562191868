"""Whether kopf has paused this replica: our streams and timers do not stop when kopf pauses.

With `--peering`, kopf pauses a replica while a live peer has a higher priority (or the
peering object is missing). kopf watches none of our kinds (kube/resources.py streams them),
and the Reconciler's resync and retry timers are ours too: they would go on reconciling — and
writing — beside the leader. kopf does not expose its pause state; it keeps it in one
operator-wide toggle set that it hands to its orchestrator. We wrap that (private) entry point
to keep a reference to the set, and the step where kopf starts its watches (after it has set up
the pause) to start our own streams of our kinds there, never before a replica knows whether it
leads. tests/unit/test_peering_pause.py fails if a kopf upgrade moves either.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from kopf._cogs.aiokits.aiotoggles import ToggleSet
from kopf._core.reactor import orchestration

log = logging.getLogger(__name__)
_pause: ToggleSet | None = None
_kopf_orchestrator = orchestration.orchestrator
_kopf_spawn_missing_watchers = orchestration.spawn_missing_watchers
_watching: list[Callable[[], None]] = []
_resumed: list[Callable[[], None]] = []


async def _orchestrator(*, operator_paused: ToggleSet, **kwargs: Any) -> None:
    global _pause
    _pause = operator_paused
    resumes = asyncio.create_task(_tell_resumes(operator_paused))
    try:
        await _kopf_orchestrator(operator_paused=operator_paused, **kwargs)
    finally:
        resumes.cancel()


async def _spawn_missing_watchers(**kwargs: Any) -> None:
    # kopf sets its peering's pause toggles up (paused until the peers are known) just before.
    await _kopf_spawn_missing_watchers(**kwargs)
    for callback in _watching:
        callback()


async def _tell_resumes(toggles: ToggleSet) -> None:
    while True:
        await toggles.wait_for(True)
        await toggles.wait_for(False)
        log.info("this replica leads: resuming")
        for callback in _resumed:
            callback()


orchestration.orchestrator = _orchestrator
orchestration.spawn_missing_watchers = _spawn_missing_watchers


def when_watching(callback: Callable[[], None]) -> None:
    """Call back each time kopf starts its watches (its pause already set up): our own streams start then."""
    _watching.append(callback)


def when_resumed(callback: Callable[[], None]) -> None:
    """Call back each time kopf resumes this replica: what our own streams brought meanwhile was held."""
    _resumed.append(callback)


def paused() -> bool:
    """True while kopf keeps this replica from working (another replica leads).

    Before kopf has started there is nothing to pause: no event has been delivered yet.
    """
    return _pause is not None and _pause.is_on()
