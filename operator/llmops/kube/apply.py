"""Writes of children: server-side apply under one field manager, skipped when nothing would change."""

from __future__ import annotations

import asyncio
import json
import logging
import re
from typing import Any

from kubernetes.utils.quantity import parse_quantity

from ..plan.common import FIELD_MANAGER, Manifest
from .children import CHILDREN
from .client import call, path_of, request
from .read import get

REJECTED = (400, 422)
"""BadRequest and Invalid: the object as written can never be stored, however often it is sent."""
UNDECODABLE = "unable to convert unstructured object"
"""A server-side apply of an object whose fields the apiserver cannot decode (a quantity its
parser refuses) is answered 500 with this, where a create of it gets 400: a refusal all the same."""


class ChildRejected(Exception):
    """The apiserver refused a child as invalid: the spec it came from must change, not the timing."""

    def __init__(self, manifest: Manifest, message: str) -> None:
        meta = manifest["metadata"]
        super().__init__(f"the apiserver refused {manifest['kind']} {meta['name']}: {message}")


def rejection(error: Exception) -> str | None:
    """The apiserver's message when it refused an object as invalid (400, 422, or an undecodable
    apply's 500), else None."""
    status = getattr(error, "status", None)
    if status not in (*REJECTED, 500):
        return None
    body = getattr(error, "body", None)
    try:
        message = json.loads(body or "{}").get("message")
    except (ValueError, AttributeError):
        message = None
    if status == 500 and UNDECODABLE not in str(message):
        return None  # the apiserver's own trouble: it may well pass next time
    return str(message or body or error)


log = logging.getLogger(__name__)


def contains(observed: Any, desired: Any) -> bool:
    """True when every field we set already has our value (the apiserver adds defaults around them)."""
    if observed is None and desired in ([], {}):
        return True  # the apiserver omits empty lists and maps, e.g. an EndpointSlice with no endpoints
    if isinstance(desired, dict):
        return isinstance(observed, dict) and all(contains(observed.get(k), v) for k, v in desired.items())
    if isinstance(desired, list):
        return (
            isinstance(observed, list)
            and len(observed) == len(desired)
            and all(contains(o, d) for o, d in zip(observed, desired, strict=True))
        )
    return bool(observed == desired) or same_quantity(observed, desired)


def same_quantity(observed: Any, desired: Any) -> bool:
    """The apiserver stores resource quantities in canonical form: 1 comes back "1", "0.5" as "500m"."""
    scalars = (str, int, float)
    if isinstance(observed, bool) or isinstance(desired, bool):
        return False
    if not (isinstance(observed, scalars) and isinstance(desired, scalars)):
        return False
    try:
        return bool(parse_quantity(observed) == parse_quantity(desired))
    except (ValueError, TypeError, ArithmeticError):
        return False


# Characters a YAML decoder refuses raw (C1 controls, DEL, non-characters) or reads as line
# breaks (NEL, LS, PS) and so folds away, plus the BOM; JSON escapes keep each one as it is.
YAML_UNSAFE = re.compile("[\x7f-\x9f\u2028\u2029\ufeff\ufffe\uffff]")


def apply_body(manifest: Manifest) -> bytes:
    """The apply patch as UTF-8 JSON that a YAML decoder reads back exactly.

    Apply patches are decoded as YAML. The client's own encoding escapes characters beyond the
    BMP as surrogate pairs ("\\ud83d\\ude00"), which the YAML decoder refuses, and writes C1
    controls raw, which it refuses too: a spec with an emoji in a prompt would never reach its
    children. So: UTF-8 as it is, and JSON escapes only where YAML needs them.
    """
    text = json.dumps(manifest, ensure_ascii=False)
    return YAML_UNSAFE.sub(lambda found: f"\\u{ord(found.group()):04x}", text).encode()


def _server_side_apply(manifest: Manifest) -> dict[str, Any]:
    meta = manifest["metadata"]
    written: dict[str, Any] = request(
        "patch",
        path_of(manifest["apiVersion"], manifest["kind"], meta.get("namespace"), meta["name"]),
        body=apply_body(manifest),
        content_type="application/apply-patch+yaml",
        field_manager=FIELD_MANAGER,
        force_conflicts=True,
    )
    return written


def job_update(current: Manifest, desired: Manifest) -> dict[str, Any] | None:
    """A merge patch of what may still change in an existing Job: only spec.suspend.

    A Job's pod template is immutable; re-applying it after, say, an image default changed
    would be refused forever, so new settings apply to the next Job instead. (A partial
    server-side apply would not do either: it would give up, and so try to remove, the
    template fields we own.)
    """
    want = desired.get("spec", {}).get("suspend")
    if want is None or current.get("spec", {}).get("suspend") == want:
        return None
    return {"spec": {"suspend": want}}


def _merge_patch(manifest: Manifest, patch: dict[str, Any]) -> dict[str, Any]:
    meta = manifest["metadata"]
    written: dict[str, Any] = request(
        "patch",
        path_of(manifest["apiVersion"], manifest["kind"], meta.get("namespace"), meta["name"]),
        body=patch,
        content_type="application/merge-patch+json",
        field_manager=FIELD_MANAGER,
    )
    return written


async def apply(manifest: Manifest) -> bool:
    """Make the object look like the manifest; returns whether a write was needed.

    Idempotent by construction: names are deterministic, so a restarted operator finds the
    child it created before its status write and applies onto it instead of duplicating it.
    """
    meta = manifest["metadata"]
    # The operator's copy where it keeps one: our own writes update it at once, and a change by
    # anyone else comes as an event that reconciles the parent again.
    current = await get(manifest["apiVersion"], manifest["kind"], meta.get("namespace", ""), meta["name"], cached=True)
    if current is not None and contains(current, manifest):
        return False
    if current is not None and manifest["kind"] == "Job":
        patch = job_update(current, manifest)
        if patch is None:
            return False
        log.info("patching Job %s/%s: %s", meta.get("namespace"), meta["name"], patch)
        await _write(_merge_patch, manifest, patch)
        return True
    log.info("applying %s %s/%s", manifest["kind"], meta.get("namespace"), meta["name"])
    await _write(_server_side_apply, manifest)
    return True


async def _write(write: Any, manifest: Manifest, *args: Any) -> None:
    try:
        written = await call(write, manifest, *args)
    except Exception as error:
        message = rejection(error)
        if message is None:
            raise
        raise ChildRejected(manifest, message) from error
    CHILDREN.written(written)


async def apply_all(manifests: list[Manifest]) -> int:
    """Apply the children together: a reconcile waits one round trip, not one per child.

    None needs another written first: a pod waits for its claim and its ConfigMap. Every write
    has ended when this returns, so the next reconcile never runs beside one. A refusal is
    raised before any other error: retrying cannot help it, and it stops the retries.
    """
    results = await asyncio.gather(*(apply(manifest) for manifest in manifests), return_exceptions=True)
    errors = [result for result in results if isinstance(result, BaseException)]
    if errors:
        raise next((error for error in errors if isinstance(error, ChildRejected)), errors[0])
    return sum(bool(result) for result in results)


async def patch(manifest: Manifest) -> bool:
    """Merge-patch fields of an object someone else owns (an HTTPRoute kept in Git); True when written.

    A merge patch, not an apply: taking field ownership of a user's object would make the next
    apply from Git conflict. Missing objects are left alone; the plan has reported them.
    """
    meta = manifest["metadata"]
    current = await get(manifest["apiVersion"], manifest["kind"], meta.get("namespace", ""), meta["name"])
    if current is None or contains(current, manifest):
        return False
    log.info("patching %s %s/%s", manifest["kind"], meta.get("namespace"), meta["name"])
    body = {k: v for k, v in manifest.items() if k not in ("apiVersion", "kind", "metadata")}
    await _write(_merge_patch, manifest, body)
    return True


async def patch_all(manifests: list[Manifest]) -> int:
    writes = 0
    for manifest in manifests:
        writes += await patch(manifest)
    return writes
