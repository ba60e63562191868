"""The LLMModel plan: one case per (spec, observed children) -> (children, status, events)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from llmops.api.llmmodel import LLMModel
from llmops.plan.llmmodel import LLMModelObservation, plan_llmmodel
from llmops.settings import Settings
from tests.support.invalid_specs import DELETE, example, patched

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
SETTINGS = Settings()
DIGEST = "sha256:" + "ab" * 32


def model(changes: dict[str, Any] | None = None, status: dict[str, Any] | None = None) -> LLMModel:
    obj = patched(example("llmmodel"), changes or {})
    obj["metadata"].update(namespace="ml", uid="uid-1", generation=1)
    if status:
        obj["status"] = status
    return LLMModel.model_validate(obj)


def by_kind(plan: Any, kind: str) -> list[dict[str, Any]]:
    return [c for c in plan.children if c["kind"] == kind]


def completed_build(job: dict[str, Any], result: dict[str, Any] | None = None) -> LLMModelObservation:
    result = result or {"digest": DIGEST, "sizeBytes": 12_000_000, "quantization": "Int8Dynamic"}
    return LLMModelObservation(
        build_job={**job, "status": {"conditions": [{"type": "Complete", "status": "True"}]}},
        build_pods=[terminated_pod("builder", json.dumps(result), 0)],
    )


def terminated_pod(container: str, message: str, exit_code: int) -> dict[str, Any]:
    state = {"terminated": {"exitCode": exit_code, "message": message, "finishedAt": "2026-11-23T11:59:00Z"}}
    return {"metadata": {"name": "p"}, "status": {"containerStatuses": [{"name": container, "state": state}]}}


def ready_deployment(replicas: int) -> dict[str, Any]:
    return {"metadata": {"generation": 2}, "status": {"observedGeneration": 2, "readyReplicas": replicas}}


def conditions(plan: Any) -> dict[str, tuple[str, str]]:
    return {c["type"]: (c["status"], c["reason"]) for c in plan.status["conditions"]}


def step(m: LLMModel, observed: LLMModelObservation, now: datetime = NOW) -> tuple[Any, LLMModel]:
    """Plan, then feed the status back as the apiserver would."""
    plan = plan_llmmodel(m, observed, SETTINGS, now)
    return plan, LLMModel.model_validate({**m.wire(), "status": plan.status})


def built_model() -> tuple[LLMModel, dict[str, Any]]:
    first, m = step(model(), LLMModelObservation())
    job = by_kind(first, "Job")[0]
    _, m = step(m, completed_build(job))
    return m, job


def test_new_model_gets_one_build_job_and_waits() -> None:
    plan, _ = step(model(), LLMModelObservation())
    assert [c["kind"] for c in plan.children] == ["Job"]
    assert conditions(plan) == {
        "Built": ("False", "Building"),
        "Ready": ("False", "NotBuilt"),
        "Degraded": ("False", "AsExpected"),
    }
    assert plan.status["phase"] == "Building"
    assert [e.reason for e in plan.events] == ["Building", "NotBuilt"]
    assert plan.requeue_after is not None


def test_without_declared_storage_the_model_gets_its_own_repository_claim() -> None:
    plan, _ = step(model({"spec.build.storage": DELETE}), LLMModelObservation())
    [pvc] = by_kind(plan, "PersistentVolumeClaim")
    assert pvc["metadata"]["name"] == "tinystories-base-repository"
    assert "storageClassName" not in pvc["spec"]  # the cluster's default class
    job = by_kind(plan, "Job")[0]["spec"]["template"]["spec"]
    claims = {v["persistentVolumeClaim"]["claimName"] for v in job["volumes"] if "persistentVolumeClaim" in v}
    assert "tinystories-base-repository" in claims


def test_build_job_carries_the_build_spec_to_the_builder() -> None:
    plan, _ = step(model(), LLMModelObservation())
    job = by_kind(plan, "Job")[0]
    args = job["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[args.index("--quantization") + 1] == "Int8Dynamic"
    assert args[args.index("--source") + 1] == "pvc://models/tinystories-base"
    assert args[args.index("--max-batch-size") + 1] == "16"
    assert job["metadata"]["ownerReferences"][0]["uid"] == "uid-1"
    volumes = {v["name"] for v in job["spec"]["template"]["spec"]["volumes"]}
    assert {"pvc-models", "repository"} <= volumes


def test_successful_build_records_the_artifact_and_deploys_it() -> None:
    m, _ = built_model()
    plan, _ = step(m, LLMModelObservation())
    assert [c["kind"] for c in plan.children] == ["Deployment", "Service"]
    assert m.status.artifact is not None and m.status.artifact.digest == DIGEST
    assert conditions(plan)["Built"] == ("True", "Built")
    assert conditions(plan)["Ready"] == ("False", "Deploying")
    assert plan.status["phase"] == "Deploying"
    assert plan.status["endpoint"]["http"] == "http://tinystories-base.ml.svc:8000"


def test_model_is_ready_when_the_deployment_is() -> None:
    m, _ = built_model()
    plan, _ = step(m, LLMModelObservation(deployment=ready_deployment(2)))
    assert conditions(plan)["Ready"] == ("True", "Serving")
    assert plan.status["phase"] == "Ready"
    assert plan.status["readyReplicas"] == 2
    assert plan.requeue_after is None


def test_editing_replicas_changes_the_deployment_without_a_rebuild() -> None:
    m, _ = built_model()
    edited = LLMModel.model_validate(patched(m.wire(), {"spec.serving.replicas": 5}))
    plan, _ = step(edited, LLMModelObservation(deployment=ready_deployment(2)))
    assert not by_kind(plan, "Job")
    assert by_kind(plan, "Deployment")[0]["spec"]["replicas"] == 5
    assert conditions(plan)["Ready"] == ("False", "Deploying")


def test_editing_quantization_builds_once_while_the_old_artifact_keeps_serving() -> None:
    m, old_job = built_model()
    edited = LLMModel.model_validate(patched(m.wire(), {"spec.build.quantization": "FP16"}))
    plan, after = step(edited, LLMModelObservation(deployment=ready_deployment(2)))
    [job] = by_kind(plan, "Job")
    assert job["metadata"]["name"] != old_job["metadata"]["name"]
    deployment = by_kind(plan, "Deployment")[0]
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations["llmops.dev/artifact-digest"] == DIGEST
    assert plan.status["phase"] == "Building"
    again, _ = step(after, LLMModelObservation(deployment=ready_deployment(2)))
    assert [j["metadata"]["name"] for j in by_kind(again, "Job")] == [job["metadata"]["name"]]


def test_failed_build_reports_the_builders_message() -> None:
    first, m = step(model(), LLMModelObservation())
    job = by_kind(first, "Job")[0]
    failed = {**job, "status": {"conditions": [{"type": "Failed", "status": "True"}]}}
    pod = terminated_pod("builder", json.dumps({"error": "cannot open pvc://models/tinystories-base"}), 2)
    plan, _ = step(m, LLMModelObservation(build_job=failed, build_pods=[pod]))
    assert conditions(plan)["Built"] == ("False", "BuildFailed")
    assert conditions(plan)["Degraded"] == ("True", "BuildFailed")
    assert "cannot open pvc://models/tinystories-base" in plan.status["conditions"][0]["message"]
    assert plan.status["phase"] == "Failed"
    assert {(e.type, e.reason) for e in plan.events} >= {("Warning", "BuildFailed")}


def test_a_build_that_completes_without_a_manifest_is_a_failed_build() -> None:
    first, m = step(model(), LLMModelObservation())
    job = by_kind(first, "Job")[0]
    done = {**job, "status": {"conditions": [{"type": "Complete", "status": "True"}]}}
    plan, _ = step(m, LLMModelObservation(build_job=done, build_pods=[]))
    assert conditions(plan)["Built"] == ("False", "BuildFailed")
    assert "without a result" in plan.status["conditions"][0]["message"]


@pytest.mark.parametrize(
    ("pod_status", "reason"),
    [
        ({"conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                          "message": "0/3 nodes are available: 3 Insufficient nvidia.com/gpu."}]}, "Unschedulable"),
        ({"containerStatuses": [{"name": "triton", "state": {"waiting": {"reason": "ErrImagePull"}}}]},
         "ImagePullBackOff"),
        ({"containerStatuses": [{"name": "triton", "state": {"waiting": {"reason": "CrashLoopBackOff"}}}]},
         "CrashLoopBackOff"),
    ],
)  # fmt: skip
def test_pods_that_cannot_run_surface_as_degraded(pod_status: dict[str, Any], reason: str) -> None:
    m, _ = built_model()
    pod = {"metadata": {"name": "tinystories-base-abc"}, "status": pod_status}
    plan, _ = step(m, LLMModelObservation(serving_pods=[pod]))
    assert conditions(plan)["Ready"] == ("False", reason)
    assert conditions(plan)["Degraded"] == ("True", reason)
    assert plan.status["phase"] == "Degraded"


def test_model_from_a_running_fine_tune_waits_without_children() -> None:
    m = model({"spec.source": {"fineTuneJob": {"name": "ft"}}})
    job = {"spec": {"baseModel": {"model": "base"}}, "status": {"phase": "Running"}}
    plan, _ = step(m, LLMModelObservation(fine_tune_job=job))
    assert plan.children == []
    assert conditions(plan)["Built"] == ("False", "WaitingForSource")
    assert plan.status["lineage"] == {"baseModel": "base", "fineTuneJob": "ft"}


def test_model_from_a_finished_fine_tune_builds_its_artifact_with_lineage() -> None:
    m = model({"spec.source": {"fineTuneJob": {"name": "ft"}}})
    job = {
        "spec": {"baseModel": {"model": "base"}},
        "status": {"phase": "Succeeded", "artifactUri": "pvc://ckpt/ft/output"},
    }
    plan, _ = step(m, LLMModelObservation(fine_tune_job=job))
    [build] = by_kind(plan, "Job")
    args = build["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[args.index("--source") + 1] == "pvc://ckpt/ft/output"
    assert plan.status["lineage"] == {"baseModel": "base", "fineTuneJob": "ft", "sourceUri": "pvc://ckpt/ft/output"}


def test_serving_pods_request_gpus_on_matching_nodes_with_restricted_security() -> None:
    m, _ = built_model()
    plan, _ = step(m, LLMModelObservation())
    pod = by_kind(plan, "Deployment")[0]["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert pod["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}
    assert any(t["key"] == "nvidia.com/gpu" for t in pod["tolerations"])
    assert container["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert {p["name"] for p in container["ports"]} == {"http", "grpc", "metrics"}
    assert pod["securityContext"]["runAsNonRoot"] and pod["securityContext"]["seccompProfile"]
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert container["securityContext"]["allowPrivilegeEscalation"] is False


def test_autoscaling_adds_an_hpa_that_owns_the_replica_count() -> None:
    m, _ = built_model()
    scaled = LLMModel.model_validate(
        patched(m.wire(), {"spec.serving.autoscaling": {"minReplicas": 1, "maxReplicas": 4}})
    )
    plan, _ = step(scaled, LLMModelObservation())
    [hpa] = by_kind(plan, "HorizontalPodAutoscaler")
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (1, 4)
    assert "replicas" not in by_kind(plan, "Deployment")[0]["spec"]


def test_same_inputs_give_the_same_plan_and_transition_times_stay_put() -> None:
    m, _ = built_model()
    observed = LLMModelObservation(deployment=ready_deployment(2))
    a, after = step(m, observed)
    b, _ = step(m, observed)
    assert a == b
    later, _ = step(after, observed, NOW + timedelta(hours=1))
    assert later.status["conditions"] == a.status["conditions"]
    assert later.events == []


def test_child_names_are_deterministic_and_fit_in_a_label_value() -> None:
    long = model({"metadata.name": "m" * 60})
    plan, _ = step(long, LLMModelObservation())
    for child in plan.children:
        assert len(child["metadata"]["name"]) <= 63
    again, _ = step(long, LLMModelObservation())
    assert [c["metadata"]["name"] for c in plan.children] == [c["metadata"]["name"] for c in again.children]


def test_a_build_whose_pods_cannot_be_created_says_why() -> None:
    first, m = step(model(), LLMModelObservation())
    job = by_kind(first, "Job")[0]
    refused = {"reason": "FailedCreate", "type": "Warning", "message": "exceeded quota: gpu-quota"}
    plan, _ = step(m, LLMModelObservation(build_job=job, build_pods=[], build_job_events=[refused]))
    assert conditions(plan)["Built"] == ("False", "PodCreationFailed")
    assert conditions(plan)["Degraded"] == ("True", "PodCreationFailed")
    assert plan.status["phase"] == "Degraded"  # may clear once the quota allows; not Failed
