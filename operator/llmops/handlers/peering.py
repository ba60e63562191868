"""Whether kopf has paused this replica, for the work kopf does not drive itself: our resync timers.

With `--peering`, kopf pauses a replica while a live peer has a higher priority (or the
peering object is missing) by stopping its watch streams, so no handler of ours is called.
The Reconciler's resync and retry timers are ours, not kopf's, and would go on reconciling —
and writing — beside the leader. kopf does not expose its pause state; it keeps it in one
operator-wide toggle set that it hands to its orchestrator. We wrap that (private) entry point
to keep a reference to the set. tests/unit/test_peering_pause.py fails if a kopf upgrade moves it.
"""

from __future__ import annotations

import logging
from typing import Any

from kopf._cogs.aiokits.aiotoggles import ToggleSet
from kopf._core.reactor import orchestration

log = logging.getLogger(__name__)
_pause: ToggleSet | None = None
_kopf_orchestrator = orchestration.orchestrator


async def _orchestrator(*, operator_paused: ToggleSet, **kwargs: Any) -> None:
    global _pause
    _pause = operator_paused
    await _kopf_orchestrator(operator_paused=operator_paused, **kwargs)


orchestration.orchestrator = _orchestrator


def paused() -> bool:
    """True while kopf keeps this replica from working (another replica leads).

    Before kopf has started there is nothing to pause: no event has been delivered yet.
    """
    return _pause is not None and _pause.is_on()
