"""LLMModel: a model, how it is built (ONNX + quantization) and how Triton serves it."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from .common import (
    AGE,
    ApiModel,
    Conditions,
    CrdInfo,
    GPUResources,
    Image,
    LabelObjectName,
    ModelReference,
    ObjectName,
    Resource,
    Scheduling,
    ServiceObjectName,
    Uri,
    cel,
    column,
    exactly_one,
    validations,
)

Quantization = Literal["None", "FP16", "Int8Dynamic", "Int8Static", "Int4WeightOnly"]
DEFAULT_SERVING_IMAGE = "ghcr.io/llmops-dev/serving:0.1.0"
"""Upstream Triton plus ONNX Runtime and tokenizers (images/serving)."""


class FineTuneJobReference(ApiModel):
    """A FineTuneJob in the same namespace whose output is the model."""

    name: ServiceObjectName
    """Name of the FineTuneJob in the same namespace."""


class ModelSource(ApiModel):
    """Where the weights come from: exactly one of uri or fineTuneJob."""

    model_config = validations(
        cel(exactly_one("uri", "fineTuneJob"), "exactly one of uri or fineTuneJob must be set"),
    )

    uri: Uri | None = None
    """hf://org/name, s3://bucket/prefix, pvc://claim/path or file:///path of a saved causal LM."""
    fine_tune_job: FineTuneJobReference | None = None
    """Use the artifact produced by this FineTuneJob (the model is built once it succeeds)."""
    credentials_secret: ObjectName | None = None
    """Secret whose keys become the builder's environment (HF_TOKEN, AWS_ACCESS_KEY_ID, ...)."""


class CalibrationDataset(ApiModel):
    """Prompts used to calibrate static int8 quantization."""

    uri: Uri
    """JSONL of {"prompt", "completion"} lines; the prompts are used."""
    samples: int = Field(default=128, ge=1, le=100000)
    """How many prompts to calibrate on."""


class QualityGate(ApiModel):
    """Refuse a quantized build that scores too far below the unquantized model."""

    eval_suite: LabelObjectName
    """EvalSuite run against both the quantized and the unquantized build."""
    max_score_drop: float = Field(default=0.02, ge=0, le=1)
    """Largest allowed drop of any score metric (absolute, 0..1)."""


class RepositoryStorage(ApiModel):
    """Where the Triton model repository is written and served from."""

    persistent_volume_claim: ObjectName
    """Existing PVC (ReadWriteMany when serving pods span nodes) holding model repositories."""


class BuildSpec(ApiModel):
    """How the served artifact is produced. Changing it triggers exactly one rebuild."""

    model_config = validations(
        cel(
            "(self.quantization == 'Int8Static') == has(self.calibrationDataset)",
            "calibrationDataset is required for Int8Static quantization and only allowed with it",
            ".calibrationDataset",
        ),
    )

    quantization: Quantization = "Int8Dynamic"
    """None (fp32), FP16, Int8Dynamic, Int8Static (needs calibrationDataset), Int4WeightOnly."""
    calibration_dataset: CalibrationDataset | None = None
    """Calibration prompts for Int8Static."""
    max_sequence_length: int = Field(default=512, ge=16, le=131072)
    """Longest prompt + completion, in tokens, the exported graph accepts."""
    storage: RepositoryStorage | None = None
    """Where the model repository goes; by default a PVC named <model>-repository."""
    quality_gate: QualityGate | None = None
    """Refuse a build whose quantization loses more than allowed on an EvalSuite."""
    image: Image | None = None
    """Builder image; defaults to the operator's configured builder image."""


class DynamicBatching(ApiModel):
    """Triton's dynamic batcher: groups concurrent requests into one model execution."""

    enabled: bool = True
    """Let Triton group concurrent requests into batches."""
    max_queue_delay_microseconds: int = Field(default=500, ge=0, le=10_000_000)
    """How long a request may wait for others to form a batch."""
    preferred_batch_sizes: list[int] = Field(default_factory=list, max_length=16)
    """Batch sizes Triton prefers to form; none may exceed maxBatchSize."""


class InstanceGroup(ApiModel):
    """How many copies of the model Triton runs per pod, and on what."""

    kind: Literal["GPU", "CPU"] = "GPU"
    """Where each model instance runs: GPU or CPU."""
    count: int = Field(default=1, ge=1, le=64)
    """Model instances per device (per GPU, or per server on CPU)."""


class Autoscaling(ApiModel):
    """A HorizontalPodAutoscaler for the serving Deployment."""

    model_config = validations(
        cel("self.minReplicas <= self.maxReplicas", "minReplicas must not exceed maxReplicas", ".minReplicas"),
    )

    min_replicas: int = Field(default=1, ge=1, le=1000)
    """Fewest serving replicas the HorizontalPodAutoscaler keeps."""
    max_replicas: int = Field(ge=1, le=1000)
    """Most serving replicas the HorizontalPodAutoscaler may create."""
    target_cpu_utilization: int = Field(default=80, ge=1, le=100)
    """Average CPU utilization (percent) the autoscaler aims for."""


class ServingSpec(ApiModel):
    """The Triton Inference Server deployment serving the built model."""

    model_config = validations(
        cel(
            "!has(self.instanceGroup) || self.instanceGroup.kind != 'GPU' || !has(self.resources) "
            "|| self.resources.gpus > 0",
            "GPU instance groups need resources.gpus > 0",
            ".instanceGroup",
        ),
        cel(
            "!has(self.dynamicBatching) || !has(self.dynamicBatching.preferredBatchSizes) "
            "|| self.dynamicBatching.preferredBatchSizes.all(b, b <= self.maxBatchSize)",
            "preferredBatchSizes must not exceed maxBatchSize",
            ".dynamicBatching",
        ),
    )

    image: Image = DEFAULT_SERVING_IMAGE
    """Triton Inference Server image; it must provide what the generation model imports (images/serving)."""
    replicas: int = Field(default=1, ge=0, le=1000)
    """Serving pods (ignored when autoscaling is set)."""
    resources: GPUResources = Field(default_factory=GPUResources)
    scheduling: Scheduling = Field(default_factory=Scheduling)
    max_batch_size: int = Field(default=8, ge=1, le=4096)
    """Largest batch Triton may form (config.pbtxt max_batch_size)."""
    dynamic_batching: DynamicBatching = Field(default_factory=DynamicBatching)
    instance_group: InstanceGroup = Field(default_factory=InstanceGroup)
    max_new_tokens: int = Field(default=64, ge=1, le=32768)
    """Default cap on generated tokens per request."""
    autoscaling: Autoscaling | None = None


class LLMModelSpec(ApiModel):
    source: ModelSource
    build: BuildSpec = Field(default_factory=BuildSpec)
    serving: ServingSpec = Field(default_factory=ServingSpec)


class Artifact(ApiModel):
    """The built, quantized Triton model repository now served."""

    uri: str
    """Where the built Triton model repository lives (pvc://claim/path)."""
    digest: str
    """sha256 of the model files."""
    size_bytes: int = Field(ge=0)
    """Size of the built repository in bytes."""
    quantization: Quantization
    """The quantization the artifact was built with."""
    build_hash: str
    """Hash of the inputs of the build (source + build spec); an unchanged hash never rebuilds."""


class Endpoint(ApiModel):
    """Where clients reach the model."""

    http: str
    """Triton's HTTP/REST address (KServe v2 protocol)."""
    grpc: str
    """Triton's gRPC address."""
    metrics: str
    """Triton's Prometheus metrics address."""
    model_name: str
    """Triton model name to send requests to."""


class Lineage(ApiModel):
    """Where the model came from."""

    base_model: str | None = None
    """The base LLMModel (or URI) the weights were fine-tuned from."""
    fine_tune_job: str | None = None
    """The FineTuneJob that produced the weights, if any."""
    source_uri: str | None = None
    """Where the weights were read from."""


Phase = Literal["Pending", "Building", "Deploying", "Ready", "Degraded", "Failed"]
GatePhase = Literal["Building", "Deploying", "Evaluating", "Passed", "Refused", "Error", "Cancelled"]


class GateScore(ApiModel):
    """One score metric of the quality gate's EvalSuite, for both builds."""

    metric: str
    """The metric's name in the EvalSuite."""
    candidate: float | None = None
    """The quantized build's value."""
    reference: float | None = None
    """The unquantized build's value."""


class QualityGateStatus(ApiModel):
    """The quantized build waiting for (or judged by) spec.build.qualityGate."""

    phase: GatePhase
    """Building the two artifacts, Deploying them, Evaluating them on the EvalSuite, then Passed
    (the candidate became status.artifact), Refused (the previous artifact keeps serving), Error
    (retried when the EvalSuite's runNonce changes) or Cancelled (the gate no longer applies)."""
    eval_suite: str
    """The EvalSuite judging both builds."""
    build_hash: str
    """Build hash of the quantized build being judged."""
    candidate: Artifact | None = None
    """The quantized build, served by <model>-gate-candidate while the gate is open."""
    reference: Artifact | None = None
    """The unquantized build of the same source, served by <model>-gate-reference while the gate is open."""
    scores: list[GateScore] = Field(default_factory=list, max_length=32)
    """Each score metric of both runs (latency and ErrorRate metrics are not compared)."""
    message: str | None = None
    """What the gate waits for, or why it refused or failed."""


class LLMModelStatus(ApiModel):
    observed_generation: int | None = None
    """The metadata.generation this status was computed from."""
    phase: Phase | None = None
    """Summary for kubectl; derived from the conditions."""
    conditions: Conditions = Field(default_factory=list)
    artifact: Artifact | None = None
    build_job: str | None = None
    """The Job building the current build hash."""
    endpoint: Endpoint | None = None
    replicas: int | None = None
    """Serving replicas wanted."""
    ready_replicas: int | None = None
    """Serving replicas ready to take traffic."""
    lineage: Lineage | None = None
    quality_gate: QualityGateStatus | None = None
    """The latest quality gate of a quantized build (spec.build.qualityGate)."""


class LLMModel(Resource):
    """A model and how it is served."""

    crd = CrdInfo(
        kind="LLMModel",
        plural="llmmodels",
        short_names=["llm"],
        names_services=True,
        columns=[
            column("Phase", ".status.phase"),
            column("Quantization", ".spec.build.quantization"),
            column("Ready", ".status.readyReplicas", "integer"),
            column("Replicas", ".status.replicas", "integer"),
            column("Digest", ".status.artifact.digest", priority=1),
            column("Endpoint", ".status.endpoint.http", priority=1),
            AGE,
        ],
    )

    kind: Literal["LLMModel"] = "LLMModel"
    spec: LLMModelSpec
    status: LLMModelStatus = Field(default_factory=LLMModelStatus)


__all__ = ["LLMModel", "LLMModelSpec", "LLMModelStatus", "ModelReference", "Quantization"]
