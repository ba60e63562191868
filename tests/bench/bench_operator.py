"""Operator benchmark against the local control plane: one run, one table, .bench/operator.json.

    make bench                                            # with the other benchmarks and the report
    .venv/bin/python tests/bench/bench_operator.py --quick    # N = 50, 100: a few minutes
    .venv/bin/python tests/bench/bench_operator.py --soak-minutes 30

The operator runs as a real process (`python -m llmops`) against the cluster of e2e/cluster.sh
(started or reused), as a ServiceAccount of its own whose requests the apiserver counts by class
of verb (tests/support/apicount.py), so every request it makes, kopf's included, is counted with
nothing in its path. Each run uses namespaces of its own, deleted at the end. Timings on a shared
machine are noisy: the figures that matter are ratios against a baseline measured in the same run.

Measured:
  throughput    N LLMModels created by `--creators` threads; time until every model has its first
                children (repository PVC, build Job) and its status, for the operator and for a
                plain client writing the same objects with the operator's concurrency
                (tests/support/raw_writer.py); the ratio operator/raw of models per second, each
                pass begun on a quiet machine (`busy_before_pass`) once the raw client's namespace
                and its volumes are gone, and the CPU time each client used in its pass (`client_cpu_s_in_pass`).
                Then, until every model is Ready, the operator's writes per reconcile and per model.
  churn         with N models Ready, `--churn-rate` changes/s (creates and deletes) for
                `--churn-seconds`: p50/p99 from create to children and from create to status;
                the same churn over the raw client's N models first, as the baseline (p99 ratio
                operator/raw: what the machine and the control plane allow at that rate).
  memory        the operator's RSS with no model, at the largest N, and after growing to
                `--population` models; its slope over a soak of `--soak-minutes` with light churn.
  pairs         with `--pairs K`: K more first passes at the largest N, raw and operator in turn,
                each on a fresh namespace and operator: the ratio of each pair, and their median.
  restart       the operator stopped and started again over that population: writes it makes
                (nothing changed, so 0 is right) and seconds until every model was reconciled.
  idle          requests per minute at rest with `--idle-size` models Ready.
  handover      two replicas with --peering; the leader is killed (SIGKILL) and a model created:
                seconds until the other replica writes its status.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from llmops.allocator import TRIM_SECONDS  # noqa: E402
from tests.support.apicount import RequestCounter, delta  # noqa: E402
from tests.support.operator import OperatorProcess, wait_for  # noqa: E402
from tests.support.progress import Progress  # noqa: E402
from tests.support.raw_writer import operator_workers  # noqa: E402
from tests.support.rawapi import ApiError, RawApi, resource_path  # noqa: E402

MODELS = "llmmodels"
API_VERSION = "llmops.dev/v1alpha1"
PEERING_CRD = ROOT / "charts" / "llmops-operator" / "crds" / "kopf.dev_kopfpeerings.yaml"
RECONCILES = re.compile(r"^llmops_reconcile_total\{[^}]*\}\s+([0-9.e+]+)$", re.M)


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def cluster(*args: str) -> str:
    proc = subprocess.run([str(ROOT / "e2e" / "cluster.sh"), *args], capture_output=True, text=True, cwd=ROOT)
    if proc.returncode != 0:
        raise SystemExit(f"e2e/cluster.sh {' '.join(args)} failed:\n{proc.stderr[-3000:]}")
    return proc.stdout.strip()


def bench_model(name: str, run: str) -> dict[str, Any]:
    """A model as small as the cluster allows: a URI source (no mounts), no serving pods.

    Default storage, so the operator creates its repository PVC (kwok binds it); replicas 0, so
    Ready needs only the Deployment to be observed, not pods that a shared 2-core machine
    would have to schedule by the thousand.
    """
    return {
        "apiVersion": API_VERSION,
        "kind": "LLMModel",
        "metadata": {"name": name, "labels": {"llmops.dev/bench": run}},
        "spec": {
            "source": {"uri": f"s3://bench/{name}"},
            "build": {"quantization": "None"},
            "serving": {"replicas": 0},
        },
    }


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


def slope_per_hour(samples: list[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, value) samples, per hour."""
    if len(samples) < 2:
        return 0.0
    xs, ys = [s[0] for s in samples], [s[1] for s in samples]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    return 0.0 if sxx == 0 else sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx * 3600


def machine_busy(seconds: float) -> float:
    """The share of the machine's CPU time spent busy over the next `seconds` (/proc/stat)."""

    def times() -> tuple[int, int]:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        return sum(fields), fields[3] + fields[4]  # all, idle + iowait

    total, idle = times()
    time.sleep(seconds)
    total_after, idle_after = times()
    return 1 - (idle_after - idle) / max(1, total_after - total)


def cpu_seconds(pid: int) -> float:
    """The CPU time a process has used so far, user and system (/proc/<pid>/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def reconciles(process: OperatorProcess) -> int:
    return int(sum(float(v) for v in RECONCILES.findall(process.metrics())))


def rss_mib(process: OperatorProcess) -> float:
    assert process.proc is not None
    for line in Path(f"/proc/{process.proc.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


@dataclass
class Bench:
    args: argparse.Namespace
    admin: RawApi
    admin_kubeconfig: Path
    work: Path
    run: str = field(default_factory=lambda: uuid.uuid4().hex[:5])
    figures: dict[str, Any] = field(default_factory=dict)
    namespaces: list[str] = field(default_factory=list)
    processes: list[OperatorProcess] = field(default_factory=list)
    counter: RequestCounter | None = None
    operator_kubeconfig: Path | None = None

    @property
    def home(self) -> str:
        return f"llmops-bench-{self.run}"

    # --- setup and cleanup ---------------------------------------------------------------

    def setup(self) -> None:
        kubectl = cluster("which", "kubectl")
        for manifests in (ROOT / "crds", PEERING_CRD):
            subprocess.run(
                [kubectl, "--kubeconfig", str(self.admin_kubeconfig), "apply", "--server-side", "--force-conflicts",
                 "-f", str(manifests)],
                check=True, capture_output=True,
            )  # fmt: skip
        self.namespace(self.home)
        self.counter = RequestCounter(self.admin, self.home, f"llmops-bench-{self.run}")
        self.counter.install()
        self.operator_kubeconfig = self.counter.write_kubeconfig(
            self.admin_kubeconfig, self.work / "operator.kubeconfig"
        )

    def namespace(self, name: str) -> str:
        self.admin.create("/api/v1/namespaces", {"metadata": {"name": name, "labels": {"llmops.dev/test": "true"}}})
        self.namespaces.append(name)
        wait_for(lambda: self.admin.exists(f"/api/v1/namespaces/{name}/serviceaccounts/default"), 60, "default SA")
        return name

    def drop_namespace(self, name: str, wait: bool = True) -> None:
        self.admin.delete(f"/api/v1/namespaces/{name}", propagationPolicy="Background")
        if name in self.namespaces:
            self.namespaces.remove(name)
        if wait:
            # The next measurement should not share the cores with a garbage collection; a big
            # namespace goes on being deleted after this, in the background, and its claims'
            # volumes after it: the controller-manager releases them at its own pace (its
            # client's 20 requests/s), 2,000 of them in about six minutes.
            gone = lambda: not self.admin.exists(f"/api/v1/namespaces/{name}") and not self.volumes_of(name)  # noqa: E731
            started = time.monotonic()
            try:
                wait_for(gone, self.args.delete_wait_seconds, f"{name} and its volumes deleted", 2)
                log(f"  {name} and its volumes deleted in {time.monotonic() - started:.0f}s")
            except AssertionError:
                log(f"  {name} or its volumes still there after {self.args.delete_wait_seconds:.0f}s")

    def volumes_of(self, namespace: str | None = None) -> int:
        """PersistentVolumes bound to a claim of `namespace`, or of any namespace that is gone (None)."""
        claimed = [
            (volume["spec"].get("claimRef") or {}).get("namespace")
            for volume in self.admin.get("/api/v1/persistentvolumes")["items"]
        ]
        if namespace is not None:
            return claimed.count(namespace)
        present = {ns["metadata"]["name"] for ns in self.admin.get("/api/v1/namespaces")["items"]
                   if not ns["metadata"].get("deletionTimestamp")}  # fmt: skip
        return sum(1 for ns in claimed if ns and ns not in present)

    def cleanup(self) -> None:
        for process in self.processes:
            process.kill()
        if self.args.keep:
            log(f"kept namespaces {self.namespaces}")
            return
        for name in [n for n in self.namespaces if n != self.home]:
            self.drop_namespace(name, wait=False)
        if self.counter is not None:
            with suppress(Exception):
                self.counter.remove()
        self.drop_namespace(self.home, wait=False)

    # --- processes -----------------------------------------------------------------------

    def operator(self, namespace: str, name: str, *extra: str) -> OperatorProcess:
        assert self.operator_kubeconfig is not None
        process = OperatorProcess(
            str(self.operator_kubeconfig),
            self.work / f"{name}.log",
            ["--namespace", namespace, *extra],
            LLMOPS_RESYNC_SECONDS=str(self.args.resync_seconds),
            LLMOPS_REPOSITORY_STORAGE_CLASS="kwok-volume",
        )
        self.processes.append(process)
        process.start()
        time.sleep(self.args.settle)  # kopf lists and starts its watches after the probe answers
        return process

    @contextmanager
    def raw_writer(self, namespace: str) -> Iterator[int]:
        """The raw client writing children and status for the models of `namespace`; yields its pid."""
        env = {**os.environ, "LLMOPS_REPOSITORY_STORAGE_CLASS": "kwok-volume"}
        proc = subprocess.Popen(
            [sys.executable, "-m", "tests.support.raw_writer", "--kubeconfig", str(self.admin_kubeconfig),
             "--namespace", namespace, "--workers", str(self.args.workers)],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=(self.work / "raw_writer.log").open("ab"),
            start_new_session=True,
        )  # fmt: skip
        try:
            assert proc.stdout is not None
            if proc.stdout.readline().strip() != b"ready":
                raise RuntimeError(f"raw writer did not start: {(self.work / 'raw_writer.log').read_text()[-2000:]}")
            yield proc.pid
        finally:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()

    def counts(self) -> dict[str, int]:
        assert self.counter is not None
        return self.counter.counts()

    # --- load ----------------------------------------------------------------------------

    def create_models(self, namespace: str, names: list[str], progress: Progress) -> None:
        path = resource_path(API_VERSION, MODELS, namespace)

        def create(name: str) -> None:
            self.admin.create(path, bench_model(name, self.run))
            progress.created[name] = time.monotonic()

        with ThreadPoolExecutor(self.args.creators) as pool:
            list(pool.map(create, names))

    def delete_model(self, namespace: str, name: str) -> None:
        self.admin.delete(resource_path(API_VERSION, MODELS, namespace, name))

    # --- measurements --------------------------------------------------------------------

    def quiet(self, what: str) -> None:
        """Wait until the machine is quiet, or --quiet-wait-seconds have passed, so that the raw
        client and the operator are each measured on a machine doing nothing else: a namespace of
        thousands of models goes on being deleted (garbage collection in the controller-manager
        and the apiserver) for minutes after the raw client's pass, and the volumes of its claims
        (released by the controller-manager, deleted by kwok) for minutes more: a pass begun
        beside them shares the apiserver and etcd with thousands of volume updates. The busy
        share each pass began with is in the figures, and the volumes still left, if any."""
        deadline = time.monotonic() + self.args.quiet_wait_seconds
        while True:
            left, busy = self.volumes_of(), machine_busy(5)
            if (not left and busy <= self.args.quiet_busy) or time.monotonic() > deadline:
                break
        self.figures.setdefault("busy_before_pass", {})[what] = round(busy, 2)
        if left:
            self.figures.setdefault("volumes_left_before_pass", {})[what] = left
        log(f"  {what}: the machine {busy:.0%} busy before the pass, {left} volumes of deleted claims left")

    def first_pass(self, namespace: str, n: int, progress: Progress, who: str, pid: int) -> tuple[float, list[str]]:
        """Create n models; seconds from the first create until every one has children and status.

        The CPU time the client (`pid`) used meanwhile is in the figures: on a machine of few
        cores, what the operator uses beyond the raw client is taken from the apiserver."""
        names = [f"m-{i:05d}" for i in range(n)]
        self.quiet(f"{who} {n}")
        started, cpu = time.monotonic(), cpu_seconds(pid)
        self.create_models(namespace, names, progress)
        created = time.monotonic() - started
        last = progress.wait_done(names, timeout=self.args.timeout_per_model * n + 120)
        elapsed, cpu = last - started, cpu_seconds(pid) - cpu
        self.figures.setdefault("client_cpu_s_in_pass", {})[f"{who} {n}"] = round(cpu, 1)
        log(f"  {n} models: created in {created:.1f}s, children and status after {elapsed:.1f}s, {cpu:.1f}s CPU")
        return elapsed, names

    def throughput(
        self, n: int, running: tuple[OperatorProcess, str] | None = None
    ) -> tuple[OperatorProcess, str, Progress, list[str]]:
        """Raw baseline, then the operator, on n new models; leaves the operator's namespace Ready."""
        raw_s = self.raw_pass(n, "raw", churn="churn" in self.args.phases)
        if running is None:
            ns = self.namespace(f"{self.home}-op-{n}")
            running = self.operator(ns, f"operator-{n}"), ns
        process, ns = running
        progress = Progress(self.admin, ns)
        progress.start()
        before, reconciled = self.counts(), reconciles(process)
        assert process.proc is not None
        operator_s, names = self.first_pass(ns, n, progress, "operator", process.proc.pid)
        first, first_reconciles = delta(self.counts(), before), reconciles(process) - reconciled
        log(f"  {first_reconciles / n:.2f} reconciles per model during the pass")
        last_ready = progress.wait_ready(names, timeout=self.args.timeout_per_model * n * 4 + 300)
        ready = last_ready - progress.created[names[0]]
        self.quiesce(process, n)
        made = delta(self.counts(), before)
        passes = reconciles(process) - reconciled
        log(f"  all Ready after {ready:.1f}s: {made} requests in {passes} reconciles")
        key = str(n)
        f = self.figures
        f.setdefault("throughput_models_per_s", {})[key] = {
            "operator": round(n / operator_s, 2),
            "raw": round(n / raw_s, 2),
        }
        f.setdefault("throughput_ratio_vs_raw", {})[key] = round(raw_s / operator_s, 3)
        f.setdefault("first_pass_requests_per_model", {})[key] = {k: round(v / n, 2) for k, v in first.items()}
        f.setdefault("first_pass_reconciles_per_model", {})[key] = round(first_reconciles / n, 2)
        f.setdefault("writes_per_reconcile_by_n", {})[key] = round(made["write"] / max(passes, 1), 3)
        f.setdefault("writes_per_model", {})[key] = round(made["write"] / n, 2)
        f.setdefault("reads_per_model", {})[key] = round(made["read"] / n, 2)
        f.setdefault("requests_per_model", {})[key] = {k: round(v / n, 2) for k, v in made.items()}
        f.setdefault("reconciles_per_model", {})[key] = round(passes / n, 2)
        f.setdefault("ready_s", {})[key] = round(ready, 1)
        f.setdefault("_writes", []).append((made["write"], passes))
        return process, ns, progress, names

    def raw_pass(self, n: int, who: str, churn: bool = False) -> float:
        """The raw client's first pass over n new models (then its churn), in a namespace deleted after."""
        raw_ns = self.namespace(f"{self.home}-{who.replace(' ', '-')}-{n}")
        progress = Progress(self.admin, raw_ns)
        progress.start()
        with self.raw_writer(raw_ns) as pid:
            raw_s, raw_names = self.first_pass(raw_ns, n, progress, who, pid)
            if churn:
                self.builds_done(raw_ns, n)  # as the operator's churn starts with every model built
                self.churn(raw_ns, progress, raw_names, self.args.churn_rate, self.args.churn_seconds, raw=True)
        progress.stop()
        self.drop_namespace(raw_ns, wait=not self.args.quick)
        return raw_s

    def pairs(self, n: int) -> None:
        """--pairs more first passes at n, raw and operator in turn, each on a fresh namespace (and
        a fresh operator): one pair's ratio depends on how fast the cluster was for each pass, a
        few pairs show the spread and a median to go by."""
        ratios = []
        for i in range(1, self.args.pairs + 1):
            log(f"pair {i} of {self.args.pairs} at N={n}")
            raw_s = self.raw_pass(n, f"raw pair {i}")
            ns = self.namespace(f"{self.home}-op-pair-{i}-{n}")
            process = self.operator(ns, f"operator-pair-{i}")
            progress = Progress(self.admin, ns)
            progress.start()
            assert process.proc is not None
            operator_s, _ = self.first_pass(ns, n, progress, f"operator pair {i}", process.proc.pid)
            progress.stop()
            process.stop()
            self.drop_namespace(ns)
            ratios.append(round(raw_s / operator_s, 3))
            log(f"  pair {i}: operator/raw {ratios[-1]}")
        self.figures.setdefault("throughput_ratio_pairs", {})[str(n)] = ratios
        self.figures.setdefault("throughput_ratio_pairs_median", {})[str(n)] = statistics.median(ratios)

    def builds_done(self, namespace: str, n: int) -> None:
        """Wait until n build Jobs of the namespace have succeeded: the cluster is done with them."""

        def succeeded() -> bool:
            jobs = self.admin.get(f"/apis/batch/v1/namespaces/{namespace}/jobs")["items"]
            return sum(1 for job in jobs if job.get("status", {}).get("succeeded")) >= n

        with suppress(AssertionError):
            wait_for(succeeded, self.args.timeout_per_model * n * 4 + 300, f"{n} build Jobs", 5)

    def quiesce(self, process: OperatorProcess, n: int) -> None:
        """Wait until the operator has worked off the events behind it: only resyncs are left."""
        resync_rate = n / self.args.resync_seconds
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            before = reconciles(process)
            time.sleep(5)
            if reconciles(process) - before <= 2 * resync_rate * 5 + 1:
                return
        log("  the operator did not quiesce in 300 s")

    def churn(
        self, namespace: str, progress: Progress, population: list[str], rate: float, seconds: float, raw: bool = False
    ) -> None:
        """rate changes/s for seconds: creates of new models and deletes of the oldest, alternating.

        raw: the baseline, the plain client of tests/support/raw_writer.py answering the same
        changes over the same population, on the same machine a few minutes earlier.
        """
        key = str(len(population))
        who = "raw_" if raw else ""
        created: list[str] = []
        interval = 1.0 / rate
        started = time.monotonic()
        tick = 0
        pool = ThreadPoolExecutor(32)
        path = resource_path(API_VERSION, MODELS, namespace)
        finished: list[float] = []

        def create(name: str) -> None:
            self.admin.create(path, bench_model(name, self.run))
            progress.created[name] = time.monotonic()
            finished.append(progress.created[name])

        def delete(name: str) -> None:
            self.delete_model(namespace, name)
            finished.append(time.monotonic())

        while time.monotonic() - started < seconds:
            if tick % 2 == 0:
                name = f"c-{tick:06d}"
                created.append(name)
                pool.submit(create, name)
            elif population:
                pool.submit(delete, population.pop(0))
            tick += 1
            time.sleep(max(0.0, started + tick * interval - time.monotonic()))
        pool.shutdown(wait=True)
        population.extend(created)
        with suppress(TimeoutError):
            progress.wait_done(created, timeout=120)
        to_children = [progress.done_at(n) for n in created]
        children = [d - progress.created[n] for n, d in zip(created, to_children, strict=True) if d is not None]
        status = [progress.status_at[n] - progress.created[n] for n in created if n in progress.status_at]
        late = len(created) - len(children)
        achieved = len(finished) / (max(finished) - started)
        log(
            f"  {'raw ' if raw else ''}churn at {key}: {tick} changes ({achieved:.1f}/s); create->children p50 "
            f"{percentile(children, 50):.3f}s p99 {percentile(children, 99):.3f}s; create->status p99 "
            f"{percentile(status, 99):.3f}s; {late} not done in 120 s"
        )
        f = self.figures
        f.setdefault(f"{who}p99_create_to_children_s", {})[key] = round(percentile(children, 99), 3)
        f.setdefault(f"{who}p50_create_to_children_s", {})[key] = round(percentile(children, 50), 3)
        f.setdefault(f"{who}p99_create_to_status_s", {})[key] = round(percentile(status, 99), 3)
        f.setdefault(f"{who}churn_changes_per_s", {})[key] = round(achieved, 1)
        f.setdefault(f"{who}churn_not_done", {})[key] = late
        if not raw and key in f.get("raw_p99_create_to_children_s", {}):
            baseline = f["raw_p99_create_to_children_s"][key]
            f.setdefault("churn_p99_ratio_vs_raw", {})[key] = round(percentile(children, 99) / max(baseline, 1e-3), 2)

    def grow(self, namespace: str, progress: Progress, population: list[str], target: int) -> None:
        more = [f"g-{i:05d}" for i in range(target - len(population))]
        started = time.monotonic()
        self.create_models(namespace, more, progress)
        progress.wait_ready(more, timeout=self.args.timeout_per_model * len(more) * 4 + 300)
        population.extend(more)
        log(f"  grew to {len(population)} models, all Ready after {time.monotonic() - started:.1f}s")

    def idle(self, process: OperatorProcess, n: int) -> None:
        minutes = self.args.idle_minutes
        self.quiesce(process, n)
        before = self.counts()
        passes = reconciles(process)
        time.sleep(minutes * 60)
        made = delta(self.counts(), before)
        per_min = {k: round(v / minutes, 1) for k, v in made.items()}
        self.figures["idle_requests_per_min"] = round((made["write"] + made["read"] + made["watch"]) / minutes, 1)
        self.figures["idle_requests_per_min_by_verb"] = per_min
        self.figures["idle_reconciles_per_min"] = round((reconciles(process) - passes) / minutes, 1)
        self.figures["idle_size"] = n
        log(f"  idle with {n} models: {per_min} requests/min")

    def soak(self, namespace: str, process: OperatorProcess, progress: Progress, population: list[str]) -> None:
        seconds = self.args.soak_minutes * 60
        samples: list[tuple[float, float]] = []
        stop = threading.Event()

        def light_churn() -> None:
            i = 0
            while not stop.wait(1.0 / self.args.soak_churn_rate):
                if i % 2 == 0:
                    name = f"s-{i:06d}"
                    self.create_models(namespace, [name], progress)
                    population.append(name)
                else:
                    self.delete_model(namespace, population.pop(0))
                i += 1

        churner = threading.Thread(target=light_churn, daemon=True)
        started = time.monotonic()
        churner.start()
        while time.monotonic() - started < seconds:
            samples.append((time.monotonic() - started, rss_mib(process)))
            time.sleep(self.args.soak_sample_seconds)
        stop.set()
        churner.join()
        samples.append((time.monotonic() - started, rss_mib(process)))
        self.figures["rss_slope_mib_per_hour"] = round(slope_per_hour(samples), 2)
        self.figures["soak_minutes"] = self.args.soak_minutes
        self.figures["soak_rss_mib"] = [round(s[1], 1) for s in samples]
        log(f"  soak {self.args.soak_minutes} min: RSS {samples[0][1]:.1f} -> {samples[-1][1]:.1f} MiB, "
            f"slope {self.figures['rss_slope_mib_per_hour']} MiB/h")  # fmt: skip
        progress.wait_ready([n for n in population if n.startswith("s-")], timeout=300)

    def restart(self, namespace: str, process: OperatorProcess, population: list[str]) -> OperatorProcess:
        time.sleep(self.args.settle)
        process.stop()
        before = self.counts()
        started = time.monotonic()
        fresh = self.operator(namespace, "operator-restarted")
        healthy = time.monotonic() - started
        n = len(population)
        wait_for(lambda: reconciles(fresh) >= n, self.args.timeout_per_model * n + 300, f"{n} reconciles", 0.5)
        ready = time.monotonic() - started
        self.quiesce(fresh, n)
        made = delta(self.counts(), before)
        self.figures["restart_writes"] = made["write"]
        self.figures["restart_reads"] = made["read"]
        self.figures["restart_ready_s"] = round(ready, 1)
        self.figures["restart_healthy_s"] = round(healthy, 1)
        self.figures["restart_size"] = n
        # A process that never saw the burst of creations: what the population itself costs, and
        # what of the start's peak it still holds after its first return of free pages to the system.
        rss = round(rss_mib(fresh), 1)
        self.figures["rss_mib_restarted"] = {str(n): rss}
        self.figures["rss_kib_per_resource_restarted"] = round((rss - self.figures["rss_mib"]["0"]) * 1024 / n, 2)
        log(f"  restart over {n} models: {made} requests, every model reconciled after {ready:.1f}s, RSS {rss} MiB")
        time.sleep(max(0.0, started + TRIM_SECONDS + 15 - time.monotonic()))
        later = round(rss_mib(fresh), 1)
        self.figures["rss_mib_restarted_later"] = {str(n): later}
        self.figures["rss_kib_per_resource_restarted_later"] = round(
            (later - self.figures["rss_mib"]["0"]) * 1024 / n, 2
        )
        log(f"  {time.monotonic() - started:.0f}s after the restart: RSS {later} MiB")
        return fresh

    def handover(self) -> None:
        ns = self.namespace(f"{self.home}-peering")
        peering = "llmops-bench"
        self.admin.create(
            resource_path("kopf.dev/v1", "kopfpeerings", ns),
            {"apiVersion": "kopf.dev/v1", "kind": "KopfPeering", "metadata": {"name": peering}, "status": {}},
        )
        progress = Progress(self.admin, ns)
        progress.start()
        priority = 1000

        def replica(label: str) -> OperatorProcess:
            nonlocal priority
            priority -= 10
            args = ("--peering", peering, "--peering-priority", str(priority))
            return self.operator(ns, f"replica-{label}", *args)

        def probe(name: str, timeout: float) -> float:
            self.create_models(ns, [name], progress)
            return progress.wait_done([name], timeout) - progress.created[name]

        leader = replica("0")
        probe("probe-0", 60)
        seconds: list[float] = []
        standby_passes: list[int] = []
        for run in range(1, self.args.handover_runs + 1):
            standby = replica(str(run))
            time.sleep(5)  # the standby sees the leader's heartbeat and pauses
            idle_passes = reconciles(standby)
            probe(f"probe-{run}-a", 60)  # the leader acts
            standby_passes.append(reconciles(standby) - idle_passes)
            leader.kill()
            killed = time.monotonic()
            name = f"probe-{run}-b"
            self.create_models(ns, [name], progress)
            done = progress.wait_done([name], 300)
            seconds.append(done - killed)
            log(f"  handover {run}: {seconds[-1]:.1f}s after SIGKILL (standby reconciled {standby_passes[-1]} "
                "while paused)")  # fmt: skip
            leader = standby
        # A graceful stop takes the leader out of the peering at once.
        standby = replica("graceful")
        time.sleep(5)
        stopped = time.monotonic()
        leader.stop()
        self.create_models(ns, ["probe-graceful"], progress)
        graceful = progress.wait_done(["probe-graceful"], 300) - stopped
        standby.stop()
        progress.stop()
        self.figures["leader_handover_s"] = round(statistics.median(seconds), 1)
        self.figures["leader_handover_runs_s"] = [round(s, 1) for s in seconds]
        self.figures["leader_handover_graceful_s"] = round(graceful, 1)
        self.figures["standby_reconciles_while_paused"] = sum(standby_passes)
        log(f"  graceful handover {graceful:.1f}s")
        self.drop_namespace(ns, wait=False)

    # --- the whole run -------------------------------------------------------------------

    def main(self) -> None:
        a = self.args
        sizes = sorted(a.sizes)
        phases = set(a.phases)
        if "throughput" in phases:
            for n in sizes[:-1]:
                log(f"throughput at N={n}")
                process, ns, progress, names = self.throughput(n)
                if n == a.idle_size and "idle" in phases:
                    self.idle(process, n)
                if "churn" in phases:
                    self.churn(ns, progress, names, a.churn_rate, a.churn_seconds)
                progress.stop()
                process.stop()
                self.drop_namespace(ns)
        if a.pairs:  # before the population, whose thousands of models are deleted in the background
            self.pairs(sizes[-1])
        if phases & {"throughput", "churn", "memory", "restart", "idle"}:
            self.population(sizes[-1], phases)
        if "handover" in phases:
            log("leader handover")
            self.handover()
        writes = self.figures.pop("_writes", [])
        if writes:
            passes = sum(p for _, p in writes)
            self.figures["writes_per_reconcile"] = round(sum(w for w, _ in writes) / max(1, passes), 3)

    def population(self, largest: int, phases: set[str]) -> None:
        """One operator from no model to the largest N, churn, then the population: memory and restart."""
        a = self.args
        pop = self.namespace(f"{self.home}-pop")
        log(f"operator with no model, then throughput at N={largest}")
        process = self.operator(pop, "operator-pop")
        time.sleep(a.settle)
        rss = self.figures.setdefault("rss_mib", {})
        rss["0"] = round(rss_mib(process), 1)
        process, _, progress, population = self.throughput(largest, running=(process, pop))
        rss[str(largest)] = round(rss_mib(process), 1)
        if "idle" in phases and a.idle_size == largest:
            self.idle(process, largest)
        if "churn" in phases:
            self.churn(pop, progress, population, a.churn_rate, a.churn_seconds)
            progress.wait_ready(population, timeout=a.timeout_per_model * len(population) * 4 + 300)
        if a.population > len(population):
            log(f"growing to {a.population} models")
            self.grow(pop, progress, population, a.population)
        self.quiesce(process, len(population))
        rss[str(len(population))] = round(rss_mib(process), 1)
        per_resource = (rss[str(len(population))] - rss["0"]) * 1024 / len(population)
        self.figures["rss_kib_per_resource"] = round(per_resource, 2)
        if "memory" in phases and a.soak_minutes > 0:
            self.soak(pop, process, progress, population)
        if "restart" in phases:
            process = self.restart(pop, process, population)
        progress.stop()
        process.stop()
        self.drop_namespace(pop, wait=False)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sizes = lambda text: [int(s) for s in text.split(",")]  # noqa: E731
    parser.add_argument("--quick", action="store_true", help="N = 50,100, population 200, short churn and soak")
    parser.add_argument("--sizes", type=sizes, default=None, help="N for throughput and churn [100,500,2000]")
    parser.add_argument("--population", type=int, default=None, help="models for memory and restart [5000]")
    parser.add_argument("--idle-size", type=int, default=None, help="models at rest for the idle cost [500]")
    parser.add_argument("--idle-minutes", type=float, default=None, help="[2]")
    parser.add_argument("--churn-rate", type=float, default=20.0, help="changes per second [20]")
    parser.add_argument("--churn-seconds", type=float, default=None, help="[60]")
    parser.add_argument("--soak-minutes", type=float, default=None, help="[2]; the goal speaks of 30")
    parser.add_argument("--soak-churn-rate", type=float, default=2.0, help="changes per second during the soak [2]")
    parser.add_argument("--soak-sample-seconds", type=float, default=5.0)
    parser.add_argument("--handover-runs", type=int, default=None, help="[3]")
    parser.add_argument("--creators", type=int, default=8, help="threads creating models [8]")
    parser.add_argument("--workers", type=int, default=operator_workers(), help="the raw client's threads")
    parser.add_argument("--resync-seconds", type=float, default=60.0, help="the operator's resync [60, its default]")
    parser.add_argument("--settle", type=float, default=5.0, help="seconds to let things settle between steps")
    parser.add_argument("--quiet-busy", type=float, default=0.1, help="the machine's busy share a pass waits under")
    parser.add_argument("--quiet-wait-seconds", type=float, default=300, help="most to wait for a quiet machine")
    parser.add_argument("--timeout-per-model", type=float, default=0.5)
    parser.add_argument("--delete-wait-seconds", type=float, default=600, help="most to wait for a namespace to go")
    parser.add_argument(
        "--phases",
        type=lambda t: t.split(","),
        default=["throughput", "churn", "memory", "restart", "idle", "handover"],
    )
    parser.add_argument(
        "--pairs", type=int, default=0, help="more raw/operator first passes at the largest N, in turn [0]"
    )
    parser.add_argument("--keep", action="store_true", help="keep the namespaces and the logs (debugging)")
    parser.add_argument("--out", type=Path, default=ROOT / ".bench" / "operator.json")
    args = parser.parse_args(argv)
    quick = args.quick
    defaults: dict[str, Any] = {
        "sizes": [50, 100] if quick else [100, 500, 2000],
        "population": 200 if quick else 5000,
        "idle_size": 100 if quick else 500,
        "idle_minutes": 1.0 if quick else 2.0,
        "churn_seconds": 15.0 if quick else 60.0,
        "soak_minutes": 0.5 if quick else 2.0,
        "handover_runs": 1 if quick else 3,
    }
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    return args


def machine() -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "load_avg_1m": round(os.getloadavg()[0], 2),
        "python": platform.python_version(),
        "kube_version": next(
            (line.split("=", 1)[1] for line in (ROOT / "e2e/cluster/versions.env").read_text().splitlines()
             if line.startswith("KUBE_VERSION=")), "?"),
        "nice": os.nice(0),
    }  # fmt: skip


def table(figures: dict[str, Any]) -> Iterable[str]:
    for key, value in figures.items():
        if key not in ("soak_rss_mib",):
            yield f"  {key:<34} {json.dumps(value)}"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # Stopped (Ctrl-C, or SIGTERM; a background job ignores SIGINT): clean up all the same.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    cluster("up")
    admin_kubeconfig = Path(cluster("kubeconfig"))
    admin = RawApi.from_kubeconfig(str(admin_kubeconfig), pool_size=32)
    work = Path(tempfile.mkdtemp(prefix="bench-operator-"))
    bench = Bench(args, admin, admin_kubeconfig, work)
    started = time.monotonic()
    conditions = {"start": machine()}
    log(f"run {bench.run}: sizes {args.sizes}, population {args.population}, logs in {work}")
    ok = interrupted = False
    try:
        bench.setup()
        bench.main()
        ok = True
    except (ApiError, TimeoutError, AssertionError, RuntimeError) as error:
        log(f"failed: {error}")
        for process in bench.processes:
            log(f"operator log {process.log_path}:\n{process.log_tail(20)}")
    except (KeyboardInterrupt, SystemExit):
        log("stopped: the figures measured so far are written")
        interrupted = True
    finally:
        bench.cleanup()
    conditions["end"] = machine()
    bench.figures["machine"] = {**conditions, "duration_s": round(time.monotonic() - started), "quick": args.quick}
    if interrupted:
        bench.figures["machine"]["interrupted"] = True
    print("\noperator benchmark")
    print("\n".join(table(bench.figures)))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(bench.figures, indent=2) + "\n")
    print(f"wrote {args.out.relative_to(ROOT) if args.out.is_relative_to(ROOT) else args.out}")
    if ok and not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
