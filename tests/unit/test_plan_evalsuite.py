"""The EvalSuite plan: one case per (spec, observed models, Rollouts, Jobs) -> (Jobs, runs, conditions, events)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from llmops.api.evalsuite import EvalRun, EvalSuite
from llmops.api.rollout import Rollout
from llmops.plan.common import Plan
from llmops.plan.evalsuite import (
    GATE_ROLE_LABEL,
    MAX_RUNS,
    TARGET_LABEL,
    EvalSuiteObservation,
    finished_runs,
    gated_suites,
    plan_evalsuite,
)
from llmops.settings import Settings
from tests.support.invalid_specs import DELETE, example, patched

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
SETTINGS = Settings()
DIGEST = "sha256:" + "ab" * 32
NEW_DIGEST = "sha256:" + "cd" * 32
BASE_DIGEST = "sha256:" + "ee" * 32
PASSING = {"em": 0.9, "p95": 0.2}


def suite(changes: dict[str, Any] | None = None) -> EvalSuite:
    """The example suite, simplified to two metrics and no baseline unless a case adds one."""
    obj = patched(
        example("evalsuite"),
        {
            "spec.metrics": [
                {"name": "em", "type": "ExactMatch", "threshold": 0.8},
                {"name": "p95", "type": "LatencyP95", "threshold": 0.5},
            ],
            "spec.baseline": DELETE,
            **(changes or {}),
        },
    )
    obj["metadata"].update(namespace="ml", uid="uid-1", generation=1)
    return EvalSuite.model_validate(obj)


def model(name: str, digest: str = DIGEST, ready: bool = True) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": "ml"},
        "status": {
            "artifact": {"digest": digest},
            "endpoint": {"http": f"http://{name}.ml.svc:8000", "modelName": "llm"},
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
        },
    }


def models(*objs: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {m["metadata"]["name"]: m for m in objs}


def rollout(phase: str = "Progressing", step: int = 3, candidate_digest: str | None = DIGEST) -> Rollout:
    obj = example("rollout")
    obj["metadata"].update(namespace="ml")
    obj["status"] = {"phase": phase, "currentStep": step, "candidateDigest": candidate_digest}
    return Rollout.model_validate(obj)


def job(name: str, condition: str | None = None, reason: str | None = None) -> dict[str, Any]:
    conditions = [{"type": condition, "status": "True", **({"reason": reason} if reason else {})}] if condition else []
    return {"metadata": {"name": name}, "status": {"conditions": conditions}}


def evaluator_pod(job_name: str, result: dict[str, Any] | str, exit_code: int = 0) -> dict[str, Any]:
    message = result if isinstance(result, str) else json.dumps(result)
    state = {"terminated": {"exitCode": exit_code, "message": message, "finishedAt": "2026-11-23T12:01:00Z"}}
    return {
        "metadata": {"name": f"{job_name}-x", "labels": {"job-name": job_name}},
        "status": {"containerStatuses": [{"name": "evaluator", "state": state}]},
    }


def result(values: dict[str, float], thresholds: dict[str, float] | None = None) -> dict[str, Any]:
    thresholds = thresholds or {"em": 0.8, "p95": 0.5}
    lines = [
        {"name": k, "value": v, "threshold": t, "passed": v <= t if k == "p95" else v >= t}
        for k, v in values.items()
        for t in [thresholds[k]]
    ]
    return {"passed": all(m["passed"] for m in lines), "cases": 3, "errors": 0, "metrics": lines,
            "report": "/tmp/report.json"}  # fmt: skip


def step(s: EvalSuite, observed: EvalSuiteObservation, now: datetime = NOW) -> tuple[Plan, EvalSuite]:
    """Plan, then feed the status back as the apiserver would."""
    plan = plan_evalsuite(s, observed, SETTINGS, now)
    return plan, EvalSuite.model_validate({**s.wire(), "status": plan.status})


def jobs_of(plan: Plan) -> list[dict[str, Any]]:
    return [c for c in plan.children if c["kind"] == "Job"]


def conditions(plan: Plan) -> dict[str, tuple[str, str]]:
    return {c["type"]: (c["status"], c["reason"]) for c in plan.status["conditions"]}


def message(plan: Plan, type_: str) -> str:
    return next(str(c["message"]) for c in plan.status["conditions"] if c["type"] == type_)


def completed(s: EvalSuite, observed: EvalSuiteObservation, job_name: str, values: dict[str, float]) -> EvalSuite:
    done = EvalSuiteObservation(
        models=observed.models,
        rollouts=observed.rollouts,
        jobs={job_name: job(job_name, "Complete")},
        pods=[evaluator_pod(job_name, result(values))],
    )
    return step(s, done)[1]


def started(s: EvalSuite, observed: EvalSuiteObservation) -> tuple[EvalSuite, str]:
    plan, after = step(s, observed)
    [evaluator_job] = jobs_of(plan)
    return after, evaluator_job["metadata"]["name"]


TARGET = EvalSuiteObservation(models=models(model("tinystories-ft")))


def test_a_ready_target_model_gets_one_evaluator_job_and_a_running_run() -> None:
    plan, after = step(suite(), TARGET)
    [configmap] = [c for c in plan.children if c["kind"] == "ConfigMap"]
    [evaluator_job] = jobs_of(plan)
    assert evaluator_job["metadata"]["name"].startswith("reverse-quality-eval-")
    assert evaluator_job["spec"]["activeDeadlineSeconds"] == 1800
    pod = evaluator_job["spec"]["template"]
    assert pod["metadata"]["labels"][TARGET_LABEL] == "tinystories-ft"
    container = pod["spec"]["containers"][0]
    args = container["args"]
    assert args[args.index("--endpoint") + 1] == "http://tinystories-ft.ml.svc:8000"
    assert args[args.index("--suite") + 1] == "/etc/llmops/suite/suite.json"
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert {"name": "suite", "configMap": {"name": configmap["metadata"]["name"]}} in pod["spec"]["volumes"]
    suite_json = json.loads(configmap["data"]["suite.json"])
    assert [m["name"] for m in suite_json["metrics"]] == ["em", "p95"] and suite_json["maxNewTokens"] == 16
    [run] = after.status.runs
    assert (run.model, run.digest, run.nonce, run.phase) == ("tinystories-ft", DIGEST, None, "Running")
    assert run.job == evaluator_job["metadata"]["name"] and run.started_at == "2026-11-23T12:00:00Z"
    assert plan.status["phase"] == "Running"
    assert conditions(plan)["Progressing"] == ("True", "Evaluating")
    assert [e.reason for e in plan.events] == ["Evaluating"]
    assert plan.requeue_after is not None


def test_a_passing_result_records_the_metrics_and_marks_the_suite_ready() -> None:
    s, name = started(suite(), TARGET)
    done = EvalSuiteObservation(
        models=TARGET.models, jobs={name: job(name, "Complete")}, pods=[evaluator_pod(name, result(PASSING))]
    )
    plan, after = step(s, done)
    [run] = after.status.runs
    assert run.phase == "Passed" and run.passed is True and run.finished_at
    assert [(m.name, m.value, m.threshold, m.passed) for m in run.metrics] == [
        ("em", 0.9, 0.8, True),
        ("p95", 0.2, 0.5, True),
    ]
    assert run.report == "/tmp/report.json"
    assert plan.status["phase"] == "Passed"
    assert conditions(plan) == {
        "Ready": ("True", "EvalPassed"),
        "Progressing": ("False", "Idle"),
        "Degraded": ("False", "AsExpected"),
    }
    assert [e.reason for e in plan.events] == ["EvalPassed"]
    assert plan.requeue_after is None
    assert finished_runs(s.status.runs, after.status.runs) == after.status.runs


def test_a_judged_digest_is_never_run_again() -> None:
    s, name = started(suite(), TARGET)
    s = completed(s, TARGET, name, PASSING)
    plan, after = step(s, TARGET)
    assert not jobs_of(plan)
    assert len(after.status.runs) == 1 and after.status.runs[0].phase == "Passed"
    assert plan.events == []


def test_a_new_digest_of_the_target_is_judged_once_more() -> None:
    s, name = started(suite(), TARGET)
    s = completed(s, TARGET, name, PASSING)
    rebuilt = EvalSuiteObservation(models=models(model("tinystories-ft", NEW_DIGEST)))
    plan, after = step(s, rebuilt)
    [new_job] = jobs_of(plan)
    assert new_job["metadata"]["name"] != name
    assert [(r.digest, r.phase) for r in after.status.runs] == [(DIGEST, "Passed"), (NEW_DIGEST, "Running")]
    assert plan.status["phase"] == "Running"


def test_changing_run_nonce_judges_the_same_digest_again() -> None:
    s, name = started(suite(), TARGET)
    s = completed(s, TARGET, name, PASSING)
    bumped = EvalSuite.model_validate(patched(s.wire(), {"spec.runNonce": "2"}))
    plan, after = step(bumped, TARGET)
    [new_job] = jobs_of(plan)
    assert new_job["metadata"]["name"] != name
    assert new_job["metadata"]["annotations"]["llmops.dev/eval-nonce"] == "2"
    assert [(r.digest, r.nonce, r.phase) for r in after.status.runs] == [
        (DIGEST, None, "Passed"),
        (DIGEST, "2", "Running"),
    ]


def test_a_target_model_that_is_not_ready_is_not_judged_yet() -> None:
    plan, after = step(suite(), EvalSuiteObservation(models=models(model("tinystories-ft", ready=False))))
    assert not plan.children and after.status.runs == []
    assert plan.status["phase"] == "Idle"
    assert conditions(plan)["Ready"] == ("False", "TargetNotReady")
    assert conditions(plan)["Progressing"] == ("False", "TargetNotReady")
    assert "tinystories-ft is not Ready" in message(plan, "Progressing")
    plan, _ = step(suite(), EvalSuiteObservation())
    assert "tinystories-ft does not exist" in message(plan, "Progressing")


def test_a_failing_metric_fails_the_run_and_names_value_and_threshold() -> None:
    s, name = started(suite(), TARGET)
    failing = result({"em": 0.1, "p95": 0.7})
    done = EvalSuiteObservation(
        models=TARGET.models, jobs={name: job(name, "Complete")}, pods=[evaluator_pod(name, failing)]
    )
    plan, after = step(s, done)
    assert after.status.runs[0].phase == "Failed" and after.status.runs[0].passed is False
    assert plan.status["phase"] == "Failed"
    assert conditions(plan)["Ready"] == ("False", "EvalFailed")
    assert "em=0.1 below threshold 0.8" in message(plan, "Ready")
    assert "p95=0.7 above threshold 0.5" in message(plan, "Ready")
    assert [(e.type, e.reason) for e in plan.events] == [("Warning", "EvalFailed")]


def test_an_evaluator_that_fails_ends_the_run_in_error_with_its_message() -> None:
    s, name = started(suite(), TARGET)
    error = {"error": "endpoint http://tinystories-ft.ml.svc:8000 never became ready"}
    failed = EvalSuiteObservation(
        models=TARGET.models,
        jobs={name: job(name, "Failed", "BackoffLimitExceeded")},
        pods=[evaluator_pod(name, error, exit_code=1)],
    )
    plan, after = step(s, failed)
    [run] = after.status.runs
    assert run.phase == "Error"
    assert run.message == f"evaluator Job {name} failed (BackoffLimitExceeded): {error['error']}"
    assert conditions(plan)["Ready"] == ("False", "EvaluatorError")
    assert conditions(plan)["Degraded"] == ("True", "EvaluatorError")
    assert [(e.type, e.reason) for e in plan.events] == [("Warning", "EvaluatorError")]


def test_a_job_past_its_deadline_ends_the_run_in_error() -> None:
    s, name = started(suite({"spec.timeoutSeconds": 60}), TARGET)
    failed = EvalSuiteObservation(models=TARGET.models, jobs={name: job(name, "Failed", "DeadlineExceeded")})
    _, after = step(s, failed)
    assert after.status.runs[0].phase == "Error"
    assert "exceeded timeoutSeconds (60s)" in str(after.status.runs[0].message)


def test_a_run_still_going_well_past_the_timeout_ends_in_error_even_if_the_job_says_nothing() -> None:
    s, name = started(suite({"spec.timeoutSeconds": 60}), TARGET)
    running = EvalSuiteObservation(models=TARGET.models, jobs={name: job(name)})
    _, after = step(s, running, NOW + timedelta(seconds=30))
    assert after.status.runs[0].phase == "Running"
    _, after = step(s, running, NOW + timedelta(seconds=200))
    assert after.status.runs[0].phase == "Error"
    assert "still running after timeoutSeconds (60s)" in str(after.status.runs[0].message)


def test_a_completed_job_without_a_result_is_an_error() -> None:
    s, name = started(suite(), TARGET)
    _, after = step(s, EvalSuiteObservation(models=TARGET.models, jobs={name: job(name, "Complete")}))
    assert after.status.runs[0].phase == "Error"
    assert "without a result" in str(after.status.runs[0].message)


def test_an_unschedulable_evaluator_pod_degrades_the_suite_while_the_run_waits() -> None:
    s, name = started(suite(), TARGET)
    pending = {
        "metadata": {"name": f"{name}-x", "labels": {"job-name": name}},
        "status": {"conditions": [{"type": "PodScheduled", "reason": "Unschedulable", "message": "0/3 nodes"}]},
    }
    plan, after = step(s, EvalSuiteObservation(models=TARGET.models, jobs={name: job(name)}, pods=[pending]))
    assert after.status.runs[0].phase == "Running"
    assert conditions(plan)["Degraded"] == ("True", "Unschedulable")


def test_the_job_is_reapplied_while_running_so_a_lost_one_comes_back_under_the_same_name() -> None:
    s, name = started(suite(), TARGET)
    plan, after = step(s, TARGET)
    assert [j["metadata"]["name"] for j in jobs_of(plan)] == [name]
    assert len(after.status.runs) == 1


def test_a_running_run_whose_job_and_target_are_gone_ends_in_error() -> None:
    s, name = started(suite(), TARGET)
    _, after = step(s, EvalSuiteObservation())
    assert after.status.runs[0].phase == "Error"
    assert f"evaluator Job {name} no longer exists" in str(after.status.runs[0].message)


def test_an_endpoint_target_is_judged_once_per_run_nonce() -> None:
    s = suite({"spec.target": {"endpoint": "http://triton.example:8000", "modelName": "gpt"}})
    plan, after = step(s, EvalSuiteObservation())
    [evaluator_job] = jobs_of(plan)
    args = evaluator_job["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[args.index("--model-name") + 1] == "gpt"
    assert TARGET_LABEL not in evaluator_job["spec"]["template"]["metadata"]["labels"]
    assert (after.status.runs[0].model, after.status.runs[0].digest) == ("http://triton.example:8000", "")
    name = evaluator_job["metadata"]["name"]
    after = completed(after, EvalSuiteObservation(), name, PASSING)
    plan, again = step(after, EvalSuiteObservation())
    assert not jobs_of(plan) and len(again.status.runs) == 1


# --- rollouts ---------------------------------------------------------------------------------


def test_a_rollout_needs_the_suite_of_its_current_eval_gate_only_while_progressing() -> None:
    assert gated_suites(rollout(step=3)) == {"reverse-quality"}
    assert gated_suites(rollout(step=2)) == set()
    assert gated_suites(rollout(phase="Paused")) == set()
    assert gated_suites(rollout(step=99)) == set()


def test_a_rollout_at_an_eval_gate_gets_its_candidate_judged_at_the_candidate_digest() -> None:
    observed = EvalSuiteObservation(models=models(model("tinystories-ft")), rollouts=[rollout()])
    plan, after = step(suite({"spec.target": DELETE}), observed)
    [evaluator_job] = jobs_of(plan)
    assert evaluator_job["spec"]["template"]["metadata"]["labels"][TARGET_LABEL] == "tinystories-ft"
    [run] = after.status.runs
    assert (run.model, run.digest, run.nonce, run.phase) == ("tinystories-ft", DIGEST, None, "Running")
    assert "Rollout tinystories" in plan.events[0].message


def test_a_rollout_and_the_spec_target_naming_the_same_version_share_one_run() -> None:
    observed = EvalSuiteObservation(models=models(model("tinystories-ft")), rollouts=[rollout()])
    plan, after = step(suite(), observed)
    assert len(jobs_of(plan)) == 1 and len(after.status.runs) == 1


def test_a_rollout_whose_candidate_serves_another_digest_waits() -> None:
    observed = EvalSuiteObservation(
        models=models(model("tinystories-ft", NEW_DIGEST)), rollouts=[rollout(candidate_digest=DIGEST)]
    )
    plan, after = step(suite({"spec.target": DELETE}), observed)
    assert not jobs_of(plan) and after.status.runs == []
    assert conditions(plan)["Progressing"] == ("False", "TargetNotReady")
    assert "waits for" in message(plan, "Progressing")


def test_rollouts_not_at_this_suites_gate_add_no_target() -> None:
    observed = EvalSuiteObservation(models=models(model("tinystories-ft")), rollouts=[rollout(step=1)])
    plan, after = step(suite({"spec.target": DELETE}), observed)
    assert not plan.children and after.status.runs == []
    assert conditions(plan)["Progressing"] == ("False", "Idle")


# --- baseline ---------------------------------------------------------------------------------

BASELINE = {"spec.baseline": {"model": "tinystories-base", "maxRegression": 0.05}}
BOTH = EvalSuiteObservation(models=models(model("tinystories-ft"), model("tinystories-base", BASE_DIGEST)))


def test_the_baseline_is_judged_first_and_the_target_waits_for_it() -> None:
    plan, after = step(suite(BASELINE), BOTH)
    [baseline_job] = jobs_of(plan)
    assert baseline_job["spec"]["template"]["metadata"]["labels"][TARGET_LABEL] == "tinystories-base"
    assert [(r.model, r.phase) for r in after.status.runs] == [("tinystories-base", "Running")]
    assert "waiting for the baseline run of tinystories-base" in message(plan, "Progressing")


def test_a_regression_against_the_baseline_fails_the_run_and_fills_baseline_values() -> None:
    s, baseline_job = started(suite(BASELINE), BOTH)
    s = completed(s, BOTH, baseline_job, {"em": 0.95, "p95": 0.1})
    s, target_job = started(s, BOTH)
    assert target_job != baseline_job
    plan, after = step(
        s,
        EvalSuiteObservation(
            models=BOTH.models,
            jobs={target_job: job(target_job, "Complete")},
            pods=[evaluator_pod(target_job, result({"em": 0.85, "p95": 0.3}))],
        ),
    )
    run = after.status.runs[-1]
    assert run.model == "tinystories-ft" and run.phase == "Failed"
    assert [(m.name, m.baseline_value, m.passed) for m in run.metrics] == [("em", 0.95, False), ("p95", 0.1, True)]
    assert "em=0.85 regressed 0.1 from baseline 0.95 (max 0.05)" in message(plan, "Ready")


def test_a_result_within_the_allowed_regression_passes() -> None:
    s, baseline_job = started(suite(BASELINE), BOTH)
    s = completed(s, BOTH, baseline_job, {"em": 0.92, "p95": 0.1})
    s, target_job = started(s, BOTH)
    s = completed(s, BOTH, target_job, {"em": 0.9, "p95": 0.3})
    assert [(r.model, r.phase) for r in s.status.runs] == [("tinystories-base", "Passed"), ("tinystories-ft", "Passed")]
    assert s.status.runs[-1].metrics[0].baseline_value == 0.92


def test_a_failed_baseline_run_ends_the_target_run_in_error() -> None:
    s, baseline_job = started(suite(BASELINE), BOTH)
    failed = EvalSuiteObservation(
        models=BOTH.models, jobs={baseline_job: job(baseline_job, "Failed", "DeadlineExceeded")}
    )
    plan, after = step(s, failed)
    assert [(r.model, r.phase) for r in after.status.runs] == [
        ("tinystories-base", "Error"),
        ("tinystories-ft", "Error"),
    ]
    assert "baseline run of tinystories-base" in str(after.status.runs[-1].message)
    assert not jobs_of(plan)


def test_a_baseline_judged_before_is_reused_for_new_targets() -> None:
    s, baseline_job = started(suite(BASELINE), BOTH)
    s = completed(s, BOTH, baseline_job, PASSING)
    s, _ = started(s, BOTH)
    rebuilt = EvalSuiteObservation(
        models=models(model("tinystories-ft", NEW_DIGEST), model("tinystories-base", BASE_DIGEST))
    )
    plan, after = step(s, rebuilt)
    # only the new digest's Job: the baseline is not judged again
    assert [j["metadata"]["annotations"]["llmops.dev/eval-digest"] for j in jobs_of(plan)] == [NEW_DIGEST]
    assert [(r.model, r.digest) for r in after.status.runs][-1] == ("tinystories-ft", NEW_DIGEST)
    assert sum(r.model == "tinystories-base" for r in after.status.runs) == 1


def test_a_baseline_that_is_not_ready_holds_the_target() -> None:
    observed = EvalSuiteObservation(models=models(model("tinystories-ft"), model("tinystories-base", ready=False)))
    plan, after = step(suite(BASELINE), observed)
    assert not plan.children and after.status.runs == []
    assert "baseline: LLMModel tinystories-base is not Ready" in message(plan, "Progressing")


# --- bounds -----------------------------------------------------------------------------------


def test_runs_are_bounded_and_the_oldest_dropped() -> None:
    old = [EvalRun(model="m", digest=f"sha256:{i:064x}", phase="Passed", job=f"j{i}").wire() for i in range(MAX_RUNS)]
    s = EvalSuite.model_validate({**suite().wire(), "status": {"runs": old}})
    _, after = step(s, TARGET)
    assert len(after.status.runs) == MAX_RUNS
    assert after.status.runs[0].job == "j1"
    assert after.status.runs[-1].model == "tinystories-ft" and after.status.runs[-1].phase == "Running"


def test_without_targets_the_suite_is_idle() -> None:
    plan, _ = step(suite({"spec.target": DELETE}), EvalSuiteObservation())
    assert plan.status["phase"] == "Idle" and not plan.children
    assert conditions(plan) == {
        "Ready": ("False", "NoRuns"),
        "Progressing": ("False", "Idle"),
        "Degraded": ("False", "AsExpected"),
    }
    assert plan.status["observedGeneration"] == 1


def gated_model(name: str, phase: str = "Evaluating", suite_name: str = "reverse-quality") -> dict[str, Any]:
    """A model whose quality gate waits on a suite with both builds deployed."""
    gate = {
        "phase": phase,
        "evalSuite": suite_name,
        "buildHash": "h",
        "candidate": {"digest": NEW_DIGEST},
        "reference": {"digest": BASE_DIGEST},
    }
    return {**model(name), "status": {**model(name)["status"], "qualityGate": gate}}


def test_an_open_quality_gate_has_both_builds_judged_at_the_gate_services() -> None:
    observed = EvalSuiteObservation(models=models(gated_model("tinystories-bad")))
    plan, after = step(suite({"spec.target": DELETE}), observed)
    assert {(r.model, r.digest) for r in after.status.runs} == {
        ("tinystories-bad@candidate", NEW_DIGEST),
        ("tinystories-bad@reference", BASE_DIGEST),
    }
    pods = {}
    for evaluator_job in jobs_of(plan):
        args = evaluator_job["spec"]["template"]["spec"]["containers"][0]["args"]
        labels = evaluator_job["spec"]["template"]["metadata"]["labels"]
        pods[labels[GATE_ROLE_LABEL]] = (labels[TARGET_LABEL], args[args.index("--endpoint") + 1])
    assert pods == {
        "candidate": ("tinystories-bad", "http://tinystories-bad-gate-candidate.ml.svc:8000"),
        "reference": ("tinystories-bad", "http://tinystories-bad-gate-reference.ml.svc:8000"),
    }
    # Judged once: the same builds start no more runs, even once the gate reports an error.
    again, later = step(after, EvalSuiteObservation(models=models(gated_model("tinystories-bad", "Error"))))
    assert {j["metadata"]["name"] for j in jobs_of(again)} == {j["metadata"]["name"] for j in jobs_of(plan)}
    assert later.status.runs == after.status.runs


def test_a_quality_gate_still_deploying_or_for_another_suite_is_not_judged() -> None:
    for gate in (gated_model("m", "Deploying"), gated_model("m", "Refused"), gated_model("m", suite_name="other")):
        plan, after = step(suite({"spec.target": DELETE}), EvalSuiteObservation(models=models(gate)))
        assert not jobs_of(plan) and after.status.runs == []
