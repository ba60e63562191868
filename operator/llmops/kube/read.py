"""Reads: one object by name, or objects by label selector. 404 is an answer (None), not an error."""

from __future__ import annotations

from typing import Any

from .client import call, dynamic, is_not_found


def _get(api_version: str, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
    resource = dynamic().resources.get(api_version=api_version, kind=kind)
    try:
        obj: dict[str, Any] = resource.get(name=name, namespace=namespace).to_dict()
    except Exception as error:
        if is_not_found(error):
            return None
        raise
    return obj


def _list(api_version: str, kind: str, namespace: str, selector: str) -> list[dict[str, Any]]:
    resource = dynamic().resources.get(api_version=api_version, kind=kind)
    items: list[dict[str, Any]] = resource.get(namespace=namespace, label_selector=selector).to_dict()["items"]
    return items


async def get(api_version: str, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
    return await call(_get, api_version, kind, namespace, name)


async def list_(api_version: str, kind: str, namespace: str, selector: str) -> list[dict[str, Any]]:
    return await call(_list, api_version, kind, namespace, selector)


def selector(labels: dict[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))
