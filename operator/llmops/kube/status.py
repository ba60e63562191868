"""Status writes through the status subresource: the operator never writes a user's spec."""

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
