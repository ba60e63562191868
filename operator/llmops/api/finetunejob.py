"""FineTuneJob: fine-tune a base model on a dataset with GPU training pods."""

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
    ObjectName,
    Resource,
    Scheduling,
    ServiceObjectName,
    Uri,
    cel,
    column,
    exactly_one,
    immutable,
    validations,
)
from .llmmodel import BuildSpec, ServingSpec

Method = Literal["LoRA", "Full"]


class BaseModelSource(ApiModel):
    """The model to start from: exactly one of model or uri."""

    model_config = validations(cel(exactly_one("model", "uri"), "exactly one of model or uri must be set"))

    model: ServiceObjectName | None = None
    """An LLMModel in the same namespace; its source weights are fine-tuned."""
    uri: Uri | None = None
    """hf://, s3://, pvc:// or file:// location of a saved causal LM."""


class Dataset(ApiModel):
    """Training data: JSONL lines of {"prompt": ..., "completion": ...}."""

    uri: Uri
    """JSONL training data, one {"prompt", "completion"} object per line."""
    eval_uri: Uri | None = None
    """Held-out JSONL for the eval loss reported in status."""


class LoRA(ApiModel):
    """Low-rank adapter settings (method LoRA only)."""

    r: int = Field(default=8, ge=1, le=1024)
    """Rank of the adapter matrices: higher learns more and costs more memory."""
    alpha: int = Field(default=16, ge=1, le=4096)
    """Scaling of the adapter's update (applied as alpha / r)."""
    dropout: float = Field(default=0.05, ge=0, lt=1)
    """Dropout on the adapter's input during training."""
    target_modules: list[str] = Field(default_factory=list, max_length=64)
    """Module names to adapt; empty means the library's default for the architecture."""
    merge: bool = True
    """Merge the adapter into the base weights of the output model (needed for ONNX export)."""


class Hyperparameters(ApiModel):
    """Optimizer and schedule settings passed to the trainer."""

    epochs: int = Field(default=1, ge=1, le=1000)
    """Passes over the training data."""
    max_steps: int | None = Field(default=None, ge=1)
    """Stop after this many optimizer steps (overrides epochs)."""
    learning_rate: float = Field(default=2e-4, gt=0, le=1)
    """Learning rate of the optimizer."""
    batch_size: int = Field(default=8, ge=1, le=65536)
    """Per-worker batch size."""
    seed: int = Field(default=42, ge=0)
    """Random seed, for repeatable runs."""


class Checkpointing(ApiModel):
    """Where checkpoints go and how often; a replacement pod resumes from the newest one."""

    persistent_volume_claim: ObjectName
    """PVC mounted by every worker; checkpoints live under <job>/checkpoints."""
    every_steps: int = Field(default=100, ge=1, le=1_000_000)
    """Save a checkpoint every this many optimizer steps; a lost pod resumes from the newest."""


class OutputModel(ApiModel):
    """The LLMModel created (or updated) from the fine-tuned weights."""

    name: ServiceObjectName
    """Name of the LLMModel to create or update with the fine-tuned weights."""
    build: BuildSpec | None = None
    """Build settings of the output model; the operator's defaults when unset."""
    serving: ServingSpec | None = None
    """Serving settings of the output model; the operator's defaults when unset."""


class FineTuneJobSpec(ApiModel):
    # The training Job is created once and a Job's pod template cannot change, so an edit of
    # what it was built from would be silently ignored: the training inputs are immutable.
    # lora is optional, so its rule sits here, where adding or removing it is seen too.
    model_config = validations(
        cel("!has(self.lora) || self.method == 'LoRA'", "lora is only allowed with method LoRA", ".lora"),
        cel(
            "has(self.lora) == has(oldSelf.lora) && (!has(self.lora) || self.lora == oldSelf.lora)",
            "lora is immutable",
            ".lora",
        ),
    )

    base_model: BaseModelSource = Field(json_schema_extra=immutable("baseModel is immutable"))
    dataset: Dataset = Field(json_schema_extra=immutable("dataset is immutable"))
    method: Method = Field(default="LoRA", json_schema_extra=immutable("method is immutable"))
    """LoRA (adapters, far less GPU memory) or Full fine-tuning."""
    lora: LoRA | None = None
    hyperparameters: Hyperparameters = Field(
        default_factory=Hyperparameters, json_schema_extra=immutable("hyperparameters are immutable")
    )
    resources: GPUResources = Field(
        default_factory=GPUResources, json_schema_extra=immutable("resources are immutable")
    )
    """Compute per worker."""
    workers: int = Field(default=1, ge=1, le=256, json_schema_extra=immutable("workers is immutable"))
    """Data-parallel workers (an indexed Job with torchrun rendezvous when > 1)."""
    scheduling: Scheduling = Field(default_factory=Scheduling)
    checkpointing: Checkpointing = Field(json_schema_extra=immutable("checkpointing is immutable"))
    output: OutputModel
    backoff_limit: int = Field(default=3, ge=0, le=100)
    """Failed pods tolerated before the job fails; evictions and lost nodes do not count."""
    image: Image | None = None
    """Trainer image; defaults to the operator's configured trainer image."""
    suspend: bool = False
    """Stop the training pods (keeping checkpoints); unset to resume."""


class Progress(ApiModel):
    """The trainer's latest progress report."""

    step: int = 0
    """Optimizer steps done."""
    total_steps: int | None = None
    """Optimizer steps the whole run takes."""
    epoch: float | None = None
    """Current epoch, fractional."""
    loss: float | None = None
    """Latest training loss."""
    eval_loss: float | None = None
    """Latest loss on the evaluation set, when one is given."""
    tokens_per_second: float | None = None
    """Training throughput over all workers."""
    eta_seconds: int | None = None
    """Estimated seconds until the run ends."""
    updated_at: str | None = None
    """When the trainer last reported progress."""


FineTunePhase = Literal["Pending", "Running", "Suspended", "Succeeded", "Failed"]


class FineTuneJobStatus(ApiModel):
    observed_generation: int | None = None
    """The metadata.generation this status was computed from."""
    phase: FineTunePhase | None = None
    """Summary for kubectl; derived from the conditions."""
    conditions: Conditions = Field(default_factory=list)
    job: str | None = None
    """The training Job."""
    progress: Progress | None = None
    resumes: int = 0
    """How many times training resumed from a checkpoint after losing a pod."""
    worker_pod: str | None = None
    """The rank-0 training pod whose progress is shown; a new one means training resumed."""
    last_resumed_from_step: int | None = None
    """The checkpoint step the training last resumed from after losing a pod."""
    start_time: str | None = None
    """When training started."""
    completion_time: str | None = None
    """When training ended, successfully or not."""
    artifact_uri: str | None = None
    """Where the fine-tuned (merged) weights were written."""
    output_model: str | None = None
    """The LLMModel created from the artifact."""


class FineTuneJob(Resource):
    """Fine-tunes a base model on a dataset with GPU training pods."""

    crd = CrdInfo(
        kind="FineTuneJob",
        plural="finetunejobs",
        short_names=["ftj"],
        names_services=True,
        columns=[
            column("Phase", ".status.phase"),
            column("Method", ".spec.method"),
            column("Step", ".status.progress.step", "integer"),
            column("Total", ".status.progress.totalSteps", "integer"),
            column("Loss", ".status.progress.loss", "number"),
            column("Output", ".spec.output.name"),
            column("ETA", ".status.progress.etaSeconds", "integer", priority=1),
            AGE,
        ],
    )

    kind: Literal["FineTuneJob"] = "FineTuneJob"
    spec: FineTuneJobSpec
    status: FineTuneJobStatus = Field(default_factory=FineTuneJobStatus)
