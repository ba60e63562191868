"""One canary of a candidate LLMModel against the real data plane, measured end to end.

The control plane is the local cluster (kwok builds the two LLMModels and makes their pods
Ready); the data plane is local: a real tritonserver per model, labelled as its pods would
be, scraped every second by a real Prometheus the operator queries, and load that follows
the HTTPRoute weights the operator writes. Used by tests/cluster/test_rollout_dataplane.py
and tests/bench/bench_rollout.py.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubernetes import client

from tests.support import dataplane
from tests.support.loadgen import GATEWAY_GROUP, GATEWAY_VERSION, LoadGenerator, LoadReport, share
from tests.support.operator import OperatorProcess, wait_for
from tests.support.prometheus import Prometheus, first_rise, wait_for_samples

GROUP, VERSION = "llmops.dev", "v1alpha1"
STABLE, CANDIDATE, ROUTE, ROLLOUT = "tiny-stable", "tiny-candidate", "tiny", "tiny"
STABLE_REPLICAS = 2
TERMINAL = ("Promoted", "RolledBack", "Aborted")


def llmmodel(name: str, replicas: int) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "LLMModel",
        "metadata": {"name": name},
        "spec": {
            "source": {"uri": f"pvc://models/{name}"},
            "build": {"quantization": "None"},
            "serving": {"replicas": replicas, "resources": {"gpus": 1}},
        },
    }


def http_route(stable: str) -> dict[str, Any]:
    """The route as a user keeps it in Git: every request to the stable model."""
    return {
        "apiVersion": f"{GATEWAY_GROUP}/{GATEWAY_VERSION}",
        "kind": "HTTPRoute",
        "metadata": {"name": ROUTE},
        "spec": {
            "parentRefs": [{"name": "inference-gateway"}],
            "rules": [{"backendRefs": [{"name": stable, "port": 8000}]}],
        },
    }


def error_rate_analysis() -> dict[str, Any]:
    metric = {"name": "errors", "template": "TritonErrorRate", "threshold": 0.05}
    return {"analysis": {"metrics": [metric], "interval": "5s", "count": 3}}


def rollout(steps: list[dict[str, Any]], prometheus_url: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Rollout",
        "metadata": {"name": ROLLOUT},
        "spec": {
            "stable": {"name": STABLE},
            "candidate": {"name": CANDIDATE},
            "trafficRouting": {"httpRoute": {"name": ROUTE}},
            "steps": steps,
            # Named here as well as in the operator's environment: any other operator watching
            # the shared cluster then measures against this Prometheus too.
            "prometheus": prometheus_url,
            **spec,
        },
    }


CANARY_STEPS = [{"setWeight": 20}, error_rate_analysis(), {"setWeight": 50}, error_rate_analysis()]


@dataclass
class RolloutRun:
    phase: str
    status: dict[str, Any]
    final_weights: dict[str, int]
    load: LoadReport
    started: float
    """Wall-clock time the Rollout was created."""
    first_failure_scrape: float | None
    """Time of the first Prometheus sample in which the candidate's failure counter had risen."""
    stable_restored: float | None
    """When the load generator first routed by weights giving the stable 100 %, after that."""
    min_stable_ready: int | None
    """The fewest ready stable replicas from the start of the load to the end."""
    desired_stable_replicas: int

    @property
    def rollback_seconds(self) -> float | None:
        if self.first_failure_scrape is None or self.stable_restored is None:
            return None
        return self.stable_restored - self.first_failure_scrape

    @property
    def failed_stable_requests(self) -> int:
        return self.load.failed()[STABLE]

    @property
    def min_capacity_ratio(self) -> float:
        return (self.min_stable_ready or 0) / self.desired_stable_replicas

    def summary(self) -> str:
        sent, failed = self.load.sent(), self.load.failed()
        latencies = sorted(r.latency_s for r in self.load.requests if r.ok)
        p50 = statistics.median(latencies) * 1000 if latencies else float("nan")
        rollback = f"{self.rollback_seconds:.2f}s" if self.rollback_seconds is not None else "n/a"
        return (
            f"phase {self.phase}; requests sent {dict(sent)}, failed {dict(failed)}, p50 {p50:.1f} ms; "
            f"stable ready min {self.min_stable_ready}/{self.desired_stable_replicas}; "
            f"first failing scrape -> stable 100%: {rollback}\n"
            f"weights seen by the load generator (relative to the Rollout's creation):\n"
            f"{self.load.timeline(self.started)}"
        )


class Namespace:
    def __init__(self, api_client: Any, namespace: str) -> None:
        self.ns = namespace
        self.custom = client.CustomObjectsApi(api_client)
        self.core = client.CoreV1Api(api_client)

    def create(self, obj: dict[str, Any]) -> None:
        group, version = obj["apiVersion"].split("/")
        plural = obj["kind"].lower() + "s"
        self.custom.create_namespaced_custom_object(group, version, self.ns, plural, obj)

    def get(self, plural: str, name: str, group: str = GROUP, version: str = VERSION) -> dict[str, Any]:
        return dict(self.custom.get_namespaced_custom_object(group, version, self.ns, plural, name))

    def source_claim(self) -> None:
        """The PVC the models' source URIs name, provisioned by kwok's simulated StorageClass."""
        self.core.create_namespaced_persistent_volume_claim(
            self.ns,
            {
                "metadata": {"name": "models"},
                "spec": {
                    "accessModes": ["ReadWriteMany"],
                    "storageClassName": "kwok-volume",
                    "resources": {"requests": {"storage": "1Gi"}},
                },
            },
        )

    def model_serving(self, name: str) -> bool:
        status = self.get("llmmodels", name).get("status", {})
        ready = any(c["type"] == "Ready" and c["status"] == "True" for c in status.get("conditions", []))
        return ready and bool((status.get("artifact") or {}).get("digest"))


@dataclass
class Underway:
    """What a scenario reaches while its Rollout runs, to change the world under it."""

    kube: Namespace
    prometheus: Prometheus
    load: LoadGenerator


def run_rollout(
    api_client: Any,
    kubeconfig: str,
    namespace: str,
    workdir: Path,
    good_repository: Path,
    candidate_failure_share: float = 0.0,
    steps: list[dict[str, Any]] | None = None,
    rate: float = 50.0,
    timeout: float = 240.0,
    log: Callable[[str], None] = print,
    spec: dict[str, Any] | None = None,
    meanwhile: Callable[[Underway], None] | None = None,
) -> RolloutRun:
    """Serve both models, start the load, create the Rollout, and record until it ends.

    `spec` adds fields to the Rollout's spec; `meanwhile` runs once the Rollout exists.
    """
    kube = Namespace(api_client, namespace)
    kube.source_claim()
    kube.create(llmmodel(STABLE, STABLE_REPLICAS))
    kube.create(llmmodel(CANDIDATE, 1))
    kube.create(http_route(STABLE))

    candidate_repository = good_repository
    if candidate_failure_share > 0:
        candidate_repository = dataplane.failing_repository(
            good_repository, workdir / "failing-repository", candidate_failure_share
        )
    stable_server = dataplane.start_triton(good_repository, workdir / "stable")
    candidate_server = None
    prometheus = None
    operator = None
    try:
        candidate_server = dataplane.start_triton(candidate_repository, workdir / "candidate")
        prometheus = Prometheus(
            [
                dataplane.metrics_target(stable_server, namespace, STABLE),
                dataplane.metrics_target(candidate_server, namespace, CANDIDATE),
            ]
        )
        operator = OperatorProcess(
            kubeconfig,
            workdir / "operator.log",
            LLMOPS_PROMETHEUS_URL=prometheus.url,
            LLMOPS_REPOSITORY_STORAGE_CLASS="kwok-volume",
        )
        operator.start()
        for name in (STABLE, CANDIDATE):
            wait_for(lambda name=name: kube.model_serving(name), 120, f"LLMModel {name} Ready")  # type: ignore[misc]
        backends = {STABLE: stable_server.http_url, CANDIDATE: candidate_server.http_url}
        watch = dataplane.ReadyReplicasWatch(api_client, namespace, STABLE).start()
        wait_for(lambda: watch.minimum_ready(since=time.time()) == STABLE_REPLICAS, 60, "all stable replicas ready")
        load_started = time.time()
        load = LoadGenerator(api_client, namespace, ROUTE, backends, rate=rate).start()
        try:
            # analysis must find the stable's traffic (and the candidate's zeroes) already scraped
            wait_for_samples(prometheus, f'nv_inference_request_success{{{dataplane.MODEL_LABEL}="{STABLE}"}}')
            started = time.time()
            kube.create(rollout(steps or CANARY_STEPS, prometheus.url, **(spec or {})))
            log(f"Rollout created at {time.strftime('%H:%M:%S', time.localtime(started))}")
            if meanwhile is not None:
                try:
                    meanwhile(Underway(kube, prometheus, load))
                except AssertionError as error:
                    raise AssertionError(f"{error}\noperator log:\n{operator.log_tail(60)}") from None

            def finished() -> dict[str, Any] | None:
                status = kube.get("rollouts", ROLLOUT).get("status", {})
                return status if status.get("phase") in TERMINAL else None

            try:
                status = wait_for(finished, timeout, "the Rollout to finish", interval=0.5)
            except AssertionError as error:
                raise AssertionError(f"{error}\noperator log:\n{operator.log_tail(60)}") from None
            # let the load generator see the final weights and the last scrape land
            time.sleep(max(1.0, 3 * load.poll_s))
        finally:
            report = load.stop()
            watch.stop()
        final_weights = dict(report.weights[-1].weights) if report.weights else {}
        failures = prometheus.samples(
            f'nv_inference_request_failure{{namespace="{namespace}",{dataplane.MODEL_LABEL}="{CANDIDATE}"}}'
        )
        first_failure = first_rise(failures)
        restored = (
            report.first_weights(lambda w: share(w, STABLE) == 1.0, after=first_failure)
            if first_failure is not None
            else None
        )
        return RolloutRun(
            phase=status["phase"],
            status=status,
            final_weights=final_weights,
            load=report,
            started=started,
            first_failure_scrape=first_failure,
            stable_restored=restored,
            min_stable_ready=watch.minimum_ready(since=load_started),
            desired_stable_replicas=STABLE_REPLICAS,
        )
    finally:
        if operator is not None:
            operator.stop()
        if prometheus is not None:
            prometheus.stop()
        if candidate_server is not None:
            candidate_server.stop()
        stable_server.stop()
