"""The example pipeline (examples/pipeline/) on the local cluster, with its pods really running.

    python e2e/pipeline.py run --namespace llmops-demo     (what `make up` calls)

base LLMModel → FineTuneJob → fine-tuned LLMModel (int8) → EvalSuite → Rollout with analysis and
an eval gate → promoted. The pods run on the local node agent (e2e/agent): the namespace pins
them there; the claims use the agent's StorageClass. The base model and the datasets are copied
onto their volumes first (a random-initialised tiny GPT-2 and a string-reversal task, since
nothing can be downloaded), Prometheus scrapes the serving pods the agent lists, and a
small client sends inference traffic to the Rollout's Service while it canaries.

The end-to-end tests (tests/cluster/e2e) drive the same functions.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.workload.tinymodel import make_tiny_model, task_cases  # noqa: E402  (the tests' tiny model)

PIPELINE = REPO / "examples" / "pipeline"
STORAGE_CLASS = "llmops-local"
CLAIMS = ("models", "datasets", "model-repositories", "training-checkpoints")
GROUP = "llmops.dev/v1alpha1"
PLURALS = {"LLMModel": "llmmodels", "FineTuneJob": "finetunejobs", "EvalSuite": "evalsuites", "Rollout": "rollouts"}
LOCAL_NODE = {
    "scheduler.alpha.kubernetes.io/node-selector": "llmops.dev/local-agent=true",
    "scheduler.alpha.kubernetes.io/defaultTolerations": json.dumps(
        [{"key": "llmops.dev/local-agent", "operator": "Exists", "effect": "NoSchedule"}]
    ),
}


def kubectl(*args: str, input: str | None = None, check: bool = True) -> str:
    proc = subprocess.run(["kubectl", *args], input=input, capture_output=True, text=True, timeout=120)
    if check and proc.returncode != 0:
        raise RuntimeError(f"kubectl {' '.join(args)}: {proc.stderr.strip()}")
    return proc.stdout


def apply(objects: list[dict[str, Any]], namespace: str | None = None) -> None:
    args = ["apply", "--server-side", "--force-conflicts", "-f", "-"] + (["-n", namespace] if namespace else [])
    kubectl(*args, input=yaml.safe_dump_all(objects))


_api: Any = None


def get(kind: str, namespace: str, name: str | None = None) -> Any:
    """One object (None when missing) or a list of them, as JSON; `kind` is ours, or pvc/svc/deploy."""
    global _api
    from kubernetes import client, config
    from kubernetes.client.rest import ApiException

    if _api is None:
        _api = config.new_client_from_config(config_file=os.environ.get("KUBECONFIG"))
    core, apps, custom = client.CoreV1Api(_api), client.AppsV1Api(_api), client.CustomObjectsApi(_api)
    calls = {
        "pvc": (core.read_namespaced_persistent_volume_claim, core.list_namespaced_persistent_volume_claim, ()),
        "svc": (core.read_namespaced_service, core.list_namespaced_service, ()),
        "deploy": (apps.read_namespaced_deployment, apps.list_namespaced_deployment, ()),
    }
    one, many, prefix = calls.get(kind) or (
        custom.get_namespaced_custom_object,
        custom.list_namespaced_custom_object,
        ("llmops.dev", "v1alpha1"),
    )
    plural = () if kind in calls else (PLURALS[kind],)
    try:
        if name is None:
            response = many(*prefix, namespace, *plural, _preload_content=False)
        elif kind in calls:
            response = one(name, namespace, _preload_content=False)
        else:
            response = one(*prefix, namespace, *plural, name, _preload_content=False)
    except ApiException as error:
        if error.status == 404:
            return None
        raise
    return json.loads(response.data)


# ---- setting the stage -------------------------------------------------------------------------
def prepare_namespace(namespace: str) -> None:
    """The namespace, pinned to the local node, and its claims on the agent's StorageClass."""
    apply([{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace, "annotations": LOCAL_NODE}}])
    claims = [
        {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": {"name": claim, "namespace": namespace},
            "spec": {
                "storageClassName": STORAGE_CLASS,
                "accessModes": ["ReadWriteOnce"],
                "resources": {"requests": {"storage": "1Gi"}},
            },
        }
        for claim in CLAIMS
    ]
    apply(claims)


def volume_path(namespace: str, claim: str, timeout: float = 60) -> Path:
    """The host directory behind a bound claim (a hostPath volume the agent provisioned)."""
    deadline = time.monotonic() + timeout
    while True:
        volume = (get("pvc", namespace, claim) or {}).get("spec", {}).get("volumeName")
        if volume:
            pv = json.loads(kubectl("get", "pv", volume, "-o", "json"))  # once per claim
            return Path(pv["spec"]["hostPath"]["path"])
        if time.monotonic() > deadline:
            raise RuntimeError(f"claim {namespace}/{claim} not bound after {timeout:.0f}s: is the agent running?")
        time.sleep(1)


def seed(namespace: str, corrupt_labels: bool = False) -> None:
    """Copy the base model and the datasets onto their volumes (what a user does with real ones).

    corrupt_labels: the training set's completions are shuffled, so fine-tuning learns nothing useful.
    """
    write_seed(volume_path(namespace, "models"), volume_path(namespace, "datasets"), corrupt_labels)


def write_seed(models: Path, datasets: Path, corrupt_labels: bool = False) -> None:
    """models/reverse-base (a random-initialised tiny GPT-2) and datasets/reverse/{train,eval,golden}.jsonl."""
    train, held_out = task_cases()
    if not (models / "reverse-base" / "config.json").exists():
        make_tiny_model(models / "reverse-base", train + held_out)
    if corrupt_labels:
        completions = [c["completion"] for c in train]
        random.Random(1).shuffle(completions)
        train = [{**c, "completion": w} for c, w in zip(train, completions, strict=True)]
    reverse = datasets / "reverse"
    reverse.mkdir(parents=True, exist_ok=True)
    for name, cases in {"train": train, "eval": held_out[:50], "golden": held_out[50:]}.items():
        (reverse / f"{name}.jsonl").write_text("".join(json.dumps(c) + "\n" for c in cases))


def pipeline_objects(**finetune_changes: Any) -> list[dict[str, Any]]:
    """examples/pipeline/, with changes to the FineTuneJob's spec (a smaller budget in tests)."""
    objects = [doc for path in sorted(PIPELINE.glob("*.yaml")) for doc in yaml.safe_load_all(path.read_text()) if doc]
    for obj in objects:
        if obj["kind"] == "FineTuneJob":
            for key, value in finetune_changes.items():
                obj["spec"][key] = {**obj["spec"].get(key, {}), **value} if isinstance(value, dict) else value
    return objects


# ---- Prometheus and traffic --------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def prometheus_config(targets_file: Path) -> dict[str, Any]:
    """Scrape the pods the local node agent lists (annotated prometheus.io/scrape).

    The agent writes the targets with the labels Kubernetes service discovery plus a labelmap of
    pod labels would give (namespace, pod, llmops_dev_llmmodel, ...): Debian's Prometheus is
    built without Kubernetes service discovery.
    """
    return {
        "global": {"scrape_interval": "2s", "evaluation_interval": "2s"},
        "scrape_configs": [
            {
                "job_name": "kubernetes-pods",
                "file_sd_configs": [{"files": [str(targets_file)], "refresh_interval": "5s"}],
            }
        ],
    }


@dataclass
class Prometheus:
    """Debian's prometheus (e2e/system-deps.sh) scraping the agent's pods; stop() removes its data."""

    targets_file: Path
    port: int = field(default_factory=free_port)
    dir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="llmops-prometheus-")))
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Prometheus:
        binary = shutil.which("prometheus")
        if binary is None:
            raise RuntimeError("prometheus is not installed: run e2e/system-deps.sh")
        config = self.dir / "prometheus.yml"
        config.write_text(json.dumps(prometheus_config(self.targets_file)))
        with (self.dir / "prometheus.log").open("wb") as log:
            self.process = subprocess.Popen(
                [binary, f"--config.file={config}", f"--storage.tsdb.path={self.dir / 'data'}",
                 f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn"],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            )  # fmt: skip
        deadline = time.monotonic() + 60
        while not self.ready():
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise RuntimeError(f"prometheus did not start: {(self.dir / 'prometheus.log').read_text()[-2000:]}")
            time.sleep(0.5)
        return self

    def ready(self) -> bool:
        try:
            return urllib.request.urlopen(f"{self.url}/-/ready", timeout=2).status == 200
        except OSError:
            return False

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(10)
        shutil.rmtree(self.dir, ignore_errors=True)


class Traffic:
    """Inference requests at a steady rate to the Rollout's Service, from this host (cluster IP).

    Like a real client it starts once the stable model serves; from then on every request counts.
    """

    def __init__(self, namespace: str, service: str, stable: str, rate: float = 8.0) -> None:
        self.namespace, self.service, self.stable, self.period = namespace, service, stable, 1 / rate
        self.sent = self.failed = 0
        self.failures: list[tuple[float, str]] = []
        """(seconds since the first request, error) of each failed request."""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> Traffic:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        body = json.dumps({
            "inputs": [
                {"name": "text_input", "shape": [1, 1], "datatype": "BYTES", "data": ["reverse: abcd ="]},
                {"name": "max_tokens", "shape": [1, 1], "datatype": "INT32", "data": [6]},
            ]
        }).encode()  # fmt: skip
        url, first = None, 0.0
        while not self._stop.wait(self.period):
            if url is None:
                stable = get("LLMModel", self.namespace, self.stable) or {}
                svc = get("svc", self.namespace, self.service)
                if not svc or stable.get("status", {}).get("phase") != "Ready":
                    time.sleep(2)
                    continue
                url, first = f"http://{svc['spec']['clusterIP']}:8000/v2/models/llm/infer", time.monotonic()
            try:
                request = urllib.request.Request(url, body, {"Content-Type": "application/json"})
                urllib.request.urlopen(request, timeout=5).read()
                self.sent += 1
            except OSError as error:
                self.failed += 1
                self.failures.append((time.monotonic() - first, f"{type(error).__name__}: {error}"[:120]))

    def report(self) -> str:
        text = f"traffic: {self.sent} ok, {self.failed} failed"
        if self.failures:
            (start, error), end = self.failures[0], self.failures[-1][0]
            text += f" (between {start:.0f}s and {end:.0f}s after the first request; first: {error})"
        return text


# ---- watching ------------------------------------------------------------------------------------
def _age(stamp: str | None) -> str:
    """The clock time of an RFC 3339 stamp."""
    return stamp[11:19] if stamp else ""


def rows(namespace: str) -> list[tuple[str, str, str, str]]:
    """(kind, name, phase, detail) of the pipeline's resources."""
    out = []
    for kind in PLURALS:
        for obj in (get(kind, namespace) or {}).get("items", []):
            status, name = obj.get("status", {}), obj["metadata"]["name"]
            detail = ""
            if kind == "LLMModel":
                artifact = status.get("artifact") or {}
                detail = f"{status.get('readyReplicas', 0)} ready" + (
                    f", {artifact.get('quantization', '')} {artifact.get('sizeBytes', 0) / 1e6:.1f} MB"
                    if artifact
                    else ""
                )
            elif kind == "FineTuneJob":
                p = status.get("progress") or {}
                if p.get("step"):
                    detail = f"step {p['step']}/{p.get('totalSteps') or '?'} loss {p.get('loss') or 0:.3f}"
            elif kind == "EvalSuite":
                runs = status.get("runs", [])
                detail = ", ".join(f"{r['model']}:{r['phase']}" for r in runs[-3:])
            elif kind == "Rollout":
                detail = f"step {status.get('currentStep', '-')} weight {status.get('canaryWeight', 0)}%"
            phase = status.get("phase") or "-"
            out.append((kind, name, phase, detail))
    return out


def table(namespace: str, traffic: Traffic | None, started: float) -> str:
    lines = [f"  {'KIND':<12} {'NAME':<16} {'PHASE':<12} DETAIL"]
    lines += [f"  {k:<12} {n:<16} {p:<12} {d}" for k, n, p, d in rows(namespace)]
    extra = f"   traffic: {traffic.sent} ok / {traffic.failed} failed" if traffic else ""
    return "\n".join(lines) + f"\n  elapsed {time.monotonic() - started:5.0f}s{extra}"


@dataclass
class Run:
    """What the watcher saw: the fine-tune's loss over steps, and when each phase was first seen."""

    losses: list[tuple[int, float]] = field(default_factory=list)
    seen: list[tuple[float, str]] = field(default_factory=list)

    def observe(self, namespace: str, started: float) -> None:
        job = get("FineTuneJob", namespace, "reverse-ft") or {}
        p = job.get("status", {}).get("progress") or {}
        if p.get("loss") is not None and (not self.losses or self.losses[-1][0] != p.get("step")):
            self.losses.append((int(p.get("step", 0)), float(p["loss"])))
        for kind, name, phase, detail in rows(namespace):
            if phase == "-":
                continue
            label = f"{kind} {name} {phase}" + (f" ({detail})" if kind == "Rollout" else "")
            if not any(s == label for _, s in self.seen):
                self.seen.append((time.monotonic() - started, label))


def rollout_finished(namespace: str) -> str | None:
    """Promoted/RolledBack/Aborted: the rollout's final phase, or None while it runs."""
    rollout = get("Rollout", namespace, "reverse") or {}
    phase = rollout.get("status", {}).get("phase")
    return phase if phase in ("Promoted", "Completed", "RolledBack", "Aborted", "Degraded") else None


def watch(
    namespace: str, until: Callable[[], Any], timeout: float, traffic: Traffic | None = None, live: bool = True
) -> tuple[Any, Run]:
    started, run, result = time.monotonic(), Run(), None
    tty = live and sys.stdout.isatty()
    last = ""
    while time.monotonic() - started < timeout:
        run.observe(namespace, started)
        result = until()
        if live:
            view = table(namespace, traffic, started)
            if tty:
                print("\033[H\033[J" + view, flush=True)
            elif view.split("\n  elapsed")[0] != last.split("\n  elapsed")[0]:
                print(view, flush=True)
            last = view
        if result:
            break
        time.sleep(2)
    return result, run


# ---- the summary ---------------------------------------------------------------------------------
def sparkline(values: list[float]) -> str:
    bars = "▁▂▃▄▅▆▇█"
    lo, hi = min(values), max(values)
    return "".join(bars[int((v - lo) / (hi - lo + 1e-9) * (len(bars) - 1))] for v in values)


def eval_scores(namespace: str) -> dict[str, dict[str, float]]:
    """The newest finished run's metric values per model."""
    suite = get("EvalSuite", namespace, "reverse-quality") or {}
    scores: dict[str, dict[str, float]] = {}
    for run in suite.get("status", {}).get("runs", []):
        if run.get("phase") in ("Passed", "Failed"):
            scores[run["model"]] = {m["name"]: m.get("value") for m in run.get("metrics", [])}
    return scores


def summary(namespace: str, run: Run) -> str:
    lines = ["", "== fine-tune"]
    if run.losses:
        losses = [loss for _, loss in run.losses]
        lines.append(f"  loss {losses[0]:.3f} → {losses[-1]:.3f} over {run.losses[-1][0]} steps   {sparkline(losses)}")
    job = get("FineTuneJob", namespace, "reverse-ft") or {}
    lines.append(f"  {job.get('status', {}).get('phase', '-')}: {job.get('status', {}).get('artifactUri', '')}")
    lines.append("== eval (reverse-quality)")
    for model, metrics in eval_scores(namespace).items():
        lines.append(f"  {model:<14} " + "  ".join(f"{k} {v:.2f}" for k, v in metrics.items() if v is not None))
    lines.append("== timeline (seconds since the pipeline was applied)")
    lines += [f"  {at:6.0f}s  {what}" for at, what in run.seen]
    rollout = get("Rollout", namespace, "reverse") or {}
    for entry in rollout.get("status", {}).get("history", []):
        why = f": {entry['reason']}" if entry.get("reason") else ""
        lines.append(f"  {_age(entry['time'])}  Rollout {entry['event']} at step {entry.get('step')}{why}")
    model = get("LLMModel", namespace, "reverse-ft") or {}
    lineage = model.get("status", {}).get("lineage", {})
    lines.append("== lineage")
    lines.append(
        f"  {lineage.get('baseModel')} → FineTuneJob {lineage.get('fineTuneJob')} → reverse-ft → Rollout reverse"
    )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["prepare", "watch", "prometheus-config"])
    parser.add_argument("--namespace", default="llmops-demo")
    parser.add_argument("--timeout", type=float, default=1200)
    parser.add_argument("--targets", type=Path, help="prometheus-config: the agent's scrape-targets.json")
    parser.add_argument("--no-traffic", action="store_true", help="watch: traffic comes from elsewhere (kind)")
    args = parser.parse_args()
    if args.command == "prometheus-config":
        print(yaml.safe_dump(prometheus_config(args.targets), sort_keys=False))
        return
    if args.command == "prepare":
        prepare_namespace(args.namespace)
        seed(args.namespace)
        apply(pipeline_objects(), args.namespace)
        return
    traffic = None if args.no_traffic else Traffic(args.namespace, "reverse", "reverse-base").start()
    try:
        result, run = watch(args.namespace, lambda: rollout_finished(args.namespace), args.timeout, traffic)
    finally:
        if traffic is not None:
            traffic.stop()
    print(summary(args.namespace, run))
    if traffic is not None:
        print(traffic.report())
    sys.exit(0 if result in ("Promoted", "Completed") else 1)


if __name__ == "__main__":
    main()
