"""The LLMModel quantization quality gate, reconciled by the operator process on the real control plane.

kwok runs the build, serving and evaluator pods (e2e/cluster/stages/llmops-*.yaml): every build
gets its own digest, and an evaluator pod scores em 0.9, or 0.1 when the LLMModel it judges has
"bad" in its name, except for a gate's unquantized reference (label llmops.dev/eval-gate-role:
reference), which always scores 0.9. So a model named "...-bad" has a quantized build that
regresses against its reference, and any other passes its gate.
"""

from __future__ import annotations

import time
from typing import Any

from tests.support.kube import Kube, Kubectl, evalsuite, event_reasons, llmmodel, ready
from tests.support.operator import OperatorProcess, wait_for

SUITE = "quantization-quality"
GATE = {"evalSuite": SUITE, "maxScoreDrop": 0.02}


def status(kube: Kube, name: str) -> dict[str, Any]:
    return dict(kube.get("llmmodels", name).get("status", {}))


def gate_phase(kube: Kube, name: str) -> str | None:
    return (status(kube, name).get("qualityGate") or {}).get("phase")


def built_message(kube: Kube, name: str) -> str:
    return str(next(c["message"] for c in status(kube, name)["conditions"] if c["type"] == "Built"))


def served_digest(kube: Kube, name: str) -> str:
    deployment = kube.apps.read_namespaced_deployment(name, kube.ns)
    return str(deployment.spec.template.metadata.annotations["llmops.dev/artifact-digest"])


def gate_replicas(kube: Kube, name: str) -> dict[str, int]:
    deployments = kube.apps.list_namespaced_deployment(kube.ns).items
    return {d.metadata.name: d.spec.replicas for d in deployments if d.metadata.name.startswith(f"{name}-gate-")}


def build_jobs(kube: Kube, name: str) -> list[str]:
    return [j for j in kube.jobs() if j.startswith(f"{name}-build-")]


def test_a_quantized_build_that_keeps_its_scores_passes_the_gate_and_serves(
    operator: OperatorProcess, kube: Kube, kubectl: Kubectl
) -> None:
    kube.create(evalsuite(SUITE))  # no target: it judges only what the gate asks for
    kube.create(llmmodel("gate-good", **{"spec.build.quantization": "None"}))
    wait_for(lambda: ready(kube, "gate-good"), 90, "the unquantized model Ready")
    unquantized = status(kube, "gate-good")["artifact"]

    kube.patch_spec("llmmodels", "gate-good", {"build": {"quantization": "Int8Dynamic", "qualityGate": GATE}})
    wait_for(lambda: gate_phase(kube, "gate-good") == "Passed", 120, "the quality gate Passed")
    wait_for(lambda: ready(kube, "gate-good"), 60, "Ready on the quantized artifact")
    model = status(kube, "gate-good")
    gate = model["qualityGate"]
    assert model["artifact"] == gate["candidate"] and model["artifact"]["quantization"] == "Int8Dynamic"
    assert gate["reference"] == unquantized  # the served unquantized build is the reference: no rebuild
    assert len(build_jobs(kube, "gate-good")) == 2
    assert gate["scores"] == [{"metric": "em", "candidate": 0.9, "reference": 0.9}]
    assert kube.condition("llmmodels", "gate-good", "Built") == ("True", "Built")
    assert served_digest(kube, "gate-good") == model["artifact"]["digest"]
    runs = kube.get("evalsuites", SUITE)["status"]["runs"]
    assert {(r["model"], r["digest"], r["phase"]) for r in runs} == {
        ("gate-good@candidate", gate["candidate"]["digest"], "Passed"),
        ("gate-good@reference", gate["reference"]["digest"], "Passed"),
    }
    assert "QualityGatePassed" in event_reasons(kubectl, kube.ns, "LLMModel")
    wait_for(lambda: set(gate_replicas(kube, "gate-good").values()) == {0}, 30, "the gate Deployments scaled to 0")
    assert set(gate_replicas(kube, "gate-good")) == {"gate-good-gate-candidate", "gate-good-gate-reference"}


def test_a_quantized_build_that_regresses_is_refused_and_the_previous_artifact_keeps_serving(
    operator: OperatorProcess, kube: Kube, kubectl: Kubectl
) -> None:
    kube.create(evalsuite(SUITE))  # no target: it judges only what the gate asks for
    kube.create(llmmodel("gate-bad"))
    wait_for(lambda: ready(kube, "gate-bad"), 90, "the Int8Dynamic model Ready")
    previous = status(kube, "gate-bad")["artifact"]

    kube.patch_spec("llmmodels", "gate-bad", {"build": {"quantization": "FP16", "qualityGate": GATE}})
    wait_for(lambda: gate_phase(kube, "gate-bad") == "Refused", 120, "the quality gate Refused")
    model = status(kube, "gate-bad")
    assert model["artifact"] == previous
    assert model["qualityGate"]["candidate"]["quantization"] == "FP16"
    assert model["qualityGate"]["reference"]["quantization"] == "None"
    assert len(build_jobs(kube, "gate-bad")) == 3  # Int8Dynamic, FP16 and the unquantized reference
    assert kube.condition("llmmodels", "gate-bad", "Built") == ("False", "QuantizationRegressed")
    assert kube.condition("llmmodels", "gate-bad", "Degraded") == ("True", "QuantizationRegressed")
    assert "em 0.1 vs 0.9 unquantized (drop 0.8 > max 0.02)" in built_message(kube, "gate-bad")
    assert served_digest(kube, "gate-bad") == previous["digest"]
    assert "QuantizationRegressed" in event_reasons(kubectl, kube.ns, "LLMModel")
    wait_for(lambda: set(gate_replicas(kube, "gate-bad").values()) == {0}, 30, "the gate Deployments scaled to 0")
    wait_for(lambda: kube.condition("llmmodels", "gate-bad", "Ready") == ("True", "Serving"), 30, "still serving")
    # Restarted, the operator decides the same from status and judges nothing again.
    runs = kube.get("evalsuites", SUITE)["status"]["runs"]
    operator.kill()
    operator.start()
    time.sleep(12)  # more than two resync intervals (LLMOPS_RESYNC_SECONDS=5)
    assert kube.get("evalsuites", SUITE)["status"]["runs"] == runs
    assert kube.get("llmmodels", "gate-bad")["status"]["artifact"] == previous
