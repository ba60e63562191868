"""Security of the operator on the real control plane.

- Pod Security: in a namespace enforcing the `restricted` profile, every pod of the operator's
  build, training, evaluation Jobs and serving Deployments is admitted.
- RBAC: the chart's rendered (Cluster)Roles grant exactly an explicit allowlist, no wildcards,
  no Secrets; the operator runs a real reconcile of every kind with nothing but the chart's
  ServiceAccount (a TokenRequest token in its kubeconfig), and is never refused (403).
- Secrets: a token in a Secret that a model's build reads never shows in a status, an Event or
  the operator's (verbose) log.
"""

from __future__ import annotations

import json
import re
import secrets
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from tests.support.crds import CRD_DIR
from tests.support.invalid_specs import DELETE, example, patched
from tests.support.kube import GROUP, VERSION, Kube, Kubectl, evalsuite, llmmodel, ready
from tests.support.operator import OperatorProcess, wait_for

if TYPE_CHECKING:
    from tests.cluster.conftest import Cluster

REPO = Path(__file__).resolve().parents[3]
CHART = REPO / "charts" / "llmops-operator"
KINDS = ("llmmodels", "finetunejobs", "evalsuites", "rollouts")
RESTRICTED = {
    "pod-security.kubernetes.io/enforce": "restricted",
    "pod-security.kubernetes.io/enforce-version": "latest",
}


@pytest.fixture(scope="module", autouse=True)
def crds(kubectl: Kubectl) -> None:
    kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CRD_DIR))
    kubectl(
        "wait", "--for=condition=Established", "--timeout=60s", "crd", "-l", "app.kubernetes.io/part-of=llmops-operator"
    )


@pytest.fixture
def own_operator(kubeconfig: str, kube: Kube, tmp_path: Path) -> Callable[..., OperatorProcess]:
    """An operator process watching only this test's namespace (so no other test's operator acts
    on it, nor this one on theirs); stopped after the test."""
    started: list[OperatorProcess] = []

    def start(*args: str, config: str = kubeconfig, **env: str) -> OperatorProcess:
        process = OperatorProcess(
            config, tmp_path / f"operator-{len(started)}.log", ["--namespace", kube.ns, *args], **env
        )
        started.append(process)
        process.start()
        return process

    yield start  # type: ignore[misc]
    for process in started:
        process.stop()


# ---- the resources every test here reconciles ------------------------------------------------


def fine_tune(name: str = "ft", output: str = "ft-model") -> dict[str, Any]:
    """The example FineTuneJob on one worker; no PriorityClass or Kueue queue (neither exists here)."""
    obj = patched(
        example("finetunejob"),
        {"spec.workers": 1, "spec.scheduling.priorityClassName": DELETE, "spec.scheduling.queueName": DELETE},
    )
    obj["metadata"]["name"] = name
    obj["spec"]["output"]["name"] = output
    return obj


def rollout(stable: str, candidate: str) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Rollout",
        "metadata": {"name": "canary"},
        "spec": {
            "stable": {"name": stable},
            "candidate": {"name": candidate},
            "steps": [{"setWeight": 50}],
            "trafficRouting": {"replicaRatio": True},
        },
    }


def phase(kube: Kube, plural: str, name: str) -> str | None:
    return (kube.get(plural, name).get("status") or {}).get("phase")


def finished_run(kube: Kube, suite: str) -> dict[str, Any] | None:
    runs = (kube.get("evalsuites", suite).get("status") or {}).get("runs", [])
    return next((r for r in runs if r["phase"] in ("Passed", "Failed", "Error")), None)


def reconcile_every_kind(kube: Kube, with_rollout: bool = True) -> None:
    """LLMModel -> FineTuneJob (and its output model) -> EvalSuite run -> Rollout promoted."""
    kube.create(llmmodel())
    kube.create(fine_tune())
    kube.create(evalsuite("quality", target={"model": "tinystories-base"}))
    wait_for(lambda: ready(kube, "tinystories-base"), 120, "LLMModel Ready")
    wait_for(lambda: phase(kube, "finetunejobs", "ft") == "Succeeded", 120, "FineTuneJob Succeeded")
    wait_for(lambda: finished_run(kube, "quality"), 120, "an EvalSuite run")
    assert finished_run(kube, "quality")["phase"] == "Passed"  # type: ignore[index]
    if with_rollout:
        wait_for(lambda: ready(kube, "ft-model"), 120, "the fine-tuned LLMModel Ready")
        kube.create(rollout("tinystories-base", "ft-model"))
        wait_for(lambda: phase(kube, "rollouts", "canary") == "Promoted", 120, "Rollout Promoted")


# ---- (1) Pod Security "restricted" ---------------------------------------------------------------


def test_every_pod_the_operator_creates_is_admitted_under_restricted_pod_security(
    own_operator: Callable[..., OperatorProcess], kube: Kube
) -> None:
    kube.core.patch_namespace(kube.ns, {"metadata": {"labels": RESTRICTED}})
    own_operator(LLMOPS_REPOSITORY_STORAGE_CLASS="kwok-volume")
    # the profile is enforced here: a pod without the restricted settings is refused
    with pytest.raises(ApiException) as refused:
        kube.core.create_namespaced_pod(
            kube.ns,
            {"metadata": {"name": "privileged"}, "spec": {"containers": [{"name": "c", "image": "busybox"}]}},
            dry_run="All",
        )
    assert refused.value.status == 403 and "PodSecurity" in refused.value.body, refused.value.body

    reconcile_every_kind(kube, with_rollout=False)

    pods = kube.core.list_namespaced_pod(kube.ns, label_selector="app.kubernetes.io/managed-by=llmops-operator").items
    components = {p.metadata.labels.get("app.kubernetes.io/component") for p in pods}
    assert {"builder", "serving", "trainer", "evaluator"} <= components, components
    events = kube.core.list_namespaced_event(kube.ns).items
    refusals = [
        f"{e.involved_object.kind}/{e.involved_object.name}: {e.message}"
        for e in events
        if e.reason == "FailedCreate" or "PodSecurity" in (e.message or "")
    ]
    assert not refusals, "\n".join(refusals)
    # every pod template the operator wrote is admitted as it is, not only the ones that ran
    templates = [j.spec.template for j in kube.batch.list_namespaced_job(kube.ns).items]
    templates += [d.spec.template for d in kube.apps.list_namespaced_deployment(kube.ns).items]
    assert templates
    for i, template in enumerate(templates):
        pod = client.V1Pod(metadata=client.V1ObjectMeta(name=f"admitted-{i}"), spec=template.spec)
        kube.core.create_namespaced_pod(kube.ns, pod, dry_run="All")


# ---- (2) the chart's RBAC, rendered --------------------------------------------------------------

Rule = tuple[str, str, str, str]
"""(apiGroup, resource, verb, resourceName or "")."""


def rules(group: str, resources: str, verbs: str, name: str = "") -> set[Rule]:
    return {(group, r, v, name) for r in resources.split() for v in verbs.split()}


# Everything the operator may do in a namespace it watches; anything more fails the test.
NAMESPACED = (
    rules("llmops.dev", "llmmodels", "get list watch create patch")
    | rules("llmops.dev", "finetunejobs evalsuites rollouts", "get list watch patch")
    | rules("llmops.dev", "llmmodels/status finetunejobs/status evalsuites/status rollouts/status", "get patch")
    | rules("batch", "jobs", "get list watch create patch")
    | rules("apps", "deployments", "get list watch create patch")
    | rules("", "services persistentvolumeclaims configmaps", "get list watch create patch")
    | rules("", "pods", "get list watch")
    | rules("", "pods/log", "get")
    | rules("", "events", "create list watch")
    | rules("events.k8s.io", "events", "create")
    | rules("autoscaling", "horizontalpodautoscalers", "get list watch create patch")
    | rules("discovery.k8s.io", "endpointslices", "get list watch create patch")
    | rules("gateway.networking.k8s.io", "httproutes", "get list watch patch")
)
CRDS_READ = rules("apiextensions.k8s.io", "customresourcedefinitions", "get list watch")


def peering(plural: str, name: str) -> set[Rule]:
    return rules("kopf.dev", plural, "list watch") | rules("kopf.dev", plural, "get patch", name)


def rendered(cluster: Cluster, *values: str) -> list[dict[str, Any]]:
    text = cluster.helm("template", "llmops", str(CHART), "--namespace", "llmops-system", *values).stdout
    return [doc for doc in yaml.safe_load_all(text) if doc]


def granted(docs: list[dict[str, Any]], kind: str) -> dict[str, set[Rule]]:
    """(Cluster)Role -> its rules as (apiGroup, resource, verb, resourceName) tuples ("" for namespace)."""
    found: dict[str, set[Rule]] = {}
    for doc in docs:
        if doc["kind"] != kind:
            continue
        key = f"{doc['metadata'].get('namespace', '')}/{doc['metadata']['name']}"
        for rule in doc.get("rules", []):
            assert not rule.get("nonResourceURLs"), f"{key}: {rule}"
            for group in rule["apiGroups"]:
                for resource in rule["resources"]:
                    for verb in rule["verbs"]:
                        for name in rule.get("resourceNames") or [""]:
                            found.setdefault(key, set()).add((group, resource, verb, name))
    return found


def no_wildcards_or_secrets(docs: list[dict[str, Any]]) -> None:
    for key, granted_rules in (granted(docs, "ClusterRole") | granted(docs, "Role")).items():
        wild = [r for r in granted_rules if "*" in r[:3]]
        assert not wild, f"{key} grants wildcards: {wild}"
        secret = [r for r in granted_rules if r[1] == "secrets" or r[1].startswith("secrets/")]
        assert not secret, f"{key} grants Secret access: {secret}"
        dangerous = [
            r for r in granted_rules if r[2] in ("escalate", "bind", "impersonate", "delete", "deletecollection")
        ]
        assert not dangerous, f"{key} grants {dangerous}"


def bound_only_to_the_charts_service_account(docs: list[dict[str, Any]]) -> None:
    [account] = [d for d in docs if d["kind"] == "ServiceAccount"]
    for binding in (d for d in docs if d["kind"] in ("RoleBinding", "ClusterRoleBinding")):
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": account["metadata"]["name"], "namespace": "llmops-system"}
        ], binding


def test_chart_rbac_in_cluster_mode_is_exactly_the_allowlist(cluster: Cluster) -> None:
    docs = rendered(cluster)
    [(name, cluster_rules)] = granted(docs, "ClusterRole").items()
    assert cluster_rules == NAMESPACED | CRDS_READ | peering("clusterkopfpeerings", "llmops-llmops-operator"), (
        f"{name}: beyond the allowlist {sorted(cluster_rules - NAMESPACED - CRDS_READ)}"
    )
    assert not granted(docs, "Role")
    no_wildcards_or_secrets(docs)
    bound_only_to_the_charts_service_account(docs)


def test_chart_rbac_in_namespaced_mode_is_exactly_the_allowlist(cluster: Cluster) -> None:
    docs = rendered(cluster, "--values", str(CHART / "ci" / "namespaced-values.yaml"))
    watched = yaml.safe_load((CHART / "ci" / "namespaced-values.yaml").read_text())["watchNamespaces"]
    roles = granted(docs, "Role")
    assert set(roles) == {f"{ns}/llmops-llmops-operator" for ns in watched}
    for name, namespaced_rules in roles.items():
        assert namespaced_rules == NAMESPACED | peering("kopfpeerings", "llmops-llmops-operator"), name
    # cluster-wide: only the CRDs and the namespaces themselves, read-only
    [cluster_rules] = granted(docs, "ClusterRole").values()
    assert cluster_rules == CRDS_READ | rules("", "namespaces", "get list watch")
    no_wildcards_or_secrets(docs)
    bound_only_to_the_charts_service_account(docs)


def test_chart_rbac_with_every_option_on_adds_nothing(cluster: Cluster) -> None:
    monitoring = rendered(cluster, "--values", str(CHART / "ci" / "monitoring-values.yaml"))
    assert granted(monitoring, "ClusterRole") == granted(rendered(cluster), "ClusterRole")
    no_wildcards_or_secrets(monitoring)


# ---- (3) the operator with only the chart's ServiceAccount ---------------------------------------


def make_namespace(core: client.CoreV1Api, prefix: str) -> str:
    name = f"{prefix}-{uuid.uuid4().hex[:6]}"
    core.create_namespace({"metadata": {"name": name, "labels": {"llmops.dev/test": "true"}}})
    wait_for(lambda: core.read_namespaced_service_account("default", name), 60, f"default ServiceAccount in {name}")
    return name


@pytest.fixture
def release_namespace(api_client: Any) -> Iterator[str]:
    core = client.CoreV1Api(api_client)
    name = make_namespace(core, "t-sec-release")
    yield name
    core.delete_namespace(name, propagation_policy="Background")


def token_request(core: client.CoreV1Api, namespace: str, account: str) -> str:
    """A one-hour token of the ServiceAccount, from the TokenRequest API."""
    request = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {"expirationSeconds": 3600}}
    answer = core.create_namespaced_service_account_token(account, namespace, request)
    return str(answer.status.token)


def token_kubeconfig(cluster: Cluster, token: str, path: Path) -> str:
    """The admin kubeconfig's cluster (server, CA) with the token as the only credential."""
    admin = yaml.safe_load(cluster.kubeconfig.read_text())
    context = next(c for c in admin["contexts"] if c["name"] == admin["current-context"])["context"]
    entry = next(c for c in admin["clusters"] if c["name"] == context["cluster"])
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [entry],
                "users": [{"name": "operator", "user": {"token": token}}],
                "contexts": [{"name": "operator", "context": {"cluster": entry["name"], "user": "operator"}}],
                "current-context": "operator",
            }
        )
    )
    return str(path)


@pytest.fixture
def chart_rbac(
    cluster: Cluster, kube: Kube, release_namespace: str
) -> Iterator[Callable[[], tuple[list[str], dict[str, str], str]]]:
    """The chart installed (namespaced mode, watching the test's namespace): its ServiceAccount,
    Role, RoleBinding, read-only ClusterRole and KopfPeering are what the operator gets."""
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CHART / "crds"))
    release = f"sec-{uuid.uuid4().hex[:6]}"
    values = [
        "--set", f"watchNamespaces[0]={kube.ns}",
        "--set", "replicaCount=1",
        "--set", "config.resyncSeconds=5",
        "--set", "config.repositoryStorage.storageClassName=kwok-volume",
    ]  # fmt: skip
    cluster.helm("install", release, str(CHART), "--namespace", release_namespace, *values, timeout=300)

    def operator_setup() -> tuple[list[str], dict[str, str], str]:
        manifest = [
            d for d in yaml.safe_load_all(cluster.helm("get", "manifest", release, "-n", release_namespace).stdout) if d
        ]
        [deployment] = [d for d in manifest if d["kind"] == "Deployment"]
        container = deployment["spec"]["template"]["spec"]["containers"][0]
        args = [a for a in container["args"] if a.startswith(("--namespace=", "--peering="))]
        env = {e["name"]: e["value"] for e in container["env"] if e["name"].startswith("LLMOPS_") and "value" in e}
        for port in ("LLMOPS_METRICS_PORT", "LLMOPS_HEALTH_PORT"):
            env.pop(port)  # the test process picks free ones
        return args, env, deployment["spec"]["template"]["spec"]["serviceAccountName"]

    yield operator_setup
    cluster.helm("uninstall", release, "--namespace", release_namespace, "--wait", check=False, timeout=300)


FORBIDDEN = re.compile(r"\b403\b|[Ff]orbidden")


def test_the_operator_reconciles_every_kind_with_only_the_charts_service_account(
    cluster: Cluster, api_client: Any, kube: Kube, release_namespace: str, chart_rbac: Any, tmp_path: Path
) -> None:
    args, env, account = chart_rbac()
    token = token_request(kube.core, release_namespace, account)
    kubeconfig = token_kubeconfig(cluster, token, tmp_path / "kubeconfig")
    whoami = subprocess.run(
        [str(cluster.kubectl_path), "--kubeconfig", kubeconfig, "auth", "whoami", "-o", "json"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert json.loads(whoami.stdout)["status"]["userInfo"]["username"] == (
        f"system:serviceaccount:{release_namespace}:{account}"
    )
    # the model repositories go to the kube fixture's bound claim: no provisioner is needed
    operator = OperatorProcess(kubeconfig, tmp_path / "operator.log", args, POD_ID="security-test", **env)
    operator.start()
    try:
        reconcile_every_kind(kube)
        for plural in KINDS:
            for obj in kube.custom.list_namespaced_custom_object(GROUP, VERSION, kube.ns, plural)["items"]:
                status = obj.get("status") or {}
                assert status.get("observedGeneration") == obj["metadata"]["generation"], (plural, status)
    finally:
        operator.stop()
    log = operator.log_path.read_text(errors="replace")
    assert "applying Job" in log and "applying Deployment" in log, "the operator under test wrote no children"
    refused = [line for line in log.splitlines() if FORBIDDEN.search(line)]
    assert not refused, "\n".join(refused[:20])


# ---- (4) a Secret's token stays a secret ---------------------------------------------------------


def everything_it_wrote(kube: Kube) -> str:
    """Statuses of every llmops object and every Event in the namespace, as text."""
    parts = []
    for plural in KINDS:
        for obj in kube.custom.list_namespaced_custom_object(GROUP, VERSION, kube.ns, plural)["items"]:
            parts.append(json.dumps(obj.get("status") or {}))
    # raw JSON: the client's Event models refuse events.k8s.io Events without an eventTime
    for listed in (
        kube.core.list_namespaced_event(kube.ns, _preload_content=False),
        client.EventsV1Api(kube.core.api_client).list_namespaced_event(kube.ns, _preload_content=False),
    ):
        parts.append(listed.data.decode())
    return "\n".join(parts)


def test_a_token_in_a_secret_never_reaches_status_events_or_the_log(
    own_operator: Callable[..., OperatorProcess], kube: Kube
) -> None:
    planted = f"hf_{secrets.token_hex(20)}"
    kube.core.create_namespaced_secret(
        kube.ns,
        {
            "metadata": {"name": "hub-credentials"},
            "stringData": {"HF_TOKEN": planted, "AWS_SECRET_ACCESS_KEY": planted},
        },
    )
    # a ConfigMap the operator does not own, holding it too (a careless copy)
    kube.core.create_namespaced_config_map(kube.ns, {"metadata": {"name": "notes"}, "data": {"token": planted}})
    # verbose: kopf's debug log shows the bodies it handles
    operator = own_operator("--verbose", LLMOPS_REPOSITORY_STORAGE_CLASS="kwok-volume")
    try:
        kube.create(llmmodel(**{"spec.source.credentialsSecret": "hub-credentials"}))
        kube.create(fine_tune())
        kube.create(evalsuite("quality", target={"model": "tinystories-base"}))
        wait_for(lambda: ready(kube, "tinystories-base"), 120, "LLMModel Ready")
        wait_for(lambda: finished_run(kube, "quality"), 120, "an EvalSuite run")
        wait_for(lambda: phase(kube, "finetunejobs", "ft") == "Succeeded", 120, "FineTuneJob Succeeded")
    finally:
        operator.stop()
    # the build reads it by reference, never by value
    jobs = kube.batch.list_namespaced_job(kube.ns).items
    [build] = [j for j in jobs if j.metadata.name.startswith("tinystories-base-build-")]
    container = build.spec.template.spec.containers[0]
    assert [e.secret_ref.name for e in container.env_from or []] == ["hub-credentials"]
    assert planted not in json.dumps(kube.core.api_client.sanitize_for_serialization(build))
    written = everything_it_wrote(kube)
    assert '"Built"' in written and "tinystories-base" in written, "no Events of the model were read"
    assert planted not in written, "the token shows in a status or an Event"
    assert planted not in operator.log_path.read_text(errors="replace"), "the token shows in the operator's log"
