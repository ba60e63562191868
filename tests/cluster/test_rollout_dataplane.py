"""Rollouts against a real data plane: tritonservers, Prometheus, and load that follows the route.

The operator runs as a process against the local cluster; the two models' servers run here,
labelled as their pods, and are scraped by a real Prometheus (tests/support/rollout_run.py).
A healthy candidate is promoted through 20 % and 50 % with error-rate analysis; a candidate
failing half of its requests is rolled back, and the time from the first scrape that saw its
failures to all traffic back on stable is printed. Either way no request sent to the stable
fails and the stable never has fewer ready replicas than it asks for.

Faults during analysis: Prometheus stopped mid-analysis holds the canary at its weight (or rolls
back, as the rollback policy says) and judges nothing until it answers again; a candidate rebuilt
mid-analysis starts again from the first step and is promoted only after a full analysis.
"""

from __future__ import annotations

import importlib
import os
import subprocess
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from tests.support import dataplane
from tests.support.crds import CRD_DIR
from tests.support.loadgen import share
from tests.support.operator import wait_for
from tests.support.prometheus import prometheus_binary
from tests.support.rollout_run import CANDIDATE, GROUP, STABLE, VERSION, Namespace, Underway, run_rollout

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


def analysis(interval: str, count: int) -> dict[str, Any]:
    metric = {"name": "errors", "template": "TritonErrorRate", "threshold": 0.05}
    return {"analysis": {"metrics": [metric], "interval": interval, "count": count}}


STEPS = [{"setWeight": 20}, analysis("2s", 4)]


def rollout_status(kube: Namespace) -> dict[str, Any]:
    return dict(kube.get("rollouts", "tiny").get("status", {}))


def successes_of(status: dict[str, Any]) -> int:
    """Passing measurements of the running analysis step so far."""
    metrics = (status.get("analysis") or {}).get("metrics") or [{}]
    return int(metrics[0].get("successes", 0))


def successes(kube: Namespace) -> int:
    return successes_of(rollout_status(kube))


def degraded_by(status: dict[str, Any]) -> str | None:
    degraded = [c for c in status.get("conditions", []) if c["type"] == "Degraded" and c["status"] == "True"]
    return str(degraded[0]["reason"]) if degraded else None


def parse_time(stamp: str) -> float:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def policy(on_error: str) -> dict[str, Any]:
    return {"rollbackPolicy": {"onAnalysisError": on_error, "maxConsecutiveErrors": 2}}


def test_prometheus_down_mid_analysis_holds_the_canary_until_it_answers(
    crds: None, api_client: Any, kubeconfig: str, namespace: str, good_repository: Path, tmp_path: Path
) -> None:
    outage: dict[str, Any] = {}

    def prometheus_goes_away(run: Underway) -> None:
        wait_for(lambda: successes(run.kube) >= 1, 120, "a first passing measurement")
        outage["down"] = time.time()
        run.prometheus.down()
        held = wait_for(
            lambda: (s := rollout_status(run.kube))["phase"] == "Paused" and degraded_by(s) == "AnalysisError" and s,
            60,
            "the rollout to hold on Prometheus errors",
        )
        outage["successes"] = successes(run.kube)
        time.sleep(6)  # three more intervals without Prometheus: nothing judged, nothing moved
        still = rollout_status(run.kube)
        assert (held["canaryWeight"], still["phase"], still["canaryWeight"]) == (20, "Paused", 20)
        assert successes(run.kube) == outage["successes"] < 4
        outage["up"] = time.time()
        run.prometheus.up()

    run = run_rollout(
        api_client, kubeconfig, namespace, tmp_path, good_repository,
        steps=STEPS, spec=policy("Pause"), meanwhile=prometheus_goes_away,
    )  # fmt: skip
    print("\n" + run.summary())
    assert run.phase == "Promoted", run.status
    assert degraded_by(run.status) is None
    before_it_answered = [c.weights for c in run.load.weights if c.time <= outage["up"]]
    assert all(share(w, CANDIDATE) <= 0.2 for w in before_it_answered), before_it_answered
    assert sum(run.load.failed().values()) == 0, run.load.failed()


def test_prometheus_down_mid_analysis_rolls_back_when_the_policy_says_abort(
    crds: None, api_client: Any, kubeconfig: str, namespace: str, good_repository: Path, tmp_path: Path
) -> None:
    def prometheus_goes_away(run: Underway) -> None:
        wait_for(lambda: successes(run.kube) >= 1, 120, "a first passing measurement")
        run.prometheus.down()
        wait_for(lambda: rollout_status(run.kube)["phase"] == "RolledBack", 60, "the rollback on Prometheus errors")
        run.prometheus.up()  # for the run's own final queries

    run = run_rollout(
        api_client, kubeconfig, namespace, tmp_path, good_repository,
        steps=STEPS, spec=policy("Abort"), meanwhile=prometheus_goes_away,
    )  # fmt: skip
    print("\n" + run.summary())
    assert (run.phase, run.status["canaryWeight"]) == ("RolledBack", 0), run.status
    assert share(run.final_weights, STABLE) == 1.0, run.final_weights
    history = run.status["history"][-1]
    assert (history["event"], history["reason"], history["metric"]) == ("RolledBack", "AnalysisError", "errors")
    assert run.failed_stable_requests == 0


def test_a_candidate_rebuilt_mid_analysis_is_judged_again_from_the_first_step(
    crds: None, api_client: Any, kubeconfig: str, namespace: str, good_repository: Path, tmp_path: Path
) -> None:
    seen: dict[str, Any] = {}

    def rebuild_the_candidate(run: Underway) -> None:
        wait_for(lambda: successes(run.kube) >= 2, 120, "two passing measurements")
        seen["old"] = rollout_status(run.kube)["candidateDigest"]
        seen["patched"] = time.time()
        run.kube.custom.patch_namespaced_custom_object(
            GROUP, VERSION, run.kube.ns, "llmmodels", CANDIDATE, {"spec": {"build": {"quantization": "Int8Dynamic"}}}
        )
        seen["reset"] = wait_for(
            lambda: (s := rollout_status(run.kube)).get("candidateDigest") not in (None, seen["old"]) and s,
            120,
            "the rollout to take the rebuilt candidate",
        )
        seen["at"] = time.time()

    run = run_rollout(
        api_client, kubeconfig, namespace, tmp_path, good_repository, steps=STEPS, meanwhile=rebuild_the_candidate
    )
    print("\n" + run.summary())
    assert run.phase == "Promoted", run.status
    new = seen["reset"]["candidateDigest"]
    promoted = run.status["history"][-1]
    assert (promoted["event"], promoted["candidateDigest"]) == ("Promoted", new)
    # the counters of the old digest are gone: at most the new analysis' first measurement
    assert seen["reset"]["currentStep"] <= 1 and successes_of(seen["reset"]) <= 1, seen["reset"]
    # and the new digest was measured count (4) times, 2 s apart, before its promotion
    assert parse_time(promoted["time"]) >= seen["patched"] + 3 * 2 - 1
    assert sum(run.load.failed().values()) == 0, run.load.failed()
