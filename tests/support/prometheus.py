"""A real Prometheus (Debian's `prometheus` package) on a loopback port, scraping static targets.

Each target carries the labels a Kubernetes service discovery with a ``labelmap`` of the pod
labels would give the serving pods (``namespace``, ``llmops_dev_llmmodel``), so the operator's
analysis queries select them exactly as in a cluster.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support.operator import free_port, wait_for

BINARY_ENV = "LLMOPS_PROMETHEUS"


@dataclass(frozen=True)
class Target:
    """One scrape target: host:port of a /metrics endpoint and the labels its series get."""

    address: str
    labels: dict[str, str]


def prometheus_binary() -> str | None:
    return os.environ.get(BINARY_ENV) or shutil.which("prometheus")


def scrape_config(targets: list[Target], scrape_interval: str = "1s") -> dict[str, Any]:
    return {
        "global": {"scrape_interval": scrape_interval, "evaluation_interval": scrape_interval},
        "scrape_configs": [
            {
                "job_name": "triton",
                "scrape_timeout": scrape_interval,
                "static_configs": [{"targets": [t.address], "labels": t.labels} for t in targets],
            }
        ],
    }


def first_value(response: dict[str, Any]) -> float | None:
    """The number an instant query answered: a scalar, or the only (first) sample of a vector."""
    data = response["data"]
    if data["resultType"] == "scalar":
        return float(data["result"][1])
    if data["resultType"] == "vector" and data["result"]:
        return float(data["result"][0]["value"][1])
    return None


class Prometheus:
    """`prometheus` as a child process; down()/up() take it away and back; stop() also removes its data."""

    def __init__(self, targets: list[Target], scrape_interval: str = "1s") -> None:
        binary = prometheus_binary()
        if binary is None:
            raise RuntimeError(f"prometheus is not installed: run e2e/system-deps.sh (or set {BINARY_ENV})")
        self.dir = Path(tempfile.mkdtemp(prefix="llmops-prometheus-"))
        self.port = free_port()
        self.config = self.dir / "prometheus.yml"
        self.config.write_text(json.dumps(scrape_config(targets, scrape_interval), indent=2))  # JSON is YAML
        self.log_path = self.dir / "prometheus.log"
        self.binary = binary
        try:
            self.up()
            # Service discovery hands targets to the scrapers only every 5 s: ready is not scraping.
            wait_for(lambda: self.targets_up() == len(targets), 60, f"{len(targets)} targets up")
        except BaseException:
            self.stop()
            raise

    def up(self) -> None:
        """Start the server (again, after down(): same port, same data)."""
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [
                    self.binary,
                    f"--config.file={self.config}",
                    f"--storage.tsdb.path={self.dir / 'data'}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                    "--storage.tsdb.retention.time=1d",
                    "--log.level=warn",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        wait_for(self.ready, 60, f"prometheus ready on :{self.port}")

    def down(self) -> None:
        """Stop the server and keep its data: queries are refused until up()."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def ready(self) -> bool:
        if self.proc.poll() is not None:
            raise RuntimeError(f"prometheus exited {self.proc.returncode}: {self.log_tail()}")
        try:
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    def targets_up(self) -> int:
        active = self.api("targets", state="active")["data"]["activeTargets"]
        return sum(target["health"] == "up" for target in active)

    def api(self, path: str, **params: str | float) -> dict[str, Any]:
        query = urllib.parse.urlencode(params)
        with urllib.request.urlopen(f"{self.url}/api/v1/{path}?{query}", timeout=10) as response:
            body: dict[str, Any] = json.load(response)
        if body.get("status") != "success":
            raise RuntimeError(f"prometheus {path} {params}: {body}")
        return body

    def query(self, promql: str, at: float | None = None) -> float | None:
        """An instant query's value; None when it selected nothing."""
        params: dict[str, str | float] = {"query": promql}
        if at is not None:
            params["time"] = at
        return first_value(self.api("query", **params))

    def samples(self, selector: str, window_s: int = 3600) -> dict[str, list[tuple[float, float]]]:
        """The raw scraped samples (unix time, value) of each series a selector matches."""
        result = self.api("query", query=f"{selector}[{window_s}s]")["data"]["result"]
        return {
            json.dumps(series["metric"], sort_keys=True): [(float(t), float(v)) for t, v in series["values"]]
            for series in result
        }

    def stop(self) -> None:
        if hasattr(self, "proc"):
            self.down()
        shutil.rmtree(self.dir, ignore_errors=True)

    def log_tail(self, lines: int = 30) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def __enter__(self) -> Prometheus:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def first_rise(samples: dict[str, list[tuple[float, float]]]) -> float | None:
    """Time of the earliest sample in which any counter is above zero (counters of a fresh server)."""
    times = [t for values in samples.values() for t, v in values if v > 0]
    return min(times) if times else None


def wait_for_samples(prometheus: Prometheus, selector: str, timeout: float = 30) -> None:
    """Block until the selector has data, so analysis never starts against an empty TSDB."""
    wait_for(lambda: prometheus.query(selector) is not None, timeout, f"samples of {selector}")
