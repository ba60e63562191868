"""Pure helpers shared by every plan: conditions, events, names, labels, pod security."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from ..api.common import Condition, ConditionStatus, Resource, Scheduling, now_rfc3339

FIELD_MANAGER = "llmops-operator"
MANAGED_BY = {"app.kubernetes.io/managed-by": FIELD_MANAGER}
Manifest = dict[str, Any]


@dataclass(frozen=True)
class Event:
    """A Kubernetes Event to emit on the resource: one per decision, for `kubectl describe`."""

    type: Literal["Normal", "Warning"]
    reason: str
    message: str


@dataclass(frozen=True)
class Plan:
    """What a reconcile decided: the children that should exist, the status, the events."""

    children: list[Manifest] = field(default_factory=list)
    status: dict[str, Any] = field(default_factory=dict)
    events: list[Event] = field(default_factory=list)
    requeue_after: float | None = None
    """Look again after this many seconds even if nothing changes (a pause ending, a poll)."""
    patches: list[Manifest] = field(default_factory=list)
    """Merge patches of objects the operator does not own (apiVersion, kind, metadata + fields)."""


def content_hash(*parts: Any) -> str:
    """A stable short hash of JSON-able inputs: names a child per version of its inputs."""
    data = json.dumps(parts, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(data.encode()).hexdigest()[:10]


def child_name(parent: str, suffix: str) -> str:
    """<parent>-<suffix>, kept within the 63 characters a label value or Service name allows."""
    name = f"{parent}-{suffix}"
    if len(name) <= 63:
        return name
    return f"{parent[: 62 - len(suffix) - 9]}-{content_hash(parent)[:8]}-{suffix}"


def labels(parent: Resource, component: str) -> dict[str, str]:
    return {
        **MANAGED_BY,
        "app.kubernetes.io/part-of": "llmops",
        "app.kubernetes.io/component": component,
        f"llmops.dev/{parent.crd.kind.lower()}": parent.name,
    }


def owner_reference(parent: Resource) -> dict[str, Any]:
    return {
        "apiVersion": parent.api_version,
        "kind": parent.crd.kind,
        "name": parent.name,
        "uid": parent.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def child_metadata(parent: Resource, name: str, component: str, **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "namespace": parent.namespace,
        "labels": labels(parent, component),
        "ownerReferences": [owner_reference(parent)],
        **extra,
    }


# Pod Security "restricted": what every container we create must declare.
RESTRICTED_POD_SECURITY: dict[str, Any] = {
    "runAsNonRoot": True,
    "seccompProfile": {"type": "RuntimeDefault"},
}
RESTRICTED_CONTAINER_SECURITY: dict[str, Any] = {
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "runAsNonRoot": True,
    "capabilities": {"drop": ["ALL"]},
}


def pod_scheduling(scheduling: Scheduling, gpus: int, gpu_type: str | None) -> dict[str, Any]:
    """nodeSelector, tolerations and priority for a pod spec."""
    node_selector = dict(scheduling.node_selector)
    if gpu_type:
        node_selector["nvidia.com/gpu.product"] = gpu_type
    spec: dict[str, Any] = {}
    if node_selector:
        spec["nodeSelector"] = node_selector
    tolerations = [t.wire() for t in scheduling.tolerations]
    if gpus > 0 and not any(t.get("key") == "nvidia.com/gpu" for t in tolerations):
        # GPU nodes are commonly tainted nvidia.com/gpu:NoSchedule to keep CPU pods off them.
        tolerations.append({"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"})
    if tolerations:
        spec["tolerations"] = tolerations
    if scheduling.priority_class_name:
        spec["priorityClassName"] = scheduling.priority_class_name
    return spec


def container_resources(gpus: int, cpu: str | None, memory: str | None) -> dict[str, Any]:
    """Requests equal limits (Guaranteed QoS when cpu and memory are set); GPUs as limits."""
    limits: dict[str, Any] = {}
    if cpu:
        limits["cpu"] = cpu
    if memory:
        limits["memory"] = memory
    if gpus:
        limits["nvidia.com/gpu"] = gpus
    return {"requests": dict(limits), "limits": limits} if limits else {}


def set_condition(
    conditions: list[Condition],
    type_: str,
    status: ConditionStatus,
    reason: str,
    message: str,
    now: datetime,
    generation: int,
) -> list[Condition]:
    """Conditions with one replaced; lastTransitionTime moves only when status changes."""
    previous = next((c for c in conditions if c.type == type_), None)
    transition = previous.last_transition_time if previous and previous.status == status else now_rfc3339(now)
    updated = Condition(
        type=type_,
        status=status,
        reason=reason,
        message=message,
        last_transition_time=transition,
        observed_generation=generation,
    )
    return [c for c in conditions if c.type != type_] + [updated]


def condition(conditions: list[Condition], type_: str) -> Condition | None:
    return next((c for c in conditions if c.type == type_), None)


def transition_events(before: list[Condition], after: list[Condition], warnings: set[str]) -> list[Event]:
    """One Event per condition whose status or reason changed; reasons in `warnings` are Warnings.

    Events are writes, as costly to the apiserver as a child's: one per change a user may act on
    or look for, not one per condition. Two conditions that change for the same reason with the
    same message (a pod that cannot be scheduled is why the build waits and why it is degraded)
    make one Event.
    """
    events: list[Event] = []
    for new in after:
        old = condition(before, new.type)
        if old and (old.status, old.reason) == (new.status, new.reason):
            continue
        kind: Literal["Normal", "Warning"] = "Warning" if new.reason in warnings else "Normal"
        not_yet = new.reason == "AsExpected" or (new.type == "Ready" and new.status == "False")
        if old is None and kind == "Normal" and not_yet:
            continue  # "not degraded" or "not ready yet" on creation is no news
        event = Event(kind, new.reason, new.message or f"{new.type} is {new.status}")
        if event not in events:
            events.append(event)
    return events


DURATION_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)")
UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def duration_seconds(duration: str) -> float:
    """Seconds in a Go-style duration as the CRDs accept it: "30s", "1m30s", "500ms", "2h"."""
    return sum(float(n) * UNIT_SECONDS[unit] for n, unit in DURATION_PART.findall(duration))


def parse_time(timestamp: str) -> datetime:
    """A Kubernetes RFC 3339 timestamp as an aware datetime."""
    return datetime.fromisoformat(timestamp.replace("Z", "+00:00")).astimezone(UTC)
