"""The kube layer's own list+watch streams, started with the operator in its namespaces.

The children's (kube/children.py) watch only what the operator manages (not every pod of every
watched namespace, whoever owns it) and keep the copies that the reconciles read. Our own kinds'
(kube/resources.py) bring every event of the four kinds: kopf watches none of them. They start
when kopf starts its watches (of its peering objects), once its peering can say whether this
replica leads.
"""

from __future__ import annotations

import asyncio
import functools
from typing import Any

import kopf

# kopf's own matching, so the streams keep exactly the namespaces kopf watches.
from kopf._cogs.structs.references import NamespaceName, match_namespace, select_specific_namespaces

from ..kube.children import CHILDREN, Listener
from ..kube.read import selector
from ..kube.resources import RESOURCES
from ..plan.common import MANAGED_BY
from . import peering

_namespaces: list[str] = []


def watch_namespaces(patterns: list[str]) -> None:
    """The operator's --namespace patterns (kopf's syntax: globs, and "!" to leave out); none: the cluster."""
    _namespaces[:] = patterns


def scopes(patterns: list[str]) -> list[str | None]:
    """One stream per named namespace; globs need the whole cluster's, filtered (and its permission)."""
    if not patterns:
        return [None]
    named: list[str | None] = [str(ns) for ns in sorted(select_specific_namespaces(patterns))]
    return named if len(named) == len(set(patterns)) else [None]


def accepts(patterns: list[str], namespace: str) -> bool:
    return not patterns or any(match_namespace(NamespaceName(namespace), p) for p in patterns)


FIRST_LISTS_WAIT = 30.0
"""The longest a reconcile waits for the children's first lists after a start. A kind that cannot
be listed (an outage, a missing permission) holds reconciles no longer: they read the apiserver."""


def listen(listener: Listener) -> None:
    CHILDREN.listen(listener)


async def listed() -> None:
    """Return once the copies can answer reads of children and our kinds have been listed (the
    indexes know every Rollout and EvalSuite), or after FIRST_LISTS_WAIT."""
    started = asyncio.get_running_loop().time()
    await CHILDREN.listed(FIRST_LISTS_WAIT)
    await RESOURCES.listed(max(0.0, FIRST_LISTS_WAIT - (asyncio.get_running_loop().time() - started)))


@kopf.on.startup(id="start-streams")
async def start(**_: Any) -> None:
    patterns, loop = list(_namespaces), asyncio.get_running_loop()
    # Asked on every event: a namespace's answer is kept (the patterns do not change while we run).
    accepted = functools.cache(functools.partial(accepts, patterns))
    CHILDREN.start(loop, selector(MANAGED_BY), scopes(patterns), accepted)
    RESOURCES.expect(loop, scopes(patterns), accepted)
    peering.when_watching(RESOURCES.start)


@kopf.on.cleanup(id="stop-streams")
async def stop(**_: Any) -> None:
    RESOURCES.stop()
    CHILDREN.stop()
