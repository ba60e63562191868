"""Generate structural CRDs from the pydantic models: `python -m llmops.api.crdgen --out crds [--check]`.

pydantic emits JSON Schema (draft 2020-12); Kubernetes wants structural OpenAPI v3: no $ref,
no anyOf-with-null for optional fields, no titles, and defaults on nested objects so that the
apiserver fills them in.
"""

from __future__ import annotations

import argparse
import difflib
import sys
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from . import CATEGORY, GROUP, KINDS, VERSION
from .common import DNS_1035_LABEL, Resource

Schema = dict[str, Any]

# Keys of JSON Schema that have no place (or another meaning) in a structural schema.
_DROPPED = {"title", "additionalProperties", "$defs", "discriminator"}


def _merge(outer: Schema, inner: Schema) -> Schema:
    """A field's own keys (its description, its rules) on top of its type's schema."""
    merged = dict(inner)
    for key, value in outer.items():
        if key == "x-kubernetes-validations":
            merged[key] = [*inner.get(key, []), *value]
        else:
            merged[key] = value
    return merged


def structural(node: Any, defs: Schema) -> Any:
    """Rewrite one pydantic JSON Schema node into structural OpenAPI v3."""
    if isinstance(node, list):
        return [structural(item, defs) for item in node]
    if not isinstance(node, dict):
        return node
    node = dict(node)
    if "$ref" in node:
        target = defs[node.pop("$ref").rsplit("/", 1)[-1]]
        return structural(_merge(node, target), defs)
    if "anyOf" in node:
        # Optional[X] is anyOf [X, null]: optional fields are simply omitted on the wire.
        variants = [v for v in node.pop("anyOf") if v.get("type") != "null"]
        if len(variants) != 1:
            raise ValueError(f"unions are not structural: {variants}")
        node.pop("default", None)  # a None default means "absent"
        return structural(_merge(node, variants[0]), defs)
    if "patternProperties" in node:
        node = _keys_by_cel(node)
    out: Schema = {}
    for key, value in node.items():
        if key in _DROPPED and not (key == "additionalProperties" and isinstance(value, dict)):
            continue
        if key == "properties":
            out[key] = {name: structural(prop, defs) for name, prop in value.items()}
        elif key in ("items", "additionalProperties"):
            out[key] = structural(value, defs)
        elif key in ("exclusiveMinimum", "exclusiveMaximum") and not isinstance(value, bool):
            # draft 2020-12 numeric form -> OpenAPI v3.0 boolean form
            out["minimum" if key == "exclusiveMinimum" else "maximum"] = value
            out[key] = True
        else:
            out[key] = value
    if out.get("required") == []:
        del out["required"]
    return out


def cel_string(text: str) -> str:
    """A CEL string literal: raw, so a regular expression's backslashes stay as they are."""
    if "'" in text:
        raise ValueError(f"no quote allowed in {text!r}")
    return f"r'{text}'"


def _keys_by_cel(node: Schema) -> Schema:
    """dict[Key, Value]: pydantic's patternProperties and propertyNames become additionalProperties
    and a CEL rule on the keys (a structural schema has neither)."""
    node = dict(node)
    [(pattern, values)] = node.pop("patternProperties").items()
    longest = node.pop("propertyNames", {}).get("maxLength")
    checks = [f"k.matches({cel_string(pattern)})"]
    if longest is not None:
        checks.insert(0, f"size(k) <= {longest}")
    node["additionalProperties"] = values
    rule = {
        "rule": f"self.all(k, {' && '.join(checks)})",
        "message": f"every key must match {pattern}" + (f" and be at most {longest} characters" if longest else ""),
    }
    node["x-kubernetes-validations"] = [*node.get("x-kubernetes-validations", []), rule]
    return node


NAME_RULES = [
    {
        "rule": "size(self.metadata.name) <= 63",
        "message": "metadata.name must be at most 63 characters: it is a label value on every child",
    }
]
SERVICE_NAME_RULES = [
    {
        "rule": f"self.metadata.name.matches({cel_string(DNS_1035_LABEL)})",
        "message": "metadata.name must start with a letter and have no dots: it names a Service",
    }
]


def _object_defaults(model: type[BaseModel], schema: Schema) -> None:
    """Give object fields built by default_factory their default, so an omitted object is filled in."""
    for name, field in model.model_fields.items():
        prop = schema.get("properties", {}).get(field.alias or name)
        sub = _model_of(field.annotation)
        if prop is None or sub is None:
            continue
        if prop.get("type") == "array":
            _object_defaults(sub, prop["items"])
            continue
        if field.default_factory is not None:
            # The whole default, not `{}`: the apiserver checks CEL rules against the default
            # value as written, before nested defaults would fill it in.
            default = field.get_default(call_default_factory=True, validated_data={})
            prop["default"] = default.model_dump(by_alias=True, exclude_none=True, mode="json")
        _object_defaults(sub, prop)


def _model_of(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = _model_of(arg)
        if found is not None:
            return found
    return None


def model_schema(model: type[BaseModel]) -> Schema:
    raw = model.model_json_schema(by_alias=True, mode="validation")
    schema: Schema = structural(raw, raw.get("$defs", {}))
    _object_defaults(model, schema)
    return schema


def crd(kind: type[Resource]) -> Schema:
    info = kind.crd
    fields = kind.model_fields
    spec_model = _model_of(fields["spec"].annotation)
    status_model = _model_of(fields["status"].annotation)
    assert spec_model is not None and status_model is not None
    # `kubectl explain` shows these on the top-level fields, which have no docstring of their own.
    spec_doc = f"What the user asks of this {info.kind}. The operator never writes it."
    status_doc = f"What the operator observed and decided for this {info.kind}; written only by the operator."
    openapi = {
        "type": "object",
        "description": (kind.__doc__ or "").strip(),
        "required": ["spec"],
        "properties": {
            "apiVersion": {"type": "string", "description": f"Always {GROUP}/{VERSION}."},
            "kind": {"type": "string", "description": f"Always {info.kind}."},
            # The apiserver refuses anything but `type` here: metadata's schema is its own.
            "metadata": {"type": "object"},
            "spec": {"description": spec_doc, **model_schema(spec_model)},
            "status": {"description": status_doc, **model_schema(status_model)},
        },
        "x-kubernetes-validations": NAME_RULES + (SERVICE_NAME_RULES if info.names_services else []),
    }
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{info.plural}.{GROUP}",
            "labels": {"app.kubernetes.io/part-of": "llmops-operator"},
        },
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": info.kind,
                "listKind": f"{info.kind}List",
                "plural": info.plural,
                "singular": info.kind.lower(),
                "shortNames": info.short_names,
                "categories": [CATEGORY],
            },
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": [
                        {k: v for k, v in c.wire().items() if v not in ("", 0)} for c in info.columns
                    ],
                    "schema": {"openAPIV3Schema": openapi},
                }
            ],
        },
    }


class _Dumper(yaml.SafeDumper):
    """Writes repeated sub-schemas out in full: anchors would make the CRDs hard to read."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


HEADER = "# Generated by `make crds` from operator/llmops/api. Do not edit.\n"


def rendered() -> dict[str, str]:
    """File name -> YAML text of every CRD."""
    return {
        f"{GROUP}_{kind.crd.plural}.yaml": HEADER + yaml.dump(crd(kind), Dumper=_Dumper, sort_keys=False, width=100)
        for kind in KINDS
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", action="append", required=True, help="directory to write (repeatable)")
    parser.add_argument("--check", action="store_true", help="fail when the files differ")
    args = parser.parse_args(argv)
    files = rendered()
    stale = False
    for out in map(Path, args.out):
        present = {p.name: p.read_text() for p in out.glob(f"{GROUP}_*.yaml")} if out.exists() else {}
        if args.check:
            for name in sorted(set(files) | set(present)):
                want, have = files.get(name, ""), present.get(name, "")
                if want != have:
                    stale = True
                    sys.stdout.writelines(
                        difflib.unified_diff(have.splitlines(True), want.splitlines(True), f"{out}/{name}", "generated")
                    )
            continue
        out.mkdir(parents=True, exist_ok=True)
        for name in set(present) - set(files):
            (out / name).unlink()
        for name, text in files.items():
            (out / name).write_text(text)
    if stale:
        print("\ncrds are stale: run `make crds`", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
