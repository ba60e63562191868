"""Two operator replicas with kopf peering: only the leader works, and a killed leader is replaced.

Each replica talks to the apiserver through its own proxy (tests/support/faultproxy.py, no
faults), which is the audit: every request of a replica is recorded under its name, so writes
are counted per identity (kopf's peering heartbeats aside: every replica writes those).

The replica that is not the leader must neither write nor even read: kopf pauses its watches,
and the reconciler's own resync timers and the events of its own streams must pause with them
(only those streams' watches stay open). To show it, the leader is frozen
(SIGSTOP) for less than its peering lifetime while the spec changes: the follower must leave the
change alone until the leader runs again (two writers would be a split brain).
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.cluster.chaos.conftest import ChaosTally
from tests.support.chaos import KillableOperator, cpu_model, install_crds, killable_operator, model_converged
from tests.support.crds import ROOT
from tests.support.faultproxy import FaultProxy, Request
from tests.support.kube import Kube, Kubectl, evalsuite
from tests.support.operator import wait_for

PEERING = "llmops"
PEERING_CRDS = ROOT / "charts" / "llmops-operator" / "crds"
LIFETIME_S = 60
"""kopf's peering lifetime (its default): a replica not heard of for this long is dead."""
MODELS = ("m0", "m1", "m2")


@pytest.fixture(scope="module")
def crds(kubectl: Kubectl) -> None:
    install_crds(kubectl)
    for crd in ("kopf.dev_kopfpeerings.yaml", "kopf.dev_clusterkopfpeerings.yaml"):
        kubectl("apply", "--server-side", "--force-conflicts", "-f", str(PEERING_CRDS / crd))
    kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd/kopfpeerings.kopf.dev")


@dataclass
class Replica:
    name: str
    proxy: FaultProxy
    operator: KillableOperator

    def requests(self, since: float = 0.0) -> list[Request]:
        return self.proxy.since(since)

    def writes(self, since: float = 0.0) -> list[Request]:
        """Writes of this replica (kopf's peering heartbeats aside)."""
        return [r for r in self.requests(since) if r.write]

    def work(self, since: float = 0.0) -> list[Request]:
        """Requests of the reconciler (the kubernetes client), reads included; not the watches of
        the kube layer's streams, which stay open on every replica (a watch ends after minutes and
        the next one begins)."""
        return [r for r in self.requests(since) if not r.client.startswith("kopf/") and not r.watch]


class Replicas:
    def __init__(self, kubeconfig: str, namespace: str, workdir: Path) -> None:
        self.kubeconfig, self.namespace, self.workdir = kubeconfig, namespace, workdir
        self.all: dict[str, Replica] = {}

    def start(self, name: str, priority: int) -> Replica:
        """A replica as the chart runs it: --peering, its own identity (POD_ID), its own proxy."""
        if name not in self.all:
            proxy = FaultProxy(self.kubeconfig, self.workdir, name).start()
            operator = killable_operator(
                str(proxy.kubeconfig), self.workdir, self.namespace,
                "--peering", PEERING, "--peering-priority", str(priority), name=name, POD_ID=name,
            )  # fmt: skip
            self.all[name] = Replica(name, proxy, operator)
        replica = self.all[name]
        replica.operator.args[replica.operator.args.index("--peering-priority") + 1] = str(priority)
        replica.operator.start()
        return replica

    def stop(self) -> None:
        for replica in self.all.values():
            if replica.operator.proc is not None and replica.operator.proc.poll() is None:
                os.killpg(replica.operator.proc.pid, signal.SIGCONT)
            replica.operator.stop()
            replica.proxy.stop()


@pytest.fixture
def replicas(crds: None, kubeconfig: str, kube: Kube, tmp_path: Path) -> Iterator[Replicas]:
    kube.custom.create_namespaced_custom_object(
        "kopf.dev", "v1", kube.ns, "kopfpeerings", {"apiVersion": "kopf.dev/v1", "kind": "KopfPeering",
                                                     "metadata": {"name": PEERING}}
    )  # fmt: skip
    group = Replicas(kubeconfig, kube.ns, tmp_path)
    try:
        yield group
    finally:
        group.stop()


def peers(kube: Kube) -> dict[str, Any]:
    peering = kube.custom.get_namespaced_custom_object("kopf.dev", "v1", kube.ns, "kopfpeerings", PEERING)
    return dict(peering.get("status") or {})


def converged(kube: Kube, replicas_of: dict[str, int]) -> bool:
    for name, replicas in replicas_of.items():
        if model_converged(kube, name) is not None:
            return False
        if kube.get("llmmodels", name)["spec"]["serving"]["replicas"] != replicas:
            return False
    return True


def describe(requests: list[Request]) -> str:
    return "; ".join(f"{r.method} {r.path}" for r in requests[:8])


def freeze_then_kill_the_leader(replicas: Replicas, kube: Kube, tally: ChaosTally, kills: int) -> None:
    # The low-priority replica starts alone and leads: it has reconciled everything and runs
    # resync timers for every resource when the high-priority one arrives and takes over.
    follower = replicas.start("replica-b", priority=50)
    for name in MODELS:
        kube.create(cpu_model(name))
    kube.create(evalsuite("quality", target={"model": "m0"}))
    wanted = dict.fromkeys(MODELS, 1)
    wait_for(lambda: converged(kube, wanted), 180, "the models served by the only replica")
    assert follower.writes(), "the only replica did not work"

    leader = replicas.start("replica-a", priority=100)
    wait_for(lambda: {"replica-a", "replica-b"} <= set(peers(kube)), 60, "both replicas in the peering object")
    kube.patch_spec("llmmodels", "m1", {"serving": {"replicas": 2}})
    wanted["m1"] = 2
    wait_for(lambda: converged(kube, wanted), 90, "the change carried out by the new leader")
    time.sleep(3)  # in-flight reconciles of the follower end
    paused_since = time.time()

    # The leader freezes (a long GC pause, a stalled node) for less than its peering lifetime:
    # the follower stays paused, so nobody acts on a change until the leader runs again.
    assert leader.operator.proc is not None
    os.killpg(leader.operator.proc.pid, signal.SIGSTOP)
    kube.patch_spec("llmmodels", "m2", {"serving": {"replicas": 2}})
    time.sleep(20)  # four resync periods of the follower
    assert model_converged(kube, "m2") is not None, "someone acted while the leader was frozen"
    os.killpg(leader.operator.proc.pid, signal.SIGCONT)
    wanted["m2"] = 2
    wait_for(lambda: converged(kube, wanted), 90, "the change carried out once the leader runs again")
    late_writes, late_work = follower.writes(paused_since), follower.work(paused_since)
    assert not late_writes, f"the paused replica wrote: {describe(late_writes)}"
    assert not late_work, f"the paused replica reconciled: {describe(late_work)}"
    assert leader.writes(paused_since), "the leader did not write"
    tally.figure("peering: writes of the paused replica while the leader was frozen", str(len(late_writes)))

    # Killing the leader: the follower takes over once the leader's heartbeat is older than the
    # peering lifetime. Each round: a change made at the kill is carried out by the follower,
    # then the killed replica comes back with a higher priority, leads again and is killed again.
    for round_ in range(kills):
        killed_at = time.time()
        leader.operator.kill_now("leader")
        tally.kills += 1
        wanted["m0"] = 2 if wanted["m0"] == 1 else 1
        kube.patch_spec("llmmodels", "m0", {"serving": {"replicas": wanted["m0"]}})
        wait_for(lambda: converged(kube, wanted), LIFETIME_S + 60, "the change carried out by the new leader")
        handover = min(r.started for r in follower.writes(killed_at)) - killed_at
        print(f"\nleader handover: {handover:.1f} s (SIGKILL of {leader.name} to the first write of {follower.name})")
        tally.figure("leader handover", f"{handover:.1f} s")
        assert handover <= LIFETIME_S + 15, f"handover took {handover:.0f} s"
        assert not leader.writes(killed_at), "the killed leader wrote"
        if round_ + 1 == kills:
            break
        replicas.start(leader.name, priority=200 + round_)
        wait_for(lambda leader=leader: leader.name in peers(kube), 60, f"{leader.name} back in the peering object")
        time.sleep(3)
        back = time.time()
        wanted["m1"] = 2 if wanted["m1"] == 1 else 1
        kube.patch_spec("llmmodels", "m1", {"serving": {"replicas": wanted["m1"]}})
        wait_for(lambda: converged(kube, wanted), 90, f"the change carried out by {leader.name}, leading again")
        time.sleep(3)
        assert leader.writes(back) and not follower.writes(back + 3), "the returning replica did not take over"


def test_only_the_leader_works_and_a_killed_leader_is_replaced(
    replicas: Replicas, kube: Kube, chaos_tally: ChaosTally
) -> None:
    freeze_then_kill_the_leader(replicas, kube, chaos_tally, kills=1)


@pytest.mark.chaos
def test_the_leader_killed_three_times_is_replaced_each_time(
    replicas: Replicas, kube: Kube, chaos_tally: ChaosTally
) -> None:
    freeze_then_kill_the_leader(replicas, kube, chaos_tally, kills=3)
