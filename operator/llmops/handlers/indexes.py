"""Indexes kopf keeps from its watch streams: the Rollouts and the EvalSuites of each namespace,
and the operator's cache of its children.

Every LLMModel reconcile looks for the Rollouts that hold the model as a canary, and every
LLMModel event asks which Rollouts and EvalSuites use that model. Listing the namespace for
each cost one request per reconcile and three per event: with thousands of models, most of
the operator's reads, for kinds that have a handful of objects. kopf fills these indexes from
its own watches and calls no other handler before they hold every existing object, so a
lookup never misses a Rollout or EvalSuite that exists.

Every reconcile looks at its children (Jobs, Deployments, pods, claims, Services), most of them
only to compare with their manifest before a write: from the apiserver, ≈ 50 reads per model on
its way to Ready, from a control plane that serves every other controller too. The watches keep
a copy of each (compact JSON without managedFields, parsed per read) for the reads that may be a
moment behind (kube/read.py).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Hashable, Iterable, Mapping
from typing import Any, NamedTuple

import kopf

from ..api.common import GROUP, VERSION
from ..kube import read
from ..plan.common import MANAGED_BY

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
    for api_version, kind, plural in CACHED_CHILDREN:
        read.use_cache(api_version, kind, CachedChildren(kwargs[f"{plural}_cache"]))


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


CACHED_CHILDREN = (
    ("batch/v1", "Job", "jobs"),
    ("apps/v1", "Deployment", "deployments"),
    ("v1", "Pod", "pods"),
    ("v1", "PersistentVolumeClaim", "persistentvolumeclaims"),
    ("v1", "Service", "services"),
)
"""The kinds of children that the cache holds: the ones every LLMModel and FineTuneJob reconcile reads."""


def keyed_label(key: str) -> bool:
    """Labels the cache finds objects by: ours (owner, role) and the one a Job gives its pods."""
    return key.startswith("llmops.dev/") or key == "job-name"


class Child(NamedTuple):
    labels: dict[str, str]
    blob: bytes
    """The object as compact JSON: a third of the memory of the parsed object, and each read gets its own copy."""

    def body(self) -> dict[str, Any]:
        parsed: dict[str, Any] = json.loads(self.blob)
        return parsed


def child_keys(namespace: str | None, body: Mapping[str, Any]) -> dict[Hashable, Child]:
    """The keys of one child in its kind's cache: its name, and each label it is found by."""
    metadata = {k: v for k, v in body["metadata"].items() if k != "managedFields"}
    labels = dict(metadata.get("labels") or {})
    child = Child(labels, json.dumps({**body, "metadata": metadata}, separators=(",", ":")).encode())
    ns = namespace or ""
    keys: dict[Hashable, Child] = {("name", ns, metadata["name"]): child}
    for key, value in labels.items():
        if keyed_label(key):
            keys[("label", ns, key, value)] = child
    return keys


class CachedChildren:
    """A kind's cache (kube/read.py's Cache) over its kopf index."""

    def __init__(self, index: Mapping[Hashable, Iterable[Child]]) -> None:
        self.index = index

    def get(self, namespace: str, name: str) -> dict[str, Any] | None:
        return next((child.body() for child in self.index.get(("name", namespace, name), ())), None)

    def list(self, namespace: str, labels: dict[str, str]) -> list[dict[str, Any]] | None:
        keyed = sorted((k, v) for k, v in labels.items() if keyed_label(k))
        if not keyed:
            return None
        found = self.index.get(("label", namespace, *keyed[0]), ())
        return [c.body() for c in found if all(c.labels.get(k) == v for k, v in labels.items())]


def cache_children(namespace: str | None, body: kopf.Body, **_: Any) -> dict[Hashable, Child]:
    return child_keys(namespace, body)


def register_child_caches() -> None:
    """One kopf index per cached kind, of the objects we manage only."""
    for api_version, _, plural in CACHED_CHILDREN:
        group, _, version = api_version.rpartition("/")
        resource = (group, version, plural) if group else (version, plural)
        kopf.index(*resource, labels=MANAGED_BY, id=f"{plural}_cache")(cache_children)


register_child_caches()
