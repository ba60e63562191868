"""The local node agent's pure rules (e2e/agent): Dockerfiles, command lines, env, status, Services."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

AGENT = Path(__file__).resolve().parents[2] / "e2e" / "agent"
sys.path.insert(0, str(AGENT))

import network  # noqa: E402
import pods  # noqa: E402
import sandbox  # noqa: E402

import images  # noqa: E402

IMAGE = images.LocalImage(
    name="builder", entrypoint=["python", "-m", "llmops_builder"], cmd=["--help"], env={"PATH": "/bin"},
    workdir="/home/llmops", binds=[],
)  # fmt: skip


def test_dockerfile_final_stage() -> None:
    parsed = images.parse_dockerfile(
        "FROM python:3.11 AS build\nCOPY x /y\nFROM python:3.11-slim\n# a comment\n"
        "ENV A=1 \\\n    PYTHONPATH=/app\nENV LEGACY value here\nCOPY --from=build /y /y\n"
        "COPY common/llmops_common /app/llmops_common\nWORKDIR /home/llmops\n"
        'ENTRYPOINT ["python", "-m", "llmops_builder"]\nCMD echo hi\n'
    )
    assert parsed.base == "python:3.11-slim"
    assert parsed.env == {"A": "1", "PYTHONPATH": "/app", "LEGACY": "value here"}
    assert parsed.copies == [("common/llmops_common", "/app/llmops_common")]
    assert parsed.entrypoint == ["python", "-m", "llmops_builder"]
    assert parsed.cmd == ["/bin/sh", "-c", "echo hi"]
    assert parsed.workdir == "/home/llmops"


@pytest.mark.parametrize(
    ("image", "name"),
    [
        ("ghcr.io/llmops-dev/builder:0.1.0", "builder"),
        ("nvcr.io/nvidia/tritonserver:25.10-py3", "tritonserver"),
        ("localhost:5000/trainer@sha256:abc", "trainer"),
        ("evaluator", "evaluator"),
    ],
)
def test_repository_name(image: str, name: str) -> None:
    assert images.repository_name(image) == name


def test_our_images_resolve_and_others_do_not(tmp_path: Path) -> None:
    builder = images.resolve("ghcr.io/llmops-dev/builder:0.1.0", tmp_path)
    assert builder is not None and builder.entrypoint == ["python", "-m", "llmops_builder"]
    assert (str(images.IMAGES / "builder" / "llmops_builder"), "/app/llmops_builder") in builder.binds
    assert builder.env["PYTHONPATH"] == "/app"
    assert images.resolve("docker.io/library/nginx:1.27", tmp_path) is None


def test_command_and_args_follow_kubernetes_rules() -> None:
    env = {"JOB_COMPLETION_INDEX": "1"}
    assert pods.argv({}, IMAGE, env) == ["python", "-m", "llmops_builder", "--help"]
    assert pods.argv({"args": ["--x"]}, IMAGE, env) == ["python", "-m", "llmops_builder", "--x"]
    assert pods.argv({"command": ["torchrun"]}, IMAGE, env) == ["torchrun"]  # command drops CMD
    expanded = {"command": ["t"], "args": ["--rank=$(JOB_COMPLETION_INDEX)", "$(NOPE)", "$$(X)"]}
    assert pods.argv(expanded, IMAGE, env) == ["t", "--rank=1", "$(NOPE)", "$(X)"]


def test_environment_layers_and_references() -> None:
    pod = {
        "metadata": {"name": "p", "namespace": "ns", "labels": {"app": "a"}, "annotations": {"i": "2"}},
        "spec": {"nodeName": "n"},
        "status": {"podIP": "10.245.0.9"},
    }
    container = {
        "envFrom": [{"configMapRef": {"name": "cm"}, "prefix": "CM_"}],
        "env": [
            {"name": "PATH", "value": "/x:$(PATH)"},
            {"name": "NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
            {"name": "INDEX", "valueFrom": {"fieldRef": {"fieldPath": "metadata.annotations['i']"}}},
            {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
            {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "s", "key": "t"}}},
        ],
    }
    data = {("configmap", "cm"): {"k": "v"}, ("secret", "s"): {"t": "secret"}}
    env = pods.environment(
        pod, container, IMAGE,
        lambda kind, name, key: data.get((kind, name), {}).get(key),
        lambda kind, name: data.get((kind, name)),
        {"KUBERNETES_SERVICE_HOST": "10.96.0.1"},
    )  # fmt: skip
    assert env["PATH"] == "/x:/bin"
    assert (env["NAME"], env["APP"], env["INDEX"], env["IP"]) == ("p", "a", "2", "10.245.0.9")
    assert (env["CM_k"], env["TOKEN"], env["KUBERNETES_SERVICE_HOST"]) == ("v", "secret", "10.96.0.1")
    with pytest.raises(pods.MissingReference, match="secret s has no key u"):
        pods.environment(
            pod, {"env": [{"name": "X", "valueFrom": {"secretKeyRef": {"name": "s", "key": "u"}}}]}, IMAGE,
            lambda *_: None, lambda *_: None, {},
        )  # fmt: skip


def test_probe_ports_by_name() -> None:
    container = {"ports": [{"name": "http", "containerPort": 8000}]}
    assert pods.probe_target({"httpGet": {"path": "/v2/health/ready", "port": "http"}}, container) == (
        "http", 8000, "/v2/health/ready",
    )  # fmt: skip
    assert pods.probe_target({"tcpSocket": {"port": 9}}, container) == ("tcp", 9, "/")
    assert pods.probe_target({"exec": {"command": ["true"]}}, container) is None


def ended(code: int) -> pods.ContainerState:
    return pods.ContainerState("c", "i", waiting=None, started_at="t", terminated={"exitCode": code})


def running() -> pods.ContainerState:
    return pods.ContainerState("c", "i", waiting=None, started_at="t")


@pytest.mark.parametrize(
    ("states", "policy", "phase"),
    [
        ([pods.ContainerState("c", "i")], "Never", "Pending"),
        ([running()], "Never", "Running"),
        ([ended(0), running()], "Never", "Running"),
        ([ended(0), ended(0)], "Never", "Succeeded"),
        ([ended(0), ended(1)], "Never", "Failed"),
        ([ended(1)], "OnFailure", "Running"),
        ([ended(0)], "Always", "Running"),
    ],
)
def test_pod_phase(states: list[pods.ContainerState], policy: str, phase: str) -> None:
    assert pods.phase(states, policy) == phase


def test_pod_status_keeps_conditions_of_others() -> None:
    pod = {
        "metadata": {"name": "p"},
        "spec": {"restartPolicy": "Never"},
        "status": {"conditions": [{"type": "DisruptionTarget", "status": "True"}]},
    }
    state = running()
    state.ready = True
    status = pods.pod_status(pod, [state], "10.245.0.2", "10.245.0.1", "t")
    types = {c["type"]: c["status"] for c in status["conditions"]}
    assert types["Ready"] == "True" and types["DisruptionTarget"] == "True"
    assert status["podIP"] == "10.245.0.2"
    assert status["containerStatuses"][0]["state"] == {"running": {"startedAt": "t"}}


def test_service_ports_pick_ready_endpoints_and_the_apiserver() -> None:
    services = [
        {"metadata": {"namespace": "ns", "name": "web"},
         "spec": {"clusterIP": "10.96.0.5", "ports": [{"name": "http", "port": 80}]}},
        {"metadata": {"namespace": "default", "name": "kubernetes"},
         "spec": {"clusterIP": "10.96.0.1", "ports": [{"name": "https", "port": 443}]}},
        {"metadata": {"namespace": "ns", "name": "headless"}, "spec": {"clusterIP": "None", "ports": []}},
    ]  # fmt: skip
    slices = [
        {
            "metadata": {"namespace": "ns", "labels": {"kubernetes.io/service-name": "web"}},
            "ports": [{"name": "http", "port": 8000}],
            "endpoints": [
                {"addresses": ["10.245.0.2"], "conditions": {"ready": True}},
                {"addresses": ["10.245.0.3"], "conditions": {"ready": False}},
            ],
        }
    ]
    ports = network.service_ports(services, slices, ("127.0.0.1", 16443))
    assert ports == {
        network.ServicePort("10.96.0.5", 80, "http"): [("10.245.0.2", 8000)],
        network.ServicePort("10.96.0.1", 443, "https"): [("127.0.0.1", 16443)],
    }
    hosts = network.hosts_file("p", "10.245.0.9", "ns", services, slices)
    assert "10.96.0.5\tweb.ns.svc.cluster.local web.ns.svc web.ns web" in hosts
    assert "10.96.0.1\tkubernetes.default.svc.cluster.local kubernetes.default.svc kubernetes.default\n" in hosts


def test_address_pool_reuses_released_addresses() -> None:
    pool = network.AddressPool()
    first, second = pool.take(), pool.take()
    assert (first, second) == ("10.245.0.2", "10.245.0.3")
    pool.release(first)
    assert pool.take() == first


def test_mount_targets_resolve_symlinks_inside_the_root(tmp_path: Path) -> None:
    (tmp_path / "run").mkdir()
    (tmp_path / "var").mkdir()
    (tmp_path / "var" / "run").symlink_to("/run")
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "alt").symlink_to("../run")
    assert sandbox.inside(tmp_path, "/var/run/secrets/x") == tmp_path / "run" / "secrets" / "x"
    assert sandbox.inside(tmp_path, "/etc/alt/y") == tmp_path / "run" / "y"
    assert sandbox.inside(tmp_path, "/repository") == tmp_path / "repository"
