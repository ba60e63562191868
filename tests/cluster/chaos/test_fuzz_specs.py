"""Fuzzed specs of the four kinds against the real kube-apiserver, judged by an oracle that is not it.

Every spec (tests/support/fuzz_specs.py: drawn from the CRD's schema, repaired to satisfy its CEL
rules, then mutated or not) is sent with a server-side dry run and `fieldValidation=Strict`:

- one the oracle (offline schema + CEL checker, decoder rules) refuses must be refused, 422
  (400 for unknown fields, which the decoder refuses), naming the field path;
- one it accepts must be accepted and come back as sent, with the schema's defaults filled in,
  and must parse into the operator's pydantic model.

Disagreements are gathered over the whole run and reported together. hypothesis is
derandomized, so a run is reproducible. The fast variants (a few hundred specs per kind) run
in `make test-cluster`; the ≥2,000-per-kind variants are marked `chaos`.

A sample of accepted specs is then created for real with the operator running beside an
unrelated LLMModel: each must be reconciled (or refused with a Degraded condition) without a
failing reconcile, the operator must stay up, and the unrelated model must still be served
and follow an edit at the end.
"""

from __future__ import annotations

import contextlib
import copy
import json
import re
import time
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from tests.support.crds import CRD_DIR
from tests.support.fuzz_specs import (
    KIND_NAMES,
    TALLY,
    FuzzedSpec,
    expected_errors,
    expected_stored,
    fuzzed_specs,
    names_a_path,
    pydantic_errors,
)
from tests.support.kube import GROUP, VERSION, Kube, Kubectl, llmmodel, ready
from tests.support.operator import OperatorProcess, wait_for

# celpy raises the recursion limit while hypothesis runs, and hypothesis writes out the spec
# it stopped at (see Enough), which may be large: it says so each time, to no use here.
pytestmark = [
    pytest.mark.filterwarnings("ignore:The recursion limit will not be reset"),
    pytest.mark.filterwarnings("ignore:Generating overly large repr"),
]
FAST_SPECS = 300
FULL_SPECS = 2000
FAST_CREATED = 6
FULL_CREATED = 30
PLURALS = {kind: kind.lower() + "s" for kind in KIND_NAMES}
SHOWN = 12
"""Disagreements printed in a failure, per kind (all are counted)."""


@pytest.fixture(scope="module", autouse=True)
def crds(kubectl: Kubectl) -> None:
    kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CRD_DIR))
    kubectl(
        "wait", "--for=condition=Established", "--timeout=60s", "crd", "-l", "app.kubernetes.io/part-of=llmops-operator"
    )


@dataclass
class Answer:
    code: int
    """200/201 for an accepted object, else the refusal's HTTP status."""
    body: dict[str, Any]
    """The object as stored (accepted), or the Status (refused)."""

    @property
    def refused(self) -> bool:
        return self.code >= 400

    @property
    def message(self) -> str:
        return str(self.body.get("message", ""))


def send(custom: client.CustomObjectsApi, namespace: str, obj: dict[str, Any], dry_run: bool = True) -> Answer:
    try:
        stored = custom.create_namespaced_custom_object(
            GROUP,
            VERSION,
            namespace,
            PLURALS[obj["kind"]],
            obj,
            dry_run="All" if dry_run else None,
            field_validation="Strict",
        )
    except ApiException as error:
        try:
            status = json.loads(error.body or "{}")
        except ValueError:
            status = {"message": error.body}
        return Answer(error.status or 0, status)
    return Answer(201, dict(stored))


def numbers_equal(a: Any, b: Any) -> bool:
    """JSON equality where 2 and 2.0 are one number (the apiserver re-encodes what it stores)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(numbers_equal(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(numbers_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, float) or isinstance(b, float):
        # Go writes an integral float64 without a fraction ("-46663178140300030"), which reads
        # back as an int that differs from the float's exact value; as float64 they are one.
        return isinstance(a, int | float) and isinstance(b, int | float) and float(a) == float(b)
    return bool(a == b)


def disagreement(spec: FuzzedSpec, answer: Answer) -> str | None:
    """Why the apiserver's answer differs from the oracle's, or None when they agree."""
    expected = expected_errors(spec.obj)
    if expected:
        if not answer.refused:
            return f"accepted, but the oracle refuses it: {[str(e) for e in expected]}"
        # the decoder refuses unknown fields before the schema is looked at: 400, not 422
        code = 400 if any(e.message == "unknown field" for e in expected) else 422
        if answer.code != code:
            return f"refused with {answer.code}, not {code}: {answer.message}"
        if not names_a_path(answer.message, expected):
            return f"refused without naming {[e.path for e in expected]}: {answer.message}"
        return None
    if answer.refused:
        return f"refused ({answer.code}), but the oracle accepts it: {answer.message}"
    sent = expected_stored(spec.obj)["spec"]
    if not numbers_equal(answer.body.get("spec"), sent):
        return f"did not round-trip: stored {json.dumps(answer.body.get('spec'))} for {json.dumps(sent)}"
    refused_by_model = pydantic_errors(answer.body)
    if refused_by_model:
        return f"the CRD accepts it but the operator's model refuses it: {refused_by_model}"
    return None


@dataclass
class Findings:
    kind: str
    problems: list[tuple[str, FuzzedSpec, str]] = field(default_factory=list)
    seen: set[str] = field(default_factory=set)

    def report(self) -> str:
        lines = [f"{len(self.problems)} of {TALLY.sent[self.kind]} {self.kind} specs disagree with the oracle:"]
        for problem, spec, _ in sorted(self.problems, key=lambda p: len(p[2]))[:SHOWN]:
            lines.append(f"- {problem}\n  mutations: {list(spec.mutations)}\n  object: {json.dumps(spec.obj)}")
        return "\n".join(lines)


def fuzz(kind: str, target: int, custom: client.CustomObjectsApi, namespace: str) -> Findings:
    """Send `target` distinct fuzzed specs (hypothesis draws some specs more than once)."""
    findings = Findings(kind)

    # Derandomized: the same specs on every run. No shrinking: every disagreement is gathered
    # (rather than the first one minimised), each with the object that showed it.
    @settings(
        max_examples=3 * target,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(spec=fuzzed_specs(kind))
    def check(spec: FuzzedSpec) -> None:
        if len(findings.seen) >= target:
            raise Enough  # every call from now on, so that hypothesis' replay of it agrees
        key = json.dumps(spec.obj, sort_keys=True)
        if key in findings.seen:
            return
        findings.seen.add(key)
        started = time.monotonic()
        answer = send(custom, namespace, spec.obj)
        TALLY.record(spec, answer.refused, time.monotonic() - started)
        problem = disagreement(spec, answer)
        if problem is not None:
            TALLY.disagreements += 1
            findings.problems.append((problem, spec, key))

    with contextlib.suppress(Enough):
        check()
    return findings


class Enough(Exception):
    """The target was reached: stops hypothesis from drawing more (it draws some specs twice)."""


def check_fuzzed(kind: str, target: int, api_client: Any, namespace: str) -> None:
    custom = client.CustomObjectsApi(api_client)
    findings = fuzz(kind, target, custom, namespace)
    assert not findings.problems, findings.report()
    distinct = len(findings.seen)
    assert distinct >= target, f"only {distinct} distinct {kind} specs were drawn, want {target}"
    assert TALLY.refused[kind] and TALLY.accepted[kind], f"{kind}: not a mix of valid and invalid specs"


@pytest.mark.parametrize("kind", KIND_NAMES)
def test_fuzzed_specs_are_refused_naming_the_field_or_round_trip(api_client: Any, namespace: str, kind: str) -> None:
    check_fuzzed(kind, FAST_SPECS, api_client, namespace)


@pytest.mark.chaos
@pytest.mark.parametrize("kind", KIND_NAMES)
def test_two_thousand_fuzzed_specs_per_kind_agree_with_the_oracle(api_client: Any, namespace: str, kind: str) -> None:
    check_fuzzed(kind, FULL_SPECS, api_client, namespace)


# ---- created for real, with the operator running ----------------------------------------------


def accepted_sample(kind: str, count: int) -> list[dict[str, Any]]:
    """`count` distinct unmutated specs of `kind` the oracle accepts, spread over what hypothesis draws.

    hypothesis draws the simplest specs first; taking every k-th of the accepted ones brings in
    the richer ones (scheduling, tolerations, autoscaling, …) that reach the children.
    """
    found: dict[str, dict[str, Any]] = {}

    @settings(
        max_examples=count * 20,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(spec=fuzzed_specs(kind))
    def collect(spec: FuzzedSpec) -> None:
        if not spec.mutations and not expected_errors(spec.obj):
            found.setdefault(json.dumps(spec.obj, sort_keys=True), spec.obj)

    collect()
    accepted = list(found.values())
    step = max(1, len(accepted) // count)
    return [bounded(copy.deepcopy(obj)) for obj in accepted[step - 1 :: step][:count]]


def bounded(obj: dict[str, Any]) -> dict[str, Any]:
    """At most two serving replicas and two workers: kwok would start every pod asked for."""
    spec = obj["spec"]
    for serving in (spec.get("serving"), (spec.get("output") or {}).get("serving")):
        if isinstance(serving, dict):
            serving["replicas"] = min(serving.get("replicas", 1), 2)
            if "autoscaling" in serving:
                serving["autoscaling"]["maxReplicas"] = min(serving["autoscaling"]["maxReplicas"], 2)
                serving["autoscaling"]["minReplicas"] = min(serving["autoscaling"].get("minReplicas", 1), 2)
    if "workers" in spec:
        spec["workers"] = min(spec["workers"], 2)
    return obj


FAILED = re.compile(r"reconcile of (\w+) ([^/\s]+)/(\S+) failed")


def failed_reconciles(log: str, namespace: str) -> dict[str, int]:
    """`Kind/name` -> failed reconciles in the operator's log, for one namespace."""
    counts: dict[str, int] = {}
    for kind, ns, name in FAILED.findall(log):
        if ns == namespace:
            counts[f"{kind}/{name}"] = counts.get(f"{kind}/{name}", 0) + 1
    return counts


def settled(custom: client.CustomObjectsApi, namespace: str, kind: str, name: str) -> str | None:
    """Why this object is not yet reconciled for its generation, or None once it is."""
    obj = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURALS[kind], name)
    status = obj.get("status") or {}
    if status.get("observedGeneration") != obj["metadata"]["generation"]:
        return f"{kind}/{name}: observedGeneration {status.get('observedGeneration')}"
    return None


def degraded_without_message(custom: client.CustomObjectsApi, namespace: str, kind: str, name: str) -> str | None:
    obj = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURALS[kind], name)
    for condition in (obj.get("status") or {}).get("conditions", []):
        if condition["type"] == "Degraded" and condition["status"] == "True" and len(condition.get("message", "")) < 10:
            return f"{kind}/{name}: Degraded without a message a person can act on: {condition}"
    return None


def check_created(operator: OperatorProcess, kube: Kube, per_kind: int) -> None:
    custom = kube.custom
    # the unrelated resource, created first and checked last
    kube.create(llmmodel("bystander"))
    created: list[tuple[str, str]] = []
    for kind in KIND_NAMES:
        for i, obj in enumerate(accepted_sample(kind, per_kind)):
            obj["metadata"] = {"name": f"fz-{kind.lower()}-{i}"}
            answer = send(custom, kube.ns, obj, dry_run=False)
            assert not answer.refused, f"{kind} {obj['metadata']['name']} refused: {answer.message}"
            TALLY.created[kind] += 1
            created.append((kind, obj["metadata"]["name"]))

    waiting: list[str] = []

    def all_settled() -> bool:
        waiting[:] = [w for kind, name in created if (w := settled(custom, kube.ns, kind, name))]
        return not waiting

    try:
        wait_for(all_settled, 420, "every fuzzed object reconciled", 3)  # generous: the machine is shared
    except AssertionError as error:
        raise AssertionError(f"{error}\nnot reconciled: {waiting}\n(log: {operator.log_path})") from None
    time.sleep(15)  # three resyncs: a failing reconcile would show up in the log by now
    assert operator.proc is not None and operator.proc.poll() is None, f"operator exited: {operator.log_tail()}"
    failures = failed_reconciles(operator.log_path.read_text(errors="replace"), kube.ns)
    assert not failures, f"reconciles failed (and are retried): {failures}\n{operator.log_tail(60)}"
    unclear = [d for kind, name in created if (d := degraded_without_message(custom, kube.ns, kind, name))]
    assert not unclear, "\n".join(unclear)

    # the bystander is served, and still followed after all of that
    wait_for(lambda: ready(kube, "bystander"), 120, "the unrelated LLMModel Ready")
    kube.patch_spec("llmmodels", "bystander", {"serving": {"replicas": 2}})
    wait_for(
        lambda: kube.apps.read_namespaced_deployment("bystander", kube.ns).spec.replicas == 2,
        60,
        "the unrelated LLMModel's Deployment scaled to 2 after the fuzzed objects",
    )


def test_accepted_fuzzed_specs_are_reconciled_once_beside_an_unrelated_model(
    operator: OperatorProcess, kube: Kube
) -> None:
    check_created(operator, kube, FAST_CREATED)


@pytest.mark.chaos
def test_many_accepted_fuzzed_specs_are_reconciled_once_beside_an_unrelated_model(
    operator: OperatorProcess, kube: Kube
) -> None:
    check_created(operator, kube, FULL_CREATED)
