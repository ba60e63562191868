"""Kubernetes Events on our resources, so `kubectl describe` reads like a log of decisions."""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime

from kubernetes import client

from ..api.common import Resource
from ..plan.common import FIELD_MANAGER, Event
from .client import api_client, call, is_namespace_terminating

log = logging.getLogger(__name__)


def _create(resource: Resource, event: Event, now: datetime) -> None:
    body = client.EventsV1Event(
        # <object>.<hex nanoseconds>, like the apiserver's own event recorders (a generateName
        # prefix must itself be a valid name, so "<object>." is refused).
        metadata=client.V1ObjectMeta(name=f"{resource.name}.{time.time_ns():x}", namespace=resource.namespace),
        event_time=now,
        type=event.type,
        reason=event.reason,
        note=event.message[:1024],
        action=event.reason,
        reporting_controller=f"llmops.dev/{FIELD_MANAGER}",
        reporting_instance=FIELD_MANAGER,
        regarding=client.V1ObjectReference(
            api_version=resource.api_version,
            kind=resource.crd.kind,
            name=resource.name,
            namespace=resource.namespace,
            uid=resource.uid,
        ),
    )
    client.EventsV1Api(api_client()).create_namespaced_event(resource.namespace, body)


async def emit(resource: Resource, events: list[Event]) -> None:
    for event in events:
        try:
            await call(_create, resource, event, datetime.now(UTC))
        except Exception as error:  # an Event is best effort: never fail a reconcile for one
            if is_namespace_terminating(error):
                return  # the resource goes with its namespace; so would the Event
            log.exception("could not post event %s on %s/%s", event.reason, resource.namespace, resource.name)
