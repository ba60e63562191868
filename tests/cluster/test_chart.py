"""The Helm chart (charts/llmops-operator) against the real control plane.

kwok runs the operator's pods: they are scheduled and turn Running and Ready, but no image is
pulled and no code runs in them. So the operator's RBAC is proven by running the operator
process itself with a token of the chart's ServiceAccount and the Deployment's own arguments
and environment.

The CRDs may already be installed (by other tests' fixtures); Helm skips existing CRDs, and
never deletes them on uninstall.
"""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import yaml
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from kubernetes.dynamic import DynamicClient

from tests.support.invalid_specs import example
from tests.support.operator import OperatorProcess, wait_for

if TYPE_CHECKING:
    from tests.cluster.conftest import Cluster

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "llmops-operator"
INSTANCE = "app.kubernetes.io/instance"
LLMOPS_KINDS = ("llmmodels", "finetunejobs", "evalsuites", "rollouts")
ObjectKey = tuple[str, str, str, str]  # apiVersion, kind, namespace ("" when cluster-scoped), name


@dataclass
class Release:
    """One helm release of the chart, named uniquely so that tests never share cluster-scoped objects."""

    cluster: Cluster
    namespace: str
    values: list[str] = field(default_factory=list)
    name: str = field(default_factory=lambda: f"llmops-{uuid.uuid4().hex[:6]}")

    def helm(self, *args: str) -> subprocess.CompletedProcess[str]:
        return self.cluster.helm(*args, "--namespace", self.namespace, timeout=300)

    def install(self) -> None:
        self.helm("install", self.name, str(CHART), *self.values, "--wait", "--timeout", "180s")

    def upgrade(self) -> None:
        self.helm("upgrade", self.name, str(CHART), *self.values, "--wait", "--timeout", "180s")

    def uninstall(self) -> None:
        self.helm("uninstall", self.name, "--wait", "--timeout", "180s")

    def manifest(self) -> list[dict[str, Any]]:
        text = self.helm("get", "manifest", self.name).stdout
        return [doc for doc in yaml.safe_load_all(text) if doc]

    @property
    def fullname(self) -> str:
        return f"{self.name}-llmops-operator"


def object_key(dyn: DynamicClient, obj: dict[str, Any], default_namespace: str) -> ObjectKey:
    resource = dyn.resources.get(api_version=obj["apiVersion"], kind=obj["kind"])
    namespace = obj["metadata"].get("namespace", default_namespace) if resource.namespaced else ""
    return obj["apiVersion"], obj["kind"], namespace, obj["metadata"]["name"]


def fetch(dyn: DynamicClient, key: ObjectKey) -> dict[str, Any] | None:
    api_version, kind, namespace, name = key
    resource = dyn.resources.get(api_version=api_version, kind=kind)
    try:
        found: dict[str, Any] = resource.get(name=name, namespace=namespace or None).to_dict()
    except ApiException as error:
        if error.status == 404:
            return None
        raise
    return found


def resource_versions(dyn: DynamicClient, release: Release) -> dict[ObjectKey, str]:
    """resourceVersion of every object of the release, and of the Deployment's ReplicaSets."""
    keys = [object_key(dyn, obj, release.namespace) for obj in release.manifest()]
    versions = {key: (fetch(dyn, key) or {}).get("metadata", {}).get("resourceVersion", "missing") for key in keys}
    replica_sets = dyn.resources.get(api_version="apps/v1", kind="ReplicaSet")
    for rs in replica_sets.get(namespace=release.namespace, label_selector=f"{INSTANCE}={release.name}").items:
        versions[("apps/v1", "ReplicaSet", release.namespace, rs.metadata.name)] = rs.metadata.resourceVersion
    return versions


def settled_resource_versions(dyn: DynamicClient, release: Release) -> dict[ObjectKey, str]:
    """resourceVersions once controllers have stopped writing status (two equal reads in a row)."""
    previous: dict[ObjectKey, str] = {}

    def unchanged() -> dict[ObjectKey, str] | None:
        nonlocal previous
        current = resource_versions(dyn, release)
        same = current == previous
        previous = current
        return current if same else None

    return wait_for(unchanged, 60, "the release's objects to settle", interval=3)


def operator_pods(core: client.CoreV1Api, release: Release) -> list[client.V1Pod]:
    return list(core.list_namespaced_pod(release.namespace, label_selector=f"{INSTANCE}={release.name}").items)


def all_running_and_ready(pods: list[client.V1Pod], count: int) -> bool:
    def ready(pod: client.V1Pod) -> bool:
        return any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or [])

    return len(pods) == count and all(p.status.phase == "Running" and ready(p) for p in pods)


def leftovers(dyn: DynamicClient, release: Release, namespaces: list[str]) -> list[str]:
    """Objects labelled with the release that still exist, in its namespaces and cluster-wide."""
    namespaced = [
        ("apps/v1", "Deployment"),
        ("apps/v1", "ReplicaSet"),
        ("v1", "Pod"),
        ("v1", "Service"),
        ("v1", "ServiceAccount"),
        ("v1", "ConfigMap"),
        ("rbac.authorization.k8s.io/v1", "Role"),
        ("rbac.authorization.k8s.io/v1", "RoleBinding"),
        ("networking.k8s.io/v1", "NetworkPolicy"),
        ("policy/v1", "PodDisruptionBudget"),
        ("kopf.dev/v1", "KopfPeering"),
    ]
    cluster_scoped = [
        ("rbac.authorization.k8s.io/v1", "ClusterRole"),
        ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"),
        ("kopf.dev/v1", "ClusterKopfPeering"),
    ]
    selector = f"{INSTANCE}={release.name}"
    found = []
    for api_version, kind in namespaced:
        resource = dyn.resources.get(api_version=api_version, kind=kind)
        for namespace in namespaces:
            found += [
                f"{kind} {namespace}/{o.metadata.name}"
                for o in resource.get(namespace=namespace, label_selector=selector).items
            ]
    for api_version, kind in cluster_scoped:
        resource = dyn.resources.get(api_version=api_version, kind=kind)
        found += [f"{kind} {o.metadata.name}" for o in resource.get(label_selector=selector).items]
    return found


@pytest.fixture
def dyn(api_client: Any) -> DynamicClient:
    return DynamicClient(api_client)


@pytest.fixture
def core(api_client: Any) -> client.CoreV1Api:
    return client.CoreV1Api(api_client)


@pytest.fixture
def make_namespace(core: client.CoreV1Api) -> Iterator[Callable[[str], str]]:
    """Fresh namespaces beyond the `namespace` fixture's one, deleted after the test."""
    made: list[str] = []

    def make(prefix: str) -> str:
        name = f"t-chart-{prefix}-{uuid.uuid4().hex[:6]}"
        core.create_namespace(
            client.V1Namespace(metadata=client.V1ObjectMeta(name=name, labels={"llmops.dev/test": "true"}))
        )
        wait_for(lambda: core.read_namespaced_service_account("default", name), 60, f"default ServiceAccount in {name}")
        made.append(name)
        return name

    yield make
    for name in made:
        try:
            core.delete_namespace(name, propagation_policy="Background")
        except ApiException as error:
            if error.status != 404:
                raise


@pytest.fixture
def release_cleanup() -> Iterator[list[Release]]:
    """Releases a test installed: uninstalled after it even when it fails half-way."""
    releases: list[Release] = []
    yield releases
    for release in releases:
        release.cluster.helm("uninstall", release.name, "--namespace", release.namespace, "--wait", check=False)


def crd_names(dyn: DynamicClient) -> set[str]:
    crds = dyn.resources.get(api_version="apiextensions.k8s.io/v1", kind="CustomResourceDefinition")
    return {c.metadata.name for c in crds.get().items}


EXPECTED_CRDS = {f"{kind}.llmops.dev" for kind in LLMOPS_KINDS} | {
    "clusterkopfpeerings.kopf.dev",
    "kopfpeerings.kopf.dev",
}


def check_lifecycle(
    release: Release,
    dyn: DynamicClient,
    core: client.CoreV1Api,
    namespaces: list[str],
    installed: Callable[[list[dict[str, Any]]], None] = lambda manifest: None,
) -> None:
    """install -> pods run -> an upgrade with the same values changes nothing -> uninstall leaves nothing."""
    release.install()
    assert crd_names(dyn) >= EXPECTED_CRDS
    installed(release.manifest())
    wait_for(lambda: all_running_and_ready(operator_pods(core, release), 2), 120, "2 operator pods Running and Ready")

    before = settled_resource_versions(dyn, release)
    assert {kind for _, kind, _, _ in before} >= {"Deployment", "ReplicaSet", "ServiceAccount", "Service"}
    release.upgrade()
    time.sleep(3)  # let any controller that would react to a change do so
    after = resource_versions(dyn, release)
    changed = {key: (before.get(key), version) for key, version in after.items() if before.get(key) != version}
    assert not changed, f"an upgrade with the same values changed objects: {changed}"

    release.uninstall()
    wait_for(lambda: not leftovers(dyn, release, namespaces), 120, f"no objects of {release.name} left")
    assert crd_names(dyn) >= EXPECTED_CRDS, "uninstall must keep the CRDs (and so every user's resources)"


def test_cluster_mode_installs_runs_upgrades_idempotently_and_uninstalls_cleanly(
    cluster: Cluster, dyn: DynamicClient, core: client.CoreV1Api, namespace: str, release_cleanup: list[Release]
) -> None:
    release = Release(cluster, namespace)
    release_cleanup.append(release)
    check_lifecycle(release, dyn, core, [namespace])


def test_namespaced_mode_installs_runs_upgrades_idempotently_and_uninstalls_cleanly(
    cluster: Cluster,
    dyn: DynamicClient,
    core: client.CoreV1Api,
    namespace: str,
    make_namespace: Callable[[str], str],
    release_cleanup: list[Release],
) -> None:
    watched = [make_namespace("a"), make_namespace("b")]
    release = Release(cluster, namespace, ["--set-json", f"watchNamespaces={json.dumps(watched)}"])
    release_cleanup.append(release)

    def namespaced(manifest: list[dict[str, Any]]) -> None:
        kinds = {(o["kind"], o["metadata"].get("namespace", "")) for o in manifest}
        for ns in watched:
            assert {("Role", ns), ("RoleBinding", ns), ("KopfPeering", ns)} <= kinds
        assert not {"ClusterKopfPeering"} & {kind for kind, _ in kinds}
        [deployment] = [o for o in manifest if o["kind"] == "Deployment"]
        args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
        assert [a for a in args if a.startswith("--namespace=")] == [f"--namespace={ns}" for ns in watched]

    check_lifecycle(release, dyn, core, [namespace, *watched], namespaced)


# ---- RBAC ---------------------------------------------------------------------------------


def service_account_user(release: Release) -> tuple[str, list[str]]:
    return (
        f"system:serviceaccount:{release.namespace}:{release.fullname}",
        ["system:serviceaccounts", f"system:serviceaccounts:{release.namespace}", "system:authenticated"],
    )


def allowed(
    api_client: Any,
    release: Release,
    verb: str,
    resource: str,
    namespace: str = "",
    group: str = "",
    subresource: str = "",
    name: str = "",
) -> bool:
    """Whether the operator's ServiceAccount may do this (a SubjectAccessReview)."""
    user, groups = service_account_user(release)
    attributes = client.V1ResourceAttributes(
        verb=verb,
        resource=resource,
        namespace=namespace or None,
        group=group,
        subresource=subresource or None,
        name=name or None,
    )
    review = client.V1SubjectAccessReview(
        spec=client.V1SubjectAccessReviewSpec(user=user, groups=groups, resource_attributes=attributes)
    )
    result = client.AuthorizationV1Api(api_client).create_subject_access_review(review)
    return bool(result.status.allowed)


def impersonating(cluster: Cluster, release: Release) -> client.ApiClient:
    """A client acting as the operator's ServiceAccount (the admin may impersonate).

    With no Impersonate-Group, the apiserver gives a ServiceAccount user its usual groups.
    """
    api = config.new_client_from_config(config_file=str(cluster.kubeconfig))
    user, _ = service_account_user(release)
    api.set_default_header("Impersonate-User", user)
    return api


@pytest.fixture
def cluster_release(cluster: Cluster, namespace: str, release_cleanup: list[Release]) -> Release:
    release = Release(cluster, namespace, ["--set", "replicaCount=1"])
    release_cleanup.append(release)
    release.install()
    return release


def test_operator_service_account_cannot_read_secrets_or_exec(
    cluster: Cluster, api_client: Any, cluster_release: Release, namespace: str
) -> None:
    release = cluster_release
    for verb in ("get", "list", "watch"):
        assert not allowed(api_client, release, verb, "secrets", namespace), f"{verb} secrets in {namespace}"
        assert not allowed(api_client, release, verb, "secrets"), f"{verb} secrets cluster-wide"
    assert not allowed(api_client, release, "create", "pods", namespace, subresource="exec")
    assert not allowed(api_client, release, "get", "pods", namespace, subresource="exec")
    assert not allowed(api_client, release, "create", "pods", namespace)
    assert not allowed(api_client, release, "delete", "jobs", namespace, group="batch")
    assert not allowed(api_client, release, "create", "clusterrolebindings", group="rbac.authorization.k8s.io")
    assert not allowed(api_client, release, "escalate", "clusterroles", group="rbac.authorization.k8s.io")
    # ... while what it does is allowed
    assert allowed(api_client, release, "patch", "llmmodels", namespace, group="llmops.dev", subresource="status")
    assert allowed(api_client, release, "create", "jobs", namespace, group="batch")
    assert allowed(api_client, release, "patch", "httproutes", namespace, group="gateway.networking.k8s.io")
    assert allowed(api_client, release, "create", "endpointslices", namespace, group="discovery.k8s.io")
    assert allowed(api_client, release, "get", "pods", namespace, subresource="log")
    assert allowed(api_client, release, "watch", "customresourcedefinitions", group="apiextensions.k8s.io")


def test_operator_service_account_has_no_wildcard_rules(
    cluster: Cluster, api_client: Any, cluster_release: Release, namespace: str
) -> None:
    api = impersonating(cluster, cluster_release)
    try:
        review = client.AuthorizationV1Api(api).create_self_subject_rules_review(
            client.V1SelfSubjectRulesReview(spec=client.V1SelfSubjectRulesReviewSpec(namespace=namespace))
        )
    finally:
        api.close()
    rules = review.status.resource_rules
    assert any("llmops.dev" in (r.api_groups or []) for r in rules), f"the review is not about the operator: {rules}"
    wildcards = [r for r in rules if "*" in (r.verbs or []) + (r.resources or []) + (r.api_groups or [])]
    assert not wildcards, f"wildcard rules: {wildcards}"
    # and the chart's own roles, read directly
    rbac = client.RbacAuthorizationV1Api(api_client)
    role = rbac.read_cluster_role(cluster_release.fullname)
    assert not [r for r in role.rules if "*" in r.verbs + r.resources + (r.api_groups or [])]
    assert not [r for r in role.rules if "secrets" in r.resources]


def test_namespaced_service_account_has_no_rights_outside_its_namespaces(
    cluster: Cluster,
    api_client: Any,
    namespace: str,
    make_namespace: Callable[[str], str],
    release_cleanup: list[Release],
) -> None:
    watched, other = make_namespace("watched"), make_namespace("other")
    release = Release(cluster, namespace, ["--set", f"watchNamespaces[0]={watched}", "--set", "replicaCount=1"])
    release_cleanup.append(release)
    release.install()
    assert allowed(api_client, release, "create", "jobs", watched, group="batch")
    # the peering object is written by name: only the chart's own
    assert allowed(api_client, release, "patch", "kopfpeerings", watched, group="kopf.dev", name=release.fullname)
    assert not allowed(api_client, release, "patch", "kopfpeerings", watched, group="kopf.dev", name="someone-else")
    for verb, resource, group in (
        ("list", "pods", ""),
        ("create", "jobs", "batch"),
        ("list", "llmmodels", "llmops.dev"),
    ):
        assert not allowed(api_client, release, verb, resource, other, group=group), f"{verb} {resource} in {other}"
        assert not allowed(api_client, release, verb, resource, group=group), f"{verb} {resource} cluster-wide"


# ---- the operator process under the chart's ServiceAccount --------------------------------


def service_account_kubeconfig(cluster: Cluster, release: Release, path: Path) -> str:
    """A kubeconfig with the admin's cluster entry and a short-lived token of the chart's ServiceAccount."""
    token = cluster.kubectl(
        "create", "token", release.fullname, "--namespace", release.namespace, "--duration", "1h"
    ).stdout.strip()
    admin = yaml.safe_load(cluster.kubeconfig.read_text())
    context = next(c for c in admin["contexts"] if c["name"] == admin["current-context"])["context"]
    cluster_entry = next(c for c in admin["clusters"] if c["name"] == context["cluster"])
    kubeconfig = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [cluster_entry],
        "users": [{"name": "operator", "user": {"token": token}}],
        "contexts": [{"name": "operator", "context": {"cluster": cluster_entry["name"], "user": "operator"}}],
        "current-context": "operator",
    }
    path.write_text(yaml.safe_dump(kubeconfig))
    return str(path)


def deployment_container(release: Release) -> dict[str, Any]:
    [deployment] = [o for o in release.manifest() if o["kind"] == "Deployment"]
    container: dict[str, Any] = deployment["spec"]["template"]["spec"]["containers"][0]
    return container


def test_the_operator_reconciles_with_only_the_charts_rbac(
    cluster: Cluster,
    api_client: Any,
    namespace: str,
    make_namespace: Callable[[str], str],
    release_cleanup: list[Release],
    tmp_path: Path,
) -> None:
    """The Deployment's own arguments and settings, the ServiceAccount's token: a model goes Ready."""
    watched = make_namespace("work")
    release = Release(
        cluster,
        namespace,
        [
            "--set", f"watchNamespaces[0]={watched}",
            "--set", "replicaCount=1",
            "--set", "config.repositoryStorage.storageClassName=kwok-volume",
            "--set", "config.resyncSeconds=5",
        ],
    )  # fmt: skip
    release_cleanup.append(release)
    release.install()
    container = deployment_container(release)
    args = [a for a in container["args"] if a.startswith(("--namespace=", "--peering="))]
    settings = {e["name"]: e["value"] for e in container["env"] if e["name"].startswith("LLMOPS_") and "value" in e}
    for port in ("LLMOPS_METRICS_PORT", "LLMOPS_HEALTH_PORT"):
        settings.pop(port)  # the test process picks free ones
    kubeconfig = service_account_kubeconfig(cluster, release, tmp_path / "kubeconfig")
    operator = OperatorProcess(kubeconfig, tmp_path / "operator.log", args, POD_ID="chart-test-operator", **settings)
    operator.start()
    try:
        custom = client.CustomObjectsApi(api_client)
        core = client.CoreV1Api(api_client)
        core.create_namespaced_persistent_volume_claim(
            watched,
            {
                "metadata": {"name": "models"},
                "spec": {
                    "accessModes": ["ReadWriteMany"],
                    "storageClassName": "kwok-volume",
                    "resources": {"requests": {"storage": "1Gi"}},
                },
            },
        )
        model = example("llmmodel")
        model["spec"]["build"].pop("storage", None)  # the operator creates the repository PVC
        model["spec"]["serving"]["replicas"] = 1
        custom.create_namespaced_custom_object("llmops.dev", "v1alpha1", watched, "llmmodels", model)
        name = model["metadata"]["name"]

        def ready() -> bool:
            found = custom.get_namespaced_custom_object("llmops.dev", "v1alpha1", watched, "llmmodels", name)
            conditions = found.get("status", {}).get("conditions", [])
            return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)

        wait_for(ready, 120, f"LLMModel Ready under the chart's RBAC (log: {operator.log_path})")
        peering = custom.get_namespaced_custom_object("kopf.dev", "v1", watched, "kopfpeerings", release.fullname)
        assert "chart-test-operator" in peering.get("status", {}), f"no heartbeat in the peering object: {peering}"
        log = operator.log_path.read_text(errors="replace")
        assert "applying Deployment" in log, "the operator under test did not write the children itself"
        forbidden = [line for line in log.splitlines() if "403" in line or "Forbidden" in line or "forbidden" in line]
        assert not forbidden, "\n".join(forbidden[:20])
    finally:
        operator.stop()


# ---- kubectl explain ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "doc"),
    [
        ("llmmodels.spec.serving.maxBatchSize", "Largest batch Triton may form"),
        ("finetunejobs.spec.lora.r", "Rank of the adapter matrices"),
        ("evalsuites.spec.runNonce", "re-run every target"),
        ("rollouts.spec.promote.id", "promotes once"),
        ("llmmodels.status", "written only by the operator"),
    ],
)
def test_kubectl_explain_shows_the_field_docs(cluster: Cluster, field: str, doc: str) -> None:
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CHART / "crds"))
    explained = wait_for(lambda: cluster.kubectl("explain", field, check=False).stdout, 30, f"kubectl explain {field}")
    assert doc in " ".join(explained.split()), explained
