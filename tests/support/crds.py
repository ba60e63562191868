"""Validate objects against the generated CRDs the way the apiserver does, without one.

Order as in the apiserver: structural defaulting, then the OpenAPI schema, then list-map key
uniqueness, then the CEL rules (`x-kubernetes-validations`), each error named by field path
in the apiserver's notation (spec.steps[1].setWeight). Cluster tests check the same table
against the real apiserver; this harness makes the rules testable in seconds.
"""

from __future__ import annotations

import copy
import itertools
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import celpy
import jsonschema
import yaml

ROOT = Path(__file__).resolve().parents[2]
CRD_DIR = ROOT / "crds"


@dataclass(frozen=True)
class FieldError:
    path: str
    message: str
    cross_field: bool = False
    """Raised by a CEL rule or list-map key uniqueness rather than by one field's schema."""

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


@cache
def schemas() -> dict[str, dict[str, Any]]:
    """kind -> openAPIV3Schema of the checked-in CRDs."""
    out = {}
    for path in sorted(CRD_DIR.glob("*.yaml")):
        crd = yaml.safe_load(path.read_text())
        out[crd["spec"]["names"]["kind"]] = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return out


def apply_defaults(schema: dict[str, Any], value: Any) -> Any:
    if isinstance(value, dict):
        for name, prop in schema.get("properties", {}).items():
            if name not in value and "default" in prop:
                value[name] = copy.deepcopy(prop["default"])
            if name in value:
                value[name] = apply_defaults(prop, value[name])
        if isinstance(schema.get("additionalProperties"), dict):
            for key in value:
                value[key] = apply_defaults(schema["additionalProperties"], value[key])
    elif isinstance(value, list) and "items" in schema:
        return [apply_defaults(schema["items"], item) for item in value]
    return value


def _join(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


def _is_sorted(values: Any) -> celpy.celtypes.BoolType:
    items = list(values)
    return celpy.celtypes.BoolType(all(a <= b for a, b in itertools.pairwise(items)))


# The Kubernetes CEL libraries used by our rules, which plain CEL lacks.
K8S_FUNCTIONS = {"isSorted": _is_sorted}
_ABSENT = object()


@cache
def _program(rule: str) -> Any:
    env = celpy.Environment()
    return env.program(env.compile(rule), functions=K8S_FUNCTIONS)


def _cel_errors(schema: dict[str, Any], value: Any, old: Any, path: str) -> list[FieldError]:
    errors: list[FieldError] = []
    for rule in schema.get("x-kubernetes-validations", []):
        transition = "oldSelf" in rule["rule"]
        if transition and old is _ABSENT:
            continue  # transition rules only judge updates
        activation = {"self": celpy.json_to_cel(value)}
        if transition:
            activation["oldSelf"] = celpy.json_to_cel(old)
        if not _program(rule["rule"]).evaluate(activation):
            errors.append(FieldError(path + rule.get("fieldPath", ""), rule["message"], cross_field=True))
    if isinstance(value, dict):
        for name, prop in schema.get("properties", {}).items():
            if name in value:
                child_old = old.get(name, _ABSENT) if isinstance(old, dict) else _ABSENT
                errors += _cel_errors(prop, value[name], child_old, _join(path, name))
    elif isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            # list-type map items are correlated by key in transition rules; others are not
            errors += _cel_errors(schema["items"], item, _ABSENT, _join(path, i))
    return errors


def _list_map_errors(schema: dict[str, Any], value: Any, path: str) -> list[FieldError]:
    errors: list[FieldError] = []
    if isinstance(value, dict):
        for name, prop in schema.get("properties", {}).items():
            if name in value:
                errors += _list_map_errors(prop, value[name], _join(path, name))
    elif isinstance(value, list) and "items" in schema:
        keys = schema.get("x-kubernetes-list-map-keys")
        seen = set()
        for i, item in enumerate(value):
            if keys and isinstance(item, dict):
                key = tuple(item.get(k) for k in keys)
                if key in seen:
                    duplicate = dict(zip(keys, key, strict=True))
                    # like server-side apply, name the list
                    errors.append(FieldError(path, f"duplicate entries for key {duplicate}", cross_field=True))
                seen.add(key)
            errors += _list_map_errors(schema["items"], item, _join(path, i))
    return errors


def _openapi_only(schema: Any) -> Any:
    """The schema without Kubernetes extensions, as plain JSON Schema draft 4."""
    if isinstance(schema, dict):
        return {k: _openapi_only(v) for k, v in schema.items() if not k.startswith("x-kubernetes")}
    if isinstance(schema, list):
        return [_openapi_only(v) for v in schema]
    return schema


@cache
def _go_regex(pattern: str) -> re.Pattern[str]:
    # The apiserver matches patterns with Go's RE2, where `$` is the end of the text; Python's
    # `$` also matches before a trailing newline, so "name\n" would pass here and not there.
    return re.compile(re.sub(r"(?<!\\)\$$", r"\\Z", pattern))


def _pattern(validator: jsonschema.protocols.Validator, pattern: str, instance: Any, schema: dict[str, Any]) -> Any:
    if validator.is_type(instance, "string") and not _go_regex(pattern).search(instance):
        yield jsonschema.ValidationError(f"{instance!r} does not match {pattern!r}")


_Validator = jsonschema.validators.extend(jsonschema.Draft4Validator, {"pattern": _pattern})


def validate(obj: dict[str, Any], old: dict[str, Any] | None = None) -> list[FieldError]:
    """Errors the apiserver would report for creating (or updating from `old`) this object."""
    schema = schemas()[obj["kind"]]
    obj = apply_defaults(schema, copy.deepcopy(obj))
    validator = _Validator(_openapi_only(schema))
    errors = [_schema_error(e) for e in validator.iter_errors(obj)]
    if errors:
        return errors  # like the apiserver, CEL only runs on schema-valid objects
    errors = _list_map_errors(schema, obj, "")
    old_defaulted = apply_defaults(schema, copy.deepcopy(old)) if old is not None else _ABSENT
    return errors + _cel_errors(schema, obj, old_defaulted, "")


def _schema_error(error: jsonschema.ValidationError) -> FieldError:
    path = ""
    for part in error.absolute_path:
        path = _join(path, part)
    if error.validator == "required":  # name the missing field, as the apiserver does
        missing = [f for f in error.validator_value if f not in error.instance]
        return FieldError(_join(path, missing[0]), "Required value")
    return FieldError(path, error.message)
