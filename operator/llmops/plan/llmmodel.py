"""LLMModel: (model, observed children, settings, now) -> build Job, serving Deployment, Service, status.

A build Job is named by the hash of its inputs (source + build spec + builder image), so an
unchanged spec never rebuilds and a changed one builds exactly once. The serving Deployment
always points at status.artifact, which only moves when a build succeeds: the previous
artifact keeps serving while a new one builds, or after one fails.

A quantized build with spec.build.qualityGate moves status.artifact only once it passes the
gate: the model also builds the unquantized reference of the same source (a build Job of its
own hash, reused across quantized rebuilds), serves both builds from two small Deployments
(<model>-gate-candidate, <model>-gate-reference), and the gate's EvalSuite judges them as the
targets <model>@candidate and <model>@reference. Their runs decide: accept (the candidate
becomes status.artifact) or refuse (the previous artifact keeps serving). Everything the gate
knows is in status.qualityGate, so a restarted operator decides the same.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from ..api.common import Condition
from ..api.evalsuite import LOWER_IS_BETTER, EvalRun, EvalSuite
from ..api.llmmodel import (
    Artifact,
    BuildSpec,
    Endpoint,
    GateScore,
    Lineage,
    LLMModel,
    Phase,
    QualityGate,
    QualityGateStatus,
)
from ..settings import Settings
from .common import (
    RESTRICTED_CONTAINER_SECURITY,
    RESTRICTED_POD_SECURITY,
    Event,
    Manifest,
    Plan,
    child_metadata,
    child_name,
    condition,
    container_resources,
    content_hash,
    pod_scheduling,
    set_condition,
    transition_events,
)
from .workloads import (
    PVC_ROOT,
    SCRATCH,
    WORKLOAD_UID,
    creation_problem,
    job_age,
    job_condition,
    parse_result,
    pod_failure_policy,
    pod_problem,
    pvc_claims,
    pvc_volumes,
    termination_message,
)

TRITON_MODEL_NAME = "llm"
"""One Triton model name for every version, so clients and canaries need no per-version name."""
HTTP_PORT, GRPC_PORT, METRICS_PORT = 8000, 8001, 8002
REPOSITORY_MOUNT = "/repository"
TRITON_UID = 1000  # the triton-server user of the upstream image
WARNING_REASONS = {
    "BuildFailed", "ImagePullBackOff", "Unschedulable", "CrashLoopBackOff", "PodCreationFailed",
    "QuantizationRegressed", "QualityGateError",
}  # fmt: skip
GateRole = Literal["candidate", "reference"]
GATE_ROLES: tuple[GateRole, ...] = ("candidate", "reference")
OPEN_GATE = {"Building", "Deploying", "Evaluating", "Error"}
"""Gate phases that keep the gate's Deployments running."""
JUDGED_GATE = {"Evaluating", "Error"}
"""Gate phases in which the EvalSuite judges the gate's two builds (Error: again on a new runNonce)."""


@dataclass(frozen=True)
class LLMModelObservation:
    """The raw objects the plan depends on, as read from the apiserver."""

    fine_tune_job: dict[str, Any] | None = None
    """The FineTuneJob named by spec.source.fineTuneJob."""
    build_job: dict[str, Any] | None = None
    """The build Job for the current build hash (looked up by its deterministic name)."""
    build_pods: list[dict[str, Any]] = field(default_factory=list)
    build_job_events: list[dict[str, Any]] = field(default_factory=list)
    """Why the build Job cannot create its pods (its FailedCreate Events, read while it has none)."""
    deployment: dict[str, Any] | None = None
    serving_pods: list[dict[str, Any]] = field(default_factory=list)
    held_replicas: int | None = None
    """Replicas a Rollout holds this model at as its canary (Rollout status.canaryReplicas)."""
    reference_build_job: dict[str, Any] | None = None
    """The quality gate's unquantized build Job (looked up by its deterministic name)."""
    reference_build_pods: list[dict[str, Any]] = field(default_factory=list)
    reference_build_job_events: list[dict[str, Any]] = field(default_factory=list)
    gate_deployments: dict[str, dict[str, Any]] = field(default_factory=dict)
    """The quality gate's Deployments by role (candidate, reference)."""
    gate_suite: EvalSuite | None = None
    """The EvalSuite named by spec.build.qualityGate."""
    build_claims: dict[str, dict[str, Any] | None] = field(default_factory=dict)
    """The build pods' PersistentVolumeClaims by name, None where one does not exist (claims_to_read)."""


def build_inputs(build: BuildSpec) -> dict[str, Any]:
    """What the builder's output depends on: the quality gate judges a build, it does not change it."""
    return {k: v for k, v in build.wire().items() if k != "qualityGate"}


def build_hash(model: LLMModel, source_uri: str, settings: Settings, build: BuildSpec | None = None) -> str:
    build = build or model.spec.build
    return content_hash(source_uri, build_inputs(build), build.image or settings.builder_image)


def reference_build(model: LLMModel) -> BuildSpec:
    """The unquantized build of the same source that the quality gate compares a quantized one with."""
    return model.spec.build.model_copy(
        update={"quantization": "None", "calibration_dataset": None, "quality_gate": None}
    )


def active_gate(model: LLMModel) -> QualityGate | None:
    """The quality gate, when the build is quantized (an unquantized build has nothing to lose)."""
    build = model.spec.build
    return build.quality_gate if build.quantization != "None" else None


def gate_target(model_name: str, role: str) -> str:
    """The EvalSuite run key of one of the gate's builds: <model>@candidate or <model>@reference."""
    return f"{model_name}@{role}"


def gate_deployment_name(model_name: str, role: str) -> str:
    return child_name(model_name, f"gate-{role}")


def gate_endpoint(model_name: str, namespace: str, role: str) -> str:
    return f"http://{gate_deployment_name(model_name, role)}.{namespace}.svc:{HTTP_PORT}"


def build_job_name(model: LLMModel, hash_: str) -> str:
    return child_name(model.name, f"build-{hash_[:8]}")


def repository_claim(model: LLMModel) -> str:
    storage = model.spec.build.storage
    return storage.persistent_volume_claim if storage else child_name(model.name, "repository")


def repository_location(model: LLMModel, hash_: str) -> str:
    """Where the builder writes, and Triton reads, the repository of one build."""
    return f"{REPOSITORY_MOUNT}/{model.namespace}/{model.name}/{hash_}"


def repository_pvc(model: LLMModel, settings: Settings) -> Manifest:
    spec: dict[str, Any] = {
        "accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": settings.repository_storage_size}},
    }
    if settings.repository_storage_class:
        spec["storageClassName"] = settings.repository_storage_class
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": child_metadata(model, repository_claim_name(model), "repository"),
        "spec": spec,
    }


def repository_claim_name(model: LLMModel) -> str:
    return child_name(model.name, "repository")


def claims_to_read(build_pods: list[dict[str, Any]]) -> list[str]:
    """The claims a reconcile reads: those of the build pods, only while the scheduler holds one (volume_wait)."""
    problem = pod_problem(build_pods)
    if problem is None or problem[0] != "Unschedulable":
        return []
    volumes = (v for pod in build_pods for v in pod.get("spec", {}).get("volumes", []))
    return sorted({v["persistentVolumeClaim"]["claimName"] for v in volumes if "persistentVolumeClaim" in v})


def reads_serving_pods(model: LLMModel, deployment: dict[str, Any] | None) -> bool:
    """Whether a reconcile lists the serving pods: only while the Deployment falls short of its spec.

    A pod that cannot run (pod_problem) is a replica that is not updated, ready or available, so a
    Deployment whose every replica is all three has no problem to explain: a served model's resync
    skips the list, the costliest read the apiserver answers (it filters every pod of the namespace).
    """
    if model.status.artifact is None or deployment is None:
        return False  # nothing serves yet; once the Deployment exists, its pods come with its events
    wanted = deployment.get("spec", {}).get("replicas", 1)
    status = deployment.get("status", {})
    seen = status.get("observedGeneration", -1) >= deployment.get("metadata", {}).get("generation", 0)
    counts = ("replicas", "updatedReplicas", "readyReplicas", "availableReplicas")
    settled = seen and all(status.get(c, 0) == wanted for c in counts) and not status.get("unavailableReplicas")
    return not settled


UNBOUND_CLAIMS = "unbound immediate PersistentVolumeClaims"
"""The scheduler's word for a pod whose claims are not bound yet. It keeps saying so until it
tries the pod again, which it does soon after a claim binds: a bound claim may still be named."""


def volume_wait(model: LLMModel, observed: LLMModelObservation, problem: tuple[str, str]) -> tuple[str, str] | None:
    """The build pod is Unschedulable only because its claims are being provisioned: a wait, not a fault.

    A claim that is Pending will be bound; one of ours not seen yet is about to be made. A claim
    of the user's that does not exist is theirs to mend: the scheduler's own message says so.
    """
    claims = observed.build_claims
    ours = repository_claim_name(model)
    unbound = [
        name
        for name, claim in sorted(claims.items())
        if (claim is None and name == ours) or (claim is not None and claim.get("status", {}).get("phase") != "Bound")
    ]
    if unbound:
        return "WaitingForVolume", f"claim {unbound[0]} is not bound yet"
    if claims and None not in claims.values() and UNBOUND_CLAIMS in problem[1]:
        return "WaitingForVolume", f"claims bound ({', '.join(sorted(claims))}); the scheduler has yet to place the pod"
    return None


def desired_build_job(
    model: LLMModel, source_uri: str, hash_: str, settings: Settings, build: BuildSpec | None = None
) -> Manifest:
    build, serving = build or model.spec.build, model.spec.serving
    args = [
        "--source", source_uri,
        "--quantization", build.quantization,
        "--repository", repository_location(model, hash_),
        "--model-name", TRITON_MODEL_NAME,
        "--max-batch-size", str(serving.max_batch_size),
        "--dynamic-batching" if serving.dynamic_batching.enabled else "--no-dynamic-batching",
        "--instance-kind", serving.instance_group.kind,
        "--instance-count", str(serving.instance_group.count),
        "--max-new-tokens", str(serving.max_new_tokens),
        "--result-file", "/dev/termination-log",
    ]  # fmt: skip
    calibration = build.calibration_dataset.uri if build.calibration_dataset else None
    if calibration:
        args += ["--calibration-data", calibration]
    volumes, mounts = pvc_volumes(pvc_claims(source_uri, calibration))
    volumes.append({"name": "repository", "persistentVolumeClaim": {"claimName": repository_claim(model)}})
    mounts.append({"name": "repository", "mountPath": REPOSITORY_MOUNT})
    volumes.append({"name": "tmp", "emptyDir": {}})
    mounts.append({"name": "tmp", "mountPath": SCRATCH})
    container: dict[str, Any] = {
        "name": "builder",
        "image": build.image or settings.builder_image,
        "args": args,
        "env": [{"name": "LLMOPS_PVC_ROOT", "value": PVC_ROOT}, {"name": "HOME", "value": SCRATCH}],
        "volumeMounts": mounts,
        "securityContext": RESTRICTED_CONTAINER_SECURITY,
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }
    if model.spec.source.credentials_secret:
        container["envFrom"] = [{"secretRef": {"name": model.spec.source.credentials_secret}}]
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": child_metadata(
            model, build_job_name(model, hash_), "builder", annotations={"llmops.dev/build-hash": hash_}
        ),
        "spec": {
            "backoffLimit": 2,
            "ttlSecondsAfterFinished": 86400,
            "podFailurePolicy": pod_failure_policy("builder"),
            "template": {
                "metadata": {"labels": child_metadata(model, "", "builder")["labels"]},
                "spec": {
                    "restartPolicy": "Never",
                    "securityContext": {**RESTRICTED_POD_SECURITY, "runAsUser": WORKLOAD_UID, "fsGroup": WORKLOAD_UID},
                    "containers": [container],
                    "volumes": volumes,
                },
            },
        },
    }


def serving_replicas(model: LLMModel, held: int | None) -> int | None:
    """Replicas to declare on the Deployment; None when an HPA owns them (it wins over a canary hold)."""
    if model.spec.serving.autoscaling is not None:
        return None
    return held if held is not None else model.spec.serving.replicas


def desired_deployment(
    model: LLMModel, artifact: Artifact, replicas: int | None, name: str = "", component: str = "serving"
) -> Manifest:
    serving = model.spec.serving
    labels = child_metadata(model, "", component)["labels"]
    claim = {"claimName": repository_claim(model), "readOnly": True}
    volumes = [{"name": "repository", "persistentVolumeClaim": claim}, {"name": "tmp", "emptyDir": {}}]
    mounts = [
        {"name": "repository", "mountPath": REPOSITORY_MOUNT, "readOnly": True},
        {"name": "tmp", "mountPath": SCRATCH},
    ]
    probe = {"httpGet": {"path": "/v2/health/ready", "port": "http"}, "periodSeconds": 5, "failureThreshold": 3}
    container = {
        "name": "triton",
        "image": serving.image,
        "command": ["tritonserver"],
        "args": [
            f"--model-repository={artifact.uri}",
            f"--http-port={HTTP_PORT}",
            f"--grpc-port={GRPC_PORT}",
            f"--metrics-port={METRICS_PORT}",
            "--strict-readiness=true",
            # Latency quantiles for the rollout analysis templates (TritonLatencyP95/P99).
            "--metrics-config=summary_latencies=true",
        ],
        "ports": [
            {"name": "http", "containerPort": HTTP_PORT},
            {"name": "grpc", "containerPort": GRPC_PORT},
            {"name": "metrics", "containerPort": METRICS_PORT},
        ],
        "readinessProbe": probe,
        "startupProbe": {**probe, "failureThreshold": 120},
        "livenessProbe": {"httpGet": {"path": "/v2/health/live", "port": "http"}, "periodSeconds": 10},
        "resources": container_resources(serving.resources.gpus, serving.resources.cpu, serving.resources.memory),
        "volumeMounts": mounts,
        "securityContext": RESTRICTED_CONTAINER_SECURITY,
    }
    spec: dict[str, Any] = {
        "selector": {"matchLabels": labels},
        "template": {
            "metadata": {
                "labels": labels,
                "annotations": {
                    "prometheus.io/scrape": "true",
                    "prometheus.io/port": str(METRICS_PORT),
                    # A new artifact rolls the pods even when the repository path is reused.
                    "llmops.dev/artifact-digest": artifact.digest,
                },
            },
            "spec": {
                "securityContext": {**RESTRICTED_POD_SECURITY, "runAsUser": TRITON_UID, "fsGroup": TRITON_UID},
                "containers": [container],
                "volumes": volumes,
                **pod_scheduling(serving.scheduling, serving.resources.gpus, serving.resources.gpu_type),
            },
        },
    }
    if replicas is not None:
        spec["replicas"] = replicas  # with an HPA, replicas belong to the HPA
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": child_metadata(model, name or model.name, component),
        "spec": spec,
    }


def desired_service(model: LLMModel, name: str = "", component: str = "serving") -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": child_metadata(model, name or model.name, component),
        "spec": {
            "selector": child_metadata(model, "", component)["labels"],
            "ports": [
                {"name": "http", "port": HTTP_PORT, "targetPort": "http"},
                {"name": "grpc", "port": GRPC_PORT, "targetPort": "grpc"},
                {"name": "metrics", "port": METRICS_PORT, "targetPort": "metrics"},
            ],
        },
    }


def desired_autoscaler(model: LLMModel) -> Manifest | None:
    autoscaling = model.spec.serving.autoscaling
    if autoscaling is None:
        return None
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": child_metadata(model, model.name, "serving"),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": model.name},
            "minReplicas": autoscaling.min_replicas,
            "maxReplicas": autoscaling.max_replicas,
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {
                        "name": "cpu",
                        "target": {"type": "Utilization", "averageUtilization": autoscaling.target_cpu_utilization},
                    },
                }
            ],
        },
    }


def endpoint(model: LLMModel) -> Endpoint:
    host = f"{model.name}.{model.namespace}.svc"
    return Endpoint(
        http=f"http://{host}:{HTTP_PORT}",
        grpc=f"{host}:{GRPC_PORT}",
        metrics=f"http://{host}:{METRICS_PORT}/metrics",
        model_name=TRITON_MODEL_NAME,
    )


# --- the plan -------------------------------------------------------------------------------


def source_of(model: LLMModel, observed: LLMModelObservation) -> tuple[str | None, Lineage, str]:
    """(weights URI or None while waiting, lineage, why we wait)."""
    if model.spec.source.uri:
        return model.spec.source.uri, Lineage(source_uri=model.spec.source.uri), ""
    job_name = model.spec.source.fine_tune_job.name if model.spec.source.fine_tune_job else ""
    job = observed.fine_tune_job
    if job is None:
        return None, Lineage(fine_tune_job=job_name), f"FineTuneJob {job_name} does not exist"
    status, spec = job.get("status", {}), job.get("spec", {})
    base = spec.get("baseModel", {})
    lineage = Lineage(fine_tune_job=job_name, base_model=base.get("model") or base.get("uri"))
    if status.get("phase") != "Succeeded" or not status.get("artifactUri"):
        return None, lineage, f"FineTuneJob {job_name} is {status.get('phase') or 'Pending'}"
    return status["artifactUri"], lineage.model_copy(update={"source_uri": status["artifactUri"]}), ""


@dataclass(frozen=True)
class BuildOutcome:
    """What one build Job came to: an artifact, a failure, or still going (with why its pods cannot run)."""

    artifact: Artifact | None = None
    failure: str | None = None
    problem: tuple[str, str] | None = None


def build_outcome(
    model: LLMModel,
    build: BuildSpec,
    hash_: str,
    job: dict[str, Any] | None,
    pods: list[dict[str, Any]],
    job_events: list[dict[str, Any]],
) -> BuildOutcome:
    job_name = build_job_name(model, hash_)
    result = parse_result(termination_message(pods, "builder"))
    if job is not None and job_condition(job, "Complete") and result is not None:
        artifact = Artifact(
            uri=repository_location(model, hash_),
            digest=str(result.get("digest", "")),
            size_bytes=int(result.get("sizeBytes", 0)),
            quantization=build.quantization,
            build_hash=hash_,
        )
        return BuildOutcome(artifact=artifact)
    if job is not None and job_condition(job, "Failed"):
        error = (result or {}).get("error") or termination_message(pods, "builder")
        return BuildOutcome(failure=f"build job {job_name} failed: {error or 'see its pod logs'}")
    if job is not None and job_condition(job, "Complete"):
        # The builder's manifest is its termination message; without it there is no digest to serve.
        return BuildOutcome(failure=f"build job {job_name} completed without a result in its termination message")
    problem = pod_problem(pods) or (creation_problem(job_events) if job is not None and not pods else None)
    return BuildOutcome(problem=problem)


# --- the quality gate -----------------------------------------------------------------------


@dataclass(frozen=True)
class GateOutcome:
    """One reconcile of the quality gate: its status, its children, the Built condition, the verdict."""

    state: QualityGateStatus
    built: tuple[bool, str, str]
    """The Built condition (value, reason, message)."""
    children: list[Manifest] = field(default_factory=list)
    accepted: Artifact | None = None
    """The candidate, once it passed: the new status.artifact."""
    problem: tuple[str, str] | None = None
    """Why the model is Degraded."""
    events: list[Event] = field(default_factory=list)


def known_reference(model: LLMModel, hash_: str) -> Artifact | None:
    """The unquantized reference when it is built already: by an earlier gate, or served before quantizing."""
    gate = model.status.quality_gate
    known = (gate.reference if gate else None, model.status.artifact)
    return next((a for a in known if a is not None and a.build_hash == hash_), None)


def gate_run(suite: EvalSuite, target: str, digest: str) -> EvalRun | None:
    """The suite's newest run of one gate build at the suite's current runNonce."""
    runs = [r for r in suite.status.runs if (r.model, r.digest, r.nonce) == (target, digest, suite.spec.run_nonce)]
    return runs[-1] if runs else None


def gate_scores(suite: EvalSuite, candidate: EvalRun, reference: EvalRun) -> list[GateScore]:
    """Every score metric of the suite, for both runs; latencies and ErrorRate measure no quality."""
    candidate_values = {m.name: m.value for m in candidate.metrics}
    reference_values = {m.name: m.value for m in reference.metrics}
    return [
        GateScore(metric=m.name, candidate=candidate_values.get(m.name), reference=reference_values.get(m.name))
        for m in suite.spec.metrics
        if m.type not in LOWER_IS_BETTER
    ]


def shown(value: float | None) -> str:
    return "none" if value is None else f"{value:g}"


def regressions(scores: list[GateScore], max_drop: float) -> list[str]:
    """Why each score metric that dropped more than allowed fails, naming both values."""
    failures = []
    for score in scores:
        if score.reference is None:
            continue  # nothing to compare with
        # Rounded: 0.9 - 0.88 is 0.020000000000000018 in floating point, not above a 0.02 limit.
        drop = None if score.candidate is None else round(score.reference - score.candidate, 9)
        if drop is None or drop > max_drop:
            failures.append(
                f"{score.metric} {shown(score.candidate)} vs {shown(score.reference)} unquantized "
                f"(drop {shown(drop)} > max {max_drop:g})"
            )
    return failures


def gate_served(deployment: dict[str, Any] | None, digest: str) -> bool:
    """The gate Deployment serves this artifact: rolled out, its pods at the digest and ready."""
    if not deployment:
        return False
    template = deployment.get("spec", {}).get("template", {}).get("metadata", {})
    status = deployment.get("status", {})
    return (
        (template.get("annotations") or {}).get("llmops.dev/artifact-digest") == digest
        and status.get("observedGeneration", -1) >= deployment.get("metadata", {}).get("generation", 0)
        and int(status.get("readyReplicas", 0)) >= 1
        and int(status.get("updatedReplicas", 0)) == int(status.get("replicas", 0))
    )


def gate_children(model: LLMModel, state: QualityGateStatus) -> list[Manifest]:
    """One replica of each gate build with the serving pod template; HPAs and canary holds are for serving."""
    children = []
    for role in GATE_ROLES:
        artifact = getattr(state, role)
        if artifact is not None:
            name, component = gate_deployment_name(model.name, role), f"gate-{role}"
            children += [
                desired_deployment(model, artifact, 1, name, component),
                desired_service(model, name, component),
            ]
    return children


def gate_scale_down(model: LLMModel, children: list[Manifest]) -> list[Manifest]:
    """Merge patches scaling to zero the gate Deployments that this reconcile does not run.

    Scaled, not deleted: the apply layer only creates and updates; the objects go with the model.
    """
    if model.status.quality_gate is None:
        return []  # no gate ever opened: nothing to scale
    running = {c["metadata"]["name"] for c in children if c["kind"] == "Deployment"}
    names = [gate_deployment_name(model.name, role) for role in GATE_ROLES]
    return [
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": name, "namespace": model.namespace},
            "spec": {"replicas": 0},
        }
        for name in names
        if name not in running
    ]


def gate_verdict(model: LLMModel, gate: QualityGate, state: QualityGateStatus, was: str | None) -> GateOutcome:
    """Accept or refuse the candidate from the recorded scores (so a raised maxScoreDrop is honoured)."""
    assert state.candidate is not None
    quantization = state.candidate.quantization
    failures = regressions(state.scores, gate.max_score_drop)
    if failures:
        serving = model.status.artifact
        keeps = f"{serving.quantization} artifact {serving.digest[:19]} keeps serving" if serving else "nothing serves"
        message = f"{quantization} build refused by EvalSuite {gate.eval_suite}: {'; '.join(failures)}; {keeps}"
        state.phase, state.message = "Refused", message
        return GateOutcome(state, (False, "QuantizationRegressed", message), problem=("QuantizationRegressed", message))
    summary = ", ".join(f"{s.metric} {shown(s.candidate)} (unquantized {shown(s.reference)})" for s in state.scores)
    message = f"{quantization} build passed EvalSuite {gate.eval_suite}: {summary or 'no score metric to compare'}"
    state.phase, state.message = "Passed", message
    events = [] if was == "Passed" else [Event("Normal", "QualityGatePassed", message)]
    return GateOutcome(
        state, (True, "Built", artifact_summary(state.candidate)), accepted=state.candidate, events=events
    )


def plan_quality_gate(
    model: LLMModel,
    gate: QualityGate,
    candidate: Artifact,
    source_uri: str,
    observed: LLMModelObservation,
    settings: Settings,
) -> GateOutcome:
    """The gate of a finished quantized build: reference build, gate Deployments, the EvalSuite's verdict."""
    previous = model.status.quality_gate
    if previous is not None and (previous.build_hash, previous.eval_suite) == (candidate.build_hash, gate.eval_suite):
        state, was = previous.model_copy(deep=True), previous.phase
    else:
        state, was = (
            QualityGateStatus(phase="Building", eval_suite=gate.eval_suite, build_hash=candidate.build_hash),
            None,
        )
    state.candidate = candidate
    if state.phase in ("Passed", "Refused"):
        return gate_verdict(model, gate, state, was)

    def pending(phase: Literal["Building", "Deploying", "Evaluating"], message: str, **more: Any) -> GateOutcome:
        state.phase, state.message = phase, message
        return GateOutcome(state, (False, "QualityGatePending", message), **more)

    def error(message: str, **more: Any) -> GateOutcome:
        state.phase, state.message = "Error", message
        return GateOutcome(state, (False, "QualityGateError", message), problem=("QualityGateError", message), **more)

    build = reference_build(model)
    hash_ = build_hash(model, source_uri, settings, build)
    state.reference = known_reference(model, hash_)
    if state.reference is None:
        job = desired_build_job(model, source_uri, hash_, settings, build)
        outcome = build_outcome(
            model, build, hash_, observed.reference_build_job, observed.reference_build_pods,
            observed.reference_build_job_events,
        )  # fmt: skip
        state.reference = outcome.artifact
        if outcome.failure:
            return error(f"the unquantized reference build failed: {outcome.failure}", children=[job])
        if state.reference is None:
            message = f"building the unquantized reference (job {job['metadata']['name']}) for the quality gate"
            if outcome.problem:
                state.phase, state.message = "Building", message
                return GateOutcome(state, (False, *outcome.problem), [job], problem=outcome.problem)
            return pending("Building", message, children=[job])

    children = gate_children(model, state)
    artifacts = {role: getattr(state, role) for role in GATE_ROLES}
    if not all(gate_served(observed.gate_deployments.get(r), a.digest) for r, a in artifacts.items()):
        names = " and ".join(gate_deployment_name(model.name, r) for r in GATE_ROLES)
        return pending("Deploying", f"deploying {names} for EvalSuite {gate.eval_suite}", children=children)
    suite = observed.gate_suite
    if suite is None:
        return pending("Evaluating", f"EvalSuite {gate.eval_suite} does not exist", children=children)
    runs = {role: gate_run(suite, gate_target(model.name, role), a.digest) for role, a in artifacts.items()}
    errors = [f"{role} run: {run.message}" for role, run in runs.items() if run is not None and run.phase == "Error"]
    if errors:
        retry = "; change the EvalSuite's runNonce to judge them again"
        return error(f"EvalSuite {gate.eval_suite} could not judge the builds: {'; '.join(errors)}{retry}",
                     children=children)  # fmt: skip
    candidate_run, reference_run = runs["candidate"], runs["reference"]
    if candidate_run is None or reference_run is None or "Running" in (candidate_run.phase, reference_run.phase):
        targets = " and ".join(gate_target(model.name, r) for r in GATE_ROLES)
        return pending("Evaluating", f"waiting for EvalSuite {gate.eval_suite} to judge {targets}", children=children)
    state.scores = gate_scores(suite, candidate_run, reference_run)
    return gate_verdict(model, gate, state, was)


# --- the plan -------------------------------------------------------------------------------


def plan_llmmodel(model: LLMModel, observed: LLMModelObservation, settings: Settings, now: datetime) -> Plan:
    generation = model.generation
    before = model.status.conditions
    conditions: list[Condition] = list(before)
    # Only its fields are set below, none changed in place: a shallow copy leaves the model's as read.
    status = model.status.model_copy()
    children: list[Manifest] = []
    gate_events: list[Event] = []

    def set_(type_: str, value: bool, reason: str, message: str) -> None:
        nonlocal conditions
        conditions = set_condition(conditions, type_, "True" if value else "False", reason, message, now, generation)

    source_uri, lineage, waiting = source_of(model, observed)
    status.lineage = lineage
    build_failure: str | None = None
    build_problem: tuple[str, str] | None = None
    building = False
    gated = False
    if model.spec.build.storage is None:
        children.append(repository_pvc(model, settings))
    if source_uri is None:
        set_("Built", False, "WaitingForSource", waiting)
    else:
        hash_ = build_hash(model, source_uri, settings)
        gate = active_gate(model)
        judged = status.quality_gate
        if status.artifact is not None and status.artifact.build_hash == hash_:
            set_("Built", True, "Built", artifact_summary(status.artifact))
        else:
            # A gated build is recorded in status once built: its Job may be gone (TTL) when the gate decides.
            recorded = judged.candidate if judged and judged.build_hash == hash_ else None
            outcome = BuildOutcome(artifact=recorded)
            if recorded is None:
                job_name = build_job_name(model, hash_)
                children.append(desired_build_job(model, source_uri, hash_, settings))
                status.build_job = job_name
                outcome = build_outcome(
                    model, model.spec.build, hash_, observed.build_job, observed.build_pods,
                    observed.build_job_events,
                )  # fmt: skip
            if outcome.artifact is not None and gate is not None:
                gated = True
                verdict = plan_quality_gate(model, gate, outcome.artifact, source_uri, observed, settings)
                status.quality_gate = verdict.state
                children += verdict.children
                gate_events = verdict.events
                set_("Built", *verdict.built)
                if verdict.accepted is not None:
                    status.artifact = verdict.accepted
                build_problem = verdict.problem
                building = verdict.state.phase in OPEN_GATE - {"Error"}
            elif outcome.artifact is not None:
                status.artifact = outcome.artifact
                set_("Built", True, "Built", artifact_summary(status.artifact))
            elif outcome.failure:
                build_failure = outcome.failure
                set_("Built", False, "BuildFailed", build_failure)
            else:
                building = True
                build_problem = outcome.problem
                if build_problem and build_problem[0] == "Unschedulable":
                    build_problem = volume_wait(model, observed, build_problem) or build_problem
                if gate is not None:
                    # The reference builds alongside, so that the gate can judge as soon as the candidate is built.
                    reference = reference_build(model)
                    reference_hash = build_hash(model, source_uri, settings, reference)
                    if known_reference(model, reference_hash) is None:
                        children.append(desired_build_job(model, source_uri, reference_hash, settings, reference))
                if build_problem:
                    set_("Built", False, *build_problem)
                else:
                    quantization = model.spec.build.quantization
                    set_("Built", False, "Building", f"build job {status.build_job} is running ({quantization})")
    if not gated and status.quality_gate is not None and status.quality_gate.phase in OPEN_GATE:
        # The spec moved on (no gate, unquantized, another build or source): this gate will not decide.
        cancelled = status.quality_gate.model_copy(deep=True)
        cancelled.phase = "Cancelled"
        cancelled.message = (
            f"the spec no longer gates build {cancelled.build_hash[:8]} on EvalSuite {cancelled.eval_suite}"
        )
        status.quality_gate = cancelled
    patches = gate_scale_down(model, children)

    serving_problem = None
    if status.artifact is not None:
        desired = serving_replicas(model, observed.held_replicas)
        children += [desired_deployment(model, status.artifact, desired), desired_service(model)]
        autoscaler = desired_autoscaler(model)
        if autoscaler:
            children.append(autoscaler)
        status.endpoint = endpoint(model)
        deployment = observed.deployment or {}
        ready = int(deployment.get("status", {}).get("readyReplicas", 0))
        status.replicas = desired if desired is not None else int(deployment.get("status", {}).get("replicas", 0))
        status.ready_replicas = ready
        serving_problem = pod_problem(observed.serving_pods)
        rolled_out = bool(deployment) and deployment.get("status", {}).get("observedGeneration", -1) >= deployment.get(
            "metadata", {}
        ).get("generation", 0)
        wanted = status.replicas or 0
        if rolled_out and ready >= wanted:
            set_("Ready", True, "Serving", f"{ready}/{status.replicas} replicas ready at {status.endpoint.http}")
        elif serving_problem:
            set_("Ready", False, serving_problem[0], serving_problem[1])
        else:
            set_("Ready", False, "Deploying", f"{ready}/{status.replicas} replicas ready")
    else:
        set_("Ready", False, "NotBuilt", "waiting for the first successful build")

    if build_failure:
        set_("Degraded", True, "BuildFailed", build_failure)
    elif build_problem and build_problem[0] != "WaitingForVolume":
        set_("Degraded", True, *build_problem)
    elif serving_problem:
        set_("Degraded", True, *serving_problem)
    else:
        set_("Degraded", False, "AsExpected", "")

    status.conditions = conditions
    status.observed_generation = generation
    status.phase = phase_of(conditions, building, status.artifact is not None)
    return Plan(
        children=children,
        status=status.wire(),
        events=gate_events + transition_events(before, conditions, WARNING_REASONS),
        requeue_after=None if status.phase == "Ready" else poll_after(children, observed, now),
        patches=patches,
    )


POLL_SECONDS = 10.0


def poll_after(children: list[Manifest], observed: LLMModelObservation, now: datetime) -> float | None:
    """How soon to look again at a model that is not Ready, when no event may say it changed.

    Its Jobs, pods and Deployments are watched, so most waits need no polling. A build Job that
    has no pods is the exception: why they cannot be created shows only in Events, which carry no
    label naming the model, so their changes start no reconcile. Such a Job is looked at after
    10 s, then less often the longer it stays without pods (half its age), so a controller-manager
    working off thousands of Jobs is not asked about each every 10 s; the resync period is the
    longest wait.
    """
    observed_jobs = {
        job["metadata"]["name"]: (job, pods)
        for job, pods in (
            (observed.build_job, observed.build_pods),
            (observed.reference_build_job, observed.reference_build_pods),
        )
        if job is not None
    }
    soonest: float | None = None
    for child in children:
        if child["kind"] != "Job":
            continue
        found = observed_jobs.get(child["metadata"]["name"])
        if found is None:
            return POLL_SECONDS  # created by this plan
        job, pods = found
        if pods or job_condition(job, "Complete") or job_condition(job, "Failed"):
            continue
        wait = max(POLL_SECONDS, job_age(job, now) / 2)
        soonest = wait if soonest is None else min(soonest, wait)
    return soonest


def phase_of(conditions: list[Condition], building: bool, has_artifact: bool) -> Phase:
    """The printer-column summary, derived from the conditions."""

    def true(type_: str) -> bool:
        c = condition(conditions, type_)
        return c is not None and c.status == "True"

    degraded = condition(conditions, "Degraded")
    if degraded is not None and degraded.status == "True":
        # Failed: a build failed (or was refused) and there is nothing to serve; others may clear by themselves.
        nothing_to_serve = degraded.reason in ("BuildFailed", "QuantizationRegressed") and not has_artifact
        return "Failed" if nothing_to_serve else "Degraded"
    if building:
        return "Building"
    if true("Ready"):
        return "Ready"
    return "Deploying" if has_artifact else "Pending"


def artifact_summary(artifact: Artifact) -> str:
    return (
        f"{artifact.quantization} artifact {artifact.digest[:19]} ({artifact.size_bytes / 1e6:.1f} MB) "
        f"at {artifact.uri}"
    )
