"""Operator processes that are killed on purpose, and recorders of what the cluster went through.

:class:`KillableOperator` is the operator as a real process that a test SIGKILLs from any
thread, at any moment (during its start too), and that a driving loop starts again.
:class:`Recorder` watches one kind in one namespace from a background thread and keeps every
version it saw, so a test can assert on the whole history (steps entered, endpoints served,
children created), not only on the end state.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException

from tests.support.crds import CRD_DIR
from tests.support.kube import GROUP, VERSION, Kube
from tests.support.operator import ROOT, OperatorProcess


@dataclass(frozen=True)
class Kill:
    at: float
    why: str


class KillableOperator(OperatorProcess):
    """An OperatorProcess whose kills are counted and may land anywhere, even while it starts."""

    def __init__(self, kubeconfig: str, log_path: Path, args: list[str], **env: str) -> None:
        super().__init__(kubeconfig, log_path, args, **env)
        self.kills: list[Kill] = []
        self._lock = threading.Lock()

    def start(self) -> None:
        """Start and wait until healthy; returns early (not running) if a kill lands meanwhile."""
        started = time.time()
        with self._lock:
            log = self.log_path.open("ab")
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "llmops", "--log-format", "plain", *self.args],
                env=self.env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, start_new_session=True,
            )  # fmt: skip
            self.starts += 1
            proc = self.proc
        deadline = time.monotonic() + 60
        while proc.poll() is None:
            if self.healthy():
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"operator not healthy after 60 s: {self.log_tail()}")
            time.sleep(0.2)
        if not any(k.at >= started for k in self.kills):
            raise RuntimeError(f"operator exited on its own: {self.log_tail()}")

    def healthy(self) -> bool:
        if self.proc is None or self.proc.poll() is not None:
            return False
        return super().healthy()

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill_now(self, why: str) -> bool:
        """SIGKILL the process group if it runs; True when a kill was made."""
        with self._lock:
            proc = self.proc
            if proc is None or proc.poll() is not None:
                return False
            self.kills.append(Kill(time.time(), why))
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        return True

    def kill_later(self, delay: float, why: str) -> None:
        timer = threading.Timer(delay, self.kill_now, args=(why,))
        timer.daemon = True
        timer.start()

    def keep_running(self) -> None:
        """Start it again if a kill left it down."""
        if not self.running():
            self.start()


def drive(
    operator: KillableOperator,
    done: Callable[[], Any],
    timeout: float,
    what: str,
    after_restart: Callable[[], None] | None = None,
) -> Any:
    """Keep the operator running (restart after every kill) until done() is truthy."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        if not operator.running():
            operator.keep_running()
            if after_restart is not None and operator.running():
                after_restart()
        try:
            last = done()
        except Exception as error:  # a read racing with the apiserver; keep the last one
            last = error
        if last and not isinstance(last, Exception):
            return last
        if time.monotonic() > deadline:
            raise AssertionError(
                f"timed out after {timeout:.0f}s waiting for {what}; last seen: {last!r}\n"
                f"operator log:\n{operator.log_tail(60)}"
            )
        time.sleep(0.2)


@dataclass(frozen=True)
class Seen:
    at: float
    type: str
    """ADDED, MODIFIED or DELETED (a re-list after a broken watch yields ADDED again)."""
    obj: dict[str, Any]


class Recorder:
    """Every version of one kind in one namespace, from a watch in a background thread.

    ``on_event(seen)`` runs in that thread for each version (keep it short: it may kill).
    """

    def __init__(
        self,
        list_fn: Callable[..., Any],
        *args: Any,
        on_event: Callable[[Seen], None] | None = None,
        label_selector: str | None = None,
    ) -> None:
        self.list_fn, self.args = list_fn, args
        self.on_event = on_event
        self.label_selector = label_selector
        self.seen: list[Seen] = []
        self._stop = threading.Event()
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name=f"recorder-{list_fn.__name__}")

    def start(self) -> Recorder:
        self._thread.start()
        if not self._started.wait(30):
            raise RuntimeError(f"recorder of {self.list_fn.__name__} did not start")
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(15)

    def __enter__(self) -> Recorder:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    def _run(self) -> None:
        kwargs: dict[str, Any] = {}
        if self.label_selector:
            kwargs["label_selector"] = self.label_selector
        version: str | None = None
        while not self._stop.is_set():
            try:
                if version is None:
                    listed = self.list_fn(*self.args, **kwargs)
                    listed = (
                        listed if isinstance(listed, dict) else client.ApiClient().sanitize_for_serialization(listed)
                    )
                    version = listed["metadata"]["resourceVersion"]
                    for item in listed.get("items", []):
                        self._record(Seen(time.time(), "ADDED", item))
                    self._started.set()
                stream = watch.Watch().stream(
                    self.list_fn, *self.args, resource_version=version, timeout_seconds=2, **kwargs
                )
                for event in stream:
                    obj = event["raw_object"]
                    if event["type"] == "ERROR":
                        version = None  # expired: list again
                        break
                    version = obj["metadata"]["resourceVersion"]
                    if event["type"] != "BOOKMARK":
                        self._record(Seen(time.time(), event["type"], obj))
                    if self._stop.is_set():
                        break
            except ApiException as error:
                if error.status == 410:
                    version = None
                else:
                    time.sleep(0.5)
            except Exception:  # a dropped connection: watch again from the last version
                time.sleep(0.5)

    def _record(self, seen: Seen) -> None:
        self.seen.append(seen)
        if self.on_event is not None:
            self.on_event(seen)

    def versions(self, name: str) -> list[dict[str, Any]]:
        return [s.obj for s in self.seen if s.obj["metadata"]["name"] == name and s.type != "DELETED"]

    def uids(self, name: str) -> set[str]:
        return {s.obj["metadata"]["uid"] for s in self.seen if s.obj["metadata"]["name"] == name}

    def names(self) -> set[str]:
        return {s.obj["metadata"]["name"] for s in self.seen}


def install_crds(kubectl: Callable[..., Any]) -> None:
    """The llmops CRDs, as the `operator` fixture installs them (tests here run their own operators)."""
    kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CRD_DIR))
    kubectl(
        "wait", "--for=condition=Established", "--timeout=60s", "crd", "-l", "app.kubernetes.io/part-of=llmops-operator"
    )


def killable_operator(
    kubeconfig: str, workdir: Path, namespace: str, *args: str, name: str = "operator", **env: str
) -> KillableOperator:
    """An operator watching only `namespace`, as the cluster tests run it (kwok's StorageClass)."""
    return KillableOperator(
        kubeconfig,
        workdir / f"{name}.log",
        ["--namespace", namespace, *args],
        **{"LLMOPS_REPOSITORY_STORAGE_CLASS": "kwok-volume", **env},
    )


def resource_version(obj: dict[str, Any]) -> int:
    """etcd's revision of this version of an object: versions of different kinds compare by it."""
    return int(obj["metadata"]["resourceVersion"])


def cpu_model(name: str, replicas: int = 1) -> dict[str, Any]:
    """A small LLMModel served on the CPU node."""
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "LLMModel",
        "metadata": {"name": name},
        "spec": {
            "source": {"uri": f"pvc://models/{name}"},
            "build": {"quantization": "Int8Dynamic", "storage": {"persistentVolumeClaim": "model-repositories"}},
            "serving": {
                "replicas": replicas,
                "maxBatchSize": 16,
                "resources": {"gpus": 0, "memory": "256Mi"},
                "instanceGroup": {"kind": "CPU", "count": 1},
            },
        },
    }


def model_converged(kube: Kube, name: str, held: int | None = None) -> str | None:
    """None when the model serves its current spec; else what is still off.

    `held`: the replicas a Rollout holds this candidate at, in place of its spec's.
    """
    model = kube.get("llmmodels", name)
    spec, status = model["spec"], model.get("status") or {}
    if status.get("observedGeneration") != model["metadata"]["generation"]:
        return "generation not observed"
    ready = next((c for c in status.get("conditions", []) if c["type"] == "Ready"), {})
    if ready.get("status") != "True":
        return f"not Ready: {ready.get('reason')}"
    if (status.get("artifact") or {}).get("quantization") != spec["build"]["quantization"]:
        return "serving another build"
    deployment = kube.apps.read_namespaced_deployment(name, kube.ns)
    want = spec["serving"]["replicas"] if held is None else held
    if deployment.spec.replicas != want or (deployment.status.ready_replicas or 0) != want:
        return f"deployment {deployment.spec.replicas} replicas, {deployment.status.ready_replicas} ready, want {want}"
    return None
