"""The operator's writes of children (kube/apply.py), against the apiserver."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from kubernetes.config import kube_config

from llmops.kube import client as kube_client
from llmops.kube.apply import ChildRejected, apply

pytestmark = pytest.mark.cluster


@pytest.fixture
def operator_client(kubeconfig: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", kubeconfig)  # read at import, not at load
    kube_client.api_client.cache_clear()
    kube_client.dynamic.cache_clear()
    yield
    kube_client.api_client.cache_clear()
    kube_client.dynamic.cache_clear()


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
