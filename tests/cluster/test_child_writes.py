"""The operator's writes of children (kube/apply.py), against the apiserver."""

from __future__ import annotations

import asyncio

import pytest

from llmops.kube.apply import ChildRejected, apply

pytestmark = pytest.mark.cluster


def test_a_child_the_apiserver_cannot_decode_is_refused_not_retried(namespace: str, operator_client: None) -> None:
    """A quantity the apiserver's parser refuses ("1e2.5", which its documented grammar allows):
    the apply is answered 500, not 422, and is a refusal all the same: the reconciler makes the
    resource Degraded with the apiserver's message instead of retrying for ever."""
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "undecodable", "namespace": namespace},
        "spec": {
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{"name": "c", "image": "busybox", "resources": {"limits": {"cpu": "1e2.5"}}}],
                }
            }
        },
    }
    with pytest.raises(ChildRejected, match="quantities must match"):
        asyncio.run(apply(job))
