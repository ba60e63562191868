"""Status writes through the status subresource: the operator never writes a user's spec."""

from __future__ import annotations

from typing import Any

from kubernetes import client

from ..api.common import GROUP, VERSION, Resource
from .client import api_client, call


def status_patch(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """A JSON merge patch turning old into new: removed keys become null."""
    patch: dict[str, Any] = {k: None for k in old if k not in new}
    for key, value in new.items():
        if old.get(key) != value:
            patch[key] = value
    return patch


def _patch(plural: str, namespace: str, name: str, patch: dict[str, Any]) -> None:
    client.CustomObjectsApi(api_client()).patch_namespaced_custom_object_status(
        GROUP, VERSION, namespace, plural, name, {"status": patch}
    )


async def write_status(resource: Resource, observed: dict[str, Any], status: dict[str, Any]) -> bool:
    """Patch status if it differs from what was observed; returns whether a write happened."""
    patch = status_patch(observed, status)
    if not patch:
        return False
    await call(_patch, resource.crd.plural, resource.namespace, resource.name, patch)
    return True
