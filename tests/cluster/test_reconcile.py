"""LLMModel and FineTuneJob reconciled by the operator process on the real control plane.

kwok runs the pods: serving pods become Ready, Job pods complete. The builder's and trainer's
results (their termination messages) come from the kwok stages e2e/cluster/stages/llmops-*.yaml,
which stand in for the real programs (tested on their own in tests/workload). Lost pods and
lost GPU nodes go through the real Job, pod garbage collection and scheduler.
"""

from __future__ import annotations

import contextlib
import copy
import random
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from tests.support.invalid_specs import example, patched
from tests.support.kube import GROUP, VERSION, Kube, Kubectl, event_reasons, llmmodel, ready
from tests.support.operator import OperatorProcess, wait_for

NODES = Path(__file__).resolve().parents[2] / "e2e" / "cluster" / "nodes.yaml"


def test_example_model_is_built_served_and_ready(operator: OperatorProcess, kube: Kube, kubectl: Kubectl) -> None:
    kube.create(llmmodel())
    wait_for(lambda: ready(kube, "tinystories-base"), 90, "LLMModel Ready")
    model = kube.get("llmmodels", "tinystories-base")
    assert model["status"]["phase"] == "Ready"
    assert model["status"]["artifact"]["digest"].startswith("sha256:")
    assert model["status"]["observedGeneration"] == model["metadata"]["generation"]
    [job] = kube.jobs()
    assert job.startswith("tinystories-base-build-")
    deployment = kube.apps.read_namespaced_deployment("tinystories-base", kube.ns)
    assert deployment.spec.template.spec.containers[0].resources.limits["nvidia.com/gpu"] == "1"
    service = kube.core.read_namespaced_service("tinystories-base", kube.ns)
    assert {p.name for p in service.spec.ports} == {"http", "grpc", "metrics"}
    pods = kube.core.list_namespaced_pod(kube.ns, label_selector="app.kubernetes.io/component=serving").items
    gpu_nodes = {
        n.metadata.name for n in kube.core.list_node().items if "nvidia.com/gpu" in (n.status.allocatable or {})
    }
    assert pods and all(p.spec.node_name in gpu_nodes for p in pods)
    assert {"Building", "Built", "Serving"} <= set(event_reasons(kubectl, kube.ns, "LLMModel"))
    # Only status is written on the user's object: no finalizer that would block deletion
    # while the operator is down.
    assert not model["metadata"].get("finalizers")
    # Once serving, resyncs (every 5 s here) find nothing to change and write nothing.
    time.sleep(12)
    applied = f"applying Deployment {kube.ns}/tinystories-base"
    assert operator.log_path.read_text().count(applied) == 1


def test_editing_replicas_scales_without_rebuilding(operator: OperatorProcess, kube: Kube) -> None:
    kube.create(llmmodel())
    wait_for(lambda: ready(kube, "tinystories-base"), 90, "LLMModel Ready")
    kube.patch_spec("llmmodels", "tinystories-base", {"serving": {"replicas": 3}})
    wait_for(
        lambda: kube.apps.read_namespaced_deployment("tinystories-base", kube.ns).spec.replicas == 3,
        30,
        "Deployment scaled to 3",
    )
    wait_for(lambda: ready(kube, "tinystories-base") and kube.get("llmmodels", "tinystories-base")["status"]
             ["readyReplicas"] == 3, 60, "3 ready replicas")  # fmt: skip
    assert len(kube.jobs()) == 1


def test_editing_quantization_rebuilds_exactly_once(operator: OperatorProcess, kube: Kube) -> None:
    kube.create(llmmodel())
    wait_for(lambda: ready(kube, "tinystories-base"), 90, "LLMModel Ready")
    first = kube.get("llmmodels", "tinystories-base")["status"]["artifact"]
    kube.patch_spec("llmmodels", "tinystories-base", {"build": {"quantization": "FP16"}})
    wait_for(
        lambda: kube.get("llmmodels", "tinystories-base")["status"]["artifact"]["quantization"] == "FP16",
        90,
        "FP16 artifact",
    )
    wait_for(lambda: ready(kube, "tinystories-base"), 60, "Ready again")
    assert len(kube.jobs()) == 2
    assert kube.get("llmmodels", "tinystories-base")["status"]["artifact"]["buildHash"] != first["buildHash"]


def test_deleting_the_model_deletes_its_children(operator: OperatorProcess, kube: Kube) -> None:
    kube.create(llmmodel())
    wait_for(lambda: ready(kube, "tinystories-base"), 90, "LLMModel Ready")
    kube.custom.delete_namespaced_custom_object(GROUP, VERSION, kube.ns, "llmmodels", "tinystories-base")

    def gone() -> bool:
        deployments = kube.apps.list_namespaced_deployment(kube.ns).items
        services = kube.core.list_namespaced_service(kube.ns).items
        return not deployments and not services and not kube.jobs()

    wait_for(gone, 60, "children garbage-collected")


@pytest.mark.parametrize("kind", ["llmmodel", "finetunejob", "evalsuite", "rollout"])
def test_the_finalizer_an_earlier_version_added_is_removed(operator: OperatorProcess, kube: Kube, kind: str) -> None:
    """Earlier versions added llmops.dev/unused: left alone, it would keep a deleted resource for good."""
    obj = example(kind)
    obj["metadata"]["finalizers"] = ["example.com/keep", "llmops.dev/unused"]
    kube.create(obj)
    plural, name = f"{kind}s", obj["metadata"]["name"]
    wait_for(lambda: kube.get(plural, name)["metadata"].get("finalizers") == ["example.com/keep"], 30, "ours removed")
    kube.custom.patch_namespaced_custom_object(GROUP, VERSION, kube.ns, plural, name, {"metadata": {"finalizers": []}})
    kube.custom.delete_namespaced_custom_object(GROUP, VERSION, kube.ns, plural, name)

    def deleted() -> bool:
        try:
            kube.get(plural, name)
        except client.ApiException as error:
            return error.status == 404
        return False

    wait_for(deleted, 30, f"{kind} deleted")


def test_a_model_asking_for_more_gpus_than_any_node_has_is_unschedulable(operator: OperatorProcess, kube: Kube) -> None:
    """Degraded/Unschedulable, naming the GPUs, and Degraded for nothing else on the way: while the
    build pod waits for its claims, even for the moment the scheduler still names a claim already
    bound as unbound, the model is Building (WaitingForVolume)."""
    kube.create(llmmodel(**{"spec.serving.resources.gpus": 16}))
    messages: set[str] = set()

    def degraded() -> tuple[str, str, str] | None:
        conditions = kube.get("llmmodels", "tinystories-base").get("status", {}).get("conditions", [])
        found = next(((c["status"], c["reason"], c["message"]) for c in conditions if c["type"] == "Degraded"), None)
        if found and found[0] == "True":
            messages.add(found[2])
        return found

    wait_for(lambda: (degraded() or ("", "", ""))[2].find("nvidia.com/gpu") >= 0, 60, "Degraded naming the GPUs")
    assert all("nvidia.com/gpu" in message for message in messages), messages
    found = degraded()
    assert found is not None and found[:2] == ("True", "Unschedulable"), found


def finetunejob(workers: int) -> dict[str, Any]:
    obj = patched(example("finetunejob"), {"spec.workers": workers, "spec.resources.gpus": 2})
    obj["metadata"]["name"] = f"ft-{workers}"
    obj["spec"]["output"]["name"] = f"ft-{workers}-model"
    return obj


@pytest.fixture
def training_priority(api_client: Any) -> Iterator[None]:
    """The PriorityClass the example FineTuneJob names."""
    scheduling = client.SchedulingV1Api(api_client)
    try:
        scheduling.create_priority_class({"metadata": {"name": "training"}, "value": 1000})
    except client.ApiException as error:
        if error.status != 409:  # left by an interrupted run
            raise
    yield
    scheduling.delete_priority_class("training")


def test_a_missing_priority_class_is_reported_not_left_pending(operator: OperatorProcess, kube: Kube) -> None:
    kube.create(llmmodel())
    kube.create(finetunejob(1))
    wait_for(
        lambda: kube.condition("finetunejobs", "ft-1", "Degraded") == ("True", "PodCreationFailed"),
        60,
        "Degraded/PodCreationFailed",
    )
    job = kube.get("finetunejobs", "ft-1")
    assert "PriorityClass" in next(c["message"] for c in job["status"]["conditions"] if c["type"] == "Degraded")


@pytest.mark.parametrize("workers", [1, 2])
def test_fine_tune_runs_on_gpu_nodes_and_produces_a_ready_model(
    operator: OperatorProcess, kube: Kube, training_priority: None, workers: int
) -> None:
    kube.create(llmmodel())
    kube.create(finetunejob(workers))
    name = f"ft-{workers}"
    wait_for(lambda: kube.get("finetunejobs", name).get("status", {}).get("phase") == "Succeeded", 90, "Succeeded")
    pods = kube.core.list_namespaced_pod(kube.ns, label_selector=f"job-name={name}-train").items
    assert len(pods) == workers
    for pod in pods:
        node = kube.core.read_node(pod.spec.node_name)
        assert int(node.status.allocatable["nvidia.com/gpu"]) >= 2
        assert pod.spec.containers[0].resources.limits["nvidia.com/gpu"] == "2"
    wait_for(lambda: ready(kube, f"{name}-model"), 90, "output LLMModel Ready")
    lineage = kube.get("llmmodels", f"{name}-model")["status"]["lineage"]
    assert lineage["fineTuneJob"] == name and lineage["baseModel"] == "tinystories-base"


def test_a_training_pod_lost_mid_run_is_replaced_and_the_resume_recorded(
    operator: OperatorProcess, kube: Kube, training_priority: None
) -> None:
    kube.create(llmmodel())
    kube.create(finetunejob(1))
    first = wait_for(lambda: kube.get("finetunejobs", "ft-1").get("status", {}).get("workerPod"), 30, "a worker pod")
    kube.core.delete_namespaced_pod(first, kube.ns, grace_period_seconds=0)
    wait_for(lambda: kube.get("finetunejobs", "ft-1").get("status", {}).get("phase") == "Succeeded", 90, "Succeeded")
    status = kube.get("finetunejobs", "ft-1")["status"]
    assert status["resumes"] == 1
    assert status["workerPod"] != first
    assert "lastResumedFromStep" in status


def lone_gpu_node(name: str, pool: str, kwok: bool = True) -> dict[str, Any]:
    """A GPU node like e2e/cluster/nodes.yaml's, in a pool only one test's pods select.

    Without kwok nothing runs its pods: the test plays the kubelet, so a pod stays running
    on it for as long as the test needs.
    """
    node = copy.deepcopy(next(yaml.safe_load_all(NODES.read_text())))
    node["metadata"]["name"] = name
    node["metadata"]["labels"].update({"kubernetes.io/hostname": name, "llmops.dev/pool": pool})
    if not kwok:
        del node["metadata"]["annotations"]["kwok.x-k8s.io/node"]
        node["status"]["conditions"] = [{"type": "Ready", "status": "True", "reason": "KubeletReady"}]
    return node


def run_as_kubelet(kube: Kube, pod: Any) -> None:
    """Mark a pod running, as the kubelet of its node would."""
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    containers = [
        {"name": c.name, "image": c.image, "imageID": "", "ready": True, "restartCount": 0, "started": True,
         "state": {"running": {"startedAt": now}}}
        for c in pod.spec.containers
    ]  # fmt: skip
    kube.core.patch_namespaced_pod_status(
        pod.metadata.name,
        kube.ns,
        {"status": {"phase": "Running", "startTime": now, "podIP": "10.240.9.9", "containerStatuses": containers}},
    )


def test_a_gpu_node_lost_mid_run_costs_no_retry_and_the_trainer_moves(
    operator: OperatorProcess, kube: Kube, kubectl: Kubectl, training_priority: None
) -> None:
    pool = f"lost-{kube.ns[-6:]}"
    first, second = f"{pool}-a", f"{pool}-b"
    kubectl("apply", "-f", "-", input=yaml.safe_dump(lone_gpu_node(first, pool, kwok=False)))
    try:
        kube.create(llmmodel())
        job = finetunejob(1)
        job["spec"]["scheduling"]["nodeSelector"] = {"llmops.dev/pool": pool}
        kube.create(job)

        def trainer_on(node: str) -> Any:
            pods = kube.core.list_namespaced_pod(kube.ns, label_selector="app.kubernetes.io/component=trainer").items
            return next((p for p in pods if p.spec.node_name == node), None)

        lost = wait_for(lambda: trainer_on(first), 60, f"the trainer scheduled on {first}")
        run_as_kubelet(kube, lost)
        wait_for(lambda: kube.get("finetunejobs", "ft-1").get("status", {}).get("phase") == "Running", 30, "Running")
        # The node goes away with the pod on it: the pod garbage collector fails the pod as a
        # disruption (DisruptionTarget) and deletes it, and the Job makes another.
        kube.core.delete_node(first)
        kubectl("apply", "-f", "-", input=yaml.safe_dump(lone_gpu_node(second, pool)))
        status = wait_for(
            lambda: (s := kube.get("finetunejobs", "ft-1").get("status", {})).get("phase") == "Succeeded" and s,
            180,
            "Succeeded on the other node",
        )
        assert status["resumes"] == 1 and status["workerPod"] != lost.metadata.name
        assert trainer_on(second) is not None
        [trainer] = kube.batch.list_namespaced_job(kube.ns, label_selector="app.kubernetes.io/component=trainer").items
        assert not trainer.status.failed, "a lost node must not consume the Job's retries"
    finally:
        for node in (first, second):
            with contextlib.suppress(client.ApiException):
                kube.core.delete_node(node)


def test_killing_the_operator_at_random_moments_never_duplicates_children(
    operator: OperatorProcess, kube: Kube, training_priority: None
) -> None:
    rng = random.Random(7)
    kube.create(llmmodel())
    kube.create(finetunejob(2))
    kills = 0
    for _ in range(20):
        time.sleep(rng.uniform(0.1, 1.2))
        operator.kill()
        kills += 1
        operator.start()
        if kills == 10:
            kube.patch_spec("llmmodels", "tinystories-base", {"build": {"quantization": "FP16"}})
    wait_for(lambda: ready(kube, "tinystories-base"), 120, "base model Ready after the kills")
    wait_for(lambda: ready(kube, "ft-2-model"), 120, "fine-tuned model Ready after the kills")
    jobs = kube.jobs()
    builds = [j for j in jobs if j.startswith("tinystories-base-build-")]
    assert len(builds) <= 2, jobs  # one per build spec it saw, never two for the same
    assert len(set(jobs)) == len(jobs)
    assert len([j for j in jobs if j == "ft-2-train"]) == 1
    assert len(kube.apps.list_namespaced_deployment(kube.ns).items) == 2
    print(f"\noperator killed {kills} times")
