"""The examples are valid, and every invalid spec is refused naming its field."""

from __future__ import annotations

from pathlib import Path

import pydantic
import pytest
import yaml

from llmops.api import KINDS
from tests.support.crds import validate
from tests.support.invalid_specs import EXAMPLES, INVALID_SPECS, InvalidSpec, patched

MODELS = {kind.crd.kind: kind for kind in KINDS}
# kustomization.yaml files (examples/gitops/) wire resources together and hold none.
EXAMPLE_FILES = sorted(p for p in EXAMPLES.rglob("*.yaml") if p.name != "kustomization.yaml")


def documents(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d and d.get("apiVersion", "").startswith("llmops.dev")]


@pytest.mark.parametrize("path", EXAMPLE_FILES, ids=lambda p: str(p.relative_to(EXAMPLES)))
def test_example_parses_into_its_model_and_passes_the_crd(path: Path) -> None:
    docs = documents(path)
    assert docs, f"{path} holds no llmops resource"
    for doc in docs:
        MODELS[doc["kind"]].model_validate(doc)
        assert validate(doc) == []


def test_every_kind_has_an_example() -> None:
    kinds = {doc["kind"] for path in EXAMPLE_FILES for doc in documents(path)}
    assert kinds == set(MODELS)


@pytest.mark.parametrize("case", INVALID_SPECS, ids=lambda c: c.id)
def test_invalid_spec_is_refused_naming_the_field(case: InvalidSpec) -> None:
    obj = case.object()
    if case.update:
        assert validate(obj) == []
        errors = validate(patched(obj, case.update), old=obj)
    else:
        errors = validate(obj)
    assert any(e.path == case.path for e in errors), f"expected an error at {case.path}, got {errors}"


def schema_only(case: InvalidSpec) -> bool:
    return not case.update and not any(e.cross_field for e in validate(case.object()))


@pytest.mark.parametrize("case", [c for c in INVALID_SPECS if schema_only(c)], ids=lambda c: c.id)
def test_schema_errors_are_also_refused_by_the_pydantic_model(case: InvalidSpec) -> None:
    """Bounds, enums, patterns and required fields live in the models too (cross-field CEL rules
    only in the CRD): the operator refuses what the apiserver refuses, naming the same field."""
    obj = case.object()
    with pytest.raises(pydantic.ValidationError) as refused:
        MODELS[obj["kind"]].model_validate(obj)
    locs = {".".join(str(p) for p in err["loc"]) for err in refused.value.errors()}
    field = case.path.replace("[", ".").replace("]", "")
    assert any(loc.startswith(field) for loc in locs), f"{locs} does not name {field}"
