"""examples/gitops: every overlay renders with kustomize and the apiserver accepts what it renders.

The apiserver (server-side dry run) applies the CRDs' OpenAPI and CEL validation, so a patch
that breaks a rule (say, a decreasing setWeight) fails here rather than in someone's sync.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from llmops.api import KINDS
from tests.support.crds import CRD_DIR
from tests.support.kube import Kube, ready
from tests.support.operator import OperatorProcess, wait_for

REPO = Path(__file__).resolve().parents[2]
GITOPS = REPO / "examples" / "gitops"
OVERLAYS = sorted(p.parent.name for p in GITOPS.glob("*/kustomization.yaml") if p.parent.name != "base")
MODELS = {kind.crd.kind: kind for kind in KINDS}
Kubectl = Callable[..., subprocess.CompletedProcess[str]]


def test_there_are_overlays() -> None:
    assert OVERLAYS == ["production", "staging"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_renders_the_whole_pipeline_and_the_apiserver_accepts_it(
    overlay: str, kubectl: Kubectl, namespace: str
) -> None:
    kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CRD_DIR))
    rendered = kubectl("kustomize", str(GITOPS / overlay)).stdout
    docs = [d for d in yaml.safe_load_all(rendered) if d]
    assert sorted(d["kind"] for d in docs) == sorted(MODELS)
    assert {d["metadata"]["namespace"] for d in docs} == {f"llm-{overlay}"}
    for doc in docs:
        MODELS[doc["kind"]].model_validate(doc)
        doc["metadata"]["namespace"] = namespace  # the dry run needs a namespace that exists
    manifest = yaml.safe_dump_all(docs)
    result = kubectl("apply", "--server-side", "--dry-run=server", "-f", "-", input=manifest, check=False)
    assert result.returncode == 0, result.stderr


def test_reapplying_the_examples_after_reconciliation_shows_no_diff(
    operator: OperatorProcess, kube: Kube, kubectl: Kubectl
) -> None:
    """The operator writes only status: a GitOps controller's next sync finds nothing to change."""
    examples = [str(REPO / "examples" / f"{name}.yaml") for name in ("llmmodel", "finetunejob", "evalsuite", "rollout")]
    args = [a for path in examples for a in ("-f", path)]
    kubectl("apply", "--server-side", "--field-manager=argocd", "-n", kube.ns, *args)
    wait_for(lambda: ready(kube, "tinystories-base"), 90, "the example model Ready")
    wait_for(lambda: kube.get("finetunejobs", "tinystories-ft").get("status", {}).get("phase"), 60, "job status")
    wait_for(lambda: kube.get("rollouts", "tinystories").get("status", {}).get("phase"), 60, "rollout status")
    diff = kubectl("diff", "--server-side", "--field-manager=argocd", "-n", kube.ns, *args, check=False)
    assert diff.returncode == 0, diff.stdout + diff.stderr
