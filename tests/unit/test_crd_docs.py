"""Every field of every CRD carries a description, so `kubectl explain` documents it.

Descriptions come from the pydantic field docstrings (or the docstring of the field's type):
a field added without one fails here, naming its path.
"""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from llmops.api import crdgen

# The apiserver describes metadata itself and refuses a CRD that does.
OWN_SCHEMA = {".metadata"}


def undescribed(node: dict[str, Any], path: str = "") -> list[str]:
    missing = []
    for name, prop in node.get("properties", {}).items():
        if not prop.get("description") and f"{path}.{name}" not in OWN_SCHEMA:
            missing.append(f"{path}.{name}")
        missing += undescribed(prop, f"{path}.{name}")
    if isinstance(node.get("items"), dict):
        missing += undescribed(node["items"], f"{path}[]")
    return missing


@pytest.mark.parametrize("name", sorted(crdgen.rendered()))
def test_every_field_has_a_description(name: str) -> None:
    crd = yaml.safe_load(crdgen.rendered()[name])
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    assert schema.get("description")
    assert undescribed(schema) == [], "add a docstring to these fields in operator/llmops/api"
