"""Reads: one object by name, or objects by label selector. 404 is an answer (None), not an error.

A read of a child may ask for the operator's copy (`cached=True`, kube/children.py): what the
watch last showed, not what the apiserver holds this instant. Fine to compare a child with its
manifest before a write and to report progress, which the next event corrects; a decision that
cannot be taken back reads the apiserver. Until its kind and namespace are listed, it does too.
"""

from __future__ import annotations

import contextvars
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from ..plan.workloads import job_condition
from .children import CHILDREN, FAILED_CREATE
from .client import api_client, call, is_not_found, path_of, request

log = logging.getLogger(__name__)
Key = tuple[str, str, str, str]
_remembered: contextvars.ContextVar[dict[Key, dict[str, Any] | None] | None] = contextvars.ContextVar(
    "remembered", default=None
)


def _get(api_version: str, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
    try:
        obj: dict[str, Any] = request("get", path_of(api_version, kind, namespace, name))
    except Exception as error:
        if is_not_found(error):
            return None
        raise
    return obj


def _list(api_version: str, kind: str, namespace: str, selector: str, fields: str) -> list[dict[str, Any]]:
    found = request(
        "get", path_of(api_version, kind, namespace), label_selector=selector or None, field_selector=fields or None
    )
    # A list's items come without apiVersion and kind (the list says them once): give them back.
    return [{**item, "apiVersion": api_version, "kind": kind} for item in found["items"]]


@contextmanager
def one_look() -> Iterator[None]:
    """Within, an object read once (or found missing) is not read again: one reconcile's view.

    A reconcile reads a child to decide, then applies it; without this, the apply would read the
    child a second time, milliseconds later, to compare. A change in between comes as an event
    of its own and gets a reconcile of its own.
    """
    token = _remembered.set({})
    try:
        yield
    finally:
        _remembered.reset(token)


async def get(api_version: str, kind: str, namespace: str, name: str, cached: bool = False) -> dict[str, Any] | None:
    remembered = _remembered.get()
    key = (api_version, kind, namespace, name)
    if remembered is not None and key in remembered:
        return remembered[key]
    store = CHILDREN.store(api_version, kind) if cached else None
    if store is not None and store.knows(namespace):
        copy = store.get(namespace, name)
        found = copy.body() if copy is not None else None
    else:
        found = await call(_get, api_version, kind, namespace, name)
    if remembered is not None:
        remembered[key] = found
    return found


def equality_selector(selector: str) -> dict[str, str] | None:
    """A selector of equalities ("a=b,c=d") as a dict; None for anything else (sets, negations, empty)."""
    labels = {}
    for term in filter(None, (t.strip() for t in selector.split(","))):
        key, sep, value = term.partition("=")
        if not sep or key.endswith("!") or " " in key or value.startswith("="):
            return None
        labels[key] = value
    return labels or None


async def list_(
    api_version: str, kind: str, namespace: str, selector: str, fields: str = "", cached: bool = False
) -> list[dict[str, Any]]:
    store = CHILDREN.store(api_version, kind) if cached and not fields else None
    labels = equality_selector(selector)
    if store is not None and labels is not None and store.knows(namespace):
        copies = store.select(namespace, labels)
        if copies is not None:
            return [copy.body() for copy in copies]
    return await call(_list, api_version, kind, namespace, selector, fields)


async def job_pods(job: dict[str, Any]) -> list[dict[str, Any]]:
    """A Job's pods: the copies while it runs, the apiserver's once it has ended.

    An ended Job's result is in its pods' termination messages, and a Job and its pods change
    one after the other: the copies may show the Job complete before the pod that holds the
    result has ended, and the work would be judged to have failed without it.
    """
    meta = job["metadata"]
    ended = job_condition(job, "Complete") or job_condition(job, "Failed")
    return await list_("v1", "Pod", meta["namespace"], f"job-name={meta['name']}", cached=not ended)


async def creation_failures(namespace: str, job: str) -> list[dict[str, Any]]:
    """The Events that say why a Job cannot create its pods (a quota, an admission policy).

    From the copies, which hold every such Event of the watched namespaces (they are few: a
    healthy Job has none); the apiserver's answer until they are listed.
    """
    store = CHILDREN.store("v1", "Event")
    if store is not None and store.knows(namespace):
        events = (copy.body() for copy in store.in_namespace(namespace))
        return [event for event in events if (event.get("involvedObject") or {}).get("name") == job]
    fields = f"involvedObject.kind=Job,involvedObject.name={job},reason={FAILED_CREATE}"
    return await call(_list, "v1", "Event", namespace, "", fields)


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
