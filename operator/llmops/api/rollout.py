"""Rollout: move traffic from a stable LLMModel to a candidate in gated steps."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from .common import (
    AGE,
    DNS_1035_LABEL,
    ApiModel,
    Conditions,
    CrdInfo,
    Duration,
    LabelObjectName,
    ModelReference,
    ObjectName,
    Resource,
    cel,
    column,
    exactly_one,
    validations,
)

AnalysisTemplate = Literal[
    "TritonErrorRate", "TritonLatencyP95", "TritonLatencyP99", "TritonQueueTime", "TritonThroughput",
]  # fmt: skip


class AnalysisMetric(ApiModel):
    """One Prometheus measurement: a built-in template or custom PromQL returning one number."""

    model_config = validations(
        cel(exactly_one("template", "query"), "exactly one of template or query must be set"),
        cel("has(self.template) || has(self.comparison)", "comparison is required with a custom query",
            ".comparison"),
    )  # fmt: skip

    name: str = Field(max_length=63, pattern=r"^[a-z0-9]([-a-z0-9_]*[a-z0-9])?$")
    """Name of the measurement, unique in the step; reported in status.analysis."""
    template: AnalysisTemplate | None = None
    """Built-in query over Triton's metrics for the canary's pods."""
    query: str | None = Field(default=None, max_length=8192)
    """PromQL; {{canary}} and {{stable}} expand to the pods' label selectors."""
    threshold: float
    """Boundary of a passing measurement."""
    comparison: Literal["LessThan", "GreaterThan"] | None = None
    """How the value must relate to the threshold; templates bring their own."""


class AnalysisStep(ApiModel):
    """Measure the canary every interval; fail after failureLimit failed measurements."""

    metrics: list[AnalysisMetric] = Field(
        min_length=1,
        max_length=16,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )
    """Measured together; the step passes when every metric reaches its count of successes."""
    interval: Duration = "30s"
    """Time between two measurements."""
    count: int = Field(default=3, ge=1, le=1000)
    """Measurements per metric that must succeed."""
    failure_limit: int = Field(default=0, ge=0, le=1000)
    """Failed measurements tolerated before rollback."""
    inconclusive_limit: int = Field(default=2, ge=0, le=1000)
    """Measurements without data (no samples) tolerated before the rollout pauses."""


class PauseStep(ApiModel):
    duration: Duration | None = None
    """How long to wait; unset waits until promoted (spec.promote)."""


class EvalGateStep(ApiModel):
    """Run an EvalSuite against the candidate at its current weight; roll back when it fails."""

    eval_suite: LabelObjectName
    """The EvalSuite, in the same namespace, to run against the candidate."""


class RolloutStep(ApiModel):
    """Exactly one of setWeight, pause, analysis or evalGate."""

    model_config = validations(
        cel(exactly_one("setWeight", "pause", "analysis", "evalGate"),
            "a step must have exactly one of setWeight, pause, analysis or evalGate"),
    )  # fmt: skip

    set_weight: int | None = Field(default=None, ge=0, le=100)
    """Percent of traffic sent to the candidate."""
    pause: PauseStep | None = None
    """Wait, for a duration or until promoted."""
    analysis: AnalysisStep | None = None
    eval_gate: EvalGateStep | None = None


class HTTPRouteRef(ApiModel):
    """A Gateway API HTTPRoute whose first rule's backendRefs the operator weights."""

    name: ObjectName
    """Name of the HTTPRoute in the same namespace."""


class TrafficRouting(ApiModel):
    """How traffic is split: HTTPRoute weights, or replicas behind one Service (the default)."""

    model_config = validations(
        cel("!(has(self.httpRoute) && has(self.replicaRatio))", "set at most one of httpRoute or replicaRatio"),
    )

    http_route: HTTPRouteRef | None = None
    replica_ratio: bool | None = None
    """Scale stable and canary so that their replica ratio matches the weight behind one Service."""


class Promote(ApiModel):
    """A one-shot promotion, applied once per distinct id (so re-applying from Git is a no-op)."""

    id: str = Field(min_length=1, max_length=63)
    """Any new value promotes once; the same id again does nothing."""
    type: Literal["NextStep", "Full"] = "NextStep"
    """NextStep ends the current pause or step; Full skips all remaining steps."""


class RollbackPolicy(ApiModel):
    """How the rollout reacts to errors and what happens to a rejected canary."""

    on_analysis_error: Literal["Pause", "Abort"] = "Pause"
    """What to do when Prometheus keeps failing (not a failed measurement: an error or no answer)."""
    max_consecutive_errors: int = Field(default=4, ge=1, le=100)
    """Prometheus errors in a row that trigger onAnalysisError."""
    scale_down_delay: Duration = "0s"
    """How long the rejected canary keeps running after traffic left it."""


class RolloutSpec(ApiModel):
    model_config = validations(
        cel("self.stable.name != self.candidate.name", "candidate must differ from stable", ".candidate.name"),
        cel("self.steps.filter(s, has(s.setWeight)).map(s, s.setWeight).isSorted()",
            "setWeight must not decrease from one step to the next", ".steps"),
    )  # fmt: skip

    stable: ModelReference
    candidate: ModelReference
    steps: list[RolloutStep] = Field(min_length=1, max_length=64)
    """Run in order; after the last step the candidate is promoted."""
    traffic_routing: TrafficRouting = Field(default_factory=TrafficRouting)
    service: str | None = Field(default=None, max_length=63, pattern=DNS_1035_LABEL)
    """The Service clients call; defaults to the Rollout's name."""
    prometheus: str | None = Field(default=None, max_length=2048, pattern=r"^https?://.+$")
    """Prometheus for analysis steps; defaults to the operator's configured address."""
    paused: bool = False
    """Hold at the current step (traffic stays as it is)."""
    abort: bool = False
    """Send all traffic back to stable and stop; unset with a new candidate or retry to go again."""
    promote: Promote | None = None
    retry: str | None = Field(default=None, max_length=63)
    """Change to try a candidate digest again after it was rejected."""
    rollback_policy: RollbackPolicy = Field(default_factory=RollbackPolicy)


class MetricMeasurement(ApiModel):
    name: str
    """The metric's name in the analysis step."""
    value: float | None = None
    """The latest measured value; empty when the query returned no data."""
    threshold: float
    """Boundary of a passing measurement."""
    comparison: str
    """How the value must relate to the threshold: LessThan or GreaterThan."""
    successes: int = 0
    """Passing measurements so far."""
    failures: int = 0
    """Failing measurements so far."""
    inconclusive: int = 0
    """Measurements without data so far."""
    errors: int = 0
    """Queries that failed so far."""
    consecutive_errors: int = 0
    """Queries that failed in a row, up to now."""


class AnalysisStatus(ApiModel):
    step: int
    """Index of the analysis step in spec.steps."""
    started_at: str
    """When the analysis began."""
    last_measured_at: str | None = None
    """When Prometheus was last queried."""
    metrics: list[MetricMeasurement] = Field(default_factory=list, max_length=16)
    """One entry per metric of the step."""


HistoryEvent = Literal["Promoted", "RolledBack", "Aborted"]


class HistoryEntry(ApiModel):
    time: str
    """When it happened."""
    event: HistoryEvent
    """Promoted, RolledBack or Aborted."""
    stable: str
    """The stable model at the time."""
    candidate: str
    """The candidate model."""
    candidate_digest: str | None = None
    """The candidate's artifact digest."""
    step: int | None = None
    """The step at which it happened."""
    reason: str | None = None
    """Why, as a CamelCase reason."""
    metric: str | None = None
    """The metric that failed, for a rollback by analysis or eval gate."""
    value: float | None = None
    """That metric's value."""
    threshold: float | None = None
    """That metric's threshold."""


RolloutPhase = Literal["Pending", "Progressing", "Paused", "Promoted", "RolledBack", "Aborted", "Degraded"]


class RolloutStatus(ApiModel):
    observed_generation: int | None = None
    """The metadata.generation this status was computed from."""
    phase: RolloutPhase | None = None
    """Summary for kubectl; derived from the conditions."""
    conditions: Conditions = Field(default_factory=list)
    current_step: int | None = None
    """Index into spec.steps of the step in progress."""
    step_started_at: str | None = None
    """When the current step began."""
    canary_weight: int | None = None
    """Percent of traffic the candidate receives now."""
    canary_replicas: int | None = None
    """Replicas the candidate's Deployment is held at by this rollout (replicaRatio mode, and 0 once
    rejected); unset leaves the candidate's own spec.serving.replicas in force."""
    stable_digest: str | None = None
    """Artifact digest of the stable model when the rollout started."""
    candidate_digest: str | None = None
    """Artifact digest of the candidate being rolled out."""
    rejected_digests: list[str] = Field(default_factory=list, max_length=50)
    """Candidate digests rolled back; never retried until spec.retry changes."""
    analysis: AnalysisStatus | None = None
    """Measurements of the analysis step in progress."""
    last_promote_id: str | None = None
    """The spec.promote.id already applied."""
    last_retry: str | None = None
    """The spec.retry value already applied."""
    message: str | None = None
    """What the rollout is doing or why it stopped."""
    history: list[HistoryEntry] = Field(default_factory=list, max_length=20)
    """Promotions, rollbacks and aborts, newest last; the oldest are dropped beyond 20."""


class Rollout(Resource):
    """A canary of a candidate LLMModel against the stable one, with analysis and eval gates."""

    crd = CrdInfo(
        kind="Rollout",
        plural="rollouts",
        short_names=["llmro"],
        names_services=True,
        columns=[
            column("Phase", ".status.phase"),
            column("Stable", ".spec.stable.name"),
            column("Candidate", ".spec.candidate.name"),
            column("Step", ".status.currentStep", "integer"),
            column("Weight", ".status.canaryWeight", "integer"),
            column("Message", ".status.message", priority=1),
            AGE,
        ],
    )

    kind: Literal["Rollout"] = "Rollout"
    spec: RolloutSpec
    status: RolloutStatus = Field(default_factory=RolloutStatus)
