"""Argo CD health checks (charts/llmops-operator/argocd/health/*.lua) run in Lua 5.1, as in Argo CD.

Argo CD runs these scripts in gopher-lua (Lua 5.1) with the live object as the global `obj`;
they return {status, message}. The sample objects are built from the status models, so a new
phase in the API fails here until the health check knows it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, get_args

import pytest
from lupa import lua51

from llmops.api import KINDS
from llmops.api.common import Condition, Resource

HEALTH_DIR = Path(__file__).resolve().parents[2] / "charts" / "llmops-operator" / "argocd" / "health"
ARGO_STATUSES = {"Healthy", "Progressing", "Degraded", "Suspended", "Missing", "Unknown"}

EXPECTED: dict[str, dict[str, str]] = {
    "LLMModel": {
        "Pending": "Progressing",
        "Building": "Progressing",
        "Deploying": "Progressing",
        "Ready": "Healthy",
        "Degraded": "Degraded",
        "Failed": "Degraded",
    },
    "FineTuneJob": {
        "Pending": "Progressing",
        "Running": "Progressing",
        "Suspended": "Suspended",
        "Succeeded": "Healthy",
        "Failed": "Degraded",
    },
    "EvalSuite": {
        "Idle": "Healthy",
        "Running": "Progressing",
        "Passed": "Healthy",
        "Failed": "Degraded",
        "Error": "Degraded",
    },
    "Rollout": {
        "Pending": "Progressing",
        "Progressing": "Progressing",
        "Paused": "Suspended",
        "Promoted": "Healthy",
        "RolledBack": "Degraded",
        "Aborted": "Degraded",
        "Degraded": "Degraded",
    },
}


def kind_model(kind: str) -> type[Resource]:
    return next(k for k in KINDS if k.crd.kind == kind)


def phases_of(kind: str) -> set[str]:
    """Every value the kind's status.phase may take, read from its model."""
    status_model = kind_model(kind).model_fields["status"].annotation
    annotation = status_model.model_fields["phase"].annotation  # type: ignore[union-attr]
    literal = next(a for a in get_args(annotation) if a is not type(None))
    return set(get_args(literal))


def health(kind: str, obj: dict[str, Any]) -> dict[str, str]:
    lua = lua51.LuaRuntime()
    lua.globals().obj = lua.table_from(obj, recursive=True)
    result = lua.execute((HEALTH_DIR / f"llmops.dev_{kind}.lua").read_text())
    return dict(result.items())


def condition(type_: str, status: str, reason: str, message: str) -> dict[str, Any]:
    return Condition(
        type=type_, status=status, reason=reason, message=message, last_transition_time="2026-01-01T00:00:00Z"
    ).wire()


def resource(kind: str, phase: str | None, conditions: list[dict[str, Any]], generation: int = 3) -> dict[str, Any]:
    model = kind_model(kind)
    status_model = model.model_fields["status"].annotation
    status = status_model.model_validate(  # type: ignore[union-attr]
        {"phase": phase, "observedGeneration": generation, "conditions": conditions}
    ).wire()
    return {
        "apiVersion": "llmops.dev/v1alpha1",
        "kind": kind,
        "metadata": {"name": "x", "namespace": "ns", "generation": generation},
        "status": status,
    }


def test_there_is_one_health_check_per_kind() -> None:
    assert sorted(p.name for p in HEALTH_DIR.glob("*.lua")) == sorted(f"llmops.dev_{k.crd.kind}.lua" for k in KINDS)
    assert set(EXPECTED) == {k.crd.kind for k in KINDS}


@pytest.mark.parametrize("kind", sorted(EXPECTED))
def test_every_phase_of_the_api_has_a_health(kind: str) -> None:
    assert set(EXPECTED[kind]) == phases_of(kind), "a phase was added or removed: update the Lua and this table"


@pytest.mark.parametrize(("kind", "phase"), [(k, p) for k in sorted(EXPECTED) for p in EXPECTED[k]])
def test_phase_maps_to_argo_health(kind: str, phase: str) -> None:
    obj = resource(kind, phase, [condition("Ready", "False", "Waiting", "")])
    result = health(kind, obj)
    assert result["status"] == EXPECTED[kind][phase]
    assert result["status"] in ARGO_STATUSES
    assert result["message"].startswith(phase)


@pytest.mark.parametrize("kind", sorted(EXPECTED))
def test_an_object_without_status_is_progressing(kind: str) -> None:
    obj = {"apiVersion": "llmops.dev/v1alpha1", "kind": kind, "metadata": {"name": "x", "generation": 1}}
    assert health(kind, obj) == {"status": "Progressing", "message": "Waiting for the operator"}


@pytest.mark.parametrize("kind", sorted(EXPECTED))
def test_a_status_from_an_older_generation_is_progressing(kind: str) -> None:
    """A Healthy-looking phase computed before the last spec change says nothing about the new spec."""
    healthy = next(p for p, h in EXPECTED[kind].items() if h == "Healthy")
    obj = resource(kind, healthy, [], generation=3)
    obj["metadata"]["generation"] = 4
    result = health(kind, obj)
    assert result == {"status": "Progressing", "message": "Waiting for the operator to observe generation 4"}


def test_the_message_is_the_degraded_condition_when_degraded() -> None:
    obj = resource(
        "LLMModel",
        "Failed",
        [
            condition("Ready", "False", "NotBuilt", "waiting for the first successful build"),
            condition("Degraded", "True", "BuildFailed", "onnx export failed: out of memory"),
        ],
    )
    assert health("LLMModel", obj) == {"status": "Degraded", "message": "Failed: onnx export failed: out of memory"}


def test_the_message_is_the_ready_condition_when_not_degraded() -> None:
    obj = resource(
        "LLMModel",
        "Ready",
        [
            condition("Degraded", "False", "AsExpected", "nothing wrong"),
            condition("Ready", "True", "Serving", "2/2 replicas ready at http://m.ns:8000"),
        ],
    )
    assert health("LLMModel", obj) == {"status": "Healthy", "message": "Ready: 2/2 replicas ready at http://m.ns:8000"}


def test_a_phase_unknown_to_the_check_is_unknown() -> None:
    obj = resource("Rollout", "Promoted", [])
    obj["status"]["phase"] = "SomethingNew"
    assert health("Rollout", obj)["status"] == "Unknown"
