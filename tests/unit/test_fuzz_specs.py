"""The spec fuzzer (tests/support/fuzz_specs.py) offline: complete, and the CRDs agree with the models.

The cluster tests send these specs to a real apiserver; here the same generator is checked
against the offline oracle in seconds, so a new CEL rule without a repair, or a bound that
the pydantic model and the CRD disagree on, fails before any cluster starts.
"""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, Phase, given, settings

from tests.support.crds import validate
from tests.support.fuzz_specs import (
    KIND_NAMES,
    FuzzedSpec,
    ImmutableUpdate,
    cel_rule,
    expected_errors,
    expected_stored,
    fuzzed_specs,
    immutable_updates,
    is_transition,
    pydantic_errors,
    spec_schema,
    transition_rules,
    walk_schema,
)
from tests.support.invalid_specs import example, patched

# celpy raises the recursion limit while hypothesis runs; hypothesis says so on every test
pytestmark = pytest.mark.filterwarnings("ignore:The recursion limit will not be reset")
EXAMPLES = {"LLMModel": "llmmodel", "FineTuneJob": "finetunejob", "EvalSuite": "evalsuite", "Rollout": "rollout"}


@pytest.mark.parametrize("kind", KIND_NAMES)
def test_every_cel_rule_of_the_crds_can_be_satisfied_and_broken_by_the_fuzzer(kind: str) -> None:
    for _, schema in walk_schema(spec_schema(kind)):
        for rule in schema.get("x-kubernetes-validations", []):
            if not is_transition(rule["rule"]):
                cel_rule(rule["rule"])  # KeyError: add the rule to CEL_RULES


@pytest.mark.parametrize("kind", KIND_NAMES)
def test_fuzzed_specs_the_crd_accepts_parse_into_the_operators_model(kind: str) -> None:
    seen = {"valid": 0, "invalid": 0}

    @settings(
        max_examples=100,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(spec=fuzzed_specs(kind))
    def check(spec: FuzzedSpec) -> None:
        errors = expected_errors(spec.obj)
        if not spec.mutations:
            assert errors == [], f"an unmutated spec is invalid: {errors}\n{json.dumps(spec.obj)}"
        if errors:
            seen["invalid"] += 1
            return
        seen["valid"] += 1
        stored = expected_stored(spec.obj)
        assert pydantic_errors(stored) == [], json.dumps(stored)

    check()
    assert seen["valid"] > 20 and seen["invalid"] > 20, seen


@pytest.mark.parametrize("kind", KIND_NAMES)
def test_every_immutable_field_has_an_update_that_tries_to_change_it(kind: str) -> None:
    covered = {u.path for u in immutable_updates().get(kind, [])}
    assert covered == transition_rules(kind)


@pytest.mark.parametrize("update", [u for updates in immutable_updates().values() for u in updates], ids=lambda u: u.id)
def test_immutable_updates_are_refused_offline(update: ImmutableUpdate) -> None:
    [kind] = [k for k, updates in immutable_updates().items() if update in updates]
    created = patched(example(EXAMPLES[kind]), update.base)
    assert validate(created) == []
    errors = validate(patched(created, update.update), old=created)
    assert update.path in {e.path for e in errors}, errors
