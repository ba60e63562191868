"""Open-loop load that routes itself by the weights of a Gateway API HTTPRoute.

No gateway runs on the local cluster, so the load generator plays one: it reads the route's
first rule from the apiserver every ``poll_s`` and sends each request (at a fixed rate, whether
or not earlier ones have answered) to a backend drawn by those weights, mapping each backend
Service name to a local tritonserver. Every request and every weight change is recorded with
its wall-clock time, which is comparable with Prometheus sample timestamps.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, cast

import urllib3

GATEWAY_GROUP, GATEWAY_VERSION = "gateway.networking.k8s.io", "v1"


@dataclass(frozen=True)
class Request:
    time: float
    """Wall-clock time the request was due to be sent."""
    backend: str | None
    """The backendRef (Service name) it was routed to; None when no backend had weight."""
    ok: bool
    latency_s: float
    error: str | None = None


@dataclass(frozen=True)
class WeightChange:
    time: float
    weights: dict[str, int]


def route_weights(route: Mapping[str, Any]) -> dict[str, int]:
    """Backend name -> weight of the route's first rule; Gateway API's default weight is 1."""
    rules = route.get("spec", {}).get("rules") or [{}]
    return {ref["name"]: int(ref.get("weight", 1)) for ref in rules[0].get("backendRefs") or []}


def pick_backend(weights: Mapping[str, int], draw: float) -> str | None:
    """The backend a uniform draw in [0, 1) falls on, walking the weights in order."""
    total = sum(w for w in weights.values() if w > 0)
    if total == 0:
        return None
    point = draw * total
    for name, weight in weights.items():
        if weight <= 0:
            continue
        if point < weight:
            return name
        point -= weight
    return [name for name, weight in weights.items() if weight > 0][-1]  # a draw rounded up to the total


def share(weights: Mapping[str, int], backend: str) -> float:
    total = sum(max(w, 0) for w in weights.values())
    return max(weights.get(backend, 0), 0) / total if total else 0.0


def infer_body(prompt: str, max_tokens: int) -> bytes:
    """KServe v2 inference request for the builder's model (text_input, max_tokens)."""
    return json.dumps(
        {
            "inputs": [
                {"name": "text_input", "shape": [1, 1], "datatype": "BYTES", "data": [prompt]},
                {"name": "max_tokens", "shape": [1, 1], "datatype": "INT32", "data": [max_tokens]},
            ],
            "outputs": [{"name": "text_output"}],
        }
    ).encode()


@dataclass
class LoadReport:
    requests: list[Request]
    weights: list[WeightChange]

    def sent(self) -> Counter[str | None]:
        return Counter(r.backend for r in self.requests)

    def failed(self) -> Counter[str | None]:
        return Counter(r.backend for r in self.requests if not r.ok)

    def first_weights(self, matches: Callable[[dict[str, int]], bool], after: float = 0.0) -> float | None:
        """When the generator first routed by weights that match, at or after `after`."""
        in_force = [c for c in self.weights if c.time <= after][-1:]
        if in_force and matches(in_force[0].weights):
            return after
        return next((c.time for c in self.weights if c.time > after and matches(c.weights)), None)

    def timeline(self, since: float) -> str:
        """The weight changes relative to `since`, one per line, for test output."""
        return "\n".join(f"  {c.time - since:+8.2f}s  {c.weights}" for c in self.weights)


@dataclass
class LoadGenerator:
    """Sends `rate` requests per second to the backends of HTTPRoute `route` by its weights."""

    api_client: Any
    namespace: str
    route: str
    backends: Mapping[str, str]
    """backendRef name (an LLMModel's Service) -> base URL of the local tritonserver."""
    model: str = "llm"
    rate: float = 50.0
    poll_s: float = 0.2
    prompt: str = "reverse: abc ="
    max_tokens: int = 4
    timeout_s: float = 10.0
    seed: int = 0
    requests: list[Request] = field(default_factory=list)
    weights: list[WeightChange] = field(default_factory=list)

    def __post_init__(self) -> None:
        from kubernetes import client

        self._custom = client.CustomObjectsApi(self.api_client)
        self._http = urllib3.PoolManager(maxsize=64, retries=False, timeout=self.timeout_s)
        self._pool = ThreadPoolExecutor(max_workers=64, thread_name_prefix="load")
        self._stopped = threading.Event()
        self._lock = threading.Lock()
        self._current: dict[str, int] = {}
        self._random = random.Random(self.seed)
        self._body = infer_body(self.prompt, self.max_tokens)
        self._threads = [
            threading.Thread(target=self._follow_weights, name="route-weights", daemon=True),
            threading.Thread(target=self._send_at_rate, name="load-clock", daemon=True),
        ]
        self.poll_errors = 0

    def start(self) -> LoadGenerator:
        self._read_weights()  # route first, so the first request already has somewhere to go
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> LoadReport:
        self._stopped.set()
        for thread in self._threads:
            thread.join(timeout=10)
        self._pool.shutdown(wait=True)
        self._http.clear()
        return self.report()

    def __enter__(self) -> LoadGenerator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        if not self._stopped.is_set():
            self.stop()

    def report(self) -> LoadReport:
        with self._lock:
            return LoadReport(list(self.requests), list(self.weights))

    def _read_weights(self) -> None:
        route = cast(
            dict[str, Any],
            self._custom.get_namespaced_custom_object(
                GATEWAY_GROUP, GATEWAY_VERSION, self.namespace, "httproutes", self.route
            ),
        )
        weights = route_weights(route)
        with self._lock:
            if weights != self._current:
                self._current = weights
                self.weights.append(WeightChange(time.time(), weights))

    def _follow_weights(self) -> None:
        while not self._stopped.wait(self.poll_s):
            try:
                self._read_weights()
            except Exception:  # an apiserver hiccup: keep routing by the last weights read
                self.poll_errors += 1

    def _send_at_rate(self) -> None:
        period = 1.0 / self.rate
        next_at = time.monotonic()
        while not self._stopped.is_set():
            delay = next_at - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            with self._lock:
                backend = pick_backend(self._current, self._random.random())
            self._pool.submit(self._send, backend, time.time())
            next_at += period

    def _send(self, backend: str | None, due: float) -> None:
        started = time.monotonic()
        ok, error = False, None
        if backend is None:
            error = "no backend has weight"
        elif backend not in self.backends:
            error = f"no local server for backend {backend}"
        else:
            url = f"{self.backends[backend]}/v2/models/{self.model}/infer"
            try:
                response = self._http.request(
                    "POST", url, body=self._body, headers={"Content-Type": "application/json"}
                )
                ok = response.status == 200
                if not ok:
                    error = f"HTTP {response.status}: {response.data[:200]!r}"
            except urllib3.exceptions.HTTPError as e:
                error = f"{type(e).__name__}: {e}"
        record = Request(due, backend, ok, time.monotonic() - started, error)
        with self._lock:
            self.requests.append(record)
