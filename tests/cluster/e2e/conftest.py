"""Fixtures of the end-to-end tests: the local node agent, Prometheus and the operator.

The agent (e2e/agent) runs the pods of the tests' namespaces as real processes; a running one
(from `make up`) is reused. Prometheus scrapes the pods the agent lists. The operator runs as a
process watching this test run's namespaces, with the agent's StorageClass for repositories.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.operator import OperatorProcess, wait_for

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO / "e2e"))

import pipeline  # noqa: E402  (e2e/pipeline.py)

STATE = REPO / "e2e" / ".cluster"


def _agent_running() -> bool:
    pid_file = STATE / "agent.pid"
    if not pid_file.exists():
        return False
    try:  # alive, and the agent: a pid file from before a reboot may name some other process now
        command = Path(f"/proc/{int(pid_file.read_text())}/cmdline").read_bytes()
    except (OSError, ValueError):
        return False
    return b"e2e/agent" in command


@pytest.fixture(scope="session")
def agent(cluster: Any) -> Iterator[None]:
    """The local node agent (e2e/agent): reused when `make up` runs one, else started for this module."""
    os.environ["KUBECONFIG"] = str(cluster.kubeconfig)
    os.environ["PATH"] = f"{cluster.kubectl_path.parent}:{os.environ['PATH']}"
    if os.geteuid() != 0 or shutil.which("ip") is None or shutil.which("nsenter") is None:
        pytest.fail("the local node agent needs root (network and mount namespaces) and iproute2/util-linux")
    process = None
    if not _agent_running():
        log = (STATE / "agent.log").open("ab")
        process = subprocess.Popen(
            [sys.executable, str(REPO / "e2e" / "agent"), "--state", str(STATE / "agent")],
            stdout=log, stderr=subprocess.STDOUT, env=os.environ.copy(), start_new_session=True,
        )  # fmt: skip
        (STATE / "agent.pid").write_text(str(process.pid))

    def registered() -> bool:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"the local node agent exited {process.returncode}: see {STATE / 'agent.log'}")
        return pipeline.kubectl("get", "node", "llmops-local", check=False) != ""

    # `kubectl wait` gives up at once on a node that does not exist yet
    wait_for(registered, 90, "the local node agent to register node llmops-local")
    pipeline.kubectl("wait", "--for=condition=Ready", "node/llmops-local", "--timeout=90s")
    yield
    if process is not None:
        process.terminate()
        process.wait(30)
        (STATE / "agent.pid").unlink(missing_ok=True)


@pytest.fixture(scope="session")
def prometheus(cluster: Any) -> Iterator[pipeline.Prometheus]:
    server = pipeline.Prometheus(STATE / "agent" / "scrape-targets.json").start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def pipeline_operator(
    agent: None, prometheus: pipeline.Prometheus, kubeconfig: str, namespace_glob: str, kubectl: Any,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[OperatorProcess]:  # fmt: skip
    kubectl("apply", "--server-side", "--force-conflicts", "-f", str(REPO / "crds"))
    process = OperatorProcess(
        kubeconfig,
        tmp_path_factory.mktemp("operator") / "operator.log",
        ["--namespace", namespace_glob],
        LLMOPS_PROMETHEUS_URL=prometheus.url,
        LLMOPS_REPOSITORY_STORAGE_CLASS=pipeline.STORAGE_CLASS,
        LLMOPS_REPOSITORY_STORAGE_SIZE="1Gi",
    )
    process.start()
    yield process
    process.stop()
