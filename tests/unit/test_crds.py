"""The checked-in CRDs are exactly what the models generate, and are structural."""

from __future__ import annotations

from typing import Any

from llmops.api import crdgen
from tests.support.crds import CRD_DIR


def test_checked_in_crds_match_the_models() -> None:
    assert crdgen.main(["--out", str(CRD_DIR), "--check"]) == 0, "run `make crds`"


def walk(node: Any, path: str = "") -> list[tuple[str, dict[str, Any]]]:
    if not isinstance(node, dict):
        return []
    found = [(path, node)]
    for name, prop in node.get("properties", {}).items():
        found += walk(prop, f"{path}.{name}")
    if isinstance(node.get("items"), dict):
        found += walk(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        found += walk(node["additionalProperties"], f"{path}{{}}")
    return found


def test_schemas_are_structural() -> None:
    for name, text in crdgen.rendered().items():
        crd = crdgen.yaml.safe_load(text)
        schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
        for path, node in walk(schema):
            assert not {"$ref", "anyOf", "oneOf", "allOf", "title"} & set(node), f"{name}{path}"
            if path.count(".") >= 1 and not path.endswith("metadata"):
                assert "type" in node, f"{name}{path} has no type"


def test_every_crd_has_status_subresource_category_and_short_names() -> None:
    for text in crdgen.rendered().values():
        crd = crdgen.yaml.safe_load(text)
        version = crd["spec"]["versions"][0]
        assert version["subresources"] == {"status": {}}
        assert crd["spec"]["names"]["categories"] == ["llmops"]
        assert crd["spec"]["names"]["shortNames"]
        assert any(c["name"] == "Age" for c in version["additionalPrinterColumns"])


def test_every_spec_field_is_documented_for_kubectl_explain() -> None:
    """Top-level spec fields carry descriptions from the models' docstrings."""
    for name, text in crdgen.rendered().items():
        schema = crdgen.yaml.safe_load(text)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
        undocumented = [f for f, p in schema["properties"]["spec"]["properties"].items() if not p.get("description")]
        assert not undocumented, f"{name}: {undocumented}"
