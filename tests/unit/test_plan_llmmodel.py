"""The LLMModel plan: one case per (spec, observed children) -> (children, status, events)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from llmops.api.evalsuite import EvalSuite
from llmops.api.llmmodel import LLMModel
from llmops.plan.llmmodel import LLMModelObservation, claims_to_read, plan_llmmodel, reads_serving_pods
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
    assert [e.reason for e in plan.events] == ["Building"]  # "not ready yet" on creation is no news
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


UNBOUND = "0/3 nodes are available: pod has unbound immediate PersistentVolumeClaims."
NO_GPU = "0/3 nodes are available: 3 Insufficient nvidia.com/gpu."


@pytest.mark.parametrize(("message", "repository", "source", "built", "degraded"), [
    (UNBOUND, "Pending", "Bound", ("False", "WaitingForVolume"), ("False", "AsExpected")),
    (UNBOUND, None, "Bound", ("False", "WaitingForVolume"), ("False", "AsExpected")),  # ours, not seen yet
    (UNBOUND, "Bound", "Pending", ("False", "WaitingForVolume"), ("False", "AsExpected")),
    # Both bound, the scheduler's message from before: it has not tried the pod again yet.
    (UNBOUND, "Bound", "Bound", ("False", "WaitingForVolume"), ("False", "AsExpected")),
    (NO_GPU, "Bound", "Bound", ("False", "Unschedulable"), ("True", "Unschedulable")),
    # The user's source claim does not exist: theirs to mend, in the scheduler's own words.
    ('persistentvolumeclaim "models" not found', "Bound", None, ("False", "Unschedulable"), ("True", "Unschedulable")),
])  # fmt: skip
def test_a_build_waiting_for_its_claims_to_bind_is_not_degraded(
    message: str, repository: str | None, source: str | None, built: tuple[str, str], degraded: tuple[str, str]
) -> None:
    """The scheduler holds the build pod until its claims are provisioned: that is a wait."""
    first, m = step(model({"spec.build.storage": DELETE}), LLMModelObservation())
    job = {**by_kind(first, "Job")[0], "status": {"active": 1}}
    repository_claim = by_kind(first, "PersistentVolumeClaim")[0]
    pod = {
        "metadata": {"name": "tinystories-base-build-x"},
        "spec": job["spec"]["template"]["spec"],
        "status": {"conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                                   "message": message}]},
    }  # fmt: skip
    names = claims_to_read([pod])  # what the handler reads
    assert names == sorted(["models", repository_claim["metadata"]["name"]])
    assert claims_to_read([{**pod, "status": {"phase": "Running"}}]) == []
    claims = {
        name: None if phase is None else {"status": {"phase": phase}}
        for name, phase in ((repository_claim["metadata"]["name"], repository), ("models", source))
    }
    plan, _ = step(m, LLMModelObservation(build_job=job, build_pods=[pod], build_claims=claims))
    assert conditions(plan)["Built"] == built
    assert conditions(plan)["Degraded"] == degraded
    assert plan.status["phase"] == ("Degraded" if degraded[0] == "True" else "Building")


def test_serving_pods_are_read_only_while_the_deployment_falls_short() -> None:
    """A pod's problem shows in the Deployment's counts first: a served model's resync skips the list."""
    m, _ = built_model()
    settled = {
        "metadata": {"generation": 3},
        "spec": {"replicas": 2},
        "status": {"observedGeneration": 3, "replicas": 2, "updatedReplicas": 2, "readyReplicas": 2,
                   "availableReplicas": 2},
    }  # fmt: skip
    assert not reads_serving_pods(m, settled)
    assert not reads_serving_pods(m, None)
    assert not reads_serving_pods(model(), settled)  # nothing built, nothing serves
    for short in (
        {"readyReplicas": 1, "unavailableReplicas": 1},  # a pod crashes or cannot pull its image
        {"replicas": 3, "updatedReplicas": 1},  # a rolling update's new pod, maybe unschedulable
        {"observedGeneration": 2},  # an edit the controller has not seen yet
    ):
        assert reads_serving_pods(m, {**settled, "status": {**settled["status"], **short}}), short


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


# --- the quantization quality gate ------------------------------------------------------------

GATE_SUITE = "quality"
CANDIDATE_DIGEST = "sha256:" + "cc" * 32
REFERENCE_DIGEST = "sha256:" + "ee" * 32


def gated(m: LLMModel, quantization: str = "FP16", max_drop: float = 0.05) -> LLMModel:
    """The model switched to another quantization behind a quality gate."""
    gate = {"evalSuite": GATE_SUITE, "maxScoreDrop": max_drop}
    changes = {"spec.build.quantization": quantization, "spec.build.qualityGate": gate}
    return LLMModel.model_validate(patched(m.wire(), changes))


def build_jobs(plan: Any) -> dict[str, dict[str, Any]]:
    """Build Jobs by the quantization they build."""
    jobs = {}
    for job in by_kind(plan, "Job"):
        args = job["spec"]["template"]["spec"]["containers"][0]["args"]
        jobs[args[args.index("--quantization") + 1]] = job
    return jobs


def served_gate(plan: Any) -> dict[str, dict[str, Any]]:
    """The gate Deployments of a plan, as the apiserver reports them once rolled out and ready."""
    served = {}
    for deployment in by_kind(plan, "Deployment"):
        role = deployment["metadata"]["labels"]["app.kubernetes.io/component"].removeprefix("gate-")
        if role in ("candidate", "reference"):
            status = {"observedGeneration": 1, "replicas": 1, "updatedReplicas": 1, "readyReplicas": 1}
            served[role] = {**deployment, "metadata": {**deployment["metadata"], "generation": 1}, "status": status}
    return served


RunOutcome = dict[str, float] | str | None


def gate_suite(candidate: RunOutcome, reference: RunOutcome, nonce: str | None = None) -> EvalSuite:
    """The gate's EvalSuite with runs of both builds: metric values, "Running", an error message, or none."""
    obj = patched(example("evalsuite"), {"spec.baseline": DELETE, "spec.target": DELETE})
    obj["metadata"].update(name=GATE_SUITE, namespace="ml")
    if nonce:
        obj["spec"]["runNonce"] = nonce
    runs = []
    outcomes = (("candidate", CANDIDATE_DIGEST, candidate), ("reference", REFERENCE_DIGEST, reference))
    for role, digest, outcome in outcomes:
        if outcome is None:
            continue
        run: dict[str, Any] = {"model": f"tinystories-base@{role}", "digest": digest, "phase": "Running"}
        if isinstance(outcome, str) and outcome != "Running":
            run.update(phase="Error", message=outcome)
        elif isinstance(outcome, dict):
            metrics = [{"name": k, "value": v, "threshold": 0.0, "passed": True} for k, v in outcome.items()]
            run.update(phase="Passed", passed=True, metrics=metrics)
        runs.append(run)
    obj["status"] = {"runs": runs}
    return EvalSuite.model_validate(obj)


def observed_gate(plan: Any, suite: EvalSuite | None = None, **more: Any) -> LLMModelObservation:
    return LLMModelObservation(deployment=ready_deployment(2), gate_deployments=served_gate(plan), gate_suite=suite,
                               **more)  # fmt: skip


def open_gate() -> tuple[LLMModel, Any]:
    """A served Int8Dynamic model switched to FP16 behind the gate, both builds done and deployed."""
    served, _ = built_model()
    m = gated(served)
    plan, m = step(m, LLMModelObservation(deployment=ready_deployment(2)))
    jobs = build_jobs(plan)
    candidate = completed_build(jobs["FP16"], {"digest": CANDIDATE_DIGEST, "sizeBytes": 6_000_000})
    reference = completed_build(jobs["None"], {"digest": REFERENCE_DIGEST, "sizeBytes": 24_000_000})
    both = LLMModelObservation(
        deployment=ready_deployment(2),
        build_job=candidate.build_job,
        build_pods=candidate.build_pods,
        reference_build_job=reference.build_job,
        reference_build_pods=reference.build_pods,
    )
    plan, m = step(m, both)
    return m, plan


def test_a_gated_quantized_build_builds_the_unquantized_reference_alongside() -> None:
    served, _ = built_model()
    plan, m = step(gated(served), LLMModelObservation(deployment=ready_deployment(2)))
    jobs = build_jobs(plan)
    assert set(jobs) == {"FP16", "None"}
    assert jobs["FP16"]["metadata"]["name"] != jobs["None"]["metadata"]["name"]
    assert conditions(plan)["Built"] == ("False", "Building")
    assert m.status.artifact == served.status.artifact
    # A quantized rebuild of the same source reuses the same reference Job.
    again, _ = step(gated(served, "Int4WeightOnly"), LLMModelObservation(deployment=ready_deployment(2)))
    assert build_jobs(again)["None"]["metadata"]["name"] == jobs["None"]["metadata"]["name"]


def test_an_open_gate_serves_both_builds_and_keeps_the_previous_artifact() -> None:
    m, plan = open_gate()
    gate = plan.status["qualityGate"]
    assert gate["phase"] == "Deploying"
    assert (gate["candidate"]["digest"], gate["reference"]["digest"]) == (CANDIDATE_DIGEST, REFERENCE_DIGEST)
    assert gate["reference"]["quantization"] == "None"
    assert conditions(plan)["Built"] == ("False", "QualityGatePending")
    assert plan.status["artifact"]["digest"] == DIGEST
    deployments = {d["metadata"]["name"]: d for d in by_kind(plan, "Deployment")}
    gate_names = {"tinystories-base-gate-candidate", "tinystories-base-gate-reference"}
    assert set(deployments) == {"tinystories-base", *gate_names}
    serving = deployments["tinystories-base"]["spec"]["template"]["metadata"]["annotations"]
    assert serving["llmops.dev/artifact-digest"] == DIGEST
    candidate = deployments["tinystories-base-gate-candidate"]
    assert candidate["spec"]["replicas"] == 1
    args = candidate["spec"]["template"]["spec"]["containers"][0]["args"]
    assert f"--model-repository={gate['candidate']['uri']}" in args
    selector = candidate["spec"]["selector"]["matchLabels"]
    assert selector["app.kubernetes.io/component"] == "gate-candidate"
    services = {s["metadata"]["name"] for s in by_kind(plan, "Service")}
    assert gate_names <= services
    assert plan.patches == []

    waiting, _ = step(m, observed_gate(plan, gate_suite(None, None)))
    assert not by_kind(waiting, "Job")  # both builds are recorded in status: their Jobs may go (TTL)
    assert waiting.status["qualityGate"]["phase"] == "Evaluating"
    assert "waiting for EvalSuite quality to judge" in waiting.status["qualityGate"]["message"]


def test_a_candidate_within_the_allowed_drop_becomes_the_served_artifact() -> None:
    m, plan = open_gate()
    verdict, after = step(m, observed_gate(plan, gate_suite({"exact": 0.88, "p95": 0.4}, {"exact": 0.9, "p95": 0.1})))
    assert after.status.artifact is not None and after.status.artifact.digest == CANDIDATE_DIGEST
    assert after.status.quality_gate is not None and after.status.quality_gate.phase == "Passed"
    assert conditions(verdict)["Built"] == ("True", "Built")
    [passed] = [e for e in verdict.events if e.reason == "QualityGatePassed"]
    assert "exact 0.88 (unquantized 0.9)" in passed.message
    deployment = next(d for d in by_kind(verdict, "Deployment") if d["metadata"]["name"] == "tinystories-base")
    assert deployment["spec"]["template"]["metadata"]["annotations"]["llmops.dev/artifact-digest"] == CANDIDATE_DIGEST
    # The gate closes: its Deployments scale to zero.
    assert {(p["metadata"]["name"], p["spec"]["replicas"]) for p in verdict.patches} == {
        ("tinystories-base-gate-candidate", 0),
        ("tinystories-base-gate-reference", 0),
    }
    later, _ = step(after, LLMModelObservation(deployment=ready_deployment(2)))
    assert not [e for e in later.events if e.reason == "QualityGatePassed"]


def test_a_regressed_candidate_is_refused_and_the_previous_artifact_keeps_serving() -> None:
    m, plan = open_gate()
    regressed = gate_suite({"exact": 0.1, "rouge": 0.7, "p95": 0.9}, {"exact": 0.9, "rouge": 0.72, "p95": 0.1})
    verdict, after = step(m, observed_gate(plan, regressed))
    assert after.status.artifact == m.status.artifact
    assert conditions(verdict)["Built"] == ("False", "QuantizationRegressed")
    assert conditions(verdict)["Degraded"] == ("True", "QuantizationRegressed")
    message = next(c["message"] for c in verdict.status["conditions"] if c["type"] == "Built")
    assert "exact 0.1 vs 0.9 unquantized (drop 0.8 > max 0.05)" in message
    assert "rouge" not in message and "p95" not in message  # within the drop; latency is no score
    assert ("Warning", "QuantizationRegressed") in {(e.type, e.reason) for e in verdict.events}
    deployment = next(d for d in by_kind(verdict, "Deployment") if d["metadata"]["name"] == "tinystories-base")
    assert deployment["spec"]["template"]["metadata"]["annotations"]["llmops.dev/artifact-digest"] == DIGEST
    assert {p["spec"]["replicas"] for p in verdict.patches} == {0}
    assert verdict.status["phase"] == "Degraded"
    # Not judged again, even when the suite's runs are gone, until the spec changes.
    again, _ = step(after, LLMModelObservation(deployment=ready_deployment(2), gate_suite=gate_suite(None, None)))
    assert conditions(again)["Built"] == ("False", "QuantizationRegressed")
    assert not by_kind(again, "Job") and again.events == []
    # A larger allowed drop accepts the recorded scores.
    relaxed = LLMModel.model_validate(patched(after.wire(), {"spec.build.qualityGate.maxScoreDrop": 0.9}))
    accepted, _ = step(relaxed, LLMModelObservation(deployment=ready_deployment(2)))
    assert accepted.status["artifact"]["digest"] == CANDIDATE_DIGEST


def test_an_evaluator_error_fails_the_gate_until_the_run_nonce_changes() -> None:
    m, plan = open_gate()
    failed, after = step(m, observed_gate(plan, gate_suite("Running", "evaluator Job x failed: connection refused")))
    assert conditions(failed)["Built"] == ("False", "QualityGateError")
    assert conditions(failed)["Degraded"] == ("True", "QualityGateError")
    assert "connection refused" in failed.status["qualityGate"]["message"]
    assert after.status.artifact == m.status.artifact
    assert len(by_kind(failed, "Deployment")) == 3  # the gate stays open for another run
    retried, _ = step(after, observed_gate(plan, gate_suite(None, None, nonce="again")))
    assert retried.status["qualityGate"]["phase"] == "Evaluating"
    assert conditions(retried)["Built"] == ("False", "QualityGatePending")


def test_removing_the_gate_cancels_it_and_serves_the_build() -> None:
    m, plan = open_gate()
    ungated = LLMModel.model_validate(patched(m.wire(), {"spec.build.qualityGate": DELETE}))
    plan, after = step(ungated, LLMModelObservation(deployment=ready_deployment(2)))
    # Served from the gate's record of the build: its Job may be gone by now (TTL).
    assert after.status.artifact is not None and after.status.artifact.digest == CANDIDATE_DIGEST
    assert conditions(plan)["Built"] == ("True", "Built")
    assert after.status.quality_gate is not None and after.status.quality_gate.phase == "Cancelled"
    assert {p["spec"]["replicas"] for p in plan.patches} == {0}


def test_another_quantization_cancels_the_open_gate_and_reuses_its_reference() -> None:
    m, _ = open_gate()
    switched = LLMModel.model_validate(patched(m.wire(), {"spec.build.quantization": "Int4WeightOnly"}))
    plan, after = step(switched, LLMModelObservation(deployment=ready_deployment(2)))
    assert set(build_jobs(plan)) == {"Int4WeightOnly"}  # the unquantized reference is built already
    assert after.status.quality_gate is not None and after.status.quality_gate.phase == "Cancelled"
    assert {p["spec"]["replicas"] for p in plan.patches} == {0} and len(plan.patches) == 2
    assert after.status.artifact == m.status.artifact


def test_an_unquantized_build_or_no_gate_is_served_as_before() -> None:
    served, _ = built_model()
    unquantized = gated(served, "None")
    plan, _ = step(unquantized, LLMModelObservation(deployment=ready_deployment(2)))
    assert set(build_jobs(plan)) == {"None"}
    assert "qualityGate" not in plan.status and plan.patches == []
    plain, _ = built_model()
    plan, _ = step(plain, LLMModelObservation(deployment=ready_deployment(2)))
    assert plain.status.quality_gate is None and "qualityGate" not in plan.status and plan.patches == []
