"""The apiserver misbehaves between the operator and it: 429s, 500s, 503s, resets, latency, silence.

The operator talks to the apiserver only through a fault-injecting HTTPS proxy
(tests/support/faultproxy.py: TLS terminated with a self-signed certificate the operator's
kubeconfig trusts), which records every request. While faults run, the spec keeps changing;
afterwards every change must have been carried out, exactly once. On the record: the operator
backs off (its requests per second stay near normal, no hot loop), waits as long as each 429's
Retry-After asks before asking again, and recovers. A blackholed watch (accepted, then
silent) is noticed and re-opened, and the change it hid is handled.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from kubernetes.client.exceptions import ApiException

from tests.cluster.chaos.conftest import ChaosTally
from tests.support.chaos import KillableOperator, Recorder, cpu_model, install_crds, killable_operator, model_converged
from tests.support.faultproxy import (
    WRITE_METHODS,
    FaultProxy,
    Faults,
    Request,
    early_retries,
    peak_per_second,
    per_second,
)
from tests.support.kube import GROUP, VERSION, Kube, Kubectl, evalsuite
from tests.support.operator import wait_for

KOPF, KUBE_CLIENT = "kopf", "kubernetes client"


def client_of(request: Request) -> str:
    return KOPF if request.client.startswith("kopf/") else KUBE_CLIENT


@pytest.fixture(scope="module")
def crds(kubectl: Kubectl) -> None:
    install_crds(kubectl)


@dataclass
class Proxied:
    operator: KillableOperator
    proxy: FaultProxy


@pytest.fixture
def proxied(crds: None, kubeconfig: str, namespace: str, tmp_path: Path) -> Iterator[Proxied]:
    proxy = FaultProxy(kubeconfig, tmp_path, "operator-proxy").start()
    operator = killable_operator(str(proxy.kubeconfig), tmp_path, namespace)
    operator.start()
    try:
        yield Proxied(operator, proxy)
    finally:
        operator.stop()
        proxy.stop()


@dataclass(frozen=True)
class Phase:
    name: str
    faults: Faults
    seconds: float


FAULT_PHASES = [
    Phase("429, Retry-After 3 s", Faults(too_many_requests=1.0, retry_after=3), 6),
    Phase("429 on writes, Retry-After 5 s", Faults(too_many_requests=1.0, retry_after=5, methods=WRITE_METHODS), 6),
    Phase("500", Faults(server_error=0.7), 5),
    Phase("503", Faults(unavailable=0.7), 5),
    Phase("connection resets", Faults(reset=0.5), 4),
    Phase("latency 0.5-2 s", Faults(latency=1.0, latency_s=(0.5, 2.0)), 4),
]
LONG_FAULT_PHASES = [
    *FAULT_PHASES,
    Phase("requests never answered", Faults(stall=0.3), 10),
    Phase(
        "everything at once",
        Faults(
            too_many_requests=0.2, server_error=0.2, unavailable=0.1, reset=0.1, latency=0.5, stall=0.05, retry_after=2
        ),
        60,
    ),
    *FAULT_PHASES,
]


def describe_rates(requests: list[Request], start: float, end: float) -> str:
    by_client = Counter(client_of(r) for r in requests if start <= r.started < end)
    seconds = end - start
    parts = ", ".join(f"{c} {n / seconds:.1f}/s" for c, n in sorted(by_client.items()))
    return f"{per_second(requests, start, end):.1f}/s ({parts}; peak {peak_per_second(requests, start, end)}/s)"


def run_with_faults(proxied: Proxied, kube: Kube, phases: list[Phase], tally: ChaosTally) -> None:
    proxy, operator = proxied.proxy, proxied.operator
    models = ["m0", "m1", "m2", "m3"]
    for name in models:
        kube.create(cpu_model(name))
    kube.create(evalsuite("quality", target={"model": "m0"}))
    wait_for(lambda: all(model_converged(kube, m) is None for m in models), 180, "every model serving")
    wait_for(lambda: (kube.get("evalsuites", "quality").get("status") or {}).get("runs"), 60, "m0 evaluated")

    jobs = Recorder(kube.batch.list_namespaced_job, kube.ns).start()
    time.sleep(5)  # let the last writes of the setup settle

    def play(phases: list[Phase], changes: list[Callable[[], None]]) -> list[tuple[Phase, float, float]]:
        """Each phase: its faults, every connection reset (as when an apiserver restarts, every
        watch must reconnect), and a change of the spec a second later."""
        spans = []
        for i, phase in enumerate(phases):
            began = time.time()
            proxy.set_faults(phase.faults)
            proxy.reset_open_connections()
            time.sleep(1)
            if i < len(changes):
                changes[i]()
            time.sleep(max(0.0, phase.seconds - (time.time() - began)))
            spans.append((phase, began, time.time()))
        proxy.set_faults(Faults())
        return spans

    # The control: the same resets and the same kinds of change, without faults. What the
    # operator asks of the apiserver then is its normal for this work.
    delete = kube.custom.delete_namespaced_custom_object
    control = play(
        [Phase(f"control {p.name}", Faults(), p.seconds) for p in phases[: len(FAULT_PHASES)]],
        [
            lambda: kube.patch_spec("llmmodels", "m1", {"serving": {"replicas": 2}}),
            lambda: kube.create(cpu_model("m5")),
            lambda: kube.patch_spec("llmmodels", "m3", {"build": {"quantization": "FP16"}}),
            lambda: delete(GROUP, VERSION, kube.ns, "llmmodels", "m5"),
            lambda: kube.patch_spec("evalsuites", "quality", {"runNonce": "control"}),
            lambda: kube.patch_spec("llmmodels", "m0", {"serving": {"replicas": 2}}),
        ],
    )
    normal_start, normal_end = control[0][1], control[-1][2]
    time.sleep(10)

    # The spec changes while the faults run: each change lands in a different kind of fault.
    faults_start = time.time()
    spans = play(
        phases,
        [
            lambda: kube.patch_spec("llmmodels", "m1", {"serving": {"replicas": 1}}),
            lambda: kube.create(cpu_model("m4")),
            lambda: kube.patch_spec("llmmodels", "m2", {"build": {"quantization": "FP16"}}),
            lambda: delete(GROUP, VERSION, kube.ns, "llmmodels", "m3"),
            lambda: kube.patch_spec("evalsuites", "quality", {"runNonce": "again"}),
            lambda: kube.patch_spec("llmmodels", "m0", {"serving": {"replicas": 1}}),
        ],
    )
    faults_end = recovered_from = time.time()

    def converged() -> bool:
        if any(model_converged(kube, m) is not None for m in ("m0", "m1", "m2", "m4")):
            return False
        try:
            kube.get("llmmodels", "m3")
            return False
        except ApiException as error:
            if error.status != 404:
                raise
        suite = kube.get("evalsuites", "quality")
        runs = (suite.get("status") or {}).get("runs", [])
        return any(r.get("nonce") == "again" and r.get("phase") == "Passed" for r in runs)

    try:
        wait_for(converged, 240, "every change made during the faults carried out")
    except AssertionError as error:
        raise AssertionError(f"{error}\noperator log:\n{operator.log_tail(40)}") from None
    recovery = time.time() - recovered_from
    jobs.stop()

    # Exactly once: one object per child name, the builds each spec needs, no stray Deployment.
    for name in jobs.names():
        assert len(jobs.uids(name)) == 1, f"Job {name} was created more than once"
    builds = Counter(n.split("-build-")[0] for n in jobs.names() if "-build-" in n)
    assert builds == {"m0": 1, "m1": 1, "m2": 2, "m3": 2, "m4": 1, "m5": 1}, builds
    deployments = sorted(d.metadata.name for d in kube.apps.list_namespaced_deployment(kube.ns).items)
    assert deployments == ["m0", "m1", "m2", "m4"]
    runs = kube.get("evalsuites", "quality")["status"]["runs"]
    assert Counter(r.get("nonce") for r in runs) == {None: 1, "control": 1, "again": 1}, runs
    assert operator.starts == 1 and operator.running(), "the operator died under the faults"

    requests = proxy.requests
    print(f"\nrequests recorded in {proxy.dump(proxy.workdir / 'requests.jsonl')}")
    normal = per_second(requests, normal_start, normal_end)
    during = per_second(requests, faults_start, faults_end)
    lines = [f"the same work without faults {describe_rates(requests, normal_start, normal_end)}"]
    for phase, began, ended in spans:
        lines.append(f"{phase.name}: {describe_rates(requests, began, ended)}")
    report = "; ".join(lines)
    print(f"\nrequests through the proxy: {report}; recovered {recovery:.1f} s after the faults ended")

    # No hot loop: in every phase at most a few times the normal rate, and no second busier than
    # twice the normal busiest (a resync of every resource at once, or a re-list after a reset).
    normal_peak = peak_per_second(requests, normal_start, normal_end)
    for phase, began, ended in spans:
        rate = per_second(requests, began, ended)
        busiest = Counter(f"{client_of(r)} {r.method} {r.path} -> {r.answer}" for r in requests
                          if began <= r.started < ended).most_common(8)  # fmt: skip
        assert rate <= max(3 * normal, normal + 5), (
            f"{phase.name}: {rate:.1f} requests/s, normal {normal:.1f}/s; busiest: {busiest}"
        )
        assert peak_per_second(requests, began, ended) <= max(2 * normal_peak, 20), report
    throttled = [r for r in requests if r.retry_after is not None]
    early = early_retries(requests)
    assert throttled and not early, "asked again before Retry-After: " + "; ".join(
        f"{a.client} {a.method} {a.path} {b.started - (a.ended or a.started):.2f}s after a 429" for a, b in early[:5]
    )
    tally.figure("API faults, requests/s", f"same work without faults {normal:.1f}, during the faults {during:.1f}")
    for line in lines:
        tally.figure("  requests/s", line)
    tally.figure("API faults, 429s answered / retried before Retry-After", f"{len(throttled)} / {len(early)}")
    tally.figure("API faults, every change carried out after the faults ended in", f"{recovery:.1f} s")


def test_30_seconds_of_api_faults_are_backed_off_honoured_and_recovered_from_without_duplicates(
    proxied: Proxied, kube: Kube, chaos_tally: ChaosTally
) -> None:
    run_with_faults(proxied, kube, FAULT_PHASES, chaos_tally)


@pytest.mark.chaos
def test_two_minutes_of_api_faults_with_unanswered_requests_are_recovered_from(
    proxied: Proxied, kube: Kube, chaos_tally: ChaosTally
) -> None:
    run_with_faults(proxied, kube, LONG_FAULT_PHASES, chaos_tally)


# ---- a watch that goes silent ----------------------------------------------------------------


def run_with_blackholed_watches(proxied: Proxied, kube: Kube, seconds: float, tally: ChaosTally) -> None:
    proxy = proxied.proxy
    kube.create(cpu_model("m0"))
    wait_for(lambda: model_converged(kube, "m0") is None, 120, "m0 serving")
    time.sleep(3)

    proxy.blackhole_watches(seconds)
    began = time.time()
    time.sleep(2)
    kube.create(cpu_model("hidden"))  # only a watch tells the operator about a new object
    changed = time.time()
    while proxy.blackholed():
        status = kube.get("llmmodels", "hidden").get("status")
        assert not status, f"reconciled while every watch was blackholed? {status}"
        time.sleep(1)
    ended = time.time()
    try:
        wait_for(lambda: model_converged(kube, "hidden") is None, 150, "the hidden model served")
    except AssertionError as error:
        raise AssertionError(f"{error}\noperator log:\n{proxied.operator.log_tail(40)}") from None
    handled = next(
        r.started for r in proxy.since(changed) if r.method == "PATCH" and r.path.endswith("/llmmodels/hidden/status")
    )
    reopened = [r for r in proxy.since(ended) if r.watch and r.answer == "200"]
    assert reopened, "no watch was opened again after the blackhole"
    frozen = [r for r in proxy.requests if r.watch and "blackhole" in r.answer]
    assert frozen, "no watch was blackholed: the test did not test anything"
    during = per_second(proxy.requests, began, ended)
    print(
        f"\nblackhole {seconds:.0f} s: {len(frozen)} watches frozen, first watch re-opened "
        f"{reopened[0].started - ended:.1f} s after it ended, the hidden change handled "
        f"{handled - changed:.1f} s after it was made ({handled - ended:.1f} s after the blackhole ended); "
        f"{during:.1f} requests/s meanwhile"
    )
    tally.figure(
        f"blackholed watches ({seconds:.0f} s): change handled after the blackhole ended in", f"{handled - ended:.1f} s"
    )


def test_a_blackholed_watch_is_reopened_and_the_change_it_hid_is_handled(
    proxied: Proxied, kube: Kube, chaos_tally: ChaosTally
) -> None:
    run_with_blackholed_watches(proxied, kube, 15, chaos_tally)


@pytest.mark.chaos
def test_watches_blackholed_for_five_minutes_are_reopened_and_the_change_is_handled(
    proxied: Proxied, kube: Kube, chaos_tally: ChaosTally
) -> None:
    run_with_blackholed_watches(proxied, kube, 300, chaos_tally)
