"""Count one client's requests to the apiserver, as the apiserver itself counts them.

The client (the operator under test) runs as a ServiceAccount of its own. FlowSchemas that match
only that account, one per class of request (status writes, Event writes, other writes, gets,
lists, watches), send its requests to the `exempt` priority level (where
the admin user's requests go too, so it is never throttled), and the apiserver counts every
request it dispatches per FlowSchema in `apiserver_flowcontrol_dispatched_requests_total`. Nothing
sits between the client and the apiserver, so counting costs the client nothing, and every request
is seen, kopf's own (watches, peering heartbeats) as well as the operator's.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tests.support.rawapi import RawApi

WRITES = ["create", "update", "patch", "delete", "deletecollection"]
STATUSES = ["llmmodels/status", "finetunejobs/status", "evalsuites/status", "rollouts/status"]


@dataclass(frozen=True)
class RequestClass:
    """Requests of some verbs on some resources; the most specific classes match first."""

    name: str
    verbs: list[str]
    resources: list[str] = field(default_factory=lambda: ["*"])
    groups: list[str] = field(default_factory=lambda: ["*"])
    precedence: int = 60


CLASSES = [
    RequestClass("write_status", WRITES, STATUSES, ["llmops.dev"], 50),
    RequestClass("write_event", WRITES, ["events"], ["", "events.k8s.io"], 50),
    RequestClass("write_other", WRITES),
    RequestClass("get", ["get"]),
    RequestClass("list", ["list"]),
    RequestClass("watch", ["watch"]),
]
"""The precedences lie before every suggested FlowSchema but `exempt` and `probes`, which match other users."""
SUMS = {"write": ["write_status", "write_event", "write_other"], "read": ["get", "list"]}
DISPATCHED = re.compile(
    r"^apiserver_flowcontrol_dispatched_requests_total\{(?P<labels>[^}]*)\}\s+(?P<value>[0-9.e+]+)$", re.M
)
FLOW_SCHEMA = re.compile(r'flow_schema="([^"]*)"')


@dataclass
class RequestCounter:
    """A ServiceAccount identity whose requests the apiserver counts by class."""

    api: RawApi
    namespace: str
    name: str

    def schema(self, request_class: str) -> str:
        return f"{self.name}-{request_class}".replace("_", "-")

    def install(self) -> None:
        """The account (cluster-admin: the operator's own RBAC is the chart's business) and its FlowSchemas."""
        ns = self.namespace
        self.api.create(f"/api/v1/namespaces/{ns}/serviceaccounts", {"metadata": {"name": self.name}})
        self.api.create(
            "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings",
            {
                "metadata": {"name": self.name, "labels": {"llmops.dev/test": "true"}},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
                "subjects": [{"kind": "ServiceAccount", "name": self.name, "namespace": ns}],
            },
        )
        subject = {"kind": "ServiceAccount", "serviceAccount": {"name": self.name, "namespace": ns}}
        for request in CLASSES:
            rule: dict[str, Any] = {
                "subjects": [subject],
                "resourceRules": [
                    {
                        "verbs": request.verbs,
                        "apiGroups": request.groups,
                        "resources": request.resources,
                        "namespaces": ["*"],
                        "clusterScope": True,
                    }
                ],
            }
            if request.name == "get":
                rule["nonResourceRules"] = [{"verbs": ["*"], "nonResourceURLs": ["*"]}]
            self.api.create(
                "/apis/flowcontrol.apiserver.k8s.io/v1/flowschemas",
                {
                    "metadata": {"name": self.schema(request.name), "labels": {"llmops.dev/test": "true"}},
                    "spec": {
                        "priorityLevelConfiguration": {"name": "exempt"},
                        "matchingPrecedence": request.precedence,
                        "rules": [rule],
                    },
                },
            )

    def remove(self) -> None:
        for request in CLASSES:
            self.api.delete(f"/apis/flowcontrol.apiserver.k8s.io/v1/flowschemas/{self.schema(request.name)}")
        self.api.delete(f"/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/{self.name}")

    def write_kubeconfig(self, admin_kubeconfig: Path, path: Path, hours: int = 6) -> Path:
        """A kubeconfig for the account: the admin's cluster entry, a bound token of the account."""
        request = {"spec": {"expirationSeconds": hours * 3600}}
        token = self.api.create(f"/api/v1/namespaces/{self.namespace}/serviceaccounts/{self.name}/token", request)
        admin = yaml.safe_load(admin_kubeconfig.read_text())
        context = next(c for c in admin["contexts"] if c["name"] == admin["current-context"])["context"]
        cluster = next(c for c in admin["clusters"] if c["name"] == context["cluster"])["cluster"]
        cluster = dict(cluster)
        if "certificate-authority" in cluster:
            ca = Path(cluster.pop("certificate-authority")).read_bytes()
            cluster["certificate-authority-data"] = base64.b64encode(ca).decode()
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "bench", "cluster": cluster}],
            "users": [{"name": self.name, "user": {"token": token["status"]["token"]}}],
            "contexts": [{"name": "bench", "context": {"cluster": "bench", "user": self.name}}],
            "current-context": "bench",
        }
        path.write_text(yaml.safe_dump(config))
        path.chmod(0o600)
        return path

    def counts(self) -> dict[str, int]:
        """Requests dispatched so far by class, and the sums `write` and `read` (since the apiserver started)."""
        text = self.api.text("/metrics")
        wanted = {self.schema(c.name): c.name for c in CLASSES}
        found = {c.name: 0 for c in CLASSES}
        for match in DISPATCHED.finditer(text):
            schema = FLOW_SCHEMA.search(match.group("labels"))
            if schema and schema.group(1) in wanted:
                found[wanted[schema.group(1)]] += int(float(match.group("value")))
        for total, parts in SUMS.items():
            found[total] = sum(found[p] for p in parts)
        return found


def delta(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    return {k: after[k] - before.get(k, 0) for k in after}
