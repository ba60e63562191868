"""Indexes kopf keeps from its watch streams: the Rollouts and the EvalSuites of each namespace.

Every LLMModel reconcile looks for the Rollouts that hold the model as a canary, and every
LLMModel event asks which Rollouts and EvalSuites use that model. Listing the namespace for
each cost one request per reconcile and three per event: with thousands of models, most of
the operator's reads, for kinds that have a handful of objects. kopf fills these indexes from
its own watches and calls no other handler before they hold every existing object, so a
lookup never misses a Rollout or EvalSuite that exists.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import kopf

from ..api.common import GROUP, VERSION

INDEXED_KINDS = frozenset({"Rollout", "EvalSuite"})
"""The kinds kopf keeps an index of: their objects' memory in kopf holds what each put in it."""
ByNamespace = Mapping[str, Any]
"""namespace -> the objects in it (a kopf.Index, or a plain mapping in tests)."""
_indexes: dict[str, ByNamespace] = {}


@kopf.index(GROUP, VERSION, "rollouts", id="rollouts_by_namespace")
def rollouts_by_namespace(namespace: str | None, body: kopf.Body, **_: Any) -> dict[str, dict[str, Any]]:
    # A copy: kopf's body is a live view that the next event of the object replaces.
    return {namespace or "": copy.deepcopy(dict(body))}


@kopf.index(GROUP, VERSION, "evalsuites", id="evalsuites_by_namespace")
def evalsuites_by_namespace(namespace: str | None, body: kopf.Body, **_: Any) -> dict[str, dict[str, Any]]:
    return {namespace or "": copy.deepcopy(dict(body))}


@kopf.on.startup(id="keep-indexes")
async def keep_indexes(**kwargs: Any) -> None:
    """kopf hands its indexes to handlers only; the reconciles that its handlers and our timers start need them too."""
    use(kwargs["rollouts_by_namespace"], kwargs["evalsuites_by_namespace"])


def use(rollouts: ByNamespace, eval_suites: ByNamespace) -> None:
    _indexes["Rollout"] = rollouts
    _indexes["EvalSuite"] = eval_suites


def _objects(kind: str, namespace: str) -> list[dict[str, Any]]:
    index = _indexes.get(kind)
    if index is None:
        raise RuntimeError(f"the {kind} index is not there yet: kopf has not started")
    return list(index.get(namespace, ()))


def rollouts(namespace: str) -> list[dict[str, Any]]:
    """The namespace's Rollouts, as last seen by the watch."""
    return _objects("Rollout", namespace)


def eval_suites(namespace: str) -> list[dict[str, Any]]:
    """The namespace's EvalSuites, as last seen by the watch."""
    return _objects("EvalSuite", namespace)
