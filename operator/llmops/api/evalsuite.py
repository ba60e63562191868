"""EvalSuite: a reusable quality gate run against model versions."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from .common import (
    AGE,
    ApiModel,
    Conditions,
    CrdInfo,
    Image,
    Resource,
    ServiceObjectName,
    Uri,
    cel,
    column,
    exactly_one,
    validations,
)

MetricType = Literal[
    "ExactMatch", "Contains", "Regex", "RougeL", "BLEU",
    "LatencyP50", "LatencyP95", "LatencyP99", "ErrorRate", "Judge",
]  # fmt: skip
# Scores pass at or above their threshold; these pass at or below it.
LOWER_IS_BETTER: frozenset[str] = frozenset({"LatencyP50", "LatencyP95", "LatencyP99", "ErrorRate"})


class EvalCase(ApiModel):
    prompt: str = Field(max_length=65536)
    """The text sent to the model."""
    completion: str = Field(max_length=65536)
    """The expected completion."""


class EvalDataset(ApiModel):
    """Golden cases: exactly one of inline cases or a JSONL uri of {"prompt", "completion"} lines."""

    model_config = validations(cel(exactly_one("cases", "uri"), "exactly one of cases or uri must be set"))

    cases: list[EvalCase] | None = Field(default=None, min_length=1, max_length=1000)
    """Cases written out in the suite."""
    uri: Uri | None = None
    """A JSONL file of cases, one {"prompt", "completion"} object per line."""


class JudgeSpec(ApiModel):
    """A second model that grades each answer; its score in 0..1 is averaged."""

    model_config = validations(cel(exactly_one("model", "endpoint"), "exactly one of model or endpoint must be set"))

    model: ServiceObjectName | None = None
    """An LLMModel in the same namespace."""
    endpoint: str | None = Field(default=None, max_length=2048, pattern=r"^(https?|grpc)://.+$")
    """A Triton endpoint of the judge model (http://, https:// or grpc://)."""
    rubric: str = Field(default="Answer 1 if the response matches the reference, else 0.", max_length=4096)
    """Instructions given to the judge with each prompt, reference and answer."""


class EvalMetric(ApiModel):
    """One metric and its threshold."""

    model_config = validations(
        cel("(self.type == 'Regex') == has(self.pattern)", "pattern is required for Regex and only allowed with it",
            ".pattern"),
        cel("(self.type == 'Judge') == has(self.judge)", "judge is required for Judge and only allowed with it",
            ".judge"),
    )  # fmt: skip

    name: str = Field(max_length=63, pattern=r"^[a-z0-9]([-a-z0-9_]*[a-z0-9])?$")
    """Name of the metric, unique in the suite; results are reported under it."""
    type: MetricType
    """What is measured: a score of the answers, a latency percentile (seconds) or the error rate."""
    threshold: float
    """Scores (0..1) pass at or above it; latencies (seconds) and ErrorRate pass at or below it."""
    pattern: str | None = Field(default=None, max_length=1024)
    """Regular expression the completion must match (Regex)."""
    judge: JudgeSpec | None = None


class Baseline(ApiModel):
    """Compare against another model's run of this suite."""

    model: ServiceObjectName
    """The LLMModel whose latest run for its current digest is the comparison."""
    max_regression: float = Field(default=0.0, ge=0, le=1)
    """A score metric fails when it is more than this below the baseline's value."""


class EvalTarget(ApiModel):
    """The default model to evaluate: exactly one of model or endpoint."""

    model_config = validations(cel(exactly_one("model", "endpoint"), "exactly one of model or endpoint must be set"))

    model: ServiceObjectName | None = None
    """An LLMModel in the same namespace, evaluated at its served endpoint."""
    endpoint: str | None = Field(default=None, max_length=2048, pattern=r"^(https?|grpc)://.+$")
    """A Triton endpoint evaluated as it is (http://, https:// or grpc://)."""
    model_name: str = Field(default="llm", max_length=253)
    """Triton model name at the endpoint."""


class EvalSuiteSpec(ApiModel):
    dataset: EvalDataset
    metrics: list[EvalMetric] = Field(
        min_length=1,
        max_length=32,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )
    """Metrics computed over the cases; the run passes when every metric passes."""
    target: EvalTarget | None = None
    """Evaluate this model whenever its artifact changes; Rollouts and quality gates add their own targets."""
    baseline: Baseline | None = None
    concurrency: int = Field(default=4, ge=1, le=256)
    """Requests in flight at once."""
    max_new_tokens: int = Field(default=32, ge=1, le=32768)
    """Cap on generated tokens per case."""
    timeout_seconds: int = Field(default=1800, ge=10, le=86400)
    """A run still going after this long ends with phase Error."""
    run_nonce: str | None = Field(default=None, max_length=63)
    """Change to re-run every target even when its digest was already judged."""
    image: Image | None = None
    """Evaluator image; defaults to the operator's configured evaluator image."""


class MetricResult(ApiModel):
    name: str
    """The metric's name in spec.metrics."""
    value: float | None = None
    """The measured value; empty when it could not be computed."""
    threshold: float
    """The threshold the value was judged against."""
    baseline_value: float | None = None
    """The baseline model's value of the same metric, when a baseline is set."""
    passed: bool
    """Whether the value met the threshold (and the baseline's allowed regression)."""


RunPhase = Literal["Running", "Passed", "Failed", "Error"]


class EvalRun(ApiModel):
    """One evaluation of one model version."""

    model: str
    """The LLMModel judged, or the endpoint URL for an endpoint target."""
    digest: str
    """The model's artifact digest; empty for an endpoint target."""
    nonce: str | None = None
    """spec.runNonce when the run started: (model, digest, nonce) identifies a run."""
    job: str | None = None
    """The evaluator Job."""
    phase: RunPhase
    """Running while the evaluator Job runs, then Passed or Failed by the thresholds, or Error."""
    started_at: str | None = None
    """When the evaluator Job was created."""
    finished_at: str | None = None
    """When the run ended."""
    passed: bool | None = None
    """Whether every metric passed."""
    metrics: list[MetricResult] = Field(default_factory=list, max_length=32)
    """The value of each metric against its threshold."""
    message: str | None = None
    """Why the run failed or erred, naming the failing metrics."""
    report: str | None = None
    """Where the evaluator wrote its full JSON report, inside its pod (kept only as long as the pod)."""


class EvalSuiteStatus(ApiModel):
    observed_generation: int | None = None
    """The metadata.generation this status was computed from."""
    phase: Literal["Idle", "Running", "Passed", "Failed", "Error"] | None = None
    """Result of the most recent run."""
    conditions: Conditions = Field(default_factory=list)
    runs: list[EvalRun] = Field(default_factory=list, max_length=50)
    """Runs by model version, newest last; the oldest are dropped beyond 50."""


class EvalSuite(Resource):
    """A reusable quality gate: golden cases, metrics and thresholds."""

    crd = CrdInfo(
        kind="EvalSuite",
        plural="evalsuites",
        short_names=["evals"],
        columns=[
            column("Last", ".status.phase"),
            column("Target", ".spec.target.model"),
            column("Baseline", ".spec.baseline.model", priority=1),
            AGE,
        ],
    )

    kind: Literal["EvalSuite"] = "EvalSuite"
    spec: EvalSuiteSpec
    status: EvalSuiteStatus = Field(default_factory=EvalSuiteStatus)
