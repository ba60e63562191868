"""Fuzzed specs of the four kinds, derived from the generated CRDs, and the oracle that judges them.

Valid specs are drawn from each CRD's structural schema (types, bounds, enums, patterns,
list-map keys), then *repaired* so that every CEL rule holds: each rule of the CRDs has an entry
in :data:`CEL_RULES` that can make an object satisfy it and one that breaks it (a unit test
keeps that table complete). A fuzzed spec is such a valid spec with zero, one or two mutations:
wrong types, out-of-bound numbers, unknown enum values, missing required fields, broken CEL
rules, unknown fields, strings that miss their pattern or are too long, too many or too few
items, duplicate list-map keys, nulls and integers beyond int64.

The oracle is not the apiserver: it is the offline schema + CEL checker of the unit tests
(:func:`tests.support.crds.validate`) plus what it leaves to the decoder — unknown fields are
refused (requests use ``fieldValidation=Strict``), nulls are pruned before defaulting, and
integers must fit in int64 — and the pydantic models, which must accept every spec the CRD
accepts (the operator parses what the apiserver stores).
"""

from __future__ import annotations

import copy
import re
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import pydantic
from hypothesis import strategies as st

from llmops.api import API_VERSION, KINDS
from llmops.api.common import DNS_NAME
from tests.support.crds import FieldError, apply_defaults, schemas, validate

Schema = dict[str, Any]
Path = tuple[str | int, ...]
Draw = Callable[[st.SearchStrategy[Any]], Any]

KIND_NAMES = tuple(kind.crd.kind for kind in KINDS)
MODELS = {kind.crd.kind: kind for kind in KINDS}
INT64_MAX = 2**63 - 1
INT64_MIN = -(2**63)
UNBOUNDED_INT_SPAN = 10**6
"""Generated integers stay within this of their one bound (or of 0): big enough to matter, small enough to read."""
MAX_ITEMS_DRAWN = 4
"""Lists are drawn with at most this many items; the too-many-items mutation goes beyond maxItems."""


def spec_schema(kind: str) -> Schema:
    spec: Schema = schemas()[kind]["properties"]["spec"]
    return spec


def join(path: Path) -> str:
    """A path in the apiserver's notation: spec.steps[1].setWeight."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out = f"{out}.{part}" if out else part
    return out


# ---- CEL rules: how to satisfy each one, and how to break it -----------------------------

EXACTLY_ONE = re.compile(r"^\[((?:has\(self\.\w+\)(?:, )?)+)\]\.filter\(x, x\)\.size\(\) == 1$")
MAP_KEYS = re.compile(r"^self\.all\(k, (?:size\(k\) <= (\d+) && )?k\.matches\(r'(.*)'\)\)$")


@dataclass(frozen=True)
class CelRule:
    """Make an object (the rule's `self`) satisfy the rule, or break it; `break_` may return False."""

    repair: Callable[[dict[str, Any], Schema, Draw], None]
    break_: Callable[[dict[str, Any], Schema, Draw], bool]


def _exactly_one(fields: list[str]) -> CelRule:
    def repair(obj: dict[str, Any], schema: Schema, draw: Draw) -> None:
        present = [f for f in fields if f in obj]
        if len(present) == 1:
            return
        keep = draw(st.sampled_from(present or fields))
        for f in fields:
            if f != keep:
                obj.pop(f, None)
        if keep not in obj:
            obj[keep] = draw(valid_value(schema["properties"][keep]))

    def break_(obj: dict[str, Any], schema: Schema, draw: Draw) -> bool:
        if draw(st.booleans()):
            for f in fields:
                obj.pop(f, None)
        else:
            for f in fields[:2]:
                if f not in obj:
                    obj[f] = draw(valid_value(schema["properties"][f]))
        return True

    return CelRule(repair, break_)


def _map_keys(longest: int, pattern: str) -> CelRule:
    """Keys of a map (dict[Key, Value]) that must match a pattern: bad keys are replaced."""
    matches = re.compile(pattern.replace("$", "\\Z")).search

    def good(key: str) -> bool:
        return len(key) <= longest and bool(matches(key))

    def repair(obj: dict[str, Any], schema: Schema, draw: Draw) -> None:
        for key in [k for k in obj if not good(k)]:
            value = obj.pop(key)
            obj[draw(st.from_regex(pattern, fullmatch=True).filter(good))] = value

    def break_(obj: dict[str, Any], schema: Schema, draw: Draw) -> bool:
        obj[draw(st.sampled_from(["has space", "-dash", "a" * 64, "UPPER/x", "a/b/c", ""]))] = "v"
        return True

    return CelRule(repair, break_)


def _get(obj: dict[str, Any], name: str, schema: Schema) -> Any:
    """A field's value after defaulting."""
    if name in obj:
        return obj[name]
    return schema["properties"][name].get("default")


def _calibration_repair(obj: dict[str, Any], schema: Schema, draw: Draw) -> None:
    static = _get(obj, "quantization", schema) == "Int8Static"
    if static and "calibrationDataset" not in obj:
        obj["calibrationDataset"] = draw(valid_value(schema["properties"]["calibrationDataset"]))
    if not static:
        obj.pop("calibrationDataset", None)


def _calibration_break(obj: dict[str, Any], schema: Schema, draw: Draw) -> bool:
    if "calibrationDataset" in obj:
        obj.pop("calibrationDataset")
        obj["quantization"] = "Int8Static"
    else:
        obj["calibrationDataset"] = {"uri": "pvc://datasets/calibration.jsonl"}
        obj["quantization"] = draw(st.sampled_from(["None", "FP16", "Int8Dynamic", "Int4WeightOnly"]))
    return True


def _gpu_type_repair(obj: dict[str, Any], schema: Schema, draw: Draw) -> None:
    if "gpuType" in obj and _get(obj, "gpus", schema) <= 0:
        obj["gpus"] = draw(st.integers(1, 16))


def _gpu_type_break(obj: dict[str, Any], schema: Schema, draw: Draw) -> bool:
    obj["gpus"] = 0
    obj.setdefault("gpuType", "NVIDIA-A100")
    return True


def _gpu_instances_repair(obj: dict[str, Any], schema: Schema, draw: Draw) -> None:
    gpus = _get(obj, "resources", schema).get("gpus", 1)
    if gpus <= 0 and _get(obj, "instanceGroup", schema).get("kind", "GPU") == "GPU":
        obj["instanceGroup"] = {**obj.get("instanceGroup", {}), "kind": "CPU"}


def _gpu_instances_break(obj: dict[str, Any], schema: Schema, draw: Draw) -> bool:
    obj["resources"] = {k: v for k, v in obj.get("resources", {}).items() if k != "gpuType"} | {"gpus": 0}
    obj["instanceGroup"] = {**obj.get("instanceGroup", {}), "kind": "GPU"}
    return True


def _batch_sizes_repair(obj: dict[str, Any], schema: Schema, draw: Draw) -> None:
    largest = _get(obj, "maxBatchSize", schema)
    batching = obj.get("dynamicBatching")
    if batching and "preferredBatchSizes" in batching:
        batching["preferredBatchSizes"] = [b for b in batching["preferredBatchSizes"] if b <= largest]


def _batch_sizes_break(obj: dict[str, Any], schema: Schema, draw: Draw) -> bool:
    largest = _get(obj, "maxBatchSize", schema)
    batching = obj.setdefault("dynamicBatching", {})
    batching["preferredBatchSizes"] = [*batching.get("preferredBatchSizes", [])[:15], largest + 1]
    return True


def _min_max_repair(obj: dict[str, Any], schema: Schema, draw: Draw) -> None:
    low = _get(obj, "minReplicas", schema)
    if low > obj["maxReplicas"]:
        obj["minReplicas"], obj["maxReplicas"] = obj["maxReplicas"], low


def _min_max_break(obj: dict[str, Any], schema: Schema, draw: Draw) -> bool:
    obj["minReplicas"], obj["maxReplicas"] = 7, 3
    return True


def _lora_repair(obj: dict[str, Any], schema: Schema, draw: Draw) -> None:
    if "lora" in obj and _get(obj, "method", schema) != "LoRA":
        del obj["lora"]


def _lora_break(obj: dict[str, Any], schema: Schema, draw: Draw) -> bool:
    obj["method"] = "Full"
    obj.setdefault("lora", {})
    return True


def _paired(value: str, field: str, make: Callable[[Schema, Draw], Any]) -> CelRule:
    """(self.type == value) == has(self.field)."""

    def repair(obj: dict[str, Any], schema: Schema, draw: Draw) -> None:
        if obj.get("type") == value and field not in obj:
            obj[field] = make(schema, draw)
        if obj.get("type") != value:
            obj.pop(field, None)

    def break_(obj: dict[str, Any], schema: Schema, draw: Draw) -> bool:
        if obj.get("type") == value:
            obj.pop(field, None)
        else:
            obj[field] = make(schema, draw)
        return True

    return CelRule(repair, break_)


def _comparison_repair(obj: dict[str, Any], schema: Schema, draw: Draw) -> None:
    if "template" not in obj and "comparison" not in obj:
        obj["comparison"] = draw(st.sampled_from(["LessThan", "GreaterThan"]))


def _comparison_break(obj: dict[str, Any], schema: Schema, draw: Draw) -> bool:
    obj.pop("template", None)
    obj.pop("comparison", None)
    obj.setdefault("query", "sum(up)")
    return True


def _at_most_one_repair(obj: dict[str, Any], schema: Schema, draw: Draw) -> None:
    if "httpRoute" in obj and "replicaRatio" in obj:
        del obj[draw(st.sampled_from(["httpRoute", "replicaRatio"]))]


def _at_most_one_break(obj: dict[str, Any], schema: Schema, draw: Draw) -> bool:
    obj.setdefault("httpRoute", {"name": "llm-route"})
    obj.setdefault("replicaRatio", draw(st.booleans()))
    return True


def _candidate_repair(obj: dict[str, Any], schema: Schema, draw: Draw) -> None:
    if obj["stable"]["name"] == obj["candidate"]["name"]:
        name = obj["candidate"]["name"]
        obj["candidate"]["name"] = name[:-1] + ("b" if name.endswith("a") else "a")  # still a valid name


def _candidate_break(obj: dict[str, Any], schema: Schema, draw: Draw) -> bool:
    if not isinstance(obj.get("stable"), dict):
        return False  # an earlier mutation took it away
    obj["candidate"] = dict(obj["stable"])
    return True


def _weights_repair(obj: dict[str, Any], schema: Schema, draw: Draw) -> None:
    weighted = [s for s in obj["steps"] if isinstance(s, dict) and "setWeight" in s]
    for step, weight in zip(weighted, sorted(s["setWeight"] for s in weighted), strict=True):
        step["setWeight"] = weight


def _weights_break(obj: dict[str, Any], schema: Schema, draw: Draw) -> bool:
    if not isinstance(obj.get("steps"), list) or len(obj["steps"]) > 62:
        return False
    high = draw(st.integers(1, 100))
    obj["steps"] += [{"setWeight": high}, {"setWeight": draw(st.integers(0, high - 1))}]
    return True


def _keyless_repair(obj: dict[str, Any], schema: Schema, draw: Draw) -> None:
    if not obj.get("key") and _get(obj, "operator", schema) != "Exists":
        obj["operator"] = "Exists"


def _keyless_break(obj: dict[str, Any], schema: Schema, draw: Draw) -> bool:
    obj.pop("key", None)
    obj["operator"] = "Equal"
    return True


def _exists_value_repair(obj: dict[str, Any], schema: Schema, draw: Draw) -> None:
    if _get(obj, "operator", schema) == "Exists":
        obj.pop("value", None)


def _exists_value_break(obj: dict[str, Any], schema: Schema, draw: Draw) -> bool:
    obj["operator"], obj["value"] = "Exists", "v"
    return True


def _toleration_seconds_repair(obj: dict[str, Any], schema: Schema, draw: Draw) -> None:
    if "tolerationSeconds" in obj:
        obj["effect"] = "NoExecute"


def _toleration_seconds_break(obj: dict[str, Any], schema: Schema, draw: Draw) -> bool:
    obj["tolerationSeconds"] = draw(st.integers(0, 3600))
    obj["effect"] = draw(st.sampled_from(["NoSchedule", "PreferNoSchedule"]))
    return True


def _regex_pattern(schema: Schema, draw: Draw) -> str:
    return str(draw(st.sampled_from(["^ ?[a-z]+$", "cba", r"\d+", "(?i)yes|no"])))


def _judge(schema: Schema, draw: Draw) -> Any:
    return draw(valid_value(schema["properties"]["judge"]))


CEL_RULES: dict[str, CelRule] = {
    "(self.quantization == 'Int8Static') == has(self.calibrationDataset)": CelRule(
        _calibration_repair, _calibration_break
    ),
    "!has(self.gpuType) || self.gpus > 0": CelRule(_gpu_type_repair, _gpu_type_break),
    "!has(self.instanceGroup) || self.instanceGroup.kind != 'GPU' || !has(self.resources) "
    "|| self.resources.gpus > 0": CelRule(_gpu_instances_repair, _gpu_instances_break),
    "!has(self.dynamicBatching) || !has(self.dynamicBatching.preferredBatchSizes) "
    "|| self.dynamicBatching.preferredBatchSizes.all(b, b <= self.maxBatchSize)": CelRule(
        _batch_sizes_repair, _batch_sizes_break
    ),
    "self.minReplicas <= self.maxReplicas": CelRule(_min_max_repair, _min_max_break),
    "!has(self.lora) || self.method == 'LoRA'": CelRule(_lora_repair, _lora_break),
    "(self.type == 'Regex') == has(self.pattern)": _paired("Regex", "pattern", _regex_pattern),
    "(self.type == 'Judge') == has(self.judge)": _paired("Judge", "judge", _judge),
    "has(self.template) || has(self.comparison)": CelRule(_comparison_repair, _comparison_break),
    "!(has(self.httpRoute) && has(self.replicaRatio))": CelRule(_at_most_one_repair, _at_most_one_break),
    "self.stable.name != self.candidate.name": CelRule(_candidate_repair, _candidate_break),
    "(has(self.key) && self.key != '') || self.operator == 'Exists'": CelRule(_keyless_repair, _keyless_break),
    "self.operator != 'Exists' || !has(self.value) || self.value == ''": CelRule(
        _exists_value_repair, _exists_value_break
    ),
    "!has(self.tolerationSeconds) || (has(self.effect) && self.effect == 'NoExecute')": CelRule(
        _toleration_seconds_repair, _toleration_seconds_break
    ),
    "self.steps.filter(s, has(s.setWeight)).map(s, s.setWeight).isSorted()": CelRule(_weights_repair, _weights_break),
}


def is_transition(rule: str) -> bool:
    return "oldSelf" in rule


def cel_rule(rule: str) -> CelRule:
    """The repair/break pair of a (non-transition) rule of the CRDs."""
    found = EXACTLY_ONE.match(rule)
    if found:
        return _exactly_one(re.findall(r"has\(self\.(\w+)\)", found.group(1)))
    keys = MAP_KEYS.match(rule)
    if keys:
        return _map_keys(int(keys.group(1) or 1 << 20), keys.group(2))
    return CEL_RULES[rule]


def rules_of(schema: Schema) -> list[str]:
    return [r["rule"] for r in schema.get("x-kubernetes-validations", []) if not is_transition(r["rule"])]


def walk_schema(schema: Schema, path: Path = ()) -> Iterator[tuple[Path, Schema]]:
    """Every sub-schema with its path (list items as index 0)."""
    yield path, schema
    for name, prop in schema.get("properties", {}).items():
        yield from walk_schema(prop, (*path, name))
    if "items" in schema:
        yield from walk_schema(schema["items"], (*path, 0))
    if isinstance(schema.get("additionalProperties"), dict):
        yield from walk_schema(schema["additionalProperties"], (*path, "*"))


# ---- valid values from a schema ------------------------------------------------------------


def _integers(schema: Schema) -> st.SearchStrategy[int]:
    low, high = schema.get("minimum"), schema.get("maximum")
    if schema.get("exclusiveMinimum") and low is not None:
        low += 1
    if schema.get("exclusiveMaximum") and high is not None:
        high -= 1
    if low is None and high is None:
        low, high = -UNBOUNDED_INT_SPAN, UNBOUNDED_INT_SPAN
    elif high is None:
        high = low + UNBOUNDED_INT_SPAN
    elif low is None:
        low = high - UNBOUNDED_INT_SPAN
    return st.integers(int(low), int(high))


def _numbers(schema: Schema) -> st.SearchStrategy[float]:
    return st.floats(
        min_value=schema.get("minimum"),
        max_value=schema.get("maximum"),
        exclude_min=bool(schema.get("exclusiveMinimum")) and "minimum" in schema,
        exclude_max=bool(schema.get("exclusiveMaximum")) and "maximum" in schema,
        allow_nan=False,
        allow_infinity=False,
    )


# Free-form text: printable, with a little unicode, short enough to read in a failure.
TEXT = st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), max_size=24)


def _strings(schema: Schema) -> st.SearchStrategy[str]:
    low, high = schema.get("minLength", 0), schema.get("maxLength", 64)
    if "pattern" in schema:
        base = st.from_regex(schema["pattern"], fullmatch=True)
    else:
        base = st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), max_size=min(high, 24))
    return base.filter(lambda s: low <= len(s) <= high)


@cache
def _valid_value_cached(key: int) -> st.SearchStrategy[Any]:
    return _valid_value(_SCHEMAS_BY_ID[key])


_SCHEMAS_BY_ID: dict[int, Schema] = {}


def valid_value(schema: Schema) -> st.SearchStrategy[Any]:
    """Values that pass this schema and its CEL rules (apart from transition rules)."""
    _SCHEMAS_BY_ID[id(schema)] = schema
    return _valid_value_cached(id(schema))


def _valid_value(schema: Schema) -> st.SearchStrategy[Any]:
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    kind = schema.get("type")
    if kind == "object":
        if "properties" not in schema:
            return _maps(schema)
        return _objects(schema)
    if kind == "array":
        keys = schema.get("x-kubernetes-list-map-keys")
        low = schema.get("minItems", 0)
        high = min(schema.get("maxItems", MAX_ITEMS_DRAWN), max(low, MAX_ITEMS_DRAWN))
        unique_by = (lambda item: tuple(item.get(k) for k in keys)) if keys else None
        return st.lists(valid_value(schema["items"]), min_size=low, max_size=high, unique_by=unique_by)
    if kind == "integer":
        return _integers(schema)
    if kind == "number":
        return _numbers(schema)
    if kind == "boolean":
        return st.booleans()
    if kind == "string":
        return _strings(schema)
    raise ValueError(f"no strategy for schema {schema}")


def _maps(schema: Schema) -> st.SearchStrategy[dict[str, Any]]:
    """A dict[Key, Value]: free keys, then made to satisfy the map's rules (its key pattern)."""
    values = valid_value(schema.get("additionalProperties", {"type": "string"}))

    @st.composite
    def draw_map(draw: Draw) -> dict[str, Any]:
        obj = draw(st.dictionaries(_strings({"maxLength": 63, "minLength": 1}), values, max_size=3))
        for rule in rules_of(schema):
            cel_rule(rule).repair(obj, schema, draw)
        return obj

    return draw_map()


def _objects(schema: Schema) -> st.SearchStrategy[dict[str, Any]]:
    required = set(schema.get("required", []))
    properties = schema["properties"]

    @st.composite
    def draw_object(draw: Draw) -> dict[str, Any]:
        obj = {}
        for name, prop in properties.items():
            if name in required or draw(st.booleans()):
                obj[name] = draw(valid_value(prop))
        for rule in rules_of(schema):
            cel_rule(rule).repair(obj, schema, draw)
        return obj

    return draw_object()


# ---- mutations -------------------------------------------------------------------------------

WRONG_TYPES: dict[str, list[Any]] = {
    "object": ["text", 7, True, ["a"]],
    "array": ["text", 7, {"a": 1}],
    "string": [7, 1.5, True, ["a"], {"a": "b"}],
    "integer": ["7", 1.5, True, [1], {"a": 1}],
    "number": ["0.5", True, [0.5], {"a": 1}],
    "boolean": ["true", 1, 0, [True]],
}
BAD_STRINGS = [
    "",
    " ",
    "UPPER",
    "has space",
    "trailing\n",
    "-dash",
    "dot.",
    "x" * 300,
    "ftp://host/x",
    "ünïcode",
    "a_b",
]
UNKNOWN_FIELDS = ["bogus", "extra", "maxbatchsize", "max_batch_size", "Spec", "status"]


def _sites(value: Any, schema: Schema, path: Path) -> Iterator[tuple[Path, Any, Schema]]:
    yield path, value, schema
    if isinstance(value, dict) and "properties" in schema:
        for name, child in value.items():
            if name in schema["properties"]:
                yield from _sites(child, schema["properties"][name], (*path, name))
    elif isinstance(value, list) and "items" in schema:
        for i, child in enumerate(value):
            yield from _sites(child, schema["items"], (*path, i))


def _set(obj: dict[str, Any], path: Path, value: Any) -> None:
    node: Any = obj
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value


MUTATIONS = (
    "wrong-type", "out-of-bounds", "bad-enum", "missing-required", "cel-violation", "unknown-field",
    "bad-string", "too-long", "too-many-items", "too-few-items", "duplicate-key", "null", "beyond-int64",
)  # fmt: skip


def _mutation_applies(name: str, value: Any, schema: Schema) -> bool:
    kind = schema.get("type")
    return {
        "wrong-type": kind in WRONG_TYPES,
        "out-of-bounds": kind in ("integer", "number") and ("minimum" in schema or "maximum" in schema),
        "bad-enum": "enum" in schema,
        "missing-required": isinstance(value, dict) and any(f in value for f in schema.get("required", [])),
        "cel-violation": isinstance(value, dict) and bool(rules_of(schema)),
        "unknown-field": isinstance(value, dict) and "properties" in schema,
        "bad-string": kind == "string",
        "too-long": kind == "string" and "maxLength" in schema,
        "too-many-items": kind == "array" and "maxItems" in schema and isinstance(value, list) and len(value) > 0,
        "too-few-items": kind == "array" and schema.get("minItems", 0) > 0,
        "duplicate-key": kind == "array" and "x-kubernetes-list-map-keys" in schema and bool(value),
        "null": True,
        "beyond-int64": kind == "integer" and "maximum" not in schema,
    }[name]


def _mutated(name: str, value: Any, schema: Schema, draw: Draw) -> Any:
    """The new value of the site (a copy), or DROP to delete it."""
    kind = schema.get("type")
    if name == "wrong-type":
        return draw(st.sampled_from(WRONG_TYPES[kind]))
    if name == "out-of-bounds":
        bounds = []
        step = 1 if kind == "integer" else 0.5
        if "minimum" in schema:
            bounds.append(schema["minimum"] if schema.get("exclusiveMinimum") else schema["minimum"] - step)
        if "maximum" in schema:
            bounds.append(schema["maximum"] if schema.get("exclusiveMaximum") else schema["maximum"] + step)
        return draw(st.sampled_from(bounds))
    if name == "bad-enum":
        return draw(st.sampled_from(["", "unknown", *(v.lower() for v in schema["enum"]), schema["enum"][0] + " "]))
    if name == "missing-required":
        obj = dict(value)
        del obj[draw(st.sampled_from([f for f in schema["required"] if f in value]))]
        return obj
    if name == "cel-violation":
        obj = copy.deepcopy(value)
        cel_rule(draw(st.sampled_from(rules_of(schema)))).break_(obj, schema, draw)
        return obj
    if name == "unknown-field":
        return {**value, draw(st.sampled_from(UNKNOWN_FIELDS)): draw(st.sampled_from([1, "x", {}]))}
    if name == "bad-string":
        return draw(st.sampled_from(BAD_STRINGS))
    if name == "too-long":
        return "a" * (schema["maxLength"] + 1)
    if name == "too-many-items":
        keys = schema.get("x-kubernetes-list-map-keys")
        items = []
        for i in range(schema["maxItems"] + 1):
            item = copy.deepcopy(value[i % len(value)])
            if keys and isinstance(item, dict):
                item[keys[0]] = f"k{i}"
            items.append(item)
        return items
    if name == "too-few-items":
        return []
    if name == "duplicate-key":
        return [*value, copy.deepcopy(value[0])]
    if name == "null":
        return None
    if name == "beyond-int64":
        return draw(st.sampled_from([INT64_MAX + 1, 2**64, INT64_MIN - 1]))
    raise ValueError(name)


@st.composite
def mutated(draw: Draw, spec: dict[str, Any], kind: str) -> tuple[dict[str, Any], str]:
    """One mutation at one site of the spec (the spec itself included); returns (spec, label)."""
    root = {"spec": spec}
    root_schema = {"type": "object", "properties": {"spec": spec_schema(kind)}, "required": ["spec"]}
    sites = [(p, v, s) for p, v, s in _sites(root, root_schema, ()) if p]
    # A kind of mutation first, then where: every kind is tried about as often, however few
    # places it applies to.
    where = {m: [site for site in sites if _mutation_applies(m, site[1], site[2])] for m in MUTATIONS}
    pick = draw(st.randoms(use_true_random=False))  # uniform: sampled_from favours the first choice
    name = pick.choice([m for m in MUTATIONS if where[m]])
    path, value, schema = pick.choice(where[name])
    new = _mutated(name, value, schema, draw)
    _set(root, path, new)
    return root.get("spec"), f"{name}@{join(path)}"


BAD_NAMES = ["model.v2", "A", "a" * 64, "1abc", "-a", "a_b", "x" * 254, "ab-"]
"""Names the apiserver refuses for every object, or our CRDs for theirs (too long to label a
child, no Service name)."""
BAD_NAME_ONE_IN = 20


@dataclass(frozen=True)
class FuzzedSpec:
    kind: str
    obj: dict[str, Any]
    mutations: tuple[str, ...]


def fuzzed_specs(kind: str, name: str = "fuzz") -> st.SearchStrategy[FuzzedSpec]:
    """Objects of `kind` named `name`: valid ones, and valid ones with one or two mutations."""

    @st.composite
    def draw_spec(draw: Draw) -> FuzzedSpec:
        spec = draw(valid_value(spec_schema(kind)))
        labels = []
        count = (1 + draw(st.booleans())) if draw(st.booleans()) else 0  # half of them mutated once or twice
        for _ in range(count):
            spec, label = draw(mutated(copy.deepcopy(spec), kind))
            labels.append(label)
        object_name = name
        if draw(st.integers(1, BAD_NAME_ONE_IN)) == BAD_NAME_ONE_IN:  # not 1: hypothesis favours the low end
            object_name = draw(st.sampled_from(BAD_NAMES))
            labels.append("bad-name@metadata.name")
        obj: dict[str, Any] = {"apiVersion": API_VERSION, "kind": kind, "metadata": {"name": object_name}}
        if spec is not None:
            obj["spec"] = spec
        return FuzzedSpec(kind, obj, tuple(labels))

    return draw_spec()


# ---- the oracle ------------------------------------------------------------------------------


def without_nulls(value: Any) -> Any:
    """What the apiserver keeps: null fields of non-nullable schemas are pruned before defaulting."""
    if isinstance(value, dict):
        return {k: without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [without_nulls(v) for v in value]
    return value


def unknown_fields(value: Any, schema: Schema, path: Path = ()) -> list[FieldError]:
    """Fields the schema does not declare (refused under fieldValidation=Strict).

    Like the apiserver's decoder, the keys of an object where the schema has a scalar are
    unknown fields too (`maxBatchSize: {a: 1}` is refused for `spec.maxBatchSize.a`).
    """
    errors: list[FieldError] = []
    if isinstance(value, dict):
        declared = schema.get("properties")
        free = isinstance(schema.get("additionalProperties"), dict) or schema.get(
            "x-kubernetes-preserve-unknown-fields"
        )
        for name, child in value.items():
            if declared is not None and name in declared:
                errors += unknown_fields(child, declared[name], (*path, name))
            elif free:
                errors += unknown_fields(child, schema.get("additionalProperties") or {}, (*path, name))
            else:
                errors.append(FieldError(join((*path, name)), "unknown field"))
    elif isinstance(value, list):
        for i, child in enumerate(value):
            errors += unknown_fields(child, schema.get("items") or {}, (*path, i))
    return errors


def out_of_int64(value: Any, path: Path = ()) -> list[FieldError]:
    """Integers the apiserver's JSON decoder cannot hold as int64."""
    if isinstance(value, bool):
        return []
    if isinstance(value, int) and not INT64_MIN <= value <= INT64_MAX:
        return [FieldError(join(path), "integer beyond int64")]
    if isinstance(value, dict):
        return [e for k, v in value.items() for e in out_of_int64(v, (*path, k))]
    if isinstance(value, list):
        return [e for i, v in enumerate(value) for e in out_of_int64(v, (*path, i))]
    return []


def expected_errors(obj: dict[str, Any]) -> list[FieldError]:
    """What the apiserver must refuse this object for (empty: it must accept it)."""
    # metadata is the apiserver's own (ObjectMeta): only the spec has unknown fields to find
    decoder = unknown_fields(obj.get("spec"), spec_schema(obj["kind"]), ("spec",)) + out_of_int64(obj)
    if decoder:
        return decoder
    return object_name_errors(obj) + validate(without_nulls(obj))


def object_name_errors(obj: dict[str, Any]) -> list[FieldError]:
    """The apiserver's own rule for every object's name: a DNS subdomain of at most 253 characters."""
    name = obj["metadata"]["name"]
    if len(name) <= 253 and re.fullmatch(DNS_NAME, name):
        return []
    return [FieldError("metadata.name", "a lowercase RFC 1123 subdomain")]


def expected_stored(obj: dict[str, Any]) -> dict[str, Any]:
    """The spec the apiserver stores for an accepted object: nulls pruned, defaults filled in."""
    schema = schemas()[obj["kind"]]
    stored: dict[str, Any] = apply_defaults(schema, without_nulls(copy.deepcopy(obj)))
    return stored


def pydantic_errors(obj: dict[str, Any]) -> list[str]:
    """Why the operator's model refuses a stored object (empty: it parses)."""
    try:
        MODELS[obj["kind"]].model_validate(obj)
    except pydantic.ValidationError as error:
        return [f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in error.errors()]
    return []


def names_a_path(message: str, errors: list[FieldError]) -> bool:
    """Whether an apiserver refusal names the field path of one of the expected errors.

    The apiserver may name a list item where the oracle names the list (`spec.metrics[1]` for a
    duplicate key in `spec.metrics`), so a path is named when it is part of the message.
    """
    # a rule on the whole object (on metadata.name) has no path of its own: its message tells
    return any((error.path or error.message) in message for error in errors)


# ---- what a run fuzzed -------------------------------------------------------------------------


@dataclass
class FuzzTally:
    """Counts over a pytest run, printed by tests/cluster/chaos/conftest.py's terminal summary."""

    sent: Counter[str] = field(default_factory=Counter)
    """Distinct specs sent to the apiserver, per kind."""
    refused: Counter[str] = field(default_factory=Counter)
    accepted: Counter[str] = field(default_factory=Counter)
    mutations: dict[str, Counter[str]] = field(default_factory=dict)
    """Per kind: mutation kind -> how many specs carried it."""
    seconds: Counter[str] = field(default_factory=Counter)
    created: Counter[str] = field(default_factory=Counter)
    """Accepted specs created for real with the operator running, per kind."""
    disagreements: int = 0

    def record(self, spec: FuzzedSpec, refused: bool, seconds: float) -> None:
        self.sent[spec.kind] += 1
        (self.refused if refused else self.accepted)[spec.kind] += 1
        self.seconds[spec.kind] += seconds
        kinds = self.mutations.setdefault(spec.kind, Counter())
        for label in spec.mutations:
            kinds[label.split("@")[0]] += 1

    def summary(self, kind: str) -> str:
        mutations = ", ".join(f"{m} {n}" for m, n in sorted(self.mutations.get(kind, Counter()).items()))
        return (
            f"{self.refused[kind]} refused, {self.accepted[kind]} accepted in {self.seconds[kind]:.0f}s"
            f" (mutations: {mutations or 'none'})"
        )


TALLY = FuzzTally()


# ---- immutable fields ----------------------------------------------------------------------------


def transition_rules(kind: str) -> set[str]:
    """Paths (apiserver notation) of the fields whose CEL transition rules (oldSelf) make them immutable."""
    found = set()
    for path, schema in walk_schema(spec_schema(kind), ("spec",)):
        for rule in schema.get("x-kubernetes-validations", []):
            if is_transition(rule["rule"]):
                found.add(join(path) + rule.get("fieldPath", ""))
    return found


@dataclass(frozen=True)
class ImmutableUpdate:
    """An update of a created object that a transition rule must refuse at `path`."""

    id: str
    base: dict[str, Any]
    """The spec changes (dotted paths, as tests.support.invalid_specs.patched takes them) of the
    created object, from its kind's example."""
    update: dict[str, Any]
    path: str


def immutable_updates() -> dict[str, list[ImmutableUpdate]]:
    """kind -> updates; a unit test keeps them covering every transition rule of the CRDs."""
    from tests.support.invalid_specs import DELETE

    return {
        "FineTuneJob": [
            ImmutableUpdate("base-model", {}, {"spec.baseModel": {"uri": "hf://org/other"}}, "spec.baseModel"),
            ImmutableUpdate("dataset", {}, {"spec.dataset.uri": "pvc://datasets/other.jsonl"}, "spec.dataset"),
            ImmutableUpdate("method", {}, {"spec.method": "Full", "spec.lora": DELETE}, "spec.method"),
            ImmutableUpdate("hyperparameters", {}, {"spec.hyperparameters.epochs": 5}, "spec.hyperparameters"),
            ImmutableUpdate("workers", {}, {"spec.workers": 4}, "spec.workers"),
            ImmutableUpdate("resources", {}, {"spec.resources.gpus": 1}, "spec.resources"),
            ImmutableUpdate("checkpointing", {}, {"spec.checkpointing.everySteps": 10}, "spec.checkpointing"),
            ImmutableUpdate("lora-changed", {}, {"spec.lora.r": 8}, "spec.lora"),
            ImmutableUpdate("lora-removed", {}, {"spec.lora": DELETE}, "spec.lora"),
            ImmutableUpdate("lora-added", {"spec.lora": DELETE}, {"spec.lora": {"r": 4}}, "spec.lora"),
        ],
    }


MUTABLE_UPDATES: dict[str, list[dict[str, Any]]] = {
    "FineTuneJob": [
        {"spec.suspend": True},
        {"spec.output.build.quantization": "FP16"},
        {"spec.scheduling.queueName": "gpu-team-b"},
        {"spec.backoffLimit": 5},
    ],
}
"""Updates of the same objects that stay allowed: what may change after creation."""
