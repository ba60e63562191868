"""When each LLMModel of a namespace got its children and its status, as watch streams show it.

One thread per watched kind records the first moment (time.monotonic) at which each model's
status was written, it became Ready, and each kind of child carrying its llmops.dev/llmmodel
label appeared. Benchmarks compare those moments with the moment each model was created.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from tests.support.rawapi import ApiError, RawApi, resource_path

OWNER_LABEL = "llmops.dev/llmmodel"
FIRST_CHILDREN = ("PersistentVolumeClaim", "Job")
"""What the first reconcile of a new model creates (default storage, a source URI)."""


@dataclass
class Progress:
    api: RawApi
    namespace: str
    created: dict[str, float] = field(default_factory=dict)
    """Model name -> the moment its create request returned."""
    status_at: dict[str, float] = field(default_factory=dict)
    """Model name -> first moment a status with observedGeneration was seen."""
    ready_at: dict[str, float] = field(default_factory=dict)
    children_at: dict[str, dict[str, float]] = field(default_factory=lambda: defaultdict(dict))
    """Model name -> child kind -> first moment seen."""
    events: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stop: threading.Event = field(default_factory=threading.Event)

    def start(self) -> None:
        watched: list[tuple[str, Callable[[str, dict[str, Any], float], None]]] = [
            (resource_path("llmops.dev/v1alpha1", "llmmodels", self.namespace), self._model),
            (resource_path("batch/v1", "jobs", self.namespace), self._child("Job")),
            (resource_path("v1", "persistentvolumeclaims", self.namespace), self._child("PersistentVolumeClaim")),
        ]
        started = [threading.Event() for _ in watched]
        for (path, handler), ready in zip(watched, started, strict=True):
            threading.Thread(target=self._follow, args=(path, handler, ready), daemon=True).start()
        for ready in started:
            ready.wait(30)

    def stop(self) -> None:
        self._stop.set()

    def _follow(self, path: str, handler: Callable[[str, dict[str, Any], float], None], ready: threading.Event) -> None:
        version = ""
        while not self._stop.is_set():
            try:
                if not version:
                    listed = self.api.get(path)
                    now = time.monotonic()
                    for item in listed["items"]:
                        handler("ADDED", item, now)
                    version = listed["metadata"]["resourceVersion"]
                    ready.set()
                for type_, obj in self.api.watch(path, version, timeout_s=600):
                    if self._stop.is_set():
                        return
                    if type_ == "ERROR":
                        version = ""  # expired: list again
                        break
                    version = obj["metadata"].get("resourceVersion", version)
                    if type_ != "BOOKMARK":
                        handler(type_, obj, time.monotonic())
            except ApiError as error:
                if error.status == 410:
                    version = ""
                else:
                    time.sleep(1)
            except Exception:  # a dropped connection: resume from the last version seen
                time.sleep(0.5)

    def _model(self, type_: str, obj: dict[str, Any], now: float) -> None:
        if type_ == "DELETED":
            return
        name = obj["metadata"]["name"]
        status = obj.get("status") or {}
        with self._lock:
            self.events += 1
            if status.get("observedGeneration") is not None:
                self.status_at.setdefault(name, now)
            if status.get("phase") == "Ready":
                self.ready_at.setdefault(name, now)

    def _child(self, kind: str) -> Callable[[str, dict[str, Any], float], None]:
        def seen(type_: str, obj: dict[str, Any], now: float) -> None:
            owner = (obj["metadata"].get("labels") or {}).get(OWNER_LABEL)
            if owner and type_ != "DELETED":
                with self._lock:
                    self.events += 1
                    self.children_at[owner].setdefault(kind, now)

        return seen

    def done_at(self, name: str, children: Iterable[str] = FIRST_CHILDREN) -> float | None:
        """When the model had its first children and a status, or None while it lacks one."""
        with self._lock:
            moments = [self.status_at.get(name), *(self.children_at.get(name, {}).get(k) for k in children)]
        if any(m is None for m in moments):
            return None
        return max(m for m in moments if m is not None)

    def missing(self, names: Iterable[str]) -> list[str]:
        return [n for n in names if self.done_at(n) is None]

    def not_ready(self, names: Iterable[str]) -> list[str]:
        with self._lock:
            return [n for n in names if n not in self.ready_at]

    def wait_done(self, names: list[str], timeout: float, what: str = "children and status") -> float:
        """Block until every model is done; returns the moment the last one was."""
        deadline = time.monotonic() + timeout
        while True:
            left = self.missing(names)
            if not left:
                return max(m for m in (self.done_at(n) for n in names) if m is not None)
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(left)} of {len(names)} models lack {what}, e.g. {left[:5]}")
            time.sleep(0.2)

    def wait_ready(self, names: list[str], timeout: float) -> float:
        deadline = time.monotonic() + timeout
        while True:
            left = self.not_ready(names)
            if not left:
                with self._lock:
                    return max(self.ready_at[n] for n in names)
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(left)} of {len(names)} models not Ready, e.g. {left[:5]}")
            time.sleep(0.5)
