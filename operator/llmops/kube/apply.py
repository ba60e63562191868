"""Writes of children: server-side apply under one field manager, skipped when nothing would change."""

from __future__ import annotations

import logging
from typing import Any

from ..plan.common import FIELD_MANAGER, Manifest
from .client import call, dynamic
from .read import get

log = logging.getLogger(__name__)


def contains(observed: Any, desired: Any) -> bool:
    """True when every field we set already has our value (the apiserver adds defaults around them)."""
    if isinstance(desired, dict):
        return isinstance(observed, dict) and all(contains(observed.get(k), v) for k, v in desired.items())
    if isinstance(desired, list):
        return (
            isinstance(observed, list)
            and len(observed) == len(desired)
            and all(contains(o, d) for o, d in zip(observed, desired, strict=True))
        )
    return bool(observed == desired)


def _server_side_apply(manifest: Manifest) -> None:
    resource = dynamic().resources.get(api_version=manifest["apiVersion"], kind=manifest["kind"])
    resource.server_side_apply(
        body=manifest,
        name=manifest["metadata"]["name"],
        namespace=manifest["metadata"].get("namespace"),
        field_manager=FIELD_MANAGER,
        force_conflicts=True,
    )


async def apply(manifest: Manifest) -> bool:
    """Make the object look like the manifest; returns whether a write was needed.

    Idempotent by construction: names are deterministic, so a restarted operator finds the
    child it created before its status write and applies onto it instead of duplicating it.
    """
    meta = manifest["metadata"]
    current = await get(manifest["apiVersion"], manifest["kind"], meta.get("namespace", ""), meta["name"])
    if current is not None and contains(current, manifest):
        return False
    log.info("applying %s %s/%s", manifest["kind"], meta.get("namespace"), meta["name"])
    await call(_server_side_apply, manifest)
    return True


async def apply_all(manifests: list[Manifest]) -> int:
    writes = 0
    for manifest in manifests:
        writes += await apply(manifest)
    return writes
