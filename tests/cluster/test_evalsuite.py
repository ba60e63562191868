"""EvalSuite reconciled by the operator process on the real control plane.

kwok runs the evaluator pods: the stage e2e/cluster/stages/llmops-evaluator-complete.yaml ends
them with a compact result (em 0.9, or 0.1 for a model whose name contains "bad") in place of
the real evaluator (tested on its own in tests/workload).
"""

from __future__ import annotations

import time
from typing import Any

from tests.support.kube import Kube, Kubectl, evalsuite, event_reasons, llmmodel, ready
from tests.support.operator import OperatorProcess, wait_for

SUITE = "reverse-quality"


def runs(kube: Kube) -> list[dict[str, Any]]:
    return list(kube.get("evalsuites", SUITE).get("status", {}).get("runs", []))


def finished(kube: Kube, count: int) -> list[dict[str, Any]] | None:
    """The runs once `count` of them have ended."""
    found = runs(kube)
    done = [r for r in found if r["phase"] in ("Passed", "Failed", "Error")]
    return found if len(done) >= count else None


def evaluator_jobs(kube: Kube) -> list[str]:
    jobs = kube.batch.list_namespaced_job(kube.ns, label_selector="app.kubernetes.io/component=evaluator").items
    return sorted(j.metadata.name for j in jobs)


def ready_message(kube: Kube) -> str:
    conditions = kube.get("evalsuites", SUITE)["status"]["conditions"]
    return str(next(c["message"] for c in conditions if c["type"] == "Ready"))


def test_a_ready_model_is_judged_once_per_digest_and_again_per_run_nonce(
    operator: OperatorProcess, kube: Kube, kubectl: Kubectl
) -> None:
    kube.create(llmmodel("tinystories-ft"))
    kube.create(evalsuite(SUITE, target={"model": "tinystories-ft"}))
    wait_for(lambda: ready(kube, "tinystories-ft"), 90, "LLMModel Ready")
    [run] = wait_for(lambda: finished(kube, 1), 60, "the first run to end")
    digest = kube.get("llmmodels", "tinystories-ft")["status"]["artifact"]["digest"]
    assert (run["model"], run["digest"], run["phase"], run["passed"]) == ("tinystories-ft", digest, "Passed", True)
    assert run["metrics"] == [{"name": "em", "value": 0.9, "threshold": 0.8, "passed": True}]
    assert run["job"] in evaluator_jobs(kube) and len(evaluator_jobs(kube)) == 1
    suite = kube.get("evalsuites", SUITE)
    assert suite["status"]["phase"] == "Passed"
    assert suite["status"]["observedGeneration"] == suite["metadata"]["generation"]
    assert kube.condition("evalsuites", SUITE, "Ready") == ("True", "EvalPassed")
    assert {"Evaluating", "EvalPassed"} <= set(event_reasons(kubectl, kube.ns, "EvalSuite"))
    pod = kube.core.list_namespaced_pod(kube.ns, label_selector=f"job-name={run['job']}").items[0]
    assert pod.spec.security_context.run_as_non_root is True
    assert pod.metadata.labels["llmops.dev/eval-target"] == "tinystories-ft"
    counted = f'llmops_eval_runs_total{{namespace="{kube.ns}",result="Passed",suite="{SUITE}"}} 1.0'
    assert counted in operator.metrics()

    # A restarted operator finds the verdict for this digest and does not judge it again.
    operator.kill()
    operator.start()
    time.sleep(12)  # more than two resync intervals (LLMOPS_RESYNC_SECONDS=5)
    assert len(runs(kube)) == 1 and len(evaluator_jobs(kube)) == 1

    kube.patch_spec("evalsuites", SUITE, {"runNonce": "again"})
    first, second = wait_for(lambda: finished(kube, 2), 60, "the run for the new nonce to end")
    assert first == run
    assert (second["digest"], second["nonce"], second["phase"]) == (digest, "again", "Passed")
    assert len(evaluator_jobs(kube)) == 2


def test_a_bad_model_fails_its_eval_and_the_condition_names_metric_value_and_threshold(
    operator: OperatorProcess, kube: Kube, kubectl: Kubectl
) -> None:
    kube.create(llmmodel("tinystories-bad"))
    kube.create(evalsuite(SUITE, target={"model": "tinystories-bad"}))
    [run] = wait_for(lambda: finished(kube, 1), 120, "the run to end")
    assert (run["phase"], run["passed"]) == ("Failed", False)
    assert run["metrics"] == [{"name": "em", "value": 0.1, "threshold": 0.8, "passed": False}]
    assert kube.get("evalsuites", SUITE)["status"]["phase"] == "Failed"
    assert kube.condition("evalsuites", SUITE, "Ready") == ("False", "EvalFailed")
    assert "em=0.1 below threshold 0.8" in ready_message(kube)
    assert "EvalFailed" in event_reasons(kubectl, kube.ns, "EvalSuite")


def test_a_target_that_never_becomes_ready_is_reported_not_judged(operator: OperatorProcess, kube: Kube) -> None:
    kube.create(evalsuite(SUITE, target={"model": "no-such-model"}))
    wait_for(
        lambda: kube.condition("evalsuites", SUITE, "Progressing") == ("False", "TargetNotReady"),
        30,
        "Progressing/TargetNotReady",
    )
    assert kube.get("evalsuites", SUITE)["status"]["phase"] == "Idle"
    assert evaluator_jobs(kube) == []
