"""Rollout reconciled by the operator process on the real control plane, replicaRatio traffic.

kwok runs the pods: serving pods become Ready and evaluator pods end with a passing result, or a
failing one for a model whose name contains "bad" (e2e/cluster/stages/llmops-evaluator-complete.yaml).
Analysis against a real Prometheus and HTTPRoute weights are covered by test_rollout_dataplane.py.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client

from tests.support.kube import Kube, Kubectl, evalsuite, event_reasons, llmmodel, ready
from tests.support.operator import OperatorProcess, wait_for


def rollout(candidate: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "llmops.dev/v1alpha1",
        "kind": "Rollout",
        "metadata": {"name": "canary"},
        "spec": {
            "stable": {"name": "base"},
            "candidate": {"name": candidate},
            "steps": [{"setWeight": 25}, {"evalGate": {"evalSuite": "quality"}}, {"setWeight": 50}],
            "trafficRouting": {"replicaRatio": True},
            **spec,
        },
    }


def status(kube: Kube) -> dict[str, Any]:
    return dict(kube.get("rollouts", "canary").get("status", {}))


def endpoint_models(kube: Kube) -> set[str]:
    """Which models' pods the rollout's Service sends traffic to."""
    found = client.DiscoveryV1Api(kube.core.api_client).list_namespaced_endpoint_slice(
        kube.ns, label_selector="kubernetes.io/service-name=canary"
    )
    pods = {e.target_ref.name for s in found.items for e in (s.endpoints or [])}
    return {p.rsplit("-", 2)[0] for p in pods}


class CapacityWatch:
    """Samples the stable Deployment's ready replicas while a rollout runs."""

    def __init__(self, kube: Kube, name: str) -> None:
        self.kube, self.name = kube, name
        self.lowest: int | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            status = self.kube.apps.read_namespaced_deployment(self.name, self.kube.ns).status
            ready_now = status.ready_replicas or 0
            self.lowest = ready_now if self.lowest is None else min(self.lowest, ready_now)

    def __enter__(self) -> CapacityWatch:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


@pytest.fixture
def models(operator: OperatorProcess, kube: Kube) -> Iterator[None]:
    kube.create(llmmodel("base", **{"spec.serving.replicas": 2}))
    kube.create(evalsuite("quality"))
    wait_for(lambda: ready(kube, "base"), 90, "stable model Ready")
    yield


def test_a_good_candidate_passes_its_eval_gate_and_is_promoted_without_losing_capacity(
    models: None, kube: Kube, kubectl: Kubectl
) -> None:
    kube.create(llmmodel("tuned"))
    wait_for(lambda: ready(kube, "tuned"), 90, "candidate Ready")
    with CapacityWatch(kube, "base") as capacity:
        kube.create(rollout("tuned"))
        wait_for(lambda: status(kube).get("canaryWeight") == 25, 60, "weight 25")
        wait_for(lambda: endpoint_models(kube) == {"base", "tuned"}, 60, "endpoints on both models")
        wait_for(lambda: status(kube).get("phase") == "Promoted", 120, "Promoted")
        wait_for(lambda: endpoint_models(kube) == {"tuned"}, 60, "endpoints on the candidate only")
    assert capacity.lowest is not None and capacity.lowest >= 2, "stable capacity dropped"
    final = status(kube)
    assert final["canaryWeight"] == 100 and final["history"][-1]["event"] == "Promoted"
    assert final["stableDigest"] == kube.get("llmmodels", "tuned")["status"]["artifact"]["digest"]
    # The candidate now carries the stable's load: it is held at the stable's replicas.
    wait_for(lambda: kube.apps.read_namespaced_deployment("tuned", kube.ns).spec.replicas == 2, 30, "2 replicas")
    runs = kube.get("evalsuites", "quality")["status"]["runs"]
    assert [(r["model"], r["phase"]) for r in runs] == [("tuned", "Passed")]
    assert {"Step", "Promoted"} <= set(event_reasons(kubectl, kube.ns, "Rollout"))


def test_a_bad_candidate_fails_its_gate_and_is_rolled_back_for_good(models: None, kube: Kube, kubectl: Kubectl) -> None:
    kube.create(llmmodel("bad-tuned"))
    wait_for(lambda: ready(kube, "bad-tuned"), 90, "candidate Ready")
    with CapacityWatch(kube, "base") as capacity:
        kube.create(rollout("bad-tuned"))
        wait_for(lambda: status(kube).get("phase") == "RolledBack", 120, "RolledBack")
        wait_for(lambda: endpoint_models(kube) == {"base"}, 30, "all traffic on stable")
    assert capacity.lowest is not None and capacity.lowest >= 2, "stable capacity dropped"
    final = status(kube)
    digest = kube.get("llmmodels", "bad-tuned")["status"]["artifact"]["digest"]
    assert final["canaryWeight"] == 0 and final["rejectedDigests"] == [digest]
    last = final["history"][-1]
    assert (last["event"], last["step"], last["metric"], last["threshold"]) == ("RolledBack", 1, "em", 0.8)
    wait_for(lambda: kube.apps.read_namespaced_deployment("bad-tuned", kube.ns).spec.replicas == 0, 30, "scaled to 0")
    degraded = next(c for c in final["conditions"] if c["type"] == "Degraded")
    assert degraded["status"] == "True" and "em" in degraded["message"]
    assert "RolledBack" in event_reasons(kubectl, kube.ns, "Rollout")

    # Re-applying the same manifest (GitOps sync) does not retry the rejected digest.
    kubectl("apply", "--server-side", "--field-manager=gitops", "-n", kube.ns, "-f", "-",
            input=json.dumps(rollout("bad-tuned")))  # fmt: skip
    generation = kube.get("rollouts", "canary")["metadata"]["generation"]
    wait_for(lambda: status(kube).get("observedGeneration") == generation, 30, "observed")
    assert status(kube)["phase"] == "RolledBack" and status(kube)["history"] == final["history"]
