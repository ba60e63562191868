"""The local node agent: a Node whose pods are real processes on this machine.

    sudo-less root, Linux: PYTHONPATH=e2e/agent python -m agent --state e2e/.cluster/agent

kwok simulates pods; the quick start and the end-to-end tests need the pods of our own images
to really run. This agent registers one Node (`llmops-local`, tainted so that only namespaces
that ask for it land here — see e2e/agent/README.md), and for every pod bound to it:

- sets up a network namespace with its own IP (network.py) and the pod's volumes as directories
  (emptyDir, ConfigMap/Secret/projected files, PersistentVolumeClaims bound to hostPath volumes),
- starts each container's command in a sandbox (sandbox.py) with the image's files and
  environment taken from its Dockerfile under images/ (images.py) and the pod's env,
- runs the readiness/startup/liveness probes, restarts per restartPolicy, reads the termination
  message, and writes the pod status as a kubelet does (pods.py),
- on deletion stops the processes (SIGTERM, then SIGKILL after the grace period) and removes
  the pod.

It also keeps the node's Lease and Ready condition fresh, provisions hostPath volumes for claims
of the StorageClass `llmops-local`, serves Services' cluster IPs (network.py), and lists the
pods to scrape for Prometheus (<state>/scrape-targets.json, file_sd). Processes run
as root on the CPU: securityContext users and GPU devices are not enforced here.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import logging
import os
import re
import shutil
import signal
import ssl
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import network
import pods
from aiohttp import web
from kubernetes import client, config
from kubernetes.client.rest import ApiException

import images

log = logging.getLogger("agent")

NODE = "llmops-local"
NODE_LABEL = "llmops.dev/local-agent"
STORAGE_CLASS = "llmops-local"
PROVISIONER = "llmops.dev/local-agent"
SANDBOX = Path(__file__).resolve().parent / "sandbox.py"
GPUS = "8"
KUBELET_PORT = 10250


class Problem(Exception):
    """Why containers cannot start, as a waiting reason and message (ErrImagePull, ...)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason, self.message = reason, message


class Kube:
    """The few API calls the agent makes, returning the apiserver's JSON as dicts."""

    def __init__(self) -> None:
        self.api = config.new_client_from_config()
        self.core = client.CoreV1Api(self.api)
        self.coordination = client.CoordinationV1Api(self.api)
        self.discovery = client.DiscoveryV1Api(self.api)
        self.storage = client.StorageV1Api(self.api)
        url = urlparse(self.api.configuration.host)
        self.apiserver = (url.hostname or "127.0.0.1", url.port or 443)

    @staticmethod
    def raw(call: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
        response = call(*args, _preload_content=False, **kwargs)
        return json.loads(response.data)

    async def call(self, call: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
        return await asyncio.to_thread(self.raw, call, *args, **kwargs)

    async def get(self, call: Any, *args: Any) -> dict[str, Any] | None:
        try:
            return await self.call(call, *args)
        except ApiException as error:
            if error.status == 404:
                return None
            raise


def micro_time() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class PodRunner:
    """One pod on this node, from its first container start until it is removed."""

    def __init__(self, agent: Agent, pod: dict[str, Any]) -> None:
        self.agent, self.pod = agent, pod
        meta = pod["metadata"]
        self.uid, self.name, self.namespace = meta["uid"], meta["name"], meta["namespace"]
        self.dir = agent.state / "pods" / self.uid
        self.containers: list[dict[str, Any]] = pod["spec"]["containers"]
        self.states = [pods.ContainerState(c["name"], c["image"]) for c in self.containers]
        self.processes: dict[str, asyncio.subprocess.Process] = {}
        self.address: str | None = None
        self.start_time = pod.get("status", {}).get("startTime") or pods.now()
        self.stopping = asyncio.Event()
        self.published: str | None = None
        """The last status written, to write only changes."""
        self.finished = False
        self.torn_down = False
        self.detached = False
        """Set when the agent shuts down: what it sees of the processes then is not the pod's fate."""
        self.hosts = self.dir / "hosts"
        self.task = asyncio.create_task(self.run(), name=f"pod {self.namespace}/{self.name}")

    # ---- lifecycle --------------------------------------------------------------------------
    async def run(self) -> None:
        while True:  # a claim not bound yet is retried; an image we cannot provide is not
            try:
                plans = await self.prepare()
                break
            except Problem as problem:
                log.warning("pod %s/%s cannot start: %s", self.namespace, self.name, problem.message)
                for state in self.states:
                    state.waiting = (problem.reason, problem.message)
                await self.publish()
                if problem.reason == "ErrImagePull":
                    await self.stopping.wait()
                    return
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.stopping.wait(), 3)
                if self.stopping.is_set():
                    return
            except Exception:
                log.exception("pod %s/%s: preparing failed", self.namespace, self.name)
                raise
        await asyncio.gather(*(self.run_container(i, plan) for i, plan in enumerate(plans)))
        self.finished = True
        await self.publish(final=True)
        await asyncio.to_thread(self.teardown)

    async def stop(self, grace: float) -> None:
        """SIGTERM every container, SIGKILL what is left after the grace period."""
        self.stopping.set()
        for process in self.processes.values():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.gather(*(p.wait() for p in self.processes.values())), grace)
        for process in self.processes.values():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
        with contextlib.suppress(TimeoutError, asyncio.CancelledError):
            await asyncio.wait_for(asyncio.shield(self.task), 10)
        if not self.task.done():
            self.task.cancel()

    def teardown(self) -> None:
        """Once: the address may go to another pod right after."""
        if self.torn_down:
            return
        self.torn_down = True
        network.delete_pod_network(self.uid)
        self.agent.addresses.release(self.address)
        shutil.rmtree(self.dir / "volumes", ignore_errors=True)

    # ---- preparing: network, volumes, images, environment -----------------------------------
    async def prepare(self) -> list[dict[str, Any]]:
        resolved = []
        for container in self.containers:
            image = await asyncio.to_thread(images.resolve, container["image"], self.agent.state)
            if image is None:
                raise Problem(
                    "ErrImagePull",
                    f"image {container['image']!r} is not one of images/ (the local node runs only those)",
                )
            resolved.append(image)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.address = self.pod.get("status", {}).get("podIP") or self.agent.addresses.take()
        self.agent.addresses.keep(self.address)
        await asyncio.to_thread(network.create_pod_network, self.uid, self.address)
        self.pod.setdefault("status", {})["podIP"] = self.address
        self.write_hosts(self.agent.hosts_for(self.name, self.address, self.namespace))
        volumes = {v["name"]: await self.volume(v) for v in self.pod["spec"].get("volumes", [])}
        services = {
            "KUBERNETES_SERVICE_HOST": self.agent.kubernetes_service[0],
            "KUBERNETES_SERVICE_PORT": str(self.agent.kubernetes_service[1]),
        }
        plans = []
        for container, image in zip(self.containers, resolved, strict=True):
            try:
                env = await asyncio.to_thread(
                    pods.environment, self.pod, container, image, self.lookup, self.lookup_all, services
                )
            except pods.MissingReference as missing:
                raise Problem("CreateContainerConfigError", str(missing)) from None
            mounts = [{"source": src, "target": dest, "readOnly": True} for src, dest in image.binds]
            for m in container.get("volumeMounts", []):
                source = Path(volumes[m["name"]])
                if m.get("subPath"):
                    source = source / m["subPath"]
                    source.mkdir(parents=True, exist_ok=True)
                mounts.append({"source": str(source), "target": m["mountPath"], "readOnly": bool(m.get("readOnly"))})
            termination = self.dir / f"{container['name']}.termination-log"
            mounts.append(
                {
                    "source": str(termination),
                    "target": container.get("terminationMessagePath", "/dev/termination-log"),
                    "readOnly": False,
                }
            )
            mounts.append({"source": str(self.hosts), "target": "/etc/hosts", "readOnly": True})
            plans.append(
                {
                    "argv": pods.argv(container, image, env),
                    "env": env,
                    "workdir": container.get("workingDir") or image.workdir,
                    "mounts": mounts,
                    "termination": str(termination),
                }
            )
        return plans

    def lookup(self, kind: str, name: str, key: str) -> str | None:
        data = self.lookup_all(kind, name)
        return None if data is None else data.get(key)

    def lookup_all(self, kind: str, name: str) -> dict[str, str] | None:
        read = (
            self.agent.kube.core.read_namespaced_config_map
            if kind == "configmap"
            else (self.agent.kube.core.read_namespaced_secret)
        )
        try:
            obj = Kube.raw(read, name, self.namespace)
        except ApiException as error:
            if error.status == 404:
                return None
            raise
        if kind == "secret":
            return {k: base64.b64decode(v).decode(errors="replace") for k, v in (obj.get("data") or {}).items()}
        return dict(obj.get("data") or {})

    async def volume(self, volume: dict[str, Any]) -> str:
        """The host directory that backs one pod volume."""
        path = self.dir / "volumes" / volume["name"]
        if "persistentVolumeClaim" in volume:
            return await self.claim_path(volume["persistentVolumeClaim"]["claimName"])
        if "hostPath" in volume:
            host = Path(volume["hostPath"]["path"])
            if volume["hostPath"].get("type", "") in ("", "DirectoryOrCreate"):
                host.mkdir(parents=True, exist_ok=True)
            return str(host)
        path.mkdir(parents=True, exist_ok=True)
        files: dict[str, str | bytes] = {}
        if "configMap" in volume:
            files = self.projected_files(volume["configMap"], "configmap")
        elif "secret" in volume:
            files = self.projected_files({**volume["secret"], "name": volume["secret"]["secretName"]}, "secret")
        elif "downwardAPI" in volume:
            files = {
                i["path"]: pods.field_value(self.pod, i["fieldRef"]["fieldPath"])
                for i in volume["downwardAPI"]["items"]
            }
        elif "projected" in volume:
            for source in volume["projected"].get("sources", []):
                files.update(await self.projected_source(source))
        for relative, content in files.items():
            target = path / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(content if isinstance(content, bytes) else content.encode())
        return str(path)

    def projected_files(self, ref: dict[str, Any], kind: str) -> dict[str, str | bytes]:
        data = self.lookup_all(kind, ref["name"])
        if data is None:
            if ref.get("optional"):
                return {}
            raise Problem("ContainerCreating", f"{kind} {ref['name']} not found")
        items = ref.get("items") or [{"key": k, "path": k} for k in data]
        return {i["path"]: data[i["key"]] for i in items if i["key"] in data}

    async def projected_source(self, source: dict[str, Any]) -> dict[str, str | bytes]:
        if "serviceAccountToken" in source:
            token = source["serviceAccountToken"]
            body = {"spec": {"expirationSeconds": token.get("expirationSeconds", 3607)}}
            if token.get("audience"):
                body["spec"]["audiences"] = [token["audience"]]
            account = self.pod["spec"].get("serviceAccountName", "default")
            response = await self.agent.kube.call(
                self.agent.kube.core.create_namespaced_service_account_token, account, self.namespace, body
            )
            return {token["path"]: response["status"]["token"]}
        if "configMap" in source:
            return await asyncio.to_thread(self.projected_files, source["configMap"], "configmap")
        if "secret" in source:
            return await asyncio.to_thread(self.projected_files, source["secret"], "secret")
        if "downwardAPI" in source:
            return {
                i["path"]: pods.field_value(self.pod, i["fieldRef"]["fieldPath"])
                for i in source["downwardAPI"]["items"]
                if "fieldRef" in i
            }
        return {}

    async def claim_path(self, claim: str) -> str:
        pvc = await self.agent.kube.get(
            self.agent.kube.core.read_namespaced_persistent_volume_claim, claim, self.namespace
        )
        volume_name = (pvc or {}).get("spec", {}).get("volumeName")
        if not volume_name:
            raise Problem("ContainerCreating", f"persistentvolumeclaim {claim} is not bound")
        pv = await self.agent.kube.get(self.agent.kube.core.read_persistent_volume, volume_name) or {}
        source = pv.get("spec", {}).get("hostPath") or pv.get("spec", {}).get("local")
        if not source:
            raise Problem("ContainerCreating", f"volume {volume_name} is not a hostPath/local volume")
        Path(source["path"]).mkdir(parents=True, exist_ok=True)
        return str(source["path"])

    def write_hosts(self, content: str) -> None:
        """In place, so that the file bound into running containers changes too."""
        if not self.hosts.exists() or self.hosts.read_text() != content:
            with open(self.hosts, "w") as f:
                f.write(content)

    # ---- running ----------------------------------------------------------------------------
    async def run_container(self, index: int, plan: dict[str, Any]) -> None:
        container, state = self.containers[index], self.states[index]
        policy = self.pod["spec"].get("restartPolicy", "Always")
        logfile = self.dir / f"{container['name']}.log"
        while not self.stopping.is_set():
            Path(plan["termination"]).write_text("")
            root, scratch = self.dir / "rootfs" / container["name"], self.dir / "scratch" / container["name"]
            root.mkdir(parents=True, exist_ok=True)
            scratch.mkdir(parents=True, exist_ok=True)
            spec_file = self.dir / f"{container['name']}.json"
            spec_file.write_text(json.dumps({**plan, "root": str(root), "scratch": str(scratch)}))
            with open(logfile, "ab") as out:
                process = await asyncio.create_subprocess_exec(
                    "nsenter", f"--net=/run/netns/{network.netns_name(self.uid)}",
                    "unshare", "--mount", "--propagation", "private", "--fork", "--kill-child",
                    sys.executable, str(SANDBOX), str(spec_file),
                    stdin=asyncio.subprocess.DEVNULL, stdout=out, stderr=asyncio.subprocess.STDOUT,
                    start_new_session=True,
                )  # fmt: skip
            self.processes[container["name"]] = process
            state.pid, state.started_at, state.waiting, state.terminated = process.pid, pods.now(), None, None
            state.started = "startupProbe" not in container
            state.ready = state.started and "readinessProbe" not in container
            log.info(
                "started %s/%s[%s] pid %s: %s",
                self.namespace,
                self.name,
                container["name"],
                process.pid,
                " ".join(plan["argv"]),
            )
            await self.publish()
            probes = asyncio.create_task(self.probe(container, state, process))
            code = await process.wait()
            probes.cancel()
            code = 128 - code if code < 0 else code  # killed by a signal
            message = Path(plan["termination"]).read_text(errors="replace")[-4096:]
            if not message and code != 0 and container.get("terminationMessagePolicy") == "FallbackToLogsOnError":
                message = "\n".join(logfile.read_text(errors="replace").splitlines()[-80:])[-2048:]
            state.terminated = {
                "exitCode": code,
                "reason": "Completed" if code == 0 else "Error",
                "startedAt": state.started_at,
                "finishedAt": pods.now(),
                **({"message": message} if message else {}),
            }
            state.ready = state.started = False
            log.info("%s/%s[%s] exited %s", self.namespace, self.name, container["name"], code)
            restart = policy == "Always" or (policy == "OnFailure" and code != 0)
            if self.stopping.is_set() or not restart:
                await self.publish()
                return
            backoff = min(2 ** min(state.restarts, 5), 30)
            state.last_terminated, state.terminated = state.terminated, None
            state.restarts += 1
            state.waiting = ("CrashLoopBackOff", f"back-off {backoff}s restarting failed container") if code else None
            state.started_at = None if code else state.started_at
            await self.publish()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), backoff)

    async def probe(self, container: dict[str, Any], state: pods.ContainerState, process: Any) -> None:
        """Startup, then readiness and liveness probes, on their own periods and thresholds."""
        started = asyncio.get_running_loop().time()
        due: dict[str, float] = {}
        failures: dict[str, int] = {}
        while True:
            await asyncio.sleep(0.5)
            now = asyncio.get_running_loop().time()
            for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
                probe = container.get(kind)
                if (
                    not probe
                    or (kind != "startupProbe" and not state.started)
                    or (kind == "startupProbe" and state.started)
                ):
                    continue
                if now < due.setdefault(kind, started + probe.get("initialDelaySeconds", 0)):
                    continue
                due[kind] = now + probe.get("periodSeconds", 10)
                ok = await self.check(probe, container, probe.get("timeoutSeconds", 1))
                failures[kind] = 0 if ok else failures.get(kind, 0) + 1
                changed = False
                if kind == "startupProbe" and ok:
                    state.started, changed = True, True
                    state.ready = "readinessProbe" not in container
                elif kind == "readinessProbe":
                    threshold = probe.get("successThreshold", 1) if ok else probe.get("failureThreshold", 3)
                    if ok != state.ready and (ok or failures[kind] >= threshold):
                        state.ready, changed = ok, True
                elif not ok and failures[kind] >= probe.get("failureThreshold", 3):
                    log.info("%s/%s[%s] failed its %s: restarting", self.namespace, self.name, container["name"], kind)
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(process.pid, signal.SIGKILL)
                    return
                if changed:
                    await self.publish()

    async def check(self, probe: dict[str, Any], container: dict[str, Any], timeout: float) -> bool:
        target = pods.probe_target(probe, container)
        if target is None:
            return True  # exec and gRPC probes are not run here
        scheme, port, path = target
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(self.address, port), timeout)
        except (OSError, TimeoutError):
            return False
        try:
            if scheme == "tcp":
                return True
            writer.write(f"GET {path} HTTP/1.0\r\nHost: {self.address}\r\n\r\n".encode())
            line = await asyncio.wait_for(reader.readline(), timeout)
            parts = line.split()
            return len(parts) > 1 and 200 <= int(parts[1]) < 400
        except (OSError, TimeoutError, ValueError):
            return False
        finally:
            writer.close()

    async def publish(self, final: bool = False) -> None:
        if self.detached:
            return
        status = pods.pod_status(self.pod, self.states, self.address, network.GATEWAY, self.start_time, final=final)
        comparable = json.dumps(
            {**status, "conditions": [{**c, "lastTransitionTime": ""} for c in status["conditions"]]}
        )
        if comparable == self.published:
            return
        try:
            updated = await self.agent.kube.call(
                self.agent.kube.core.patch_namespaced_pod_status,
                self.name, self.namespace, [{"op": "add", "path": "/status", "value": status}],
            )  # fmt: skip
            self.pod["status"] = updated.get("status", status)
            self.published = comparable
        except ApiException as error:
            if error.status != 404:
                log.warning("pod %s/%s: status not written: %s", self.namespace, self.name, error.reason)


class Agent:
    def __init__(self, state: Path) -> None:
        self.state = state
        self.kube = Kube()
        self.addresses = network.AddressPool()
        self.proxy = network.ServiceProxy()
        self.runners: dict[str, PodRunner] = {}
        self.deleting: set[str] = set()
        self.tasks: set[asyncio.Task[None]] = set()
        self.services: list[dict[str, Any]] = []
        self.slices: list[dict[str, Any]] = []
        self.kubernetes_service = ("10.96.0.1", 443)

    def hosts_for(self, name: str, address: str, namespace: str) -> str:
        return network.hosts_file(name, address, namespace, self.services, self.slices)

    # ---- the node --------------------------------------------------------------------------
    def node(self) -> dict[str, Any]:
        resources = {"cpu": "64", "memory": "256Gi", "ephemeral-storage": "1Ti", "pods": "110", "nvidia.com/gpu": GPUS}
        return {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": NODE,
                "labels": {
                    "kubernetes.io/hostname": NODE,
                    "kubernetes.io/os": "linux",
                    "kubernetes.io/arch": "amd64",
                    NODE_LABEL: "true",
                    "llmops.dev/pool": "gpu",
                    "nvidia.com/gpu.present": "true",
                    "nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3",
                    "nvidia.com/gpu.count": GPUS,
                },
            },
            # Only namespaces that tolerate this land here (e2e/agent/README.md), so kwok's
            # simulated tests never get real processes.
            "spec": {"taints": [{"key": NODE_LABEL, "value": "true", "effect": "NoSchedule"}]},
            "status": {"capacity": resources, "allocatable": resources},
        }

    def node_status(self) -> dict[str, Any]:
        stamp = pods.now()

        def condition(type_: str, status: str, reason: str) -> dict[str, Any]:
            return {"type": type_, "status": status, "reason": reason, "lastHeartbeatTime": stamp,
                    "lastTransitionTime": self.started}  # fmt: skip

        return {
            **self.node()["status"],
            "conditions": [
                condition("Ready", "True", "KubeletReady"),
                condition("MemoryPressure", "False", "KubeletHasSufficientMemory"),
                condition("DiskPressure", "False", "KubeletHasNoDiskPressure"),
                condition("PIDPressure", "False", "KubeletHasSufficientPID"),
            ],
            # The apiserver reaches the kubelet API (logs) at the first address: the bridge's.
            "addresses": [{"type": "InternalIP", "address": network.GATEWAY}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": KUBELET_PORT}},
            "nodeInfo": {
                "architecture": "amd64", "operatingSystem": "linux", "kubeletVersion": "llmops-local-agent",
                "kubeProxyVersion": "", "containerRuntimeVersion": "local://sandbox",
                "kernelVersion": os.uname().release, "osImage": "local processes",
                "machineID": "", "systemUUID": "", "bootID": "",
            },
        }  # fmt: skip

    async def register(self) -> None:
        self.started = pods.now()
        core = self.kube.core
        if await self.kube.get(core.read_node, NODE) is None:
            await self.kube.call(core.create_node, self.node())
        # The whole status, replaced (a strategic merge would keep addresses of an older agent).
        await self.kube.call(
            core.patch_node_status, NODE, [{"op": "add", "path": "/status", "value": self.node_status()}]
        )
        if await self.kube.get(self.kube.storage.read_storage_class, STORAGE_CLASS) is None:
            await self.kube.call(
                self.kube.storage.create_storage_class,
                {
                    "apiVersion": "storage.k8s.io/v1",
                    "kind": "StorageClass",
                    "metadata": {"name": STORAGE_CLASS},
                    "provisioner": PROVISIONER,
                    "reclaimPolicy": "Delete",
                    "volumeBindingMode": "Immediate",
                },
            )
        kubernetes = await self.kube.get(core.read_namespaced_service, "kubernetes", "default")
        if kubernetes:
            self.kubernetes_service = (kubernetes["spec"]["clusterIP"], kubernetes["spec"]["ports"][0]["port"])

    async def heartbeat(self) -> None:
        lease_api = self.kube.coordination
        while True:
            lease = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": NODE, "namespace": "kube-node-lease"},
                "spec": {"holderIdentity": NODE, "leaseDurationSeconds": 40, "renewTime": micro_time()},
            }
            try:
                if await self.kube.get(lease_api.read_namespaced_lease, NODE, "kube-node-lease") is None:
                    await self.kube.call(lease_api.create_namespaced_lease, "kube-node-lease", lease)
                else:
                    await self.kube.call(
                        lease_api.patch_namespaced_lease, NODE, "kube-node-lease", {"spec": lease["spec"]}
                    )
                await self.kube.call(self.kube.core.patch_node_status, NODE, {"status": self.node_status()})
            except Exception as error:  # keep beating; the apiserver may be restarting
                log.warning("heartbeat failed: %s", error)
            await asyncio.sleep(10)

    # ---- pods -------------------------------------------------------------------------------
    async def sync_pods(self) -> None:
        listed = await self.kube.call(
            self.kube.core.list_pod_for_all_namespaces, field_selector=f"spec.nodeName={NODE}"
        )
        for pod in listed["items"]:  # addresses of pods started by an earlier agent stay theirs
            if pod.get("status", {}).get("podIP") and pod["status"].get("phase") not in ("Succeeded", "Failed"):
                self.addresses.keep(pod["status"]["podIP"])
        seen = set()
        for pod in listed["items"]:
            uid = pod["metadata"]["uid"]
            seen.add(uid)
            phase = pod.get("status", {}).get("phase")
            runner = self.runners.get(uid)
            if runner is None and phase not in ("Succeeded", "Failed") and not pod["metadata"].get("deletionTimestamp"):
                self.runners[uid] = PodRunner(self, pod)
            elif runner is not None:  # what others wrote (e.g. DisruptionTarget by an eviction) is kept
                runner.pod["metadata"] = pod["metadata"]
                runner.pod.setdefault("status", {})["conditions"] = pod.get("status", {}).get("conditions", [])
            if pod["metadata"].get("deletionTimestamp") and uid not in self.deleting:
                self.deleting.add(uid)
                self.background(self.remove(pod))
        for uid in [u for u in self.runners if u not in seen]:  # removed behind our back
            runner = self.runners.pop(uid)
            self.background(runner.stop(0))

    def background(self, work: Any) -> None:
        task = asyncio.create_task(work)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def remove(self, pod: dict[str, Any]) -> None:
        meta = pod["metadata"]
        runner = self.runners.get(meta["uid"])
        try:
            if runner is not None:
                runner.pod.setdefault("status", {})["conditions"] = pod.get("status", {}).get("conditions", [])
                grace = min(float(meta.get("deletionGracePeriodSeconds") or 30), 30)
                await runner.stop(grace)
                await runner.publish(final=True)
                await asyncio.to_thread(runner.teardown)
            await self.kube.call(
                self.kube.core.delete_namespaced_pod, meta["name"], meta["namespace"],
                body={"gracePeriodSeconds": 0, "preconditions": {"uid": meta["uid"]}},
            )  # fmt: skip
        except ApiException as error:
            if error.status not in (404, 409):
                log.warning("pod %s/%s: delete failed: %s", meta["namespace"], meta["name"], error.reason)
        except Exception:
            log.exception("pod %s/%s: removing failed", meta["namespace"], meta["name"])
        finally:
            self.runners.pop(meta["uid"], None)
            self.deleting.discard(meta["uid"])
            shutil.rmtree(self.state / "pods" / meta["uid"], ignore_errors=True)

    # ---- services and volumes ---------------------------------------------------------------
    async def sync_services(self) -> None:
        self.services = (await self.kube.call(self.kube.core.list_service_for_all_namespaces))["items"]
        self.slices = (await self.kube.call(self.kube.discovery.list_endpoint_slice_for_all_namespaces))["items"]
        await self.proxy.sync(network.service_ports(self.services, self.slices, self.kube.apiserver))
        for runner in self.runners.values():
            if runner.address:
                runner.write_hosts(self.hosts_for(runner.name, runner.address, runner.namespace))
        self.write_scrape_targets()

    def write_scrape_targets(self) -> None:
        """Prometheus file_sd targets: running pods here annotated prometheus.io/scrape, with the
        labels Kubernetes service discovery would give them (namespace, pod, pod labels sanitized)."""
        groups = []
        for runner in self.runners.values():
            meta = runner.pod["metadata"]
            annotations = meta.get("annotations", {})
            if annotations.get("prometheus.io/scrape") != "true" or runner.finished or not runner.address:
                continue
            labels = {re.sub(r"[^a-zA-Z0-9_]", "_", k): v for k, v in meta.get("labels", {}).items()}
            target = f"{runner.address}:{annotations.get('prometheus.io/port', '80')}"
            groups.append(
                {"targets": [target], "labels": {**labels, "namespace": runner.namespace, "pod": runner.name}}
            )
        path = self.state / "scrape-targets.json"
        content = json.dumps(sorted(groups, key=lambda g: g["targets"]), indent=1)
        if not path.exists() or path.read_text() != content:
            (self.state / "scrape-targets.json.tmp").write_text(content)
            (self.state / "scrape-targets.json.tmp").rename(path)

    async def provision(self) -> None:
        """hostPath volumes for unbound claims of our StorageClass; delete them when released."""
        core = self.kube.core
        claims = (await self.kube.call(core.list_persistent_volume_claim_for_all_namespaces))["items"]
        for pvc in claims:
            spec, meta = pvc["spec"], pvc["metadata"]
            if spec.get("storageClassName") != STORAGE_CLASS or spec.get("volumeName"):
                continue
            name = f"pvc-{meta['uid']}"
            path = self.state / "volumes" / name
            path.mkdir(parents=True, exist_ok=True)
            volume = {
                "apiVersion": "v1",
                "kind": "PersistentVolume",
                "metadata": {"name": name, "annotations": {"pv.kubernetes.io/provisioned-by": PROVISIONER}},
                "spec": {
                    "capacity": {"storage": spec.get("resources", {}).get("requests", {}).get("storage", "1Gi")},
                    "accessModes": spec.get("accessModes", ["ReadWriteOnce"]),
                    "persistentVolumeReclaimPolicy": "Delete",
                    "storageClassName": STORAGE_CLASS,
                    "hostPath": {"path": str(path), "type": "DirectoryOrCreate"},
                    "claimRef": {"namespace": meta["namespace"], "name": meta["name"], "uid": meta["uid"]},
                },
            }
            with contextlib.suppress(ApiException):
                await self.kube.call(core.create_persistent_volume, volume)
                log.info("provisioned %s for %s/%s", name, meta["namespace"], meta["name"])
        volumes = (await self.kube.call(core.list_persistent_volume))["items"]
        for pv in volumes:
            if pv["spec"].get("storageClassName") == STORAGE_CLASS and pv.get("status", {}).get("phase") == "Released":
                with contextlib.suppress(ApiException):
                    await self.kube.call(core.delete_persistent_volume, pv["metadata"]["name"])
                shutil.rmtree(self.state / "volumes" / pv["metadata"]["name"], ignore_errors=True)

    # ---- the kubelet API, as far as logs go (kubectl logs, the operator's progress) ---------
    async def serve_logs(self) -> None:
        cert, key = self.state / "kubelet.crt", self.state / "kubelet.key"
        if not cert.exists():
            subprocess.run(
                ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "3650", "-subj", f"/CN={NODE}",
                 "-addext", f"subjectAltName=IP:{network.GATEWAY}", "-keyout", str(key), "-out", str(cert)],
                check=True, capture_output=True,
            )  # fmt: skip
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cert, key)
        app = web.Application()
        app.router.add_get("/containerLogs/{namespace}/{pod}/{container}", self.container_logs)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, network.GATEWAY, KUBELET_PORT, ssl_context=context).start()

    async def container_logs(self, request: web.Request) -> web.StreamResponse:
        """GET containerLogs with tailLines and follow; the apiserver authenticated the caller."""
        ns, name, container = (request.match_info[k] for k in ("namespace", "pod", "container"))
        runner = next((r for r in self.runners.values() if (r.namespace, r.name) == (ns, name)), None)
        path = runner.dir / f"{container}.log" if runner else None
        if path is None or not path.exists():
            raise web.HTTPNotFound(text=f"no log of container {container} in pod {ns}/{name} on this node")
        text = path.read_text(errors="replace")
        if request.query.get("tailLines"):
            text = "".join(text.splitlines(keepends=True)[-int(request.query["tailLines"]) :])
        response = web.StreamResponse(headers={"Content-Type": "text/plain"})
        await response.prepare(request)
        await response.write(text.encode())
        offset = path.stat().st_size
        while request.query.get("follow") == "true" and runner is not None and not runner.task.done():
            await asyncio.sleep(0.5)
            with contextlib.suppress(OSError), path.open("rb") as f:
                f.seek(offset)
                chunk = f.read()
                offset += len(chunk)
                if chunk:
                    await response.write(chunk)
        return response

    async def every(self, seconds: float, step: Any) -> None:
        while True:
            try:
                await step()
            except Exception:
                log.exception("%s failed", step.__name__)
            await asyncio.sleep(seconds)

    async def run(self) -> None:
        network.setup_host()
        await self.register()
        await self.serve_logs()
        log.info("node %s registered; pods get addresses from %s", NODE, network.POD_CIDR)
        await asyncio.gather(
            self.heartbeat(),
            self.every(1, self.sync_pods),
            self.every(2, self.sync_services),
            self.every(2, self.provision),
        )

    async def shutdown(self) -> None:
        """Stop every pod's processes but leave their status: a restarted agent starts them again."""
        for runner in self.runners.values():
            runner.detached = True
        await asyncio.gather(*(r.stop(5) for r in list(self.runners.values())), return_exceptions=True)
        self.proxy.close()
        network.teardown_host()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--state", type=Path, default=Path("e2e/.cluster/agent"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    logging.getLogger("kubernetes").setLevel(logging.WARNING)
    args.state.mkdir(parents=True, exist_ok=True)
    agent = Agent(args.state.resolve())

    async def serve() -> None:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        task = asyncio.create_task(agent.run())
        await asyncio.wait([task, asyncio.create_task(stop.wait())], return_when=asyncio.FIRST_COMPLETED)
        task.cancel()
        await agent.shutdown()
        if task.done() and not task.cancelled() and task.exception():
            raise task.exception()  # type: ignore[misc]

    asyncio.run(serve())


if __name__ == "__main__":
    main()
