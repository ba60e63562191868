"""Types shared by the four resources: the base model, conditions, references, scheduling.

Field docstrings become the CRD's descriptions (`kubectl explain`): write them for users.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, ClassVar, Literal, cast

from pydantic import AliasGenerator, BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

GROUP = "llmops.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
CATEGORY = "llmops"

# Kubernetes object names (RFC 1123 subdomain) and label-value-like tokens.
_LABEL = "[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_SUBDOMAIN = f"{_LABEL}(\\.{_LABEL})*"
DNS_NAME = f"^{_SUBDOMAIN}$"
DNS_1035_LABEL = "^[a-z]([-a-z0-9]*[a-z0-9])?$"
"""What a Service may be named: starts with a letter, no dots."""
# A non-negative resource quantity as the apiserver parses it ("500m", "16Gi", "1e3"); a looser
# pattern let "..." through, and a decimal exponent ("1e2.5", which the documented grammar allows
# but the parser refuses), which the apiserver then fails to decode in the workload's Pod.
QUANTITY = r"^(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE][+-]?[0-9]+))?$"
DURATION = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$"
# A pvc:// URI names a claim, which must be a valid PVC name: it is mounted into the workloads.
URI = f"^((hf|s3|gs|file|https?)://.+|pvc://{_SUBDOMAIN}(/.*)?)$"
LABEL_VALUE = r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$"
QUALIFIED_NAME = f"^({_SUBDOMAIN}/)?[A-Za-z0-9]([-A-Za-z0-9_.]{{0,61}}[A-Za-z0-9])?$"
"""A label key or taint key: an optional DNS-subdomain prefix and a name of at most 63 characters."""
IMAGE = r"^\S+$"

ObjectName = Annotated[str, Field(min_length=1, max_length=253, pattern=DNS_NAME)]
ServiceObjectName = Annotated[str, Field(min_length=1, max_length=63, pattern=DNS_1035_LABEL)]
"""The name of an LLMModel, FineTuneJob or Rollout: each names a Service, and labels its children."""
LabelObjectName = Annotated[str, Field(min_length=1, max_length=63, pattern=DNS_NAME)]
"""The name of an EvalSuite: it labels its children."""
Quantity = Annotated[str, Field(pattern=QUANTITY, max_length=64)]
Duration = Annotated[str, Field(pattern=DURATION, max_length=32)]
Uri = Annotated[str, Field(pattern=URI, max_length=2048)]
"""A model or data location: hf://org/name, s3://bucket/key, pvc://claim/path, file:///path."""
LabelValue = Annotated[str, Field(max_length=63, pattern=LABEL_VALUE)]
LabelKey = Annotated[str, Field(max_length=317, pattern=QUALIFIED_NAME)]
Image = Annotated[str, Field(min_length=1, max_length=512, pattern=IMAGE)]
"""A container image reference: no whitespace."""


def cel(rule: str, message: str, field_path: str | None = None, reason: str | None = None) -> dict[str, str]:
    """One CEL `x-kubernetes-validations` entry."""
    entry = {"rule": rule, "message": message}
    if field_path:
        entry["fieldPath"] = field_path
    if reason:
        entry["reason"] = reason
    return entry


def exactly_one(*fields: str) -> str:
    """CEL for "exactly one of these optional fields is set"."""
    return "[" + ", ".join(f"has(self.{f})" for f in fields) + "].filter(x, x).size() == 1"


def immutable(message: str) -> dict[str, Any]:
    """Schema extra making a field immutable once set (a CEL transition rule)."""
    return {"x-kubernetes-validations": [cel("self == oldSelf", message)]}


def validations(*rules: dict[str, str]) -> ConfigDict:
    """Model config carrying CEL rules into the generated schema."""
    return ConfigDict(json_schema_extra={"x-kubernetes-validations": cast(Any, list(rules))})


class ApiModel(BaseModel):
    """Base of every spec and status type: camelCase on the wire, docstrings as descriptions."""

    model_config = ConfigDict(
        alias_generator=AliasGenerator(alias=to_camel),
        populate_by_name=True,
        extra="forbid",
        use_attribute_docstrings=True,
        validate_default=False,
    )

    def wire(self) -> dict[str, Any]:
        """The object as the apiserver stores it: camelCase keys, unset fields omitted."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


ConditionStatus = Literal["True", "False", "Unknown"]


class Condition(ApiModel):
    """One observation of the resource's state, following Kubernetes API conventions."""

    type: str = Field(max_length=316, pattern=r"^[A-Z][A-Za-z0-9]*$")
    """CamelCase condition type, e.g. Ready, Progressing, Degraded, Built."""
    status: ConditionStatus
    """True, False or Unknown."""
    reason: str = Field(max_length=1024, pattern=r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$")
    """CamelCase reason a program can switch on."""
    message: str = Field(default="", max_length=32768)
    """What happened, for a person to act on."""
    last_transition_time: str = Field(json_schema_extra={"format": "date-time"})
    """When status last changed (not when the condition was last written)."""
    observed_generation: int | None = Field(default=None, ge=0)
    """The metadata.generation this condition was computed from."""


Conditions = Annotated[
    list[Condition],
    Field(
        max_length=32,
        description="The latest observations of the resource's state, one per type (Ready, Progressing, Degraded, …).",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    ),
]


class ModelReference(ApiModel):
    """A reference to an LLMModel in the same namespace."""

    name: ServiceObjectName
    """Name of the LLMModel."""


class Toleration(ApiModel):
    """A toleration, as on a Pod."""

    # The Pod's own rules, so that a toleration the CRD accepts is one the Pod accepts.
    model_config = validations(
        cel("(has(self.key) && self.key != '') || self.operator == 'Exists'",
            "a toleration without a key needs operator Exists", ".operator"),
        cel("self.operator != 'Exists' || !has(self.value) || self.value == ''",
            "value must be empty with operator Exists", ".value"),
        cel("!has(self.tolerationSeconds) || (has(self.effect) && self.effect == 'NoExecute')",
            "tolerationSeconds needs effect NoExecute", ".tolerationSeconds"),
    )  # fmt: skip

    key: str | None = Field(default=None, max_length=317, pattern=f"^$|{QUALIFIED_NAME}")
    """The taint key to tolerate; empty with operator Exists tolerates every taint."""
    operator: Literal["Exists", "Equal"] = "Equal"
    """Exists matches any value of the key; Equal matches only `value`."""
    value: LabelValue | None = None
    """The taint value to match (operator Equal)."""
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None
    """The taint effect to match; empty matches every effect."""
    toleration_seconds: int | None = Field(default=None, ge=0)
    """How long a NoExecute taint is tolerated before the pod is evicted."""


class Scheduling(ApiModel):
    """Where the pods may run."""

    node_selector: dict[LabelKey, LabelValue] = Field(default_factory=dict, max_length=64)
    """Node labels the pods require, e.g. nvidia.com/gpu.product: NVIDIA-H100-80GB-HBM3."""
    tolerations: list[Toleration] = Field(default_factory=list, max_length=32)
    """Tolerations added to the pods (GPU nodes are often tainted)."""
    priority_class_name: ObjectName | None = None
    """PriorityClass of the pods."""
    queue_name: ObjectName | None = Field(default=None, max_length=63)
    """Kueue LocalQueue; sets the kueue.x-k8s.io/queue-name label so Kueue admits the workload."""


class GPUResources(ApiModel):
    """Compute for one pod: GPUs are requested as nvidia.com/gpu, requests equal limits."""

    model_config = validations(
        cel("!has(self.gpuType) || self.gpus > 0", "gpuType needs gpus > 0", ".gpuType"),
    )

    gpus: int = Field(default=1, ge=0, le=16)
    """nvidia.com/gpu per pod; 0 runs on CPU."""
    gpu_type: LabelValue | None = None
    """GPU product required (matched against the node label nvidia.com/gpu.product)."""
    cpu: Quantity | None = None
    """CPU request and limit, e.g. "4"."""
    memory: Quantity | None = None
    """Memory request and limit, e.g. 32Gi."""


def now_rfc3339(now: datetime) -> str:
    """Kubernetes' timestamp format: UTC, second precision, Z suffix."""
    return now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


ColumnType = Literal["string", "integer", "number", "boolean", "date"]


class PrinterColumn(ApiModel):
    name: str
    type: ColumnType
    json_path: str
    description: str = ""
    priority: int = 0


class CrdInfo(ApiModel):
    """What a CRD needs beyond the schema: names, columns, the status subresource."""

    kind: str
    plural: str
    short_names: list[str]
    columns: list[PrinterColumn]
    names_services: bool = False
    """Its name names a Service (so it must be a DNS-1035 label)."""


class Resource(ApiModel):
    """A custom resource: apiVersion, kind, metadata, spec and status."""

    crd: ClassVar[CrdInfo]

    api_version: str = API_VERSION
    kind: str
    metadata: dict[str, Any] = Field(default_factory=dict)

    @property
    def name(self) -> str:
        return str(self.metadata.get("name", ""))

    @property
    def namespace(self) -> str:
        return str(self.metadata.get("namespace", ""))

    @property
    def generation(self) -> int:
        return int(self.metadata.get("generation", 0))

    @property
    def uid(self) -> str:
        return str(self.metadata.get("uid", ""))


def column(
    name: str, path: str, type_: ColumnType = "string", description: str = "", priority: int = 0
) -> PrinterColumn:
    return PrinterColumn(
        name=name,
        type=type_,
        json_path=path,
        description=description,
        priority=priority,
    )


AGE = column("Age", ".metadata.creationTimestamp", "date")
