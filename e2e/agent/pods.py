"""What a kubelet works out from a pod spec, as pure functions: command lines, environment, status.

Everything here takes the pod as the apiserver returns it (camelCase dicts) and does no I/O, so
the rules (Kubernetes' own: $(VAR) expansion, command/args over ENTRYPOINT/CMD, fieldRef paths,
phases from container states) are unit-tested on their own.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from images import LocalImage

Pod = dict[str, Any]
_VAR = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)|\$\$")


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def expand(text: str, env: Mapping[str, str]) -> str:
    """Kubernetes' $(VAR) expansion: defined variables are replaced, $$ escapes, the rest stays."""

    def one(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        return env.get(match.group(1), match.group(0))

    return _VAR.sub(one, text)


def argv(container: Mapping[str, Any], image: LocalImage, env: Mapping[str, str]) -> list[str]:
    """command replaces ENTRYPOINT (and drops CMD); args replace CMD."""
    command = container.get("command") or image.entrypoint
    args = (
        container.get("args")
        if container.get("args") is not None
        else (image.cmd if not container.get("command") else [])
    )
    return [expand(part, env) for part in [*command, *args]]


def field_value(pod: Pod, path: str) -> str:
    """A downward-API fieldRef such as metadata.labels['app'] or status.podIP."""
    m = re.fullmatch(r"metadata\.(labels|annotations)\['(.+)'\]", path)
    if m:
        return str(pod["metadata"].get(m.group(1), {}).get(m.group(2), ""))
    value: Any = pod
    for part in path.split("."):
        value = value.get(part, "") if isinstance(value, dict) else ""
    if isinstance(value, list):  # status.podIPs
        return ",".join(item.get("ip", "") for item in value)
    return str(value)


class MissingReference(Exception):
    """A ConfigMap/Secret key the container needs does not exist (CreateContainerConfigError)."""


Lookup = Callable[[str, str, str], str | None]
"""(kind "configmap"/"secret", name, key) → value, or None when missing."""

LookupAll = Callable[[str, str], dict[str, str] | None]
"""(kind, name) → all its data, or None when missing."""


def environment(
    pod: Pod,
    container: Mapping[str, Any],
    image: LocalImage,
    lookup: Lookup,
    lookup_all: LookupAll,
    services: Mapping[str, str],
) -> dict[str, str]:
    """The image's ENV, then the kubelet's service variables, then envFrom, then env (later wins)."""
    env = dict(image.env)
    env.update(services)
    env["HOSTNAME"] = pod["spec"].get("hostname") or pod["metadata"]["name"]
    for source in container.get("envFrom", []):
        kind, ref = (
            ("configmap", source["configMapRef"]) if "configMapRef" in source else ("secret", source["secretRef"])
        )
        data = lookup_all(kind, ref["name"])
        if data is None and not ref.get("optional"):
            raise MissingReference(f"{kind} {ref['name']} not found")
        env.update({source.get("prefix", "") + k: v for k, v in (data or {}).items()})
    for var in container.get("env", []):
        if "value" in var or "valueFrom" not in var:
            env[var["name"]] = expand(var.get("value", ""), env)
            continue
        source = var["valueFrom"]
        if "fieldRef" in source:
            env[var["name"]] = field_value(pod, source["fieldRef"]["fieldPath"])
        elif "resourceFieldRef" in source:
            ref = source["resourceFieldRef"]
            kind, _, resource = ref["resource"].partition(".")
            env[var["name"]] = str(container.get("resources", {}).get(kind, {}).get(resource, "0"))
        else:
            kind, ref = (
                ("configmap", source["configMapKeyRef"])
                if "configMapKeyRef" in source
                else ("secret", source["secretKeyRef"])
            )
            value = lookup(kind, ref["name"], ref["key"])
            if value is None and not ref.get("optional"):
                raise MissingReference(f"{kind} {ref['name']} has no key {ref['key']}")
            if value is not None:
                env[var["name"]] = value
    return env


def probe_target(probe: Mapping[str, Any], container: Mapping[str, Any]) -> tuple[str, int, str] | None:
    """(scheme "http"/"tcp", port, path) of an httpGet/tcpSocket probe; None for exec/grpc."""
    kind = "httpGet" if "httpGet" in probe else "tcpSocket" if "tcpSocket" in probe else None
    if kind is None:
        return None
    port: Any = probe[kind]["port"]
    if isinstance(port, str) and not port.isdigit():
        port = next(p["containerPort"] for p in container.get("ports", []) if p.get("name") == port)
    return ("http" if kind == "httpGet" else "tcp", int(port), probe[kind].get("path", "/"))


@dataclass
class ContainerState:
    """What the agent knows of one container, rendered as a containerStatus."""

    name: str
    image: str
    waiting: tuple[str, str] | None = ("ContainerCreating", "")
    started_at: str | None = None
    terminated: dict[str, Any] | None = None
    last_terminated: dict[str, Any] | None = None
    restarts: int = 0
    ready: bool = False
    started: bool = False
    pid: int | None = None

    def status(self) -> dict[str, Any]:
        if self.terminated is not None:
            state: dict[str, Any] = {"terminated": self.terminated}
        elif self.started_at is not None and self.waiting is None:
            state = {"running": {"startedAt": self.started_at}}
        else:
            reason, message = self.waiting or ("ContainerCreating", "")
            state = {"waiting": {"reason": reason, **({"message": message} if message else {})}}
        out: dict[str, Any] = {
            "name": self.name,
            "image": self.image,
            "imageID": "",
            "ready": self.ready,
            "started": self.started,
            "restartCount": self.restarts,
            "state": state,
            "lastState": {"terminated": self.last_terminated} if self.last_terminated else {},
        }
        if self.pid is not None:
            out["containerID"] = f"local://{self.pid}"
        return out


def phase(states: list[ContainerState], restart_policy: str) -> str:
    """Pending until every container has started; Succeeded/Failed once all ended for good."""
    if any(s.terminated is None and s.started_at is None for s in states):
        return "Pending"
    ended = [s.terminated for s in states if s.terminated is not None]
    if len(ended) < len(states):
        return "Running"
    if restart_policy == "Always":
        return "Running"  # about to be restarted
    codes = [t.get("exitCode", 1) for t in ended]
    if all(code == 0 for code in codes):
        return "Succeeded"
    return "Failed" if restart_policy == "Never" else "Running"


def pod_status(
    pod: Pod, states: list[ContainerState], pod_ip: str | None, host_ip: str, start_time: str, final: bool = False
) -> dict[str, Any]:
    """The whole pod status as a kubelet would write it."""
    restart_policy = pod["spec"].get("restartPolicy", "Always")
    current = phase(states, restart_policy)
    if final and current in ("Pending", "Running"):
        current = "Failed" if any((s.terminated or {}).get("exitCode", 1) != 0 for s in states) else "Succeeded"
    ready = current == "Running" and all(s.ready for s in states)
    previous = {c["type"]: c for c in pod.get("status", {}).get("conditions", [])}

    def condition(type_: str, status: bool, reason: str = "") -> dict[str, Any]:
        value = "True" if status else "False"
        old = previous.get(type_, {})
        changed = old.get("status") != value
        return {
            "type": type_,
            "status": value,
            "lastProbeTime": None,
            "lastTransitionTime": now() if changed else old.get("lastTransitionTime", now()),
            **({"reason": reason} if reason else {}),
        }

    finished = current in ("Succeeded", "Failed")
    conditions = [
        condition("PodReadyToStartContainers", pod_ip is not None),
        condition("Initialized", True),
        condition("ContainersReady", ready, "" if ready else ("PodCompleted" if finished else "ContainersNotReady")),
        condition("Ready", ready, "" if ready else ("PodCompleted" if finished else "ContainersNotReady")),
        previous.get("PodScheduled") or condition("PodScheduled", True),
    ]
    ours = {c["type"] for c in conditions}
    conditions += [c for t, c in previous.items() if t not in ours]  # e.g. DisruptionTarget, set by controllers
    status: dict[str, Any] = {
        "phase": current,
        "conditions": conditions,
        "hostIP": host_ip,
        "hostIPs": [{"ip": host_ip}],
        "startTime": start_time,
        "containerStatuses": [s.status() for s in states],
        "qosClass": pod.get("status", {}).get("qosClass", "BestEffort"),
    }
    if pod_ip:
        status["podIP"] = pod_ip
        status["podIPs"] = [{"ip": pod_ip}]
    return status
