"""Events are writes: one per change a user may act on, not one per condition."""

from __future__ import annotations

from llmops.api.common import Condition
from llmops.plan.common import Event, transition_events


def condition_at(type_: str, status: str, reason: str, message: str) -> Condition:
    return Condition.model_validate(
        {
            "type": type_,
            "status": status,
            "reason": reason,
            "message": message,
            "lastTransitionTime": "2026-01-01T00:00:00Z",
        }
    )


def test_two_conditions_that_change_for_one_reason_make_one_event() -> None:
    message = "pod m-build-1-x: 0/3 nodes are available"
    before = [
        condition_at("Built", "False", "Building", "running"),
        condition_at("Degraded", "False", "AsExpected", ""),
    ]
    after = [
        condition_at("Built", "False", "Unschedulable", message),
        condition_at("Degraded", "True", "Unschedulable", message),
    ]
    assert transition_events(before, after, {"Unschedulable"}) == [Event("Warning", "Unschedulable", message)]


def test_not_ready_yet_on_creation_is_no_news() -> None:
    after = [condition_at("Built", "False", "Building", "running"), condition_at("Ready", "False", "NotBuilt", "later")]
    assert [e.reason for e in transition_events([], after, set())] == ["Building"]
    # A reason worth a warning is news from the start.
    after = [condition_at("Ready", "False", "ImagePullBackOff", "no image")]
    assert [e.reason for e in transition_events([], after, {"ImagePullBackOff"})] == ["ImagePullBackOff"]
