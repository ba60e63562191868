"""The operator SIGKILLed at every step boundary and between a child's write and its status write.

The operator runs through a fault proxy that injects nothing but sees every request: when the
apiserver has answered a write of a child (a Job, Service, EndpointSlice, Deployment, ConfigMap,
LLMModel), the operator is killed before it hears the answer — after the child exists, before
the status that follows it is written. Recorders watch the Rollout, FineTuneJob, EndpointSlices,
Jobs and pods for the whole run; the assertions are on that history, not only on the end:
the same end state every time, each step entered exactly once and in order, one object per
child name (one uid), and no traffic on a canary once it has failed.
"""

from __future__ import annotations

import json
import random
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from tests.cluster.chaos.conftest import ChaosTally
from tests.support.chaos import (
    KillableOperator,
    Recorder,
    Seen,
    drive,
    install_crds,
    killable_operator,
    resource_version,
)
from tests.support.faultproxy import FaultProxy, Request
from tests.support.invalid_specs import DELETE, example, patched
from tests.support.kube import GROUP, VERSION, Kube, Kubectl, evalsuite, llmmodel, ready
from tests.support.operator import wait_for

# Every step waits at least once (weight 40 needs a second candidate replica next to two stable
# ones), so each one shows in the Rollout's status and its history tells whether one was skipped.
STEPS = [
    {"setWeight": 40},
    {"pause": {"duration": "3s"}},
    {"evalGate": {"evalSuite": "quality"}},
    {"setWeight": 60},
    {"pause": {"duration": "3s"}},
]
STABLE = "base"


@dataclass(frozen=True)
class KillPlan:
    per_boundary: int
    """Kills at each step boundary: at once, then again shortly after each restart."""
    child_writes: bool
    """Kill when the apiserver has answered the first write of each child."""
    random_share: float
    """After a restart or an event, the chance of a kill after a short random delay."""
    random_limit: int = 12
    seed: int = 1


FAST = KillPlan(per_boundary=1, child_writes=True, random_share=0.0)
THOROUGH = KillPlan(per_boundary=3, child_writes=True, random_share=0.25)


@dataclass
class Killer:
    """Decides when to kill; fed by the recorders (boundaries, events), the proxy and restarts."""

    operator: KillableOperator
    plan: KillPlan
    rng: random.Random
    armed: bool = False
    pending_boundary_kills: int = 0
    random_kills: int = 0
    children_written: set[str] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def boundary(self, what: str) -> None:
        if not self.armed:
            return
        with self._lock:
            self.pending_boundary_kills = self.plan.per_boundary - 1
        self.operator.kill_now(f"boundary {what}")

    def answered(self, request: Request) -> None:
        """The proxy's hook: a child write took effect; the operator has not heard yet."""
        if not (self.armed and self.plan.child_writes and request.write and request.answer.startswith("2")):
            return
        if request.path.endswith("/status") or "/events" in request.path:
            return
        with self._lock:
            if request.path in self.children_written:
                return
            self.children_written.add(request.path)
        self.operator.kill_now(f"after {request.method} {request.path}")

    def maybe_random(self, what: str) -> None:
        with self._lock:
            if not self.armed or self.random_kills >= self.plan.random_limit:
                return
            if self.rng.random() >= self.plan.random_share:
                return
            self.random_kills += 1
            delay = self.rng.uniform(0.05, 1.5)
        self.operator.kill_later(delay, f"{delay:.2f}s after {what}")

    def after_restart(self) -> None:
        with self._lock:
            again = self.pending_boundary_kills > 0
            if again:
                self.pending_boundary_kills -= 1
                delay = self.rng.uniform(0.0, 1.0)
        if again:
            self.operator.kill_later(delay, f"boundary, again {delay:.2f}s after a restart")
        else:
            self.maybe_random("a restart")


@pytest.fixture(scope="module")
def crds(kubectl: Kubectl) -> None:
    install_crds(kubectl)


@dataclass
class Run:
    operator: KillableOperator
    proxy: FaultProxy
    killer: Killer


@pytest.fixture
def run(
    request: pytest.FixtureRequest, crds: None, kubeconfig: str, namespace: str, tmp_path: Path, chaos_tally: ChaosTally
) -> Iterator[Run]:
    plan: KillPlan = getattr(request, "param", FAST)
    proxy = FaultProxy(kubeconfig, tmp_path, "operator-proxy").start()
    operator = killable_operator(str(proxy.kubeconfig), tmp_path, namespace)
    killer = Killer(operator, plan, random.Random(plan.seed))
    proxy.on_answered = killer.answered
    operator.start()
    try:
        yield Run(operator, proxy, killer)
    finally:
        killer.armed = False
        chaos_tally.kills += len(operator.kills)
        print(f"\n{len(operator.kills)} kills: " + "; ".join(k.why for k in operator.kills))
        operator.stop()
        proxy.stop()


# ---- Rollout ------------------------------------------------------------------------------


def rollout(candidate: str) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Rollout",
        "metadata": {"name": "canary"},
        "spec": {
            "stable": {"name": STABLE},
            "candidate": {"name": candidate},
            "steps": STEPS,
            "trafficRouting": {"replicaRatio": True},
        },
    }


def rollout_end_state(status: dict[str, Any]) -> dict[str, Any]:
    """What must come out the same every time (no times, no digests)."""
    return {
        "phase": status.get("phase"),
        "currentStep": status.get("currentStep"),
        "canaryWeight": status.get("canaryWeight"),
        "canaryReplicas": status.get("canaryReplicas"),
        "history": [
            (h["event"], h.get("step"), h.get("metric"), h.get("threshold")) for h in status.get("history") or []
        ],
        "rejected": len(status.get("rejectedDigests") or []),
        "conditions": sorted((c["type"], c["status"], c["reason"]) for c in status.get("conditions", [])),
    }


PROMOTED = {
    "phase": "Promoted",
    "currentStep": 5,
    "canaryWeight": 100,
    "canaryReplicas": 2,
    "history": [("Promoted", 5, None, None)],
    "rejected": 0,
    "conditions": [("Degraded", "False", "AsExpected"), ("Progressing", "False", "Promoted"),
                   ("Ready", "True", "Promoted")],
}  # fmt: skip
ROLLED_BACK = {
    "phase": "RolledBack",
    "currentStep": 2,
    "canaryWeight": 0,
    "canaryReplicas": 0,
    "history": [("RolledBack", 2, "em", 0.8)],
    "rejected": 1,
    "conditions": [("Degraded", "True", "RolledBack"), ("Progressing", "False", "RolledBack"),
                   ("Ready", "False", "RolledBack")],
}  # fmt: skip


def steps_entered(versions: list[dict[str, Any]]) -> list[tuple[int, str]]:
    """(step, when it was entered) in the order the Rollout's status showed them, each once."""
    entered: list[tuple[int, str]] = []
    for obj in versions:
        status = obj.get("status") or {}
        if status.get("currentStep") is None:
            continue
        entry = (status["currentStep"], status.get("stepStartedAt", ""))
        if not entered or entered[-1] != entry:
            entered.append(entry)
    return entered


def events(kube: Kube, kind: str) -> list[dict[str, Any]]:
    # raw JSON: the client's models refuse the core controllers' events (no eventTime)
    raw = client.EventsV1Api(kube.core.api_client).list_namespaced_event(kube.ns, _preload_content=False)
    items: list[dict[str, Any]] = json.loads(raw.data)["items"]
    return [e for e in items if (e.get("regarding") or {}).get("kind") == kind]


def serving_models(slice_: dict[str, Any]) -> set[str]:
    """The models whose pods an EndpointSlice sends traffic to (pod <model>-<rs hash>-<suffix>)."""
    return {e["targetRef"]["name"].rsplit("-", 2)[0] for e in slice_.get("endpoints") or []}


def run_rollout_under_kills(run: Run, kube: Kube, candidate: str, custom: client.CustomObjectsApi) -> dict[str, Any]:
    ns = kube.ns
    kube.create(llmmodel(STABLE, **{"spec.serving.replicas": 2}))
    kube.create(evalsuite("quality"))
    kube.create(llmmodel(candidate))
    wait_for(lambda: ready(kube, STABLE) and ready(kube, candidate), 120, "both models Ready")
    killer = run.killer
    last_step: list[tuple[Any, Any]] = []

    def rollout_event(seen: Seen) -> None:
        status = seen.obj.get("status") or {}
        where = (status.get("phase"), status.get("currentStep"))
        if status and (not last_step or last_step[-1] != where):
            last_step.append(where)
            killer.boundary(f"{where[0]} step {where[1]}")
        else:
            killer.maybe_random(f"a {seen.type} Rollout")

    discovery = client.DiscoveryV1Api(kube.core.api_client)
    rollouts = Recorder(custom.list_namespaced_custom_object, GROUP, VERSION, ns, "rollouts", on_event=rollout_event)
    slices = Recorder(discovery.list_namespaced_endpoint_slice, ns, label_selector="kubernetes.io/service-name=canary")
    jobs = Recorder(kube.batch.list_namespaced_job, ns, on_event=lambda s: killer.maybe_random(f"a {s.type} Job"))
    with rollouts, slices, jobs:
        killer.armed = True
        kube.create(rollout(candidate))

        def finished() -> dict[str, Any] | None:
            status = kube.get("rollouts", "canary").get("status") or {}
            return status if status.get("phase") in ("Promoted", "RolledBack") else None

        drive(run.operator, finished, 300, "the Rollout to finish", after_restart=killer.after_restart)
        killer.armed = False
        # settle: the rolled-back canary is scaled to 0, endpoints follow the pods
        drive(run.operator, lambda: rollout_end_state(finished() or {}) in (PROMOTED, ROLLED_BACK), 60,
              "a settled end state")  # fmt: skip
        final = finished() or {}

    history = rollouts.versions("canary")
    entered = steps_entered(history)
    steps = [step for step, _ in entered]
    bad = "bad" in candidate
    assert steps == ([0, 1, 2] if bad else [0, 1, 2, 3, 4, 5]), f"steps entered, in order: {entered}"
    step_events = [e for e in events(kube, "Rollout") if e["reason"] == "Step"]
    notes = [e["note"] for e in step_events]
    assert len(notes) == len(set(notes)), f"a step was entered twice: {notes}"
    phases = [p for p, _ in last_step]
    assert "RolledBack" not in phases or phases.index("RolledBack") == len(phases) - 1, last_step

    # one object per child, never replaced; one evaluation of the candidate
    for name in jobs.names():
        assert len(jobs.uids(name)) == 1, f"Job {name} was created more than once"
    eval_jobs = [n for n in jobs.names() if n.startswith("quality-eval-")]
    assert len(eval_jobs) == 1, jobs.names()
    runs = kube.get("evalsuites", "quality")["status"]["runs"]
    assert [(r["model"], r["phase"]) for r in runs] == [(candidate, "Failed" if bad else "Passed")]
    deployments = sorted(d.metadata.name for d in kube.apps.list_namespaced_deployment(ns).items)
    assert deployments == sorted([STABLE, candidate])
    assert len(slices.names()) == 1 and len(slices.uids("canary-rollout")) == 1, slices.names()

    # traffic: on both at 40 % and 60 %; on a failed canary never again once the rollout knew
    if bad:
        rolled_back = next(o for o in history if (o.get("status") or {}).get("phase") == "RolledBack")
        late = [
            s.obj
            for s in slices.seen
            if resource_version(s.obj) > resource_version(rolled_back) and candidate in serving_models(s.obj)
        ]
        assert not late, f"the failed canary served after the rollback: {late[0]}"
        weights = {(o.get("status") or {}).get("canaryWeight") for o in history}
        assert max(w or 0 for w in weights) == 40, weights
    else:
        assert serving_models(slices.versions("canary-rollout")[-1]) == {candidate}
    return final


def test_a_rollout_killed_at_every_step_boundary_and_child_write_ends_promoted(
    run: Run, kube: Kube, api_client: Any
) -> None:
    final = run_rollout_under_kills(run, kube, "tuned", client.CustomObjectsApi(api_client))
    assert rollout_end_state(final) == PROMOTED
    assert len(run.operator.kills) >= 6


@pytest.mark.chaos
@pytest.mark.parametrize("run", [THOROUGH, KillPlan(3, True, 0.25, seed=2)], indirect=True, ids=["seed1", "seed2"])
def test_a_good_canary_killed_three_times_at_every_boundary_is_promoted_exactly_once(
    run: Run, kube: Kube, api_client: Any
) -> None:
    final = run_rollout_under_kills(run, kube, "tuned", client.CustomObjectsApi(api_client))
    assert rollout_end_state(final) == PROMOTED


@pytest.mark.chaos
@pytest.mark.parametrize("run", [THOROUGH], indirect=True, ids=["seed1"])
def test_a_failed_canary_killed_three_times_at_every_boundary_never_serves_again(
    run: Run, kube: Kube, api_client: Any
) -> None:
    final = run_rollout_under_kills(run, kube, "tuned-bad", client.CustomObjectsApi(api_client))
    assert rollout_end_state(final) == ROLLED_BACK


# ---- FineTuneJob --------------------------------------------------------------------------


def finetunejob() -> dict[str, Any]:
    # No priority class: a cluster-scoped object shared with every other test run.
    obj = patched(
        example("finetunejob"),
        {"spec.workers": 2, "spec.resources.gpus": 2, "spec.scheduling.priorityClassName": DELETE},
    )
    obj["metadata"]["name"] = "ft"
    obj["spec"]["output"]["name"] = "ft-model"
    return obj


def finetune_end_state(status: dict[str, Any]) -> dict[str, Any]:
    return {
        "phase": status.get("phase"),
        "resumes": status.get("resumes") or 0,
        "conditions": sorted((c["type"], c["status"], c["reason"]) for c in status.get("conditions", [])),
    }


def run_finetune_under_kills(run: Run, kube: Kube, custom: client.CustomObjectsApi) -> dict[str, Any]:
    ns = kube.ns
    kube.create(llmmodel())
    wait_for(lambda: ready(kube, "tinystories-base"), 120, "base model Ready")
    killer = run.killer
    phases: list[str | None] = []

    def job_event(seen: Seen) -> None:
        phase = (seen.obj.get("status") or {}).get("phase")
        if phase and (not phases or phases[-1] != phase):
            phases.append(phase)
            killer.boundary(f"FineTuneJob {phase}")
        else:
            killer.maybe_random(f"a {seen.type} FineTuneJob")

    fine_tunes = Recorder(custom.list_namespaced_custom_object, GROUP, VERSION, ns, "finetunejobs", on_event=job_event)
    models = Recorder(custom.list_namespaced_custom_object, GROUP, VERSION, ns, "llmmodels")
    jobs = Recorder(kube.batch.list_namespaced_job, ns)
    pods = Recorder(kube.core.list_namespaced_pod, ns, on_event=lambda s: killer.maybe_random(f"a {s.type} pod"))
    with fine_tunes, models, jobs, pods:
        killer.armed = True
        kube.create(finetunejob())
        drive(run.operator, lambda: ready(kube, "ft-model"), 300, "the fine-tuned model Ready",
              after_restart=killer.after_restart)  # fmt: skip
        killer.armed = False
        final = kube.get("finetunejobs", "ft")["status"]

    seen_phases = [p for p in phases if p]
    order = ["Pending", "Running", "Succeeded"]
    assert seen_phases[-1] == "Succeeded" and seen_phases == sorted(seen_phases, key=order.index), seen_phases
    assert len(jobs.uids("ft-train")) == 1, "the training Job was created more than once"
    trainers = {s.obj["metadata"]["name"] for s in pods.seen if s.obj["metadata"]["name"].startswith("ft-train-")}
    assert len(trainers) == 2, f"a training pod was replaced: {sorted(trainers)}"
    assert len(models.uids("ft-model")) == 1, "the output LLMModel was created more than once"
    builds = [n for n in jobs.names() if n.startswith("ft-model-build-")]
    assert len(builds) == 1, jobs.names()
    for name in jobs.names():
        assert len(jobs.uids(name)) == 1, f"Job {name} was created more than once"
    assert sorted(d.metadata.name for d in kube.apps.list_namespaced_deployment(ns).items) == [
        "ft-model",
        "tinystories-base",
    ]
    lineage = kube.get("llmmodels", "ft-model")["status"]["lineage"]
    assert lineage["fineTuneJob"] == "ft" and lineage["baseModel"] == "tinystories-base"
    return dict(final)


SUCCEEDED = {
    "phase": "Succeeded",
    "resumes": 0,
    "conditions": [("Degraded", "False", "AsExpected"), ("Progressing", "False", "Completed"),
                   ("Succeeded", "True", "Completed")],
}  # fmt: skip


def test_a_fine_tune_killed_at_every_phase_and_child_write_trains_once(run: Run, kube: Kube, api_client: Any) -> None:
    final = run_finetune_under_kills(run, kube, client.CustomObjectsApi(api_client))
    assert finetune_end_state(final) == SUCCEEDED
    assert len(run.operator.kills) >= 4


@pytest.mark.chaos
@pytest.mark.parametrize("run", [THOROUGH], indirect=True, ids=["seed1"])
def test_a_fine_tune_killed_three_times_at_every_phase_trains_once(run: Run, kube: Kube, api_client: Any) -> None:
    final = run_finetune_under_kills(run, kube, client.CustomObjectsApi(api_client))
    assert finetune_end_state(final) == SUCCEEDED
