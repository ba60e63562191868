"""LLMModel: (model, observed children, settings, now) -> build Job, serving Deployment, Service, status.

A build Job is named by the hash of its inputs (source + build spec + builder image), so an
unchanged spec never rebuilds and a changed one builds exactly once. The serving Deployment
always points at status.artifact, which only moves when a build succeeds: the previous
artifact keeps serving while a new one builds, or after one fails.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ..api.common import Condition
from ..api.llmmodel import Artifact, Endpoint, Lineage, LLMModel, Phase
from ..settings import Settings
from .common import (
    RESTRICTED_CONTAINER_SECURITY,
    RESTRICTED_POD_SECURITY,
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
    WORKLOAD_UID,
    creation_problem,
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
WARNING_REASONS = {"BuildFailed", "ImagePullBackOff", "Unschedulable", "CrashLoopBackOff", "PodCreationFailed"}


@dataclass(frozen=True)
class LLMModelObservation:
    """The raw objects the plan depends on, as read from the apiserver."""

    fine_tune_job: dict[str, Any] | None = None
    """The FineTuneJob named by spec.source.fineTuneJob."""
    build_job: dict[str, Any] | None = None
    """The build Job for the current build hash (looked up by its deterministic name)."""
    build_pods: list[dict[str, Any]] = field(default_factory=list)
    build_job_events: list[dict[str, Any]] = field(default_factory=list)
    """Warning Events of the build Job (read while it has no pods)."""
    deployment: dict[str, Any] | None = None
    serving_pods: list[dict[str, Any]] = field(default_factory=list)
    held_replicas: int | None = None
    """Replicas a Rollout holds this model at as its canary (Rollout status.canaryReplicas)."""


def build_hash(model: LLMModel, source_uri: str, settings: Settings) -> str:
    return content_hash(source_uri, model.spec.build.wire(), model.spec.build.image or settings.builder_image)


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
        "metadata": child_metadata(model, child_name(model.name, "repository"), "repository"),
        "spec": spec,
    }


def desired_build_job(model: LLMModel, source_uri: str, hash_: str, settings: Settings) -> Manifest:
    build, serving = model.spec.build, model.spec.serving
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
    mounts.append({"name": "tmp", "mountPath": "/tmp"})
    container: dict[str, Any] = {
        "name": "builder",
        "image": build.image or settings.builder_image,
        "args": args,
        "env": [{"name": "LLMOPS_PVC_ROOT", "value": PVC_ROOT}, {"name": "HOME", "value": "/tmp"}],
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


def desired_deployment(model: LLMModel, artifact: Artifact, replicas: int | None) -> Manifest:
    serving = model.spec.serving
    labels = child_metadata(model, "", "serving")["labels"]
    claim = {"claimName": repository_claim(model), "readOnly": True}
    volumes = [{"name": "repository", "persistentVolumeClaim": claim}, {"name": "tmp", "emptyDir": {}}]
    mounts = [
        {"name": "repository", "mountPath": REPOSITORY_MOUNT, "readOnly": True},
        {"name": "tmp", "mountPath": "/tmp"},
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
        "metadata": child_metadata(model, model.name, "serving"),
        "spec": spec,
    }


def desired_service(model: LLMModel) -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": child_metadata(model, model.name, "serving"),
        "spec": {
            "selector": child_metadata(model, "", "serving")["labels"],
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


def plan_llmmodel(model: LLMModel, observed: LLMModelObservation, settings: Settings, now: datetime) -> Plan:
    generation = model.generation
    before = model.status.conditions
    conditions: list[Condition] = list(before)
    status = model.status.model_copy(deep=True)
    children: list[Manifest] = []

    def set_(type_: str, value: bool, reason: str, message: str) -> None:
        nonlocal conditions
        conditions = set_condition(conditions, type_, "True" if value else "False", reason, message, now, generation)

    source_uri, lineage, waiting = source_of(model, observed)
    status.lineage = lineage
    build_failure: str | None = None
    build_problem: tuple[str, str] | None = None
    building = False
    if model.spec.build.storage is None:
        children.append(repository_pvc(model, settings))
    if source_uri is None:
        set_("Built", False, "WaitingForSource", waiting)
    else:
        hash_ = build_hash(model, source_uri, settings)
        if status.artifact is not None and status.artifact.build_hash == hash_:
            set_("Built", True, "Built", artifact_summary(status.artifact))
        else:
            job_name = build_job_name(model, hash_)
            children.append(desired_build_job(model, source_uri, hash_, settings))
            status.build_job = job_name
            job = observed.build_job
            result = parse_result(termination_message(observed.build_pods, "builder"))
            if job is not None and job_condition(job, "Complete") and result is not None:
                status.artifact = Artifact(
                    uri=repository_location(model, hash_),
                    digest=str(result.get("digest", "")),
                    size_bytes=int(result.get("sizeBytes", 0)),
                    quantization=model.spec.build.quantization,
                    build_hash=hash_,
                )
                set_("Built", True, "Built", artifact_summary(status.artifact))
            elif job is not None and job_condition(job, "Failed"):
                build_failure = (result or {}).get("error") or termination_message(observed.build_pods, "builder")
                build_failure = f"build job {job_name} failed: {build_failure or 'see its pod logs'}"
                set_("Built", False, "BuildFailed", build_failure)
            elif job is not None and job_condition(job, "Complete"):
                # The builder's manifest is its termination message; without it there is no digest to serve.
                build_failure = f"build job {job_name} completed without a result in its termination message"
                set_("Built", False, "BuildFailed", build_failure)
            else:
                building = True
                build_problem = pod_problem(observed.build_pods) or (
                    creation_problem(observed.build_job_events) if job is not None and not observed.build_pods else None
                )
                if build_problem:
                    set_("Built", False, *build_problem)
                else:
                    quantization = model.spec.build.quantization
                    set_("Built", False, "Building", f"build job {job_name} is running ({quantization})")

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
    elif build_problem:
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
        events=transition_events(before, conditions, WARNING_REASONS),
        requeue_after=None if status.phase == "Ready" else 10.0,
    )


def phase_of(conditions: list[Condition], building: bool, has_artifact: bool) -> Phase:
    """The printer-column summary, derived from the conditions."""

    def true(type_: str) -> bool:
        c = condition(conditions, type_)
        return c is not None and c.status == "True"

    degraded = condition(conditions, "Degraded")
    if degraded is not None and degraded.status == "True":
        # Failed: a build failed and there is nothing to serve; other problems may clear by themselves.
        return "Failed" if degraded.reason == "BuildFailed" and not has_artifact else "Degraded"
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
