"""Reads: one object by name, or objects by label selector. 404 is an answer (None), not an error."""

from __future__ import annotations

import logging
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from .client import api_client, call, dynamic, is_not_found

log = logging.getLogger(__name__)


def _get(api_version: str, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
    resource = dynamic().resources.get(api_version=api_version, kind=kind)
    try:
        obj: dict[str, Any] = resource.get(name=name, namespace=namespace).to_dict()
    except Exception as error:
        if is_not_found(error):
            return None
        raise
    return obj


def _list(api_version: str, kind: str, namespace: str, selector: str, fields: str) -> list[dict[str, Any]]:
    resource = dynamic().resources.get(api_version=api_version, kind=kind)
    found = resource.get(namespace=namespace, label_selector=selector, field_selector=fields or None)
    items: list[dict[str, Any]] = found.to_dict()["items"]
    return items


async def get(api_version: str, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
    return await call(_get, api_version, kind, namespace, name)


async def list_(api_version: str, kind: str, namespace: str, selector: str, fields: str = "") -> list[dict[str, Any]]:
    return await call(_list, api_version, kind, namespace, selector, fields)


async def warning_events(namespace: str, kind: str, name: str) -> list[dict[str, Any]]:
    """Warning Events about one object, e.g. a Job whose pods cannot be created."""
    fields = f"involvedObject.kind={kind},involvedObject.name={name},type=Warning"
    return await list_("v1", "Event", namespace, "", fields)


def selector(labels: dict[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))


def _pod_log(namespace: str, name: str, container: str, lines: int) -> str | None:
    try:
        text: str = client.CoreV1Api(api_client()).read_namespaced_pod_log(
            name, namespace, container=container, tail_lines=lines
        )
    except ApiException as error:
        # No log yet, the pod is gone, or its kubelet cannot be reached: progress is best
        # effort and simply does not move; the Job's own state still drives the reconcile.
        log.debug("no log for pod %s/%s: %s", namespace, name, error.reason)
        return None
    return text


async def pod_log(namespace: str, name: str, container: str, lines: int) -> str | None:
    """The last `lines` lines of a container's log, or None when there is none yet."""
    return await call(_pod_log, namespace, name, container, lines)
