"""Typed helpers over the test cluster for the reconcile tests: objects, conditions, claims, events."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from typing import Any

from kubernetes import client

from tests.support.invalid_specs import example, patched

Kubectl = Callable[..., subprocess.CompletedProcess[str]]
GROUP, VERSION = "llmops.dev", "v1alpha1"
CLAIMS = ("models", "datasets", "model-repositories", "training-checkpoints")
"""The PVCs the examples mount; the `kube` fixture binds each to a hostPath volume."""


class Kube:
    """Small typed helpers over the test cluster."""

    def __init__(self, api: Any, namespace: str) -> None:
        self.ns = namespace
        self.custom = client.CustomObjectsApi(api)
        self.core = client.CoreV1Api(api)
        self.batch = client.BatchV1Api(api)
        self.apps = client.AppsV1Api(api)

    def create(self, obj: dict[str, Any]) -> None:
        plural = obj["kind"].lower() + "s"
        self.custom.create_namespaced_custom_object(GROUP, VERSION, self.ns, plural, obj)

    def get(self, plural: str, name: str) -> dict[str, Any]:
        return dict(self.custom.get_namespaced_custom_object(GROUP, VERSION, self.ns, plural, name))

    def patch_spec(self, plural: str, name: str, spec: dict[str, Any]) -> None:
        self.custom.patch_namespaced_custom_object(GROUP, VERSION, self.ns, plural, name, {"spec": spec})

    def condition(self, plural: str, name: str, type_: str) -> tuple[str, str] | None:
        for c in self.get(plural, name).get("status", {}).get("conditions", []):
            if c["type"] == type_:
                return c["status"], c["reason"]
        return None

    def jobs(self) -> list[str]:
        return sorted(j.metadata.name for j in self.batch.list_namespaced_job(self.ns).items)

    def bound_claim(self, name: str) -> None:
        """A PVC bound to a hostPath PV: the local cluster has no storage provisioner."""
        pv = f"{self.ns}-{name}"
        self.core.create_persistent_volume(
            {
                "apiVersion": "v1",
                "kind": "PersistentVolume",
                "metadata": {"name": pv, "labels": {"llmops.dev/test": "true"}},
                "spec": {
                    "capacity": {"storage": "10Gi"},
                    "accessModes": ["ReadWriteMany", "ReadWriteOnce"],
                    "hostPath": {"path": f"/tmp/llmops-pv/{pv}"},
                    "claimRef": {"namespace": self.ns, "name": name},
                    "persistentVolumeReclaimPolicy": "Delete",
                },
            }
        )
        self.core.create_namespaced_persistent_volume_claim(
            self.ns,
            {
                "metadata": {"name": name},
                "spec": {
                    "accessModes": ["ReadWriteMany"],
                    "storageClassName": "",
                    "volumeName": pv,
                    "resources": {"requests": {"storage": "10Gi"}},
                },
            },
        )


def llmmodel(name: str = "tinystories-base", **changes: Any) -> dict[str, Any]:
    obj = patched(example("llmmodel"), {"spec.serving.replicas": 1, **changes})
    obj["metadata"]["name"] = name
    return obj


def ready(kube: Kube, name: str) -> bool:
    return kube.condition("llmmodels", name, "Ready") == ("True", "Serving")


def event_reasons(kubectl: Kubectl, namespace: str, kind: str) -> list[str]:
    events = json.loads(kubectl("get", "events.events.k8s.io", "-n", namespace, "-o", "json").stdout)["items"]
    return [e["reason"] for e in events if e.get("regarding", {}).get("kind") == kind]


def evalsuite(name: str, **spec: Any) -> dict[str, Any]:
    """An EvalSuite of one golden case scored by exact match (threshold 0.8); `spec` adds or overrides."""
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "EvalSuite",
        "metadata": {"name": name},
        "spec": {
            "dataset": {"cases": [{"prompt": "reverse: abc =", "completion": " cba"}]},
            "metrics": [{"name": "em", "type": "ExactMatch", "threshold": 0.8}],
            **spec,
        },
    }
