"""Start the real tritonserver binary that ships in the nvidia-pytriton wheel.

The wheel carries bin/tritonserver, backends/python and one Python-backend stub per
Python version; the stub for this interpreter must sit at
backends/python/triton_python_backend_stub (pytriton does the same copy). The stub
embeds this interpreter, so it needs the interpreter's libpython on LD_LIBRARY_PATH
and this environment's site-packages on PYTHONPATH (numpy, onnxruntime, tokenizers).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import site
import socket
import subprocess
import sys
import sysconfig
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path


def pytriton_root() -> Path:
    import pytriton  # the wheel's package; only its files are used

    return Path(pytriton.__file__).parent


def tritonserver_tree(dest: Path) -> Path:
    """A copy of the server tree with this Python's stub in place."""
    src = pytriton_root() / "tritonserver"
    if not (dest / "bin" / "tritonserver").exists():
        shutil.copytree(src, dest, ignore=shutil.ignore_patterns("python_backend_stubs"), dirs_exist_ok=True)
        ver = f"{sys.version_info.major}.{sys.version_info.minor}"
        stub = src / "python_backend_stubs" / ver / "triton_python_backend_stub"
        shutil.copy(stub, dest / "backends" / "python" / "triton_python_backend_stub")
    return dest


def server_env() -> dict[str, str]:
    env = os.environ.copy()
    libs = [sysconfig.get_config_var("LIBDIR") or "", str(pytriton_root().parent / "nvidia_pytriton.libs")]
    env["LD_LIBRARY_PATH"] = ":".join([*libs, env.get("LD_LIBRARY_PATH", "")]).rstrip(":")
    paths = [*site.getsitepackages(), env.get("PYTHONPATH", "")]
    env["PYTHONPATH"] = ":".join(p for p in paths if p)
    env["PATH"] = f"{Path(sys.executable).parent}:{env['PATH']}"
    env.setdefault("OMP_NUM_THREADS", "1")
    return env


def free_ports(count: int) -> list[int]:
    """Distinct free ports: all are held until all are chosen (one after another, the kernel may
    hand out the same port twice)."""
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(count)]
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [int(s.getsockname()[1]) for s in sockets]


@dataclass
class Server:
    proc: subprocess.Popen
    http_port: int
    grpc_port: int
    metrics_port: int
    log: Path

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"grpc://127.0.0.1:{self.grpc_port}"

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.http_url}/v2/health/ready", timeout=2) as r:
                return r.status == 200
        except OSError:
            return False

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def start(repository: Path, workdir: Path, timeout: float = 180.0, extra_args: Sequence[str] = ()) -> Server:
    tree = tritonserver_tree(workdir / "tritonserver")
    http, grpc, metrics = free_ports(3)
    log = workdir / f"tritonserver-{http}.log"
    cmd = [
        str(tree / "bin" / "tritonserver"),
        f"--model-repository={repository}",
        f"--backend-directory={tree / 'backends'}",
        f"--cache-directory={tree / 'caches'}",
        f"--http-port={http}",
        f"--grpc-port={grpc}",
        f"--metrics-port={metrics}",
        "--http-address=127.0.0.1",
        "--grpc-address=127.0.0.1",
        "--allow-metrics=true",
        "--allow-gpu-metrics=false",
        "--strict-readiness=true",
        "--exit-on-error=true",
        "--log-verbose=0",
        "--exit-timeout-secs=5",
        *extra_args,
    ]
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, env=server_env(), stdout=out, stderr=subprocess.STDOUT)
    server = Server(proc, http, grpc, metrics, log)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"tritonserver exited {proc.returncode}:\n{log.read_text()[-4000:]}")
        if server.ready():
            return server
        time.sleep(0.5)
    server.stop()
    raise RuntimeError(f"tritonserver not ready in {timeout}s:\n{log.read_text()[-4000:]}")
