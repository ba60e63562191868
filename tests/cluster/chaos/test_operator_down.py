"""The world changes while the operator is down; a namespace full of resources is deleted under it.

Stopped operator: 100 spec edits and 20 deletions across the four kinds, serving and training
pods deleted; started again, everything converges (each surviving resource's status observes
its last generation and its children match it, every deleted one is gone with its children)
and no object of ours carries a finalizer. Nothing here needs a GPU: the models serve on the
CPU node, so the shared cluster's 16 simulated GPUs stay free for other tests.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from tests.cluster.chaos.conftest import ChaosTally
from tests.support.chaos import KillableOperator, cpu_model, install_crds, killable_operator, model_converged
from tests.support.invalid_specs import DELETE, example, patched
from tests.support.kube import GROUP, VERSION, Kube, Kubectl, evalsuite
from tests.support.operator import wait_for

PLURALS = ("llmmodels", "evalsuites", "rollouts", "finetunejobs")


@pytest.fixture(scope="module")
def crds(kubectl: Kubectl) -> None:
    install_crds(kubectl)


@pytest.fixture
def operator(crds: None, kubeconfig: str, namespace: str, tmp_path: Path) -> Iterator[KillableOperator]:
    process = killable_operator(kubeconfig, tmp_path, namespace)
    process.start()
    yield process
    process.stop()


def paused_rollout(name: str, stable: str, candidate: str) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Rollout",
        "metadata": {"name": name},
        "spec": {
            "stable": {"name": stable},
            "candidate": {"name": candidate},
            "service": name,
            "steps": [{"pause": {}}],
            "trafficRouting": {"replicaRatio": True},
        },
    }


def cpu_finetunejob(name: str) -> dict[str, Any]:
    obj = patched(
        example("finetunejob"),
        {
            "spec.baseModel": {"model": "m00"},
            "spec.workers": 1,
            "spec.resources": {"gpus": 0, "memory": "1Gi"},
            "spec.scheduling": DELETE,
        },
    )
    obj["metadata"]["name"] = name
    obj["spec"]["output"]["name"] = f"{name}-model"
    return obj


def reconciled(kube: Kube, plural: str, name: str) -> bool:
    obj = kube.get(plural, name)
    return (obj.get("status") or {}).get("observedGeneration") == obj["metadata"]["generation"]


def children_of(kube: Kube, kind: str, name: str) -> list[str]:
    selector = f"llmops.dev/{kind}={name}"
    lists = {
        "Deployment": kube.apps.list_namespaced_deployment,
        "Job": kube.batch.list_namespaced_job,
        "Service": kube.core.list_namespaced_service,
        "ConfigMap": kube.core.list_namespaced_config_map,
    }
    return [f"{k} {o.metadata.name}" for k, fn in lists.items() for o in fn(kube.ns, label_selector=selector).items]


def finalizers(kube: Kube) -> dict[str, list[str]]:
    """Finalizers on our objects and their children (pods are left to the Job controller's)."""
    found: dict[str, list[str]] = {}
    for plural in PLURALS:
        for obj in kube.custom.list_namespaced_custom_object(GROUP, VERSION, kube.ns, plural)["items"]:
            if obj["metadata"].get("finalizers"):
                found[f"{plural}/{obj['metadata']['name']}"] = obj["metadata"]["finalizers"]
    for listed in (kube.apps.list_namespaced_deployment(kube.ns), kube.batch.list_namespaced_job(kube.ns)):
        for item in listed.items:
            if item.metadata.finalizers:
                found[item.metadata.name] = item.metadata.finalizers
    return found


@dataclass(frozen=True)
class World:
    models: list[str]
    suites: list[str]
    rollouts: list[str]
    fine_tunes: list[str]


def build_world(kube: Kube, models: int, suites: int, rollouts: int, fine_tunes: int) -> World:
    world = World(
        models=[f"m{i:02d}" for i in range(models)],
        suites=[f"s{i:02d}" for i in range(suites)],
        rollouts=[f"r{i:02d}" for i in range(rollouts)],
        fine_tunes=[f"ft{i}" for i in range(fine_tunes)],
    )
    for name in world.models:
        kube.create(cpu_model(name))
    for name in world.suites:
        kube.create(evalsuite(name))
    for i, name in enumerate(world.rollouts):
        kube.create(paused_rollout(name, world.models[0], world.models[1 + i % (models - 1)]))
    for name in world.fine_tunes:
        kube.create(cpu_finetunejob(name))
    return world


def test_edits_and_deletions_while_the_operator_is_down_converge_after_it_restarts(
    operator: KillableOperator, kube: Kube, chaos_tally: ChaosTally
) -> None:
    world = build_world(kube, models=20, suites=10, rollouts=4, fine_tunes=3)
    wait_for(lambda: all(model_converged(kube, m) is None for m in world.models), 240, "every model serving")
    wait_for(
        lambda: len(kube.core.list_namespaced_pod(kube.ns, label_selector="llmops.dev/finetunejob").items) >= 3,
        60,
        "the training pods",
    )

    operator.stop()
    # 100 edits (survivors and doomed alike), then 20 deletions, then the pods.
    edits: list[tuple[str, str, dict[str, Any]]] = []
    for name in world.models[:10]:
        for replicas in (2, 3, 2):
            edits.append(("llmmodels", name, {"serving": {"replicas": replicas}}))
        edits.append(("llmmodels", name, {"serving": {"maxBatchSize": 32}}))
        edits.append(("llmmodels", name, {"build": {"quantization": "FP16"}}))
    for name in world.models[10:]:
        edits.append(("llmmodels", name, {"serving": {"replicas": 2}}))
    for name in world.suites:
        for threshold in (0.5, 0.6, 0.7, 0.9):
            metric = {"name": "em", "type": "ExactMatch", "threshold": threshold}
            edits.append(("evalsuites", name, {"metrics": [metric]}))
    assert len(edits) == 100, len(edits)
    for plural, name, spec in edits:
        kube.patch_spec(plural, name, spec)
    deletions = (
        [("llmmodels", n) for n in world.models[10:]]
        + [("evalsuites", n) for n in world.suites[5:]]
        + [("rollouts", n) for n in world.rollouts[1:]]
        + [("finetunejobs", n) for n in world.fine_tunes[1:]]
    )
    assert len(deletions) == 20, len(deletions)
    for plural, name in deletions:
        kube.custom.delete_namespaced_custom_object(GROUP, VERSION, kube.ns, plural, name)
    for selector in ("app.kubernetes.io/component=serving", "llmops.dev/finetunejob"):
        kube.core.delete_collection_namespaced_pod(kube.ns, label_selector=selector, grace_period_seconds=0)

    restarted = time.monotonic()
    operator.start()
    survivors = world.models[:10]

    still_off: dict[str, str] = {}

    def converged() -> bool:
        still_off.clear()
        rollout = kube.get("rollouts", world.rollouts[0])
        candidate, held = rollout["spec"]["candidate"]["name"], (rollout.get("status") or {}).get("canaryReplicas")
        for m in survivors:
            if (why := model_converged(kube, m, held if m == candidate else None)) is not None:
                still_off[f"llmmodels/{m}"] = why
        for plural, names in (("evalsuites", world.suites[:5]), ("rollouts", world.rollouts[:1])):
            for name in names:
                if not reconciled(kube, plural, name):
                    still_off[f"{plural}/{name}"] = "generation not observed"
        ft = kube.get("finetunejobs", world.fine_tunes[0]).get("status") or {}
        if ft.get("phase") != "Succeeded":
            still_off[f"finetunejobs/{world.fine_tunes[0]}"] = f"phase {ft.get('phase')}"
        return not still_off

    try:
        wait_for(converged, 240, "every survivor converged")
    except AssertionError:
        raise AssertionError(f"not converged: {still_off}\noperator log:\n{operator.log_tail(30)}") from None
    took = time.monotonic() - restarted

    def gone() -> bool:
        for plural, name in deletions:
            try:
                kube.get(plural, name)
                return False
            except ApiException as error:
                if error.status != 404:
                    raise
        kinds = {
            "llmmodels": "llmmodel",
            "evalsuites": "evalsuite",
            "rollouts": "rollout",
            "finetunejobs": "finetunejob",
        }
        return not any(children_of(kube, kinds[plural], name) for plural, name in deletions)

    wait_for(gone, 60, "the deleted resources and their children gone")
    assert finalizers(kube) == {}
    builds = [
        j.metadata.name for j in kube.batch.list_namespaced_job(kube.ns).items if j.metadata.name[:3] in survivors
    ]
    assert len(builds) == 20, f"one build for the first spec and one for FP16 per surviving model: {builds}"
    chaos_tally.figure("operator down (100 edits, 20 deletions): converged after restart in", f"{took:.1f} s")


def test_deleting_a_namespace_of_100_resources_completes_while_the_operator_runs(
    operator: KillableOperator, kube: Kube, api_client: Any, chaos_tally: ChaosTally
) -> None:
    # replicas 0: builds only; each rollout holds its candidate at one replica on the CPU node
    for i in range(40):
        kube.create(cpu_model(f"m{i:02d}", replicas=0))
    for i in range(45):
        kube.create(evalsuite(f"s{i:02d}"))
    for i in range(15):
        kube.create(paused_rollout(f"r{i:02d}", "m00", f"m{i + 1:02d}"))

    def all_reconciled() -> bool:
        return all(
            (o.get("status") or {}).get("observedGeneration")
            for plural in ("llmmodels", "evalsuites", "rollouts")
            for o in kube.custom.list_namespaced_custom_object(GROUP, VERSION, kube.ns, plural)["items"]
        )

    wait_for(all_reconciled, 240, "all 100 resources reconciled")
    core = client.CoreV1Api(api_client)
    started = time.monotonic()
    core.delete_namespace(kube.ns)

    def namespace_gone() -> bool:
        try:
            core.read_namespace(kube.ns)
        except ApiException as error:
            if error.status == 404:
                return True
            raise
        return False

    try:
        wait_for(namespace_gone, 180, f"namespace {kube.ns} deleted")
    except AssertionError:
        status = core.read_namespace(kube.ns).status
        raise AssertionError(f"namespace still there: {status}\noperator log:\n{operator.log_tail(40)}") from None
    took = time.monotonic() - started
    assert operator.running(), operator.log_tail()
    chaos_tally.figure("namespace of 100 resources deleted, operator running, in", f"{took:.1f} s")
