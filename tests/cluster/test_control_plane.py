"""The local control plane itself: real scheduler, kwok GPU nodes, versions, helm."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
from kubernetes import client

pytestmark = pytest.mark.cluster

GPU = "nvidia.com/gpu"
T = TypeVar("T")


def wait_until(what: str, fn: Callable[[], T | None], timeout: float = 60) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.25)


def gpu_job(
    name: str,
    gpus: int,
    labels: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
) -> client.V1Job:
    resources = {GPU: str(gpus), "cpu": "1", "memory": "1Gi"}
    return client.V1Job(
        metadata=client.V1ObjectMeta(name=name),
        spec=client.V1JobSpec(
            backoff_limit=0,
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(labels=labels, annotations=annotations),
                spec=client.V1PodSpec(
                    restart_policy="Never",
                    containers=[
                        client.V1Container(
                            name="train",
                            image="example.invalid/trainer:latest",
                            resources=client.V1ResourceRequirements(requests=resources, limits=resources),
                        )
                    ],
                ),
            ),
        ),
    )


def job_condition(batch: client.BatchV1Api, ns: str, name: str, ctype: str) -> bool:
    job = batch.read_namespaced_job_status(name, ns)
    return any(c.type == ctype and c.status == "True" for c in job.status.conditions or [])


def test_gpu_nodes_have_8_allocatable_gpus(api_client: Any) -> None:
    core = client.CoreV1Api(api_client)
    # kwok's GPU nodes (the local node agent's node, when one runs, is not one of them)
    nodes = core.list_node(label_selector="nvidia.com/gpu.product=NVIDIA-H100-80GB-HBM3,type=kwok").items
    assert len(nodes) >= 2
    for node in nodes:
        assert node.status.allocatable[GPU] == "8"
        assert node.status.capacity[GPU] == "8"
        assert node.metadata.labels["nvidia.com/gpu.count"] == "8"
        ready = [c for c in node.status.conditions if c.type == "Ready"]
        assert ready and ready[0].status == "True", node.metadata.name
        assert any(t.key == GPU and t.effect == "NoSchedule" for t in node.spec.taints or [])
    cpu_nodes = core.list_node(label_selector="llmops.dev/pool=cpu").items
    assert cpu_nodes
    assert all(GPU not in (n.status.allocatable or {}) for n in cpu_nodes)


def test_gpu_job_is_scheduled_on_a_gpu_node_and_succeeds(api_client: Any, namespace: str) -> None:
    core, batch = client.CoreV1Api(api_client), client.BatchV1Api(api_client)
    batch.create_namespaced_job(namespace, gpu_job("one-gpu", 1))
    wait_until("the Job to complete", lambda: job_condition(batch, namespace, "one-gpu", "Complete"))

    job = batch.read_namespaced_job_status("one-gpu", namespace)
    assert job.status.succeeded == 1
    pods = core.list_namespaced_pod(namespace, label_selector="job-name=one-gpu").items
    assert len(pods) == 1
    pod = pods[0]
    assert pod.status.phase == "Succeeded"
    node = core.read_node(pod.spec.node_name)
    assert node.status.allocatable[GPU] == "8", f"scheduled on non-GPU node {node.metadata.name}"
    # ExtendedResourceToleration added the toleration for the GPU taint
    assert any(t.key == GPU and t.operator == "Exists" for t in pod.spec.tolerations)
    scheduled = [c for c in pod.status.conditions if c.type == "PodScheduled"]
    assert scheduled and scheduled[0].status == "True"
    events = core.list_namespaced_event(
        namespace, field_selector=f"involvedObject.name={pod.metadata.name},reason=Scheduled"
    ).items
    sources = {e.reporting_component or (e.source and e.source.component) for e in events}
    assert "default-scheduler" in sources, sources


def test_pod_without_gpu_request_avoids_gpu_nodes(api_client: Any, namespace: str) -> None:
    core = client.CoreV1Api(api_client)
    pod = client.V1Pod(
        metadata=client.V1ObjectMeta(name="cpu-only"),
        spec=client.V1PodSpec(containers=[client.V1Container(name="c", image="example.invalid/x")]),
    )
    core.create_namespaced_pod(namespace, pod)

    def running() -> client.V1Pod | None:
        p = core.read_namespaced_pod("cpu-only", namespace)
        return p if p.status.phase == "Running" else None

    pod_ = wait_until("the pod to run", running)
    assert pod_.spec.node_name == "cpu-node-0"
    assert pod_.status.pod_ip


def test_pod_asking_for_9_gpus_stays_pending_unschedulable(api_client: Any, namespace: str) -> None:
    core = client.CoreV1Api(api_client)
    resources = {GPU: "9"}
    pod = client.V1Pod(
        metadata=client.V1ObjectMeta(name="nine-gpus"),
        spec=client.V1PodSpec(
            containers=[
                client.V1Container(
                    name="c",
                    image="example.invalid/x",
                    resources=client.V1ResourceRequirements(requests=resources, limits=resources),
                )
            ]
        ),
    )
    core.create_namespaced_pod(namespace, pod)

    def unschedulable() -> client.V1PodCondition | None:
        p = core.read_namespaced_pod_status("nine-gpus", namespace)
        for c in p.status.conditions or []:
            if c.type == "PodScheduled" and c.status == "False" and c.reason == "Unschedulable":
                return c
        return None

    cond = wait_until("the Unschedulable condition", unschedulable)
    assert f"Insufficient {GPU}" in cond.message
    time.sleep(2)
    p = core.read_namespaced_pod("nine-gpus", namespace)
    assert p.status.phase == "Pending"
    assert not p.spec.node_name


def test_job_pod_failure_and_delay_are_controllable(api_client: Any, namespace: str) -> None:
    """kwok stage knobs that other cluster tests use (see e2e/cluster/README.md)."""
    core, batch = client.CoreV1Api(api_client), client.BatchV1Api(api_client)
    batch.create_namespaced_job(
        namespace,
        gpu_job("fails", 1, labels={"pod-container-running-failed.stage.kwok.x-k8s.io": "true"}),
    )
    batch.create_namespaced_job(
        namespace, gpu_job("slow", 1, annotations={"pod-complete.stage.kwok.x-k8s.io/delay": "4s"})
    )
    wait_until("the failing Job to fail", lambda: job_condition(batch, namespace, "fails", "Failed"))
    pod = core.list_namespaced_pod(namespace, label_selector="job-name=fails").items[0]
    assert pod.status.phase == "Failed"
    assert pod.status.container_statuses[0].state.terminated.exit_code == 1

    wait_until(
        "the slow Job's pod to run",
        lambda: any(
            p.status.phase == "Running"
            for p in core.list_namespaced_pod(namespace, label_selector="job-name=slow").items
        ),
    )
    assert not job_condition(batch, namespace, "slow", "Complete")
    wait_until("the slow Job to complete", lambda: job_condition(batch, namespace, "slow", "Complete"))


def test_server_reports_the_pinned_version(api_client: Any, cluster: Any) -> None:
    info = client.VersionApi(api_client).get_code()
    assert info.git_version == cluster.kube_version
    major, minor = cluster.kube_version.lstrip("v").split(".")[:2]
    assert (info.major, info.minor) == (major, minor)
    out = json.loads(cluster.kubectl("version", "-o", "json").stdout)
    assert out["clientVersion"]["gitVersion"] == cluster.kube_version
    assert out["serverVersion"]["gitVersion"] == cluster.kube_version


def test_helm_version_and_install(cluster: Any, namespace: str, tmp_path: Path) -> None:
    out = cluster.helm("version", "--short").stdout.strip()
    assert out.startswith(cluster.versions["HELM_VERSION"]), out
    cluster.helm("create", str(tmp_path / "smoke"))
    cluster.helm(
        "install",
        "smoke",
        str(tmp_path / "smoke"),
        "-n",
        namespace,
        "--wait",
        "--timeout",
        "90s",
        timeout=150,
    )
    status = json.loads(cluster.helm("status", "smoke", "-n", namespace, "-o", "json").stdout)
    assert status["info"]["status"] == "deployed"
    ready = cluster.kubectl("-n", namespace, "get", "deploy", "smoke", "-o", "jsonpath={.status.readyReplicas}").stdout
    assert ready == "1"


def test_kwok_volume_class_provisions_and_binds(api_client: Any, namespace: str) -> None:
    core = client.CoreV1Api(api_client)
    core.create_namespaced_persistent_volume_claim(
        namespace,
        client.V1PersistentVolumeClaim(
            metadata=client.V1ObjectMeta(name="data"),
            spec=client.V1PersistentVolumeClaimSpec(
                access_modes=["ReadWriteOnce"],
                storage_class_name="kwok-volume",
                resources=client.V1VolumeResourceRequirements(requests={"storage": "1Gi"}),
            ),
        ),
    )
    pvc = wait_until(
        "the claim to bind",
        lambda: (c := core.read_namespaced_persistent_volume_claim("data", namespace)).status.phase == "Bound" and c,
    )
    assert core.read_persistent_volume(pvc.spec.volume_name).status.phase == "Bound"
    core.create_namespaced_pod(
        namespace,
        client.V1Pod(
            metadata=client.V1ObjectMeta(name="uses-data"),
            spec=client.V1PodSpec(
                containers=[
                    client.V1Container(
                        name="c",
                        image="example.invalid/x",
                        volume_mounts=[client.V1VolumeMount(name="d", mount_path="/data")],
                    )
                ],
                volumes=[
                    client.V1Volume(
                        name="d",
                        persistent_volume_claim=client.V1PersistentVolumeClaimVolumeSource(claim_name="data"),
                    )
                ],
            ),
        ),
    )
    wait_until(
        "the pod using the claim to run",
        lambda: core.read_namespaced_pod("uses-data", namespace).status.phase == "Running",
    )
