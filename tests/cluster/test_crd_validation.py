"""The generated CRDs on the real apiserver: every invalid spec is refused, naming its field."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from typing import Any

import pytest
import yaml

from tests.support.crds import CRD_DIR
from tests.support.invalid_specs import EXAMPLES, INVALID_SPECS, InvalidSpec, patched

Kubectl = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture(scope="module", autouse=True)
def crds(kubectl: Kubectl) -> None:
    kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CRD_DIR))
    for path in sorted(CRD_DIR.glob("*.yaml")):
        name = yaml.safe_load(path.read_text())["metadata"]["name"]
        kubectl("wait", "--for=condition=Established", "--timeout=60s", f"crd/{name}")


def apply(kubectl: Kubectl, namespace: str, obj: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    return kubectl("apply", "--server-side", "-n", namespace, "-f", "-", input=yaml.safe_dump(obj), check=False)


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.yaml")), ids=lambda p: p.stem)
def test_examples_are_accepted_by_the_apiserver(kubectl: Kubectl, namespace: str, path: Any) -> None:
    result = kubectl("apply", "--server-side", "-n", namespace, "-f", str(path), check=False)
    assert result.returncode == 0, result.stderr


def test_crds_show_in_the_llmops_category_and_explain(kubectl: Kubectl, namespace: str) -> None:
    kubectl("apply", "--server-side", "-n", namespace, "-f", str(EXAMPLES))
    listed = kubectl("get", "llmops", "-n", namespace, "-o", "name").stdout.split()
    assert {n.split("/")[0] for n in listed} == {
        "llmmodel.llmops.dev", "finetunejob.llmops.dev", "evalsuite.llmops.dev", "rollout.llmops.dev",
    }  # fmt: skip
    explained = kubectl("explain", "llmmodel.spec.build.quantization").stdout
    assert "Int8Dynamic" in explained or "quantization" in explained.lower()


@pytest.mark.parametrize("case", INVALID_SPECS, ids=lambda c: c.id)
def test_invalid_spec_is_refused_by_the_apiserver_naming_the_field(
    kubectl: Kubectl, namespace: str, case: InvalidSpec
) -> None:
    obj = case.object()
    if case.update:
        created = apply(kubectl, namespace, obj)
        assert created.returncode == 0, created.stderr
        obj = patched(obj, case.update)
    result = apply(kubectl, namespace, obj)
    assert result.returncode != 0, f"{case.id} was accepted"
    assert case.path in result.stderr, f"{case.id}: {case.path} not named in: {result.stderr}"
