"""Rollouts against a real data plane: tritonservers, Prometheus, and load that follows the route.

The operator runs as a process against the local cluster; the two models' servers run here,
labelled as their pods, and are scraped by a real Prometheus (tests/support/rollout_run.py).
A healthy candidate is promoted through 20 % and 50 % with error-rate analysis; a candidate
failing half of its requests is rolled back, and the time from the first scrape that saw its
failures to all traffic back on stable is printed. Either way no request sent to the stable
fails and the stable never has fewer ready replicas than it asks for.
"""

from __future__ import annotations

import importlib
import os
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.support import dataplane
from tests.support.crds import CRD_DIR
from tests.support.loadgen import share
from tests.support.prometheus import prometheus_binary
from tests.support.rollout_run import CANDIDATE, STABLE, run_rollout

Kubectl = Callable[..., subprocess.CompletedProcess[str]]
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require_data_plane() -> None:
    """Prometheus and the workloads extra: skip on a laptop without them, fail in CI."""
    missing = [] if prometheus_binary() else ["prometheus (e2e/system-deps.sh)"]
    for module in ("pytriton", "onnxruntime", "torch", "transformers"):
        try:
            importlib.import_module(module)
        except ImportError:
            missing.append(f"{module} (make dev)")
    if missing:
        message = "rollout data plane needs " + ", ".join(missing)
        if IN_CI:
            pytest.fail(message, pytrace=False)
        pytest.skip(message)


@pytest.fixture(scope="module")
def good_repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    require_data_plane()
    return dataplane.good_repository(tmp_path_factory.mktemp("repository"))


@pytest.fixture(scope="module")
def crds(kubectl: Kubectl) -> None:
    kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CRD_DIR))
    kubectl(
        "wait", "--for=condition=Established", "--timeout=60s", "crd", "-l", "app.kubernetes.io/part-of=llmops-operator"
    )
    kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd/httproutes.gateway.networking.k8s.io")


def test_a_healthy_candidate_is_promoted_and_takes_all_traffic(
    crds: None, api_client: Any, kubeconfig: str, namespace: str, good_repository: Path, tmp_path: Path
) -> None:
    run = run_rollout(api_client, kubeconfig, namespace, tmp_path, good_repository)
    print("\n" + run.summary())
    assert run.phase == "Promoted", run.status
    assert run.status["canaryWeight"] == 100
    assert share(run.final_weights, CANDIDATE) == 1.0, run.final_weights
    assert run.load.sent()[CANDIDATE] > 0
    assert sum(run.load.failed().values()) == 0, run.load.failed()
    assert run.first_failure_scrape is None
    assert run.min_stable_ready == run.desired_stable_replicas


def test_a_failing_candidate_is_rolled_back_and_stable_never_fails(
    crds: None, api_client: Any, kubeconfig: str, namespace: str, good_repository: Path, tmp_path: Path
) -> None:
    run = run_rollout(api_client, kubeconfig, namespace, tmp_path, good_repository, candidate_failure_share=0.5)
    print("\n" + run.summary())
    assert run.phase == "RolledBack", run.status
    assert run.status["canaryWeight"] == 0
    assert share(run.final_weights, STABLE) == 1.0, run.final_weights
    assert run.load.failed()[CANDIDATE] > 0
    assert run.failed_stable_requests == 0, [r for r in run.load.requests if r.backend == STABLE and not r.ok][:5]
    assert run.min_stable_ready == run.desired_stable_replicas
    assert run.rollback_seconds is not None, "the rollback was never seen by the load generator"
    # one analysis interval (5 s) plus reconcile, route write and the 200 ms route poll
    assert 0 < run.rollback_seconds < 30
    history = run.status["history"][-1]
    assert (history["event"], history["reason"], history["metric"]) == ("RolledBack", "AnalysisFailed", "errors")
