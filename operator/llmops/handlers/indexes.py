"""The Rollouts and the EvalSuites of each namespace, kept from their streams (kube/resources.py).

Every LLMModel reconcile looks for the Rollouts that hold the model as a canary, and every
LLMModel event asks which Rollouts and EvalSuites use that model. Listing the namespace for
each cost one request per reconcile and three per event: with thousands of models, most of
the operator's reads, for kinds that have a handful of objects. A lookup in a namespace the
stream has not listed yet fails loudly (the reconcile is retried) instead of finding nothing:
reconciles wait for the first lists after a start (handlers/streams.py), so it does not happen
unless a kind cannot be listed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..kube.children import Listed
from ..kube.resources import RESOURCES


@dataclass
class Index:
    """One kind's objects by namespace and name, as its stream last showed them. Pure but for
    `knows`, which asks the stream whether the namespace has been listed."""

    kind: str
    objects: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)

    def relisted(self, scope: str | None, listed: Listed) -> None:
        """The scope's (a namespace, or None: the cluster) objects are exactly these now."""
        if scope is None:
            self.objects.clear()
        else:
            self.objects.pop(scope, None)
        for (namespace, name), copy in listed.items():
            self.objects.setdefault(namespace, {})[name] = copy.body()

    def changed(self, type_: str, body: Mapping[str, Any]) -> None:
        metadata = body.get("metadata") or {}
        namespace, name = metadata.get("namespace") or "", metadata.get("name") or ""
        if type_ == "DELETED":
            in_namespace = self.objects.get(namespace, {})
            in_namespace.pop(name, None)
            if not in_namespace:
                self.objects.pop(namespace, None)
        else:
            self.objects.setdefault(namespace, {})[name] = dict(body)  # the event's own parse

    def in_namespace(self, namespace: str) -> list[dict[str, Any]]:
        if not RESOURCES.knows(self.kind, namespace):
            raise RuntimeError(f"the {self.kind}s of {namespace} are not listed yet")
        return list(self.objects.get(namespace, {}).values())


ROLLOUTS = Index("Rollout")
EVAL_SUITES = Index("EvalSuite")


def rollouts(namespace: str) -> list[dict[str, Any]]:
    """The namespace's Rollouts, as last seen by the watch."""
    return ROLLOUTS.in_namespace(namespace)


def eval_suites(namespace: str) -> list[dict[str, Any]]:
    """The namespace's EvalSuites, as last seen by the watch."""
    return EVAL_SUITES.in_namespace(namespace)
