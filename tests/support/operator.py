"""The operator as a real process against the test cluster, and polling helpers that explain themselves."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from llmops import diagnostics
from tests.workload.tritonlocal import free_ports

ROOT = Path(__file__).resolve().parents[2]
T = TypeVar("T")


def free_port() -> int:
    return free_ports(1)[0]


def wait_for(check: Callable[[], T | None], timeout: float, what: str, interval: float = 0.5) -> T:
    """Poll until check() returns something truthy; on timeout say what was last seen."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            last = check()
        except Exception as error:  # a poll may race with creation; keep the last error
            last = error
        if last and not isinstance(last, Exception):
            return last  # type: ignore[return-value]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}; last seen: {last!r}")
        time.sleep(interval)


class OperatorProcess:
    """`python -m llmops` with the test kubeconfig; can be killed (SIGKILL) and started again."""

    def __init__(self, kubeconfig: str, log_path: Path, args: Sequence[str] = (), **env: str) -> None:
        self.kubeconfig = kubeconfig
        self.args = list(args)
        """More command-line arguments, e.g. `--namespace` and `--peering` as the chart passes them."""
        self.log_path = log_path
        self.health_port, self.metrics_port = free_ports(2)
        self.env = {
            **os.environ,
            "KUBECONFIG": kubeconfig,
            "LLMOPS_HEALTH_PORT": str(self.health_port),
            "LLMOPS_METRICS_PORT": str(self.metrics_port),
            "LLMOPS_RESYNC_SECONDS": "5",
            "PYTHONPATH": str(ROOT / "operator"),
            **env,
        }
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> None:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "llmops", "--log-format", "plain", *self.args],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            start_new_session=True,
        )
        self.starts += 1
        wait_for(self.healthy, 60, f"operator health on :{self.health_port} (log: {self.log_path})")

    def healthy(self) -> bool:
        if self.proc is None or self.proc.poll() is not None:
            raise RuntimeError(f"operator exited: {self.log_tail()}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.health_port}/healthz", timeout=2) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as response:
            return str(response.read().decode())

    def kill(self) -> None:
        """SIGKILL: no cleanup, no final status write — the hard case for resuming."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()

    def log_tail(self, lines: int = 40) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def state(self, timeout: float = 5.0) -> str:
        """What each task and thread of the running operator is doing (SIGUSR1: llmops/diagnostics.py)."""
        if self.proc is None or self.proc.poll() is not None:
            return "(the operator is not running)"
        start = self.log_path.stat().st_size
        self.proc.send_signal(signal.SIGUSR1)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.log_path.open("rb") as log:
                log.seek(start)
                text = log.read().decode(errors="replace")
            begin, end = text.find(diagnostics.BEGIN), text.find(diagnostics.END)
            if begin >= 0 and end > begin:
                return text[begin : end + len(diagnostics.END)]
            time.sleep(0.1)
        return f"(no state written within {timeout:.0f}s)"
