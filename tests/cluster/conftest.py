"""Fixtures for tests against the real local control plane (e2e/cluster.sh).

The cluster (etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kwok with
fake GPU nodes) is started once per test run by ``e2e/cluster.sh up``; a cluster that is
already running is reused, and it is left running afterwards (``make cluster-down`` stops it).

Fixtures:

``cluster`` (session)
    A :class:`Cluster`: ``kubeconfig`` path, ``kubectl_path``, ``helm_path``, ``env``
    (os.environ plus KUBECONFIG), ``kube_version``, and ``kubectl(...)`` / ``helm(...)``
    helpers that run the built binaries against the cluster.
``kubeconfig`` (session)
    The admin kubeconfig path as a ``str`` (``e2e/.cluster/kubeconfig``).
``api_client`` (session)
    A ``kubernetes.client.ApiClient`` configured from that kubeconfig.
``namespace`` (function)
    A fresh namespace (its ``default`` ServiceAccount exists), deleted after the test.
``kubectl`` / ``helm`` (session)
    ``kubectl("get", "pods", "-n", ns)`` runs the built kubectl with the cluster's
    kubeconfig and returns a ``subprocess.CompletedProcess`` (text); it raises
    ``subprocess.CalledProcessError`` on a non-zero exit unless ``check=False``.
``operator`` (module)
    The operator as a real process (:class:`tests.support.operator.OperatorProcess`) watching
    this run's namespaces, with the CRDs installed.
``kube`` (function)
    :class:`tests.support.kube.Kube` helpers on the test's namespace, with the examples' PVCs bound.

When the cluster cannot start, the tests fail with the tail of the component logs.
``LLMOPS_SKIP_CLUSTER=1`` turns that failure into a skip, and skips at once when the
binaries are not built yet (so a machine without them does not build for half an hour).
Under ``CI=true`` the tests always fail instead of skipping.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import time
import uuid
from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.support.crds import CRD_DIR
from tests.support.kube import CLAIMS, Kube, Kubectl
from tests.support.operator import OperatorProcess, wait_for

REPO = Path(__file__).resolve().parents[2]
CLUSTER_SH = REPO / "e2e" / "cluster.sh"
VERSIONS_ENV = REPO / "e2e" / "cluster" / "versions.env"
CLUSTER_TESTS = Path(__file__).resolve().parent

# `up` builds whatever is missing first; a cold build of the kube binaries takes a while.
UP_TIMEOUT_S = float(os.environ.get("LLMOPS_CLUSTER_UP_TIMEOUT", "3600"))


def read_versions() -> dict[str, str]:
    versions: dict[str, str] = {}
    for line in VERSIONS_ENV.read_text().splitlines():
        m = re.match(r"^([A-Z_]+)=(\S+)", line)
        if m:
            versions[m.group(1)] = m.group(2)
    return versions


def _truthy(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


@dataclass(frozen=True)
class Cluster:
    kubeconfig: Path
    kubectl_path: Path
    helm_path: Path
    versions: dict[str, str]
    env: dict[str, str] = field(repr=False)

    @property
    def kube_version(self) -> str:
        return self.versions["KUBE_VERSION"]

    def _run(
        self,
        tool: Path,
        args: Sequence[str],
        *,
        check: bool = True,
        input: str | None = None,
        timeout: float = 120,
    ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [str(tool), *args],
            env=self.env,
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and proc.returncode != 0:
            raise subprocess.CalledProcessError(proc.returncode, proc.args, output=proc.stdout, stderr=proc.stderr)
        return proc

    def kubectl(self, *args: str, **kw: Any) -> subprocess.CompletedProcess[str]:
        return self._run(self.kubectl_path, ["--kubeconfig", str(self.kubeconfig), *args], **kw)

    def helm(self, *args: str, **kw: Any) -> subprocess.CompletedProcess[str]:
        return self._run(self.helm_path, ["--kubeconfig", str(self.kubeconfig), *args], **kw)


def _cluster_sh(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(CLUSTER_SH), *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def _bins_present(versions: dict[str, str]) -> bool:
    cache = Path(os.environ.get("LLMOPS_BIN_CACHE", Path.home() / ".cache/llmops/bin"))
    return all(
        (cache / f"{comp}-{versions[key]}" / ".complete").is_file()
        for comp, key in [
            ("kube", "KUBE_VERSION"),
            ("etcd", "ETCD_VERSION"),
            ("kwok", "KWOK_VERSION"),
            ("helm", "HELM_VERSION"),
        ]
    )


def _cannot_start(message: str) -> None:
    if _truthy("CI") or not _truthy("LLMOPS_SKIP_CLUSTER"):
        pytest.fail(message, pytrace=False)
    pytest.skip(f"LLMOPS_SKIP_CLUSTER=1 and the local cluster is unavailable: {message[-2000:]}")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Every test under tests/cluster carries the `cluster` marker, those under e2e/ also `e2e`."""
    for item in items:
        parents = Path(str(item.path)).resolve().parents
        if CLUSTER_TESTS in parents:
            item.add_marker(pytest.mark.cluster)
        if CLUSTER_TESTS / "e2e" in parents:
            item.add_marker(pytest.mark.e2e)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """A failed test that ran an operator shows the operator's last log lines in its report, and
    what each of its tasks and threads was doing at the failure."""
    report = yield
    operator = getattr(item, "funcargs", {}).get("operator")
    if report.failed and isinstance(operator, OperatorProcess):
        report.sections.append(("operator log (last 80 lines)", operator.log_tail(80)))
        if report.when == "call":
            report.sections.append(("operator tasks and threads", operator.state()))
    return report


@pytest.fixture(scope="session")
def cluster() -> Cluster:
    versions = read_versions()
    if _truthy("LLMOPS_SKIP_CLUSTER") and not _truthy("CI") and not _bins_present(versions):
        pytest.skip("LLMOPS_SKIP_CLUSTER=1 and the cluster binaries are not built (cluster-bins)")
    try:
        proc = _cluster_sh("up", timeout=UP_TIMEOUT_S)
    except subprocess.TimeoutExpired as e:
        err = e.stderr.decode(errors="replace") if isinstance(e.stderr, bytes) else e.stderr
        _cannot_start(f"e2e/cluster.sh up timed out after {UP_TIMEOUT_S:.0f}s\n{err or ''}")
        raise  # unreachable
    if proc.returncode != 0:
        _cannot_start(
            f"e2e/cluster.sh up failed (exit {proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
        )
    kubeconfig = Path(_cluster_sh("kubeconfig").stdout.strip())
    kubectl_path = Path(_cluster_sh("which", "kubectl").stdout.strip())
    helm_path = Path(_cluster_sh("which", "helm").stdout.strip())
    env = dict(os.environ, KUBECONFIG=str(kubeconfig))
    return Cluster(
        kubeconfig=kubeconfig,
        kubectl_path=kubectl_path,
        helm_path=helm_path,
        versions=versions,
        env=env,
    )


@pytest.fixture(scope="session")
def kubeconfig(cluster: Cluster) -> str:
    return str(cluster.kubeconfig)


@pytest.fixture(scope="session")
def api_client(cluster: Cluster) -> Iterator[Any]:
    from kubernetes import config

    client = config.new_client_from_config(config_file=str(cluster.kubeconfig))
    yield client
    client.close()


@pytest.fixture
def operator_client(kubeconfig: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The operator's own kube layer (its cached clients) in this process, on this cluster."""
    from kubernetes.config import kube_config

    from llmops.kube import children, client

    caches = (client.api_client, client.dynamic, children._cached_watch_client)
    monkeypatch.setattr(kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", kubeconfig)  # read at import, not at load
    for cache in caches:
        cache.cache_clear()
    yield
    for cache in caches:
        cache.cache_clear()


@pytest.fixture(scope="session")
def kubectl(cluster: Cluster) -> Callable[..., subprocess.CompletedProcess[str]]:
    return cluster.kubectl


@pytest.fixture(scope="session")
def helm(cluster: Cluster) -> Callable[..., subprocess.CompletedProcess[str]]:
    return cluster.helm


# Namespaces of this test run share a prefix, so that the operator processes it starts watch only
# them and never act on another run's resources in the same cluster.
TEST_RUN = uuid.uuid4().hex[:4]


def _namespace_name(nodeid: str) -> str:
    base = re.sub(r"[^a-z0-9-]+", "-", nodeid.split("::")[-1].lower()).strip("-")
    return f"t{TEST_RUN}-{base[:38].rstrip('-')}-{uuid.uuid4().hex[:6]}"


@pytest.fixture(scope="session")
def namespace_glob() -> str:
    """The namespaces of this test run, as `--namespace` of the operator accepts them."""
    return f"t{TEST_RUN}-*"


@pytest.fixture
def namespace(api_client: Any, request: pytest.FixtureRequest) -> Iterator[str]:
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    core = client.CoreV1Api(api_client)
    name = _namespace_name(request.node.nodeid)
    core.create_namespace(
        client.V1Namespace(metadata=client.V1ObjectMeta(name=name, labels={"llmops.dev/test": "true"}))
    )
    # the ServiceAccount admission plugin refuses pods until `default` exists
    deadline = time.monotonic() + 60
    while True:
        try:
            core.read_namespaced_service_account("default", name)
            break
        except ApiException as e:
            if e.status != 404 or time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    try:
        yield name
    finally:
        try:
            core.delete_namespace(name, propagation_policy="Background")
        except ApiException as e:
            if e.status != 404:
                raise


STUCK_DELETION_SECONDS = 20.0


def finish_pod_deletions(core: Any, namespace: str) -> None:
    """Delete at once the pods of a terminating namespace still there 20 s after their grace period.

    kwok, the pods' kubelet here, plays a pod's stages by rendering its status into YAML, and gives
    up on characters that YAML refuses, which a fuzzed spec can put into a pod's image (U+0087, a
    private-use character): such a pod is never finished deleting, and holds its namespace for
    ever. This is what `kubectl delete --force` does for a pod whose node is gone.
    """
    from kubernetes.client.exceptions import ApiException

    now = datetime.now(UTC)
    for pod in core.list_namespaced_pod(namespace).items:
        graceful_until = pod.metadata.deletion_timestamp  # a pod's: when its grace period ends
        if graceful_until is not None and (now - graceful_until).total_seconds() > STUCK_DELETION_SECONDS:
            with contextlib.suppress(ApiException):  # gone meanwhile
                core.delete_namespaced_pod(pod.metadata.name, namespace, grace_period_seconds=0)


def wait_for_deleted_namespaces(api_client: Any, timeout: float = 180.0) -> None:
    """Wait until no namespace of this run is still being deleted.

    A new operator watches every namespace of the run: resources of earlier modules' namespaces
    that are still terminating would be its first work, ahead of the module's own tests.
    """
    from kubernetes import client

    core = client.CoreV1Api(api_client)

    def none_terminating() -> bool:
        namespaces = core.list_namespace(label_selector="llmops.dev/test=true").items
        terminating = [
            n.metadata.name
            for n in namespaces
            if n.metadata.name.startswith(f"t{TEST_RUN}-") and n.status.phase == "Terminating"
        ]
        for name in terminating:
            finish_pod_deletions(core, name)
        return not terminating

    # a namespace that will not go is the business of the test that made it, not a reason to stop here
    with contextlib.suppress(AssertionError):
        wait_for(none_terminating, timeout, "the run's namespaces being deleted to go", interval=1)


@pytest.fixture(scope="module")
def operator(
    kubectl: Kubectl,
    kubeconfig: str,
    api_client: Any,
    namespace_glob: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[OperatorProcess]:
    wait_for_deleted_namespaces(api_client)
    kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CRD_DIR))
    kubectl(
        "wait", "--for=condition=Established", "--timeout=60s", "crd", "-l", "app.kubernetes.io/part-of=llmops-operator"
    )
    # kwok-volume: the local cluster's simulated provisioner (e2e/cluster/storageclass.yaml)
    log = tmp_path_factory.mktemp("operator") / "operator.log"
    process = OperatorProcess(
        kubeconfig, log, ["--namespace", namespace_glob], LLMOPS_REPOSITORY_STORAGE_CLASS="kwok-volume"
    )
    process.start()
    yield process
    process.stop()


@pytest.fixture
def kube(api_client: Any, namespace: str) -> Iterator[Kube]:
    k = Kube(api_client, namespace)
    for claim in CLAIMS:
        k.bound_claim(claim)
    yield k
    for pv in k.core.list_persistent_volume(label_selector="llmops.dev/test=true").items:
        if pv.metadata.name.startswith(f"{namespace}-"):
            k.core.delete_persistent_volume(pv.metadata.name)
