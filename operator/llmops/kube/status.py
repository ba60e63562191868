"""Status writes through the status subresource: the operator never writes a user's spec.

The one other write to our own kinds removes the finalizer an earlier version left behind."""

from __future__ import annotations

from typing import Any

from ..api.common import GROUP, VERSION, Resource
from .children import newer
from .client import call, request


def status_patch(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """A JSON merge patch turning old into new: removed keys become null."""
    patch: dict[str, Any] = {k: None for k in old if k not in new}
    for key, value in new.items():
        if old.get(key) != value:
            patch[key] = value
    return patch


_written: dict[tuple[str, str, str], str] = {}
"""(plural, namespace, name) -> the resourceVersion our last status write gave the object."""


def _patch(plural: str, namespace: str, name: str, patch: dict[str, Any]) -> str:
    path = f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{plural}/{name}/status"
    written = request("patch", path, body={"status": patch}, content_type="application/merge-patch+json")
    return str(written.get("metadata", {}).get("resourceVersion", ""))


async def write_status(resource: Resource, observed: dict[str, Any], status: dict[str, Any]) -> bool:
    """Patch status if it differs from what was observed; returns whether a write happened."""
    patch = status_patch(observed, status)
    if not patch:
        return False
    key = (resource.crd.plural, resource.namespace, resource.name)
    _written[key] = await call(_patch, *key, patch)
    return True


def is_own_write(plural: str, namespace: str, name: str, resource_version: str | None) -> bool:
    """The object is exactly as our last status write left it: a reconcile of it would change nothing."""
    return bool(resource_version) and _written.get((plural, namespace, name)) == resource_version


def written_since(plural: str, namespace: str, name: str, resource_version: str) -> bool:
    """Our last status write of the object is newer than this version of it."""
    written = _written.get((plural, namespace, name))
    return written is not None and newer(written, resource_version)


def forget(plural: str, namespace: str, name: str) -> None:
    _written.pop((plural, namespace, name), None)


LEGACY_FINALIZER = "llmops.dev/unused"
"""The finalizer earlier versions of the operator added (when they used kopf timers). Nothing needs
it: left alone, it would keep a deleted resource, and its namespace, for good."""


def _drop(plural: str, namespace: str, name: str, finalizers: list[str]) -> None:
    path = f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{plural}/{name}"
    # `test` first: a finalizer another controller added or removed meanwhile is not undone.
    patch = [
        {"op": "test", "path": "/metadata/finalizers", "value": finalizers},
        {"op": "replace", "path": "/metadata/finalizers", "value": [f for f in finalizers if f != LEGACY_FINALIZER]},
    ]
    request("patch", path, body=patch, content_type="application/json-patch+json")


async def drop_legacy_finalizer(plural: str, namespace: str, name: str, metadata: dict[str, Any]) -> bool:
    """Remove LEGACY_FINALIZER from the object, if it has it; returns whether a write happened."""
    finalizers = list(metadata.get("finalizers") or [])
    if LEGACY_FINALIZER not in finalizers:
        return False
    await call(_drop, plural, namespace, name, finalizers)
    return True
