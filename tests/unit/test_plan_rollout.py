"""The Rollout state machine: every transition, driven through the pure plan.

`tick` plans and feeds the status back as the apiserver would, so a sequence of ticks is a
sequence of reconciles; an operator restart is simply the next tick (all state is in status).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llmops.api.rollout import Rollout
from llmops.plan.analysis import Measurement, analysis_queries, judge
from llmops.plan.common import Plan
from llmops.plan.rollout import (
    RolloutObservation,
    canary_replicas_for_weight,
    endpoint_slice,
    gate_suite,
    held_replicas,
    measurement_due,
    plan_rollout,
)

T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
STABLE, CANDIDATE, OTHER = "sha256:stable", "sha256:cand-1", "sha256:cand-2"
STEPS: list[dict[str, Any]] = [
    {"setWeight": 20},
    {
        "analysis": {
            "interval": "5s",
            "count": 2,
            "metrics": [{"name": "errors", "template": "TritonErrorRate", "threshold": 0.05}],
        }
    },
    {"setWeight": 50},
    {"evalGate": {"evalSuite": "quality"}},
    {"pause": {"duration": "1m"}},
]
ROUTE = {
    "apiVersion": "gateway.networking.k8s.io/v1",
    "kind": "HTTPRoute",
    "metadata": {"name": "llm", "namespace": "ml"},
    "spec": {"parentRefs": [{"name": "gw"}], "rules": [{"backendRefs": [{"name": "base", "port": 8000}]}]},
}


def rollout(steps: list[dict[str, Any]] | None = None, route: bool = True, **spec: Any) -> Rollout:
    body = {
        "apiVersion": "llmops.dev/v1alpha1",
        "kind": "Rollout",
        "metadata": {"name": "canary", "namespace": "ml", "uid": "u1", "generation": 1},
        "spec": {
            "stable": {"name": "base"},
            "candidate": {"name": "tuned"},
            "steps": steps if steps is not None else STEPS,
            "trafficRouting": {"httpRoute": {"name": "llm"}} if route else {"replicaRatio": True},
            **spec,
        },
    }
    return Rollout.model_validate(body)


def model(name: str, digest: str | None, replicas: int = 2) -> dict[str, Any]:
    status = {"artifact": {"digest": digest}} if digest else {}
    return {"metadata": {"name": name}, "spec": {"serving": {"replicas": replicas}}, "status": status}


def suite(phase: str | None, digest: str = CANDIDATE, nonce: str | None = None) -> dict[str, Any]:
    runs = []
    if phase:
        metrics = [{"name": "em", "value": 0.2 if phase == "Failed" else 0.9, "threshold": 0.8,
                    "passed": phase != "Failed"}]  # fmt: skip
        runs.append({"model": "tuned", "digest": digest, "nonce": nonce, "phase": phase, "metrics": metrics})
    return {"metadata": {"name": "quality"}, "spec": {"runNonce": nonce} if nonce else {}, "status": {"runs": runs}}


def serving_pod(model_name: str, i: int, ready: bool = True) -> dict[str, Any]:
    return {
        "metadata": {"name": f"{model_name}-{i}", "namespace": "ml", "labels": {"llmops.dev/llmmodel": model_name}},
        "spec": {"nodeName": "gpu-0"},
        "status": {"podIP": f"10.0.{len(model_name)}.{i}",
                   "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]},
    }  # fmt: skip


def observed(candidate: str | None = CANDIDATE, **changes: Any) -> RolloutObservation:
    pods = [serving_pod("base", 0), serving_pod("base", 1), serving_pod("tuned", 0)]
    base = RolloutObservation(
        stable=model("base", STABLE), candidate=model("tuned", candidate), route=ROUTE, serving_pods=pods
    )
    return replace(base, **changes)


def tick(r: Rollout, o: RolloutObservation, now: datetime = T0) -> tuple[Plan, Rollout]:
    plan = plan_rollout(r, o, now)
    return plan, Rollout.model_validate({**r.wire(), "status": plan.status})


def with_spec(r: Rollout, **changes: Any) -> Rollout:
    body = r.wire()
    body["spec"].update(changes)
    return Rollout.model_validate(body)


def weights(plan: Plan) -> dict[str, int]:
    (patch,) = plan.patches
    return {ref["name"]: ref["weight"] for ref in patch["spec"]["rules"][0]["backendRefs"]}


def conditions(r: Rollout) -> dict[str, tuple[str, str]]:
    return {c.type: (c.status, c.reason) for c in r.status.conditions}


def good(value: float = 0.0) -> dict[str, Measurement]:
    return {"errors": Measurement(value=value)}


def drive_to(index: int, r: Rollout | None = None) -> tuple[Rollout, datetime]:
    """Reconcile a rollout of STEPS with a healthy candidate until it sits at step `index`.

    Steps that complete at once (setWeight on a route, a passed eval gate) cannot be sat at:
    "every step" tests use replicaRatio, where setWeight waits for the candidate to scale.
    """
    r, now = r or rollout(), T0
    for i in range(60):
        if r.status.current_step == index and r.status.phase in ("Progressing", "Paused"):
            return r, now
        now = T0 + timedelta(seconds=5 * i)
        _, r = tick(r, healthy(r, index, now), now)
    raise AssertionError(f"never reached step {index}: {r.status}")


def healthy(r: Rollout, hold: int, now: datetime) -> RolloutObservation:
    """What a healthy candidate looks like, except that an eval gate at `hold` is still running.

    The candidate's Deployment has scaled to what the rollout asked for in the previous reconcile,
    but its new pods are not ready yet while the rollout sits at `hold`.
    """
    replicas = r.status.canary_replicas or 0
    ready = 0 if r.status.current_step == hold else replicas
    deployment = {"spec": {"replicas": replicas}, "status": {"readyReplicas": ready}}
    gate = suite("Running" if "evalGate" in STEPS[min(hold, len(STEPS) - 1)] else "Passed")
    due = measurement_due(r, now)
    return observed(eval_suite=gate, measurements=good() if due else None, candidate_deployment=deployment)


def candidate_weight(plan: Plan) -> int:
    """The candidate's traffic share as written: route weight, or 0/100/between from the endpoints."""
    if plan.patches:
        return weights(plan)["tuned"]
    (endpoints,) = [c for c in plan.children if c["kind"] == "EndpointSlice"]
    models = {e["targetRef"]["name"].rsplit("-", 1)[0] for e in endpoints["endpoints"]}
    return {frozenset({"base"}): 0, frozenset({"tuned"}): 100}.get(frozenset(models), 50)


# ---- starting, stepping, promoting ------------------------------------------------------


def test_a_new_rollout_sets_the_first_weight_and_starts_the_analysis_in_one_reconcile() -> None:
    plan, r = tick(rollout(), observed())
    assert (r.status.phase, r.status.current_step, r.status.canary_weight) == ("Progressing", 1, 20)
    assert weights(plan) == {"base": 80, "tuned": 20}
    assert r.status.candidate_digest == CANDIDATE and r.status.stable_digest == STABLE
    assert [e.reason for e in plan.events].count("Step") == 2  # entered step 1, then step 2
    assert conditions(r)["Progressing"] == ("True", "Analyzing")


def test_the_route_keeps_its_other_fields_and_the_port_of_the_stable_backend() -> None:
    plan, _ = tick(rollout(), observed())
    rule = plan.patches[0]["spec"]["rules"][0]
    assert rule["backendRefs"] == [
        {"name": "base", "port": 8000, "weight": 80},
        {"name": "tuned", "port": 8000, "weight": 20},
    ]
    assert plan.patches[0]["metadata"] == {"name": "llm", "namespace": "ml"}


def test_a_healthy_candidate_passes_every_step_and_is_promoted() -> None:
    r, now = drive_to(4)
    assert r.status.canary_weight == 50
    _, r = tick(r, observed(), now + timedelta(seconds=30))
    assert r.status.phase == "Progressing"  # the 1m pause is still running
    plan, r = tick(r, observed(), now + timedelta(minutes=2))
    assert (r.status.phase, r.status.canary_weight) == ("Promoted", 100)
    assert weights(plan) == {"base": 0, "tuned": 100}
    assert r.status.history[-1].event == "Promoted" and r.status.history[-1].candidate_digest == CANDIDATE
    assert r.status.stable_digest == CANDIDATE
    assert conditions(r) == {"Progressing": ("False", "Promoted"), "Ready": ("True", "Promoted"),
                             "Degraded": ("False", "AsExpected")}  # fmt: skip


def test_a_promoted_rollout_stays_promoted_until_the_candidate_changes() -> None:
    r, now = drive_to(4)
    _, r = tick(r, observed(), now + timedelta(minutes=2))
    plan, again = tick(r, observed(), now + timedelta(hours=1))
    assert again.status == r.status and weights(plan)["tuned"] == 100
    _, restarted = tick(r, observed(candidate=OTHER), now + timedelta(hours=1))
    assert (restarted.status.phase, restarted.status.candidate_digest) == ("Progressing", OTHER)
    assert restarted.status.current_step == 1


def test_no_measurement_no_promotion() -> None:
    """Analysis needs `count` real samples: time passing alone never advances it."""
    r, now = drive_to(1)
    for i in range(20):
        _, r = tick(r, observed(), now + timedelta(seconds=10 * i))
    assert r.status.current_step == 1
    assert r.status.analysis is not None and all(m.successes == 0 for m in r.status.analysis.metrics)


def test_a_measurement_is_due_once_per_interval() -> None:
    r, now = drive_to(1)
    assert measurement_due(r, now) is None  # the analysis has just started
    queries = measurement_due(r, now + timedelta(seconds=5))
    assert queries is not None and 'llmops_dev_llmmodel="tuned"' in queries["errors"]
    _, r = tick(r, observed(measurements=good()), now + timedelta(seconds=5))
    assert measurement_due(r, now + timedelta(seconds=9)) is None
    assert measurement_due(r, now + timedelta(seconds=10)) is not None
    assert measurement_due(with_spec(r, paused=True), now + timedelta(seconds=10)) is None


def test_an_indefinite_pause_waits_for_promote_next_step_applied_once() -> None:
    steps = [{"setWeight": 10}, {"pause": {}}, {"setWeight": 30}, {"pause": {}}]
    _, r = tick(rollout(steps), observed())
    assert (r.status.phase, r.status.current_step) == ("Paused", 1)
    _, r = tick(r, observed(), T0 + timedelta(days=1))
    assert r.status.current_step == 1
    promoted = with_spec(r, promote={"id": "p1"})
    _, r = tick(promoted, observed())
    assert (r.status.current_step, r.status.canary_weight, r.status.phase) == (3, 30, "Paused")
    _, r = tick(r, observed())  # the same promote id again (re-applied from Git): nothing
    assert r.status.current_step == 3


# ---- rollback ----------------------------------------------------------------------------


def test_a_failed_analysis_rolls_back_in_the_same_reconcile() -> None:
    r, now = drive_to(1)
    plan, r = tick(r, observed(measurements=good(0.4)), now + timedelta(seconds=5))
    assert weights(plan) == {"base": 100, "tuned": 0}
    assert (r.status.phase, r.status.canary_weight, r.status.canary_replicas) == ("RolledBack", 0, 0)
    assert r.status.rejected_digests == [CANDIDATE]
    last = r.status.history[-1]
    assert (last.event, last.step, last.metric, last.value, last.threshold) == ("RolledBack", 1, "errors", 0.4, 0.05)
    assert conditions(r)["Degraded"] == ("True", "RolledBack")
    warning = next(e for e in plan.events if e.reason == "RolledBack")
    assert warning.type == "Warning" and "errors = 0.4" in warning.message and "0.05" in warning.message


def test_failure_limit_tolerates_that_many_failed_measurements() -> None:
    steps = [{"setWeight": 20}, {"analysis": {"interval": "5s", "count": 2, "failureLimit": 1,
                                              "metrics": [{"name": "errors", "template": "TritonErrorRate",
                                                           "threshold": 0.05}]}}]  # fmt: skip
    _, r = tick(rollout(steps), observed())
    _, r = tick(r, observed(measurements=good(0.4)), T0 + timedelta(seconds=5))
    assert r.status.phase == "Progressing"
    _, r = tick(r, observed(measurements=good(0.4)), T0 + timedelta(seconds=10))
    assert r.status.phase == "RolledBack"


def test_a_rejected_candidate_is_never_retried_by_reapplying_the_manifest() -> None:
    r, now = drive_to(1)
    _, r = tick(r, observed(measurements=good(0.4)), now + timedelta(seconds=5))
    for hours in (1, 2):
        plan, again = tick(r, observed(), now + timedelta(hours=hours))
        assert again.status == r.status and weights(plan)["base"] == 100 and not plan.events


def test_bumping_retry_tries_the_rejected_digest_again_from_step_one() -> None:
    r, now = drive_to(1)
    _, r = tick(r, observed(measurements=good(0.4)), now + timedelta(seconds=5))
    plan, r = tick(with_spec(r, retry="2"), observed(), now + timedelta(minutes=1))
    assert (r.status.phase, r.status.current_step, r.status.last_retry) == ("Progressing", 1, "2")
    assert r.status.rejected_digests == [] and "Retrying" in [e.reason for e in plan.events]


def test_a_new_candidate_after_a_rollback_starts_a_new_rollout() -> None:
    r, now = drive_to(1)
    _, r = tick(r, observed(measurements=good(0.4)), now + timedelta(seconds=5))
    _, r = tick(r, observed(candidate=OTHER), now + timedelta(minutes=1))
    assert (r.status.phase, r.status.candidate_digest, r.status.canary_weight) == ("Progressing", OTHER, 20)
    assert r.status.rejected_digests == [CANDIDATE]


def test_a_failed_eval_gate_rolls_back_naming_the_metric() -> None:
    r, now = drive_to(3)
    _, r = tick(r, observed(eval_suite=suite("Running")), now)
    assert conditions(r)["Progressing"] == ("True", "EvaluatingCandidate")
    plan, r = tick(r, observed(eval_suite=suite("Failed")), now)
    assert r.status.phase == "RolledBack" and weights(plan)["base"] == 100
    last = r.status.history[-1]
    assert (last.reason, last.metric, last.value, last.threshold) == ("EvalGateFailed", "em", 0.2, 0.8)


def test_an_eval_gate_only_counts_a_run_of_this_digest_and_run_nonce() -> None:
    r, now = drive_to(3)
    _, r = tick(r, observed(eval_suite=suite("Passed", digest=OTHER)), now)
    assert r.status.current_step == 3
    stale_nonce = suite("Passed")
    stale_nonce["spec"]["runNonce"] = "2"
    _, r = tick(r, observed(eval_suite=stale_nonce), now)
    assert r.status.current_step == 3
    assert gate_suite(r) == "quality"


def test_an_eval_run_that_errors_pauses_instead_of_judging() -> None:
    r, now = drive_to(3)
    _, r = tick(r, observed(eval_suite=suite("Error")), now)
    assert r.status.phase == "Paused" and conditions(r)["Degraded"] == ("True", "EvalGateError")
    _, r = tick(r, observed(eval_suite=None), now)
    assert conditions(r)["Progressing"][1] == "WaitingForEvalSuite"


def test_scale_down_delay_keeps_the_rejected_canary_up_for_a_while() -> None:
    r, now = drive_to(1, rollout(rollbackPolicy={"scaleDownDelay": "30s"}))
    plan, r = tick(r, observed(measurements=good(0.4)), now + timedelta(seconds=5))
    assert r.status.canary_replicas is None and weights(plan)["base"] == 100 and plan.requeue_after
    _, r = tick(r, observed(), now + timedelta(seconds=40))
    assert r.status.canary_replicas == 0


# ---- inconclusive and erroring analysis -------------------------------------------------


def test_analysis_without_data_pauses_after_the_inconclusive_limit_and_resumes_with_data() -> None:
    r, now = drive_to(1)
    for i in range(1, 4):  # inconclusiveLimit defaults to 2
        _, r = tick(r, observed(measurements={"errors": Measurement()}), now + timedelta(seconds=5 * i))
    assert r.status.phase == "Paused" and conditions(r)["Progressing"] == ("False", "AnalysisInconclusive")
    for i in range(4, 6):
        _, r = tick(r, observed(measurements=good()), now + timedelta(seconds=5 * i))
    assert (r.status.phase, r.status.current_step) == ("Progressing", 3)


@pytest.mark.parametrize("policy", ["Pause", "Abort"])
def test_prometheus_errors_pause_or_roll_back_as_configured(policy: str) -> None:
    r, now = drive_to(1, rollout(rollbackPolicy={"onAnalysisError": policy, "maxConsecutiveErrors": 2}))
    broken = {"errors": Measurement(error="connection refused")}
    for i in (1, 2):
        _, r = tick(r, observed(measurements=broken), now + timedelta(seconds=5 * i))
    if policy == "Pause":
        assert r.status.phase == "Paused" and conditions(r)["Degraded"] == ("True", "AnalysisError")
        assert r.status.canary_weight == 20  # nothing promoted, nothing judged
        _, r = tick(r, observed(measurements=good()), now + timedelta(seconds=15))
        assert r.status.phase == "Progressing" and conditions(r)["Degraded"][0] == "False"
    else:
        assert (r.status.phase, r.status.canary_weight) == ("RolledBack", 0)
        assert r.status.history[-1].reason == "AnalysisError"


# ---- declarative controls at every step ---------------------------------------------------


@pytest.mark.parametrize("index", range(len(STEPS)))
def test_abort_at_every_step_sends_all_traffic_to_stable(index: int) -> None:
    r, now = drive_to(index, rollout(route=False))
    plan, r = tick(with_spec(r, abort=True), observed(), now)
    assert (r.status.phase, r.status.canary_weight, candidate_weight(plan)) == ("Aborted", 0, 0)
    assert r.status.history[-1].event == "Aborted" and conditions(r)["Degraded"] == ("True", "Aborted")


@pytest.mark.parametrize("index", range(len(STEPS)))
def test_full_promotion_at_every_step(index: int) -> None:
    r, now = drive_to(index, rollout(route=False))
    plan, r = tick(with_spec(r, promote={"id": "go", "type": "Full"}), observed(), now)
    assert (r.status.phase, r.status.canary_weight, candidate_weight(plan)) == ("Promoted", 100, 100)
    assert r.status.canary_replicas == 2  # the candidate now carries what stable carried


@pytest.mark.parametrize("index", range(1, len(STEPS)))
def test_next_step_promotion_at_every_step_ends_only_that_step(index: int) -> None:
    r, now = drive_to(index, rollout(route=False))
    _, r = tick(with_spec(r, promote={"id": f"p{index}"}), observed(), now)
    assert r.status.current_step is not None and r.status.current_step > index
    assert r.status.last_promote_id == f"p{index}"


@pytest.mark.parametrize("index", range(len(STEPS)))
def test_a_restart_at_every_step_changes_nothing(index: int) -> None:
    """A new operator process sees only status; reconciling it again at once is a no-op."""
    r, now = drive_to(index, rollout(route=False))
    world = healthy(r, index, now)
    _, once = tick(r, world, now)
    plan, again = tick(once, world, now)
    assert again.status == once.status and again.status.current_step == index
    assert not [e for e in plan.events if e.reason in ("Step", "RolledBack", "Promoted")]


@pytest.mark.parametrize("index", range(1, len(STEPS)))
def test_a_candidate_rebuilt_mid_rollout_restarts_from_step_one(index: int) -> None:
    r, now = drive_to(index, rollout(route=False))
    plan, r = tick(r, observed(candidate=OTHER), now)
    assert (r.status.candidate_digest, r.status.current_step, r.status.canary_weight) == (OTHER, 0, 20)
    assert r.status.analysis is None and candidate_weight(plan) == 50
    assert "CandidateChanged" in [e.reason for e in plan.events]


def test_paused_holds_the_step_and_the_traffic() -> None:
    r, now = drive_to(1)
    plan, held = tick(with_spec(r, paused=True), observed(measurements=good()), now + timedelta(minutes=5))
    assert (held.status.phase, held.status.current_step, held.status.canary_weight) == ("Paused", 1, 20)
    assert weights(plan)["tuned"] == 20


def test_waiting_for_models_keeps_traffic_on_stable() -> None:
    plan, r = tick(rollout(), observed(candidate=None))
    assert r.status.phase == "Pending" and weights(plan) == {"base": 100, "tuned": 0}
    assert "tuned" in (r.status.message or "")


def test_a_missing_route_is_reported_not_ignored() -> None:
    plan, r = tick(rollout(), observed(route=None))
    assert conditions(r)["Degraded"] == ("True", "RouteNotFound") and plan.patches == []


# ---- replica ratio ------------------------------------------------------------------------


@pytest.mark.parametrize("stable", [1, 2, 3, 5, 10])
@pytest.mark.parametrize("weight", [0, 1, 10, 20, 25, 33, 50, 75, 99, 100])
def test_replica_ratio_never_lowers_capacity_and_reaches_at_least_the_weight(stable: int, weight: int) -> None:
    canary = canary_replicas_for_weight(stable, weight)
    assert canary >= 1
    if weight < 100:
        assert canary / (stable + canary) >= weight / 100  # stable is never scaled down
    else:
        assert canary >= stable  # the candidate alone carries what stable carried


def test_replica_ratio_scales_the_candidate_and_waits_for_it_before_moving_on() -> None:
    _, r = tick(rollout(route=False), observed(route=None))
    assert (r.status.current_step, r.status.canary_replicas) == (0, 1)  # 2 stable: 20% -> 1 canary
    assert conditions(r)["Progressing"][1] == "ScalingCanary"
    scaled = {"spec": {"replicas": 1}, "status": {"readyReplicas": 1}}
    plan, r = tick(r, observed(route=None, candidate_deployment=scaled))
    assert r.status.current_step == 1
    kinds = sorted(c["kind"] for c in plan.children)
    assert kinds == ["EndpointSlice", "Service"] and plan.patches == []
    assert held_replicas("tuned", [{"spec": {"candidate": {"name": "tuned"}}, "status": r.wire()["status"]}]) == 1


def test_the_endpoint_slice_follows_the_weight_and_readiness() -> None:
    pods = [serving_pod("base", 0), serving_pod("base", 1), serving_pod("tuned", 0), serving_pod("tuned", 1, False)]
    r = rollout(route=False)

    def names(weight: int) -> list[str]:
        return [e["targetRef"]["name"] for e in endpoint_slice(r, pods, weight)["endpoints"]]

    assert names(0) == ["base-0", "base-1"]
    assert names(20) == ["base-0", "base-1", "tuned-0"]
    assert names(100) == ["tuned-0"]
    labels = endpoint_slice(r, pods, 0)["metadata"]["labels"]
    assert labels["kubernetes.io/service-name"] == "canary"


def test_a_rolled_back_replica_ratio_candidate_is_scaled_to_zero() -> None:
    r, now = drive_to(1, rollout(route=False))
    plan, r = tick(r, observed(route=None, measurements=good(0.9)), now + timedelta(seconds=5))
    assert (r.status.phase, r.status.canary_replicas, candidate_weight(plan)) == ("RolledBack", 0, 0)


# ---- analysis queries and verdicts --------------------------------------------------------


def test_templates_select_the_candidates_pods_and_custom_queries_expand_placeholders() -> None:
    steps = [{"analysis": {"metrics": [
        {"name": "p99", "template": "TritonLatencyP99", "threshold": 1},
        {"name": "ratio", "query": "a{ {{canary}} } / b{ {{stable}} }", "comparison": "LessThan", "threshold": 2},
    ]}}]  # fmt: skip
    step = rollout(steps).spec.steps[0].analysis
    assert step is not None
    queries = analysis_queries(step, "ml", "base", "tuned", 30)
    assert 'llmops_dev_llmmodel="tuned"' in queries["p99"] and 'quantile="0.99"' in queries["p99"]
    assert queries["ratio"] == (
        'a{ namespace="ml",llmops_dev_llmmodel="tuned" } / b{ namespace="ml",llmops_dev_llmmodel="base" }'
    )


@pytest.mark.parametrize(
    ("measurement", "comparison", "verdict"),
    [
        (Measurement(value=0.01), "LessThan", "Pass"),
        (Measurement(value=0.5), "LessThan", "Fail"),
        (Measurement(value=0.5), "GreaterThan", "Pass"),
        (Measurement(value=None), "LessThan", "Inconclusive"),
        (Measurement(value=float("nan")), "LessThan", "Inconclusive"),
        (Measurement(error="timeout"), "GreaterThan", "Error"),
    ],
)
def test_judge(measurement: Measurement, comparison: Any, verdict: str) -> None:
    assert judge(measurement, 0.1, comparison) == verdict


# ---- properties over random histories ----------------------------------------------------

ACTIONS = st.sampled_from(["ok", "bad", "nodata", "error", "abort", "promote", "retry", "rebuild", "gate-fail", "wait"])


@settings(max_examples=200, deadline=None)
@given(st.lists(ACTIONS, min_size=1, max_size=30))
def test_invariants_hold_over_any_history(actions: list[str]) -> None:
    r, now, candidate, retries, promotes = rollout(), T0, CANDIDATE, 0, 0
    allowed_weights = {0, 20, 50, 100}
    for action in actions:
        now += timedelta(seconds=6)
        spec_changes: dict[str, Any] = {}
        if action == "abort":
            spec_changes["abort"] = True
        elif action == "retry":
            retries += 1
            spec_changes.update(retry=str(retries), abort=False)
        elif action == "promote":
            promotes += 1
            spec_changes["promote"] = {"id": str(promotes)}
        elif action == "rebuild":
            candidate = f"sha256:cand-{now.timestamp():.0f}"
        if spec_changes:
            r = with_spec(r, **spec_changes)
        values = {"ok": good(), "bad": good(0.9), "nodata": {"errors": Measurement()},
                  "error": {"errors": Measurement(error="down")}}  # fmt: skip
        due = measurement_due(r, now)
        o = observed(
            candidate=candidate,
            eval_suite=suite("Failed" if action == "gate-fail" else "Passed", digest=candidate),
            measurements=values.get(action, good()) if due else None,
        )
        before = r
        plan, r = tick(r, o, now)
        status = r.status
        assert status.canary_weight in allowed_weights
        assert weights(plan)["tuned"] == status.canary_weight
        if status.phase in ("RolledBack", "Aborted"):
            assert status.canary_weight == 0 and candidate in status.rejected_digests
        if status.phase == "Promoted" and before.status.phase != "Promoted":
            assert action == "promote" or status.history[-1].event == "Promoted"
        assert len(status.history) <= 20
