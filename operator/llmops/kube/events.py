"""Kubernetes Events on our resources, so `kubectl describe` reads like a log of decisions."""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from typing import Any

from ..api.common import Resource
from ..plan.common import FIELD_MANAGER, Event
from .client import call, is_namespace_terminating, request

log = logging.getLogger(__name__)
MICRO_TIME = "%Y-%m-%dT%H:%M:%S.%fZ"
"""An Event's eventTime: RFC 3339 in UTC, with microseconds."""


def event_body(resource: Resource, event: Event, now: datetime) -> dict[str, Any]:
    """The events.k8s.io/v1 Event that says `event` of the resource."""
    return {
        # <object>.<hex nanoseconds>, like the apiserver's own event recorders (a generateName
        # prefix must itself be a valid name, so "<object>." is refused).
        "metadata": {"name": f"{resource.name}.{time.time_ns():x}", "namespace": resource.namespace},
        "eventTime": now.strftime(MICRO_TIME),
        "type": event.type,
        "reason": event.reason,
        "note": event.message[:1024],
        "action": event.reason,
        "reportingController": f"llmops.dev/{FIELD_MANAGER}",
        "reportingInstance": FIELD_MANAGER,
        "regarding": {
            "apiVersion": resource.api_version,
            "kind": resource.crd.kind,
            "name": resource.name,
            "namespace": resource.namespace,
            "uid": resource.uid,
        },
    }


def _create(resource: Resource, event: Event, now: datetime) -> None:
    body = event_body(resource, event, now)
    request("post", f"/apis/events.k8s.io/v1/namespaces/{resource.namespace}/events", body=body)


async def emit(resource: Resource, events: list[Event]) -> None:
    for event in events:
        try:
            await call(_create, resource, event, datetime.now(UTC))
        except Exception as error:  # an Event is best effort: never fail a reconcile for one
            if is_namespace_terminating(error):
                return  # the resource goes with its namespace; so would the Event
            log.exception("could not post event %s on %s/%s", event.reason, resource.namespace, resource.name)
