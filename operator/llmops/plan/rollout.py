"""Rollout: (rollout, observed models/route/pods/eval runs/measurements, now) -> traffic + status.

The state machine lives entirely in status (current step, when it started, the analysis
counters, rejected digests), so a restarted operator continues exactly where the last one
wrote. Each reconcile:

1. identifies the candidate by its artifact digest: a new digest restarts from step 0;
2. honours the declarative controls: `retry` (a new value clears a rejection), `abort`,
   `promote` (once per id), `paused`;
3. runs the current step and every following step that completes at once (setWeight in
   HTTPRoute mode), stopping at the first one that must wait;
4. after the last step promotes; on a failed analysis or eval gate rolls back: traffic goes
   back to stable in the same reconcile, the canary is scaled to 0, and the digest is
   recorded as rejected so that re-applying the same manifest never retries it.

Traffic: an HTTPRoute's first rule gets exactly two weighted backendRefs (the stable and the
candidate LLMModel's Services); otherwise (replicaRatio) a selector-less Service whose
EndpointSlice lists the ready pods of both models, with the candidate scaled so that the
replica ratio matches the weight. The stable is never scaled, so capacity never drops below it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from ..api.common import Condition, ConditionStatus, now_rfc3339
from ..api.rollout import (
    AnalysisStatus,
    HistoryEntry,
    HistoryEvent,
    MetricMeasurement,
    Rollout,
    RolloutPhase,
    RolloutStatus,
    RolloutStep,
)
from .analysis import Measurement, analysis_queries, judge, metric_query
from .common import (
    Event,
    Manifest,
    Plan,
    child_metadata,
    duration_seconds,
    parse_time,
    set_condition,
    transition_events,
)
from .llmmodel import GRPC_PORT, HTTP_PORT, METRICS_PORT

WARNING_REASONS = {"RolledBack", "Aborted", "AnalysisError", "RouteNotFound", "EvalGateError"}
ENDPOINT_SLICE_MANAGER = "rollout.llmops.dev"  # a label value: no slash
WAIT_SECONDS = 3.0
"""How soon to look again while waiting on something without its own clock (replicas, a Job)."""
ACTIVE: frozenset[RolloutPhase] = frozenset({"Progressing", "Paused"})


@dataclass(frozen=True)
class RolloutObservation:
    stable: dict[str, Any] | None = None
    candidate: dict[str, Any] | None = None
    """The two LLMModels."""
    candidate_deployment: dict[str, Any] | None = None
    route: dict[str, Any] | None = None
    """The HTTPRoute named by spec.trafficRouting.httpRoute."""
    serving_pods: list[dict[str, Any]] = field(default_factory=list)
    """Serving pods of both models (replicaRatio endpoints)."""
    eval_suite: dict[str, Any] | None = None
    """The EvalSuite of the current evalGate step."""
    measurements: dict[str, Measurement] | None = None
    """Prometheus' answers for the current analysis step, taken because measurement_due() said so."""


# ---- reading the observed objects ----------------------------------------------------------


def digest_of(model: dict[str, Any] | None) -> str | None:
    """The digest of the artifact a model serves; None until it has been built."""
    if model is None:
        return None
    digest = (model.get("status", {}).get("artifact") or {}).get("digest")
    return str(digest) if digest else None


def desired_replicas(model: dict[str, Any] | None) -> int:
    return int(((model or {}).get("spec", {}).get("serving") or {}).get("replicas", 1))


def gate_run(suite: dict[str, Any] | None, model: str, digest: str) -> dict[str, Any] | None:
    """The EvalSuite run that judges this model version (for the suite's current runNonce)."""
    if suite is None:
        return None
    nonce = suite.get("spec", {}).get("runNonce")
    runs = suite.get("status", {}).get("runs", [])
    matching = [r for r in runs if r.get("model") == model and r.get("digest") == digest and r.get("nonce") == nonce]
    return matching[-1] if matching else None


def current_step(rollout: Rollout) -> RolloutStep | None:
    index = rollout.status.current_step
    if index is None or not 0 <= index < len(rollout.spec.steps):
        return None
    return rollout.spec.steps[index]


def gate_suite(rollout: Rollout) -> str | None:
    """The EvalSuite the rollout waits on now, if its current step is an eval gate."""
    step = current_step(rollout)
    if rollout.status.phase not in ACTIVE or step is None or step.eval_gate is None:
        return None
    return step.eval_gate.eval_suite


def measurement_due(rollout: Rollout, now: datetime) -> dict[str, str] | None:
    """The queries to run now for the current analysis step, or None when no measurement is due."""
    step = current_step(rollout)
    analysis = rollout.status.analysis
    if (
        rollout.spec.paused
        or rollout.status.phase not in ACTIVE
        or step is None
        or step.analysis is None
        or analysis is None
        or analysis.step != rollout.status.current_step
    ):
        return None
    interval = duration_seconds(step.analysis.interval)
    if now < parse_time(analysis.last_measured_at or analysis.started_at) + timedelta(seconds=interval):
        return None
    return analysis_queries(
        step.analysis, rollout.namespace, rollout.spec.stable.name, rollout.spec.candidate.name, interval
    )


def canary_replicas_for_weight(stable_replicas: int, weight: int) -> int:
    """Candidate replicas giving `weight` percent of the pods next to an unscaled stable."""
    if weight >= 100:
        return max(1, stable_replicas)
    return max(1, math.ceil(stable_replicas * weight / (100 - weight)))


def held_replicas(model: str, rollouts: list[dict[str, Any]]) -> int | None:
    """Replicas a Rollout holds a candidate model at (read by the LLMModel plan), if any."""
    held = [
        int(r["status"]["canaryReplicas"])
        for r in rollouts
        if r.get("spec", {}).get("candidate", {}).get("name") == model
        and r.get("status", {}).get("canaryReplicas") is not None
    ]
    return max(held) if held else None


# ---- the state machine -------------------------------------------------------------------


@dataclass
class Wait:
    """The step is not done; hold here."""

    reason: str
    message: str
    requeue_after: float | None = WAIT_SECONDS
    paused: bool = False
    degraded: bool = False


@dataclass
class Reject:
    """The candidate failed: roll back."""

    reason: str
    message: str
    metric: str | None = None
    value: float | None = None
    threshold: float | None = None


Outcome = Wait | Reject | None  # None: the step is done


@dataclass
class Machine:
    """One reconcile's worth of state-machine work on a copy of the status."""

    rollout: Rollout
    observed: RolloutObservation
    now: datetime
    status: RolloutStatus
    events: list[Event] = field(default_factory=list)
    measurement_used: bool = False

    @property
    def steps(self) -> list[RolloutStep]:
        return self.rollout.spec.steps

    @property
    def replica_ratio(self) -> bool:
        return self.rollout.spec.traffic_routing.http_route is None

    def start(self, candidate_digest: str, stable_digest: str) -> None:
        """Begin (again) at step 0 with all traffic on stable."""
        self.status.phase = "Progressing"
        self.status.candidate_digest = candidate_digest
        self.status.stable_digest = stable_digest
        self.status.canary_weight = 0
        self.status.canary_replicas = None
        self.enter(0)

    def enter(self, index: int) -> None:
        self.status.current_step = index
        self.status.step_started_at = now_rfc3339(self.now)
        self.status.analysis = None
        if index < len(self.steps):
            step = f"step {index + 1}/{len(self.steps)}: {describe(self.steps[index])}"
            self.events.append(Event("Normal", "Step", step))

    def record(self, event: HistoryEvent, reject: Reject | None = None) -> None:
        entry = HistoryEntry(
            time=now_rfc3339(self.now),
            event=event,
            stable=self.rollout.spec.stable.name,
            candidate=self.rollout.spec.candidate.name,
            candidate_digest=self.status.candidate_digest,
            step=self.status.current_step,
            reason=reject.reason if reject else None,
            metric=reject.metric if reject else None,
            value=reject.value if reject else None,
            threshold=reject.threshold if reject else None,
        )
        self.status.history = [*self.status.history, entry][-20:]

    def reject(self, outcome: Reject, phase: Literal["RolledBack", "Aborted"]) -> None:
        digest = self.status.candidate_digest
        if digest and digest not in self.status.rejected_digests:
            self.status.rejected_digests = [*self.status.rejected_digests, digest][-50:]
        self.status.phase = phase
        self.status.canary_weight = 0
        self.status.message = outcome.message
        self.record(phase, outcome)

    def promote(self) -> None:
        self.status.phase = "Promoted"
        self.status.canary_weight = 100
        self.status.current_step = len(self.steps)
        self.status.analysis = None
        self.status.stable_digest = self.status.candidate_digest
        self.status.message = f"{self.rollout.spec.candidate.name} promoted"
        self.record("Promoted")

    # -- steps --

    def run_step(self, index: int) -> Outcome:
        step = self.steps[index]
        if step.set_weight is not None:
            return self.set_weight(step.set_weight)
        if step.pause is not None:
            if step.pause.duration is None:
                return Wait("Paused", "paused until promoted (spec.promote)", None, paused=True)
            left = self.seconds_into_step() - duration_seconds(step.pause.duration)
            return None if left >= 0 else Wait("Pausing", f"pausing for {step.pause.duration}", -left)
        if step.analysis is not None:
            return self.analyse(index)
        assert step.eval_gate is not None
        return self.eval_gate(step.eval_gate.eval_suite)

    def seconds_into_step(self) -> float:
        started = parse_time(self.status.step_started_at) if self.status.step_started_at else self.now
        return (self.now - started).total_seconds()

    def set_weight(self, weight: int) -> Outcome:
        self.status.canary_weight = weight
        if not self.replica_ratio:
            return None
        needed = canary_replicas_for_weight(desired_replicas(self.observed.stable), weight)
        self.status.canary_replicas = needed
        deployment = self.observed.candidate_deployment or {}
        ready = int(deployment.get("status", {}).get("readyReplicas", 0))
        scaled = deployment.get("spec", {}).get("replicas") == needed
        if scaled and ready >= needed:
            return None
        message = f"waiting for {needed} ready candidate replicas for weight {weight} ({ready} ready)"
        return Wait("ScalingCanary", message)

    def analyse(self, index: int) -> Outcome:
        step = self.steps[index].analysis
        assert step is not None
        analysis = self.status.analysis
        if analysis is None or analysis.step != index:
            analysis = AnalysisStatus(step=index, started_at=now_rfc3339(self.now), metrics=[])
        interval = duration_seconds(step.interval)
        by_name = {m.name: m for m in analysis.metrics}
        ns, stable, candidate = self.rollout.namespace, self.rollout.spec.stable.name, self.rollout.spec.candidate.name
        measured = self.observed.measurements if not self.measurement_used else None
        fresh = self.status.analysis is not None and self.status.analysis.step == index
        counters = []
        for metric in step.metrics:
            _, comparison = metric_query(metric, ns, stable, candidate, interval)
            counter = by_name.get(metric.name) or MetricMeasurement(
                name=metric.name, threshold=metric.threshold, comparison=comparison
            )
            if measured is not None and fresh:
                count(counter, judge(measured.get(metric.name, Measurement()), metric.threshold, comparison),
                      measured.get(metric.name, Measurement()))  # fmt: skip
            counters.append(counter)
        if measured is not None and fresh:
            analysis.last_measured_at = now_rfc3339(self.now)
            self.measurement_used = True
        analysis.metrics = counters
        self.status.analysis = analysis

        failed = next((c for c in counters if c.failures > step.failure_limit), None)
        if failed is not None:
            return Reject(
                "AnalysisFailed",
                f"step {index + 1}: {failed.name} = {failed.value:g}, must be "
                f"{'below' if failed.comparison == 'LessThan' else 'above'} {failed.threshold:g} "
                f"({failed.failures} failed measurements, {step.failure_limit} allowed)",
                failed.name,
                failed.value,
                failed.threshold,
            )
        policy = self.rollout.spec.rollback_policy
        erring = next((c for c in counters if c.consecutive_errors >= policy.max_consecutive_errors), None)
        if erring is not None and policy.on_analysis_error == "Abort":
            return Reject("AnalysisError", f"step {index + 1}: {erring.name}: Prometheus failed "
                          f"{erring.consecutive_errors} times in a row", erring.name)  # fmt: skip
        if all(c.successes >= step.count for c in counters):
            return None
        next_in = interval - (self.now - parse_time(analysis.last_measured_at or analysis.started_at)).total_seconds()
        done = min(c.successes for c in counters)
        if erring is not None:
            return Wait("AnalysisError", f"step {index + 1}: {erring.name}: Prometheus failed "
                        f"{erring.consecutive_errors} times in a row; holding until it answers", max(1.0, next_in),
                        paused=True, degraded=True)  # fmt: skip
        stuck = next((c for c in counters if c.inconclusive > step.inconclusive_limit), None)
        if stuck is not None:
            return Wait("AnalysisInconclusive", f"step {index + 1}: {stuck.name} had no data {stuck.inconclusive} "
                        "times; holding until it has (or spec.promote)", max(1.0, next_in), paused=True)  # fmt: skip
        return Wait("Analyzing", f"step {index + 1}: {done}/{step.count} measurements passed", max(1.0, next_in))

    def eval_gate(self, suite_name: str) -> Outcome:
        if self.observed.eval_suite is None:
            return Wait("WaitingForEvalSuite", f"EvalSuite {suite_name} not found", WAIT_SECONDS * 3)
        run = gate_run(self.observed.eval_suite, self.rollout.spec.candidate.name, self.status.candidate_digest or "")
        phase = (run or {}).get("phase")
        if phase == "Passed":
            return None
        if phase == "Failed":
            failing = next((m for m in run.get("metrics", []) if not m.get("passed")), None) if run else None
            if failing is None:
                return Reject("EvalGateFailed", f"EvalSuite {suite_name} failed: {(run or {}).get('message', '')}")
            value, threshold = failing.get("value"), failing.get("threshold")
            return Reject(
                "EvalGateFailed",
                f"EvalSuite {suite_name}: {failing['name']} = {value}, threshold {threshold}",
                failing["name"],
                value,
                threshold,
            )
        if phase == "Error":
            message = f"EvalSuite {suite_name} could not run: {(run or {}).get('message', '')}"
            hint = "; bump its runNonce to try again, or promote to skip"
            return Wait("EvalGateError", message + hint, None, paused=True, degraded=True)
        return Wait("EvaluatingCandidate", f"EvalSuite {suite_name} is evaluating the candidate")


def count(counter: MetricMeasurement, verdict: str, measurement: Measurement) -> None:
    if verdict == "Error":
        counter.errors += 1
        counter.consecutive_errors += 1
        return
    counter.consecutive_errors = 0
    counter.value = measurement.value if verdict != "Inconclusive" else counter.value
    if verdict == "Pass":
        counter.successes += 1
    elif verdict == "Fail":
        counter.failures += 1
    else:
        counter.inconclusive += 1


def describe(step: RolloutStep) -> str:
    if step.set_weight is not None:
        return f"setWeight {step.set_weight}"
    if step.pause is not None:
        return f"pause {step.pause.duration or 'until promoted'}"
    if step.analysis is not None:
        return "analysis of " + ", ".join(m.name for m in step.analysis.metrics)
    assert step.eval_gate is not None
    return f"evalGate {step.eval_gate.eval_suite}"


def plan_rollout(rollout: Rollout, observed: RolloutObservation, now: datetime) -> Plan:
    spec = rollout.spec
    machine = Machine(rollout, observed, now, rollout.status.model_copy(deep=True))
    status = machine.status
    outcome: Outcome = None
    stable_digest, candidate_digest = digest_of(observed.stable), digest_of(observed.candidate)

    if spec.retry != status.last_retry:
        status.last_retry = spec.retry
        if candidate_digest in status.rejected_digests:
            status.rejected_digests = [d for d in status.rejected_digests if d != candidate_digest]
            status.candidate_digest = None  # start over below
            machine.events.append(Event("Normal", "Retrying", f"retry {spec.retry}: trying {candidate_digest} again"))

    if stable_digest is None or candidate_digest is None:
        waiting_on = spec.stable.name if stable_digest is None else spec.candidate.name
        status.canary_weight = 0
        outcome = Wait("WaitingForModels", f"waiting for LLMModel {waiting_on} to be built")
        if status.phase not in ("Promoted", "RolledBack", "Aborted"):
            status.phase = "Pending"
    elif candidate_digest in status.rejected_digests:
        status.canary_weight = 0  # rejected: stays on stable until a new candidate or a retry
    elif status.candidate_digest != candidate_digest:
        if status.phase in ACTIVE:
            machine.events.append(Event("Normal", "CandidateChanged", f"candidate is now {candidate_digest}: "
                                        "restarting from step 1"))  # fmt: skip
        machine.start(candidate_digest, stable_digest)
    if status.phase in ACTIVE and status.candidate_digest == candidate_digest and candidate_digest is not None:
        outcome = advance(machine)

    canary_replicas(machine)
    conditions = conditions_of(rollout, status, outcome, now)
    events = machine.events + transition_events(rollout.status.conditions, conditions, WARNING_REASONS)
    status.conditions = conditions
    status.observed_generation = rollout.generation
    if isinstance(outcome, Wait):
        status.message = outcome.message
    children, patches = traffic(rollout, observed, status)
    requeue = outcome.requeue_after if isinstance(outcome, Wait) else None
    if status.phase in ("RolledBack", "Aborted") and status.canary_replicas != 0:
        requeue = WAIT_SECONDS  # the scale-down delay is running
    return Plan(children=children, patches=patches, status=status.wire(), events=events, requeue_after=requeue)


def advance(machine: Machine) -> Outcome:
    """Apply abort/promote/pause, then run steps until one must wait."""
    rollout, status = machine.rollout, machine.status
    spec = rollout.spec
    if spec.abort:
        machine.reject(Reject("Aborted", "aborted by spec.abort: all traffic on stable"), "Aborted")
        return None
    promote = spec.promote
    skip_current = False
    if promote is not None and promote.id != status.last_promote_id:
        status.last_promote_id = promote.id
        machine.events.append(Event("Normal", "PromoteRequested", f"promote {promote.id} ({promote.type})"))
        if promote.type == "Full":
            machine.promote()
            return None
        skip_current = True
    route = spec.traffic_routing.http_route
    if route is not None and machine.observed.route is None:
        status.phase = "Paused"
        return Wait("RouteNotFound", f"HTTPRoute {route.name} not found", WAIT_SECONDS * 3, paused=True, degraded=True)
    if spec.paused:
        status.phase = "Paused"
        return Wait("PausedBySpec", "paused by spec.paused: traffic held", None, paused=True)
    index = status.current_step or 0
    while index < len(spec.steps):
        outcome = None if skip_current else machine.run_step(index)
        skip_current = False
        if isinstance(outcome, Reject):
            machine.reject(outcome, "RolledBack")
            return outcome
        if isinstance(outcome, Wait):
            status.phase = "Paused" if outcome.paused else "Progressing"
            return outcome
        index += 1
        machine.enter(index)
    machine.promote()
    return None


def canary_replicas(machine: Machine) -> None:
    """What the candidate's Deployment is held at: replicaRatio during the rollout, 0 once rejected."""
    status, observed = machine.status, machine.observed
    if status.phase in ("RolledBack", "Aborted"):
        delay = duration_seconds(machine.rollout.spec.rollback_policy.scale_down_delay)
        since = parse_time(status.history[-1].time) if status.history else machine.now
        if (machine.now - since).total_seconds() >= delay:
            status.canary_replicas = 0
    elif not machine.replica_ratio or status.phase == "Pending":
        status.canary_replicas = None
    elif status.phase == "Promoted":
        status.canary_replicas = max(desired_replicas(observed.stable), desired_replicas(observed.candidate))
    elif status.canary_replicas is None:
        status.canary_replicas = canary_replicas_for_weight(desired_replicas(observed.stable), 0)


def conditions_of(rollout: Rollout, status: RolloutStatus, outcome: Outcome, now: datetime) -> list[Condition]:
    conditions = list(rollout.status.conditions)

    def set_(type_: str, value: ConditionStatus, reason: str, message: str) -> None:
        nonlocal conditions
        conditions = set_condition(conditions, type_, value, reason, message, now, rollout.generation)

    phase = status.phase
    if phase in ("RolledBack", "Aborted"):
        message = status.message or phase
        set_("Progressing", "False", phase, message)
        set_("Ready", "False", phase, message)
        set_("Degraded", "True", phase, message)
        return conditions
    if phase == "Promoted":
        set_("Progressing", "False", "Promoted", status.message or "promoted")
        set_("Ready", "True", "Promoted", status.message or "promoted")
        set_("Degraded", "False", "AsExpected", "")
        return conditions
    wait = outcome if isinstance(outcome, Wait) else Wait("Progressing", "progressing")
    set_("Progressing", "False" if wait.paused else "True", wait.reason, wait.message)
    set_("Ready", "False", "InProgress", f"step {(status.current_step or 0) + 1}/{len(rollout.spec.steps)}")
    if wait.degraded:
        set_("Degraded", "True", wait.reason, wait.message)
    else:
        set_("Degraded", "False", "AsExpected", "")
    return conditions


# ---- traffic ---------------------------------------------------------------------------------


def service_name(rollout: Rollout) -> str:
    return rollout.spec.service or rollout.name


def traffic(
    rollout: Rollout, observed: RolloutObservation, status: RolloutStatus
) -> tuple[list[Manifest], list[Manifest]]:
    """Children (replicaRatio Service + EndpointSlice) and patches (HTTPRoute weights)."""
    if rollout.spec.traffic_routing.http_route is not None:
        patch = route_patch(rollout, observed.route, status.canary_weight or 0)
        return [], [patch] if patch is not None else []
    return [rollout_service(rollout), endpoint_slice(rollout, observed.serving_pods, status.canary_weight or 0)], []


def route_patch(rollout: Rollout, route: dict[str, Any] | None, weight: int) -> Manifest | None:
    """A merge patch giving the route's first rule exactly the stable and candidate backends."""
    if route is None or not route.get("spec", {}).get("rules"):
        return None
    rules = [dict(r) for r in route["spec"]["rules"]]
    existing = {ref.get("name"): ref for ref in rules[0].get("backendRefs", [])}
    port = next((ref["port"] for ref in existing.values() if ref.get("port")), HTTP_PORT)

    def ref(name: str, share: int) -> dict[str, Any]:
        return {**{"port": port}, **existing.get(name, {}), "name": name, "weight": share}

    rules[0]["backendRefs"] = [ref(rollout.spec.stable.name, 100 - weight), ref(rollout.spec.candidate.name, weight)]
    meta = route["metadata"]
    return {
        "apiVersion": route["apiVersion"],
        "kind": "HTTPRoute",
        "metadata": {"name": meta["name"], "namespace": meta["namespace"]},
        "spec": {"rules": rules},
    }


def rollout_service(rollout: Rollout) -> Manifest:
    """One stable address for clients; its endpoints are chosen by the rollout, not a selector."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": child_metadata(rollout, service_name(rollout), "traffic"),
        "spec": {
            "ports": [
                {"name": "http", "port": HTTP_PORT, "targetPort": HTTP_PORT},
                {"name": "grpc", "port": GRPC_PORT, "targetPort": GRPC_PORT},
                {"name": "metrics", "port": METRICS_PORT, "targetPort": METRICS_PORT},
            ],
        },
    }


def pod_ready(pod: dict[str, Any]) -> bool:
    conditions = pod.get("status", {}).get("conditions", [])
    return bool(pod.get("status", {}).get("podIP")) and any(
        c.get("type") == "Ready" and c.get("status") == "True" for c in conditions
    ) and not pod["metadata"].get("deletionTimestamp")  # fmt: skip


def endpoint_slice(rollout: Rollout, pods: list[dict[str, Any]], weight: int) -> Manifest:
    """Ready pods of the models that should take traffic at this weight."""
    serving = []
    if weight < 100:
        serving.append(rollout.spec.stable.name)
    if weight > 0:
        serving.append(rollout.spec.candidate.name)
    chosen = sorted(
        (p for p in pods if p["metadata"].get("labels", {}).get("llmops.dev/llmmodel") in serving and pod_ready(p)),
        key=lambda p: p["metadata"]["name"],
    )
    name = service_name(rollout)
    meta = child_metadata(rollout, f"{name}-rollout", "traffic")
    meta["labels"] = {
        **meta["labels"],
        "kubernetes.io/service-name": name,
        "endpointslice.kubernetes.io/managed-by": ENDPOINT_SLICE_MANAGER,
    }
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": meta,
        "addressType": "IPv4",
        "ports": [
            {"name": "http", "port": HTTP_PORT, "protocol": "TCP"},
            {"name": "grpc", "port": GRPC_PORT, "protocol": "TCP"},
            {"name": "metrics", "port": METRICS_PORT, "protocol": "TCP"},
        ],
        "endpoints": [
            {
                "addresses": [p["status"]["podIP"]],
                "conditions": {"ready": True},
                "targetRef": {"kind": "Pod", "name": p["metadata"]["name"], "namespace": p["metadata"]["namespace"]},
                **({"nodeName": p["spec"]["nodeName"]} if p.get("spec", {}).get("nodeName") else {}),
            }
            for p in chosen
        ],
    }
