"""Immutable fields on the real apiserver: updating one of a created object is refused by its CEL
transition rule (oldSelf), naming the field; what may change still changes.

The updates (tests/support/fuzz_specs.py) cover every transition rule of the CRDs (a unit test
keeps them complete), and each verdict is checked against the offline oracle too.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from tests.support.crds import CRD_DIR, validate
from tests.support.fuzz_specs import MUTABLE_UPDATES, ImmutableUpdate, immutable_updates
from tests.support.invalid_specs import example, patched
from tests.support.kube import GROUP, VERSION, Kubectl

EXAMPLES = {"LLMModel": "llmmodel", "FineTuneJob": "finetunejob", "EvalSuite": "evalsuite", "Rollout": "rollout"}
CASES = [(kind, update) for kind, updates in immutable_updates().items() for update in updates]
MUTABLE = [(kind, update) for kind, updates in MUTABLE_UPDATES.items() for update in updates]


@pytest.fixture(scope="module", autouse=True)
def crds(kubectl: Kubectl) -> None:
    kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CRD_DIR))
    kubectl(
        "wait", "--for=condition=Established", "--timeout=60s", "crd", "-l", "app.kubernetes.io/part-of=llmops-operator"
    )


def created(custom: client.CustomObjectsApi, namespace: str, kind: str, name: str, changes: dict[str, Any]) -> Any:
    obj = patched(example(EXAMPLES[kind]), changes)
    obj["metadata"] = {"name": name}
    plural = kind.lower() + "s"
    return custom.create_namespaced_custom_object(GROUP, VERSION, namespace, plural, obj)


def replace(custom: client.CustomObjectsApi, namespace: str, obj: dict[str, Any]) -> Any:
    """Replace the spec with a JSON patch: no resourceVersion to conflict with status writers."""
    plural = obj["kind"].lower() + "s"
    patch = [{"op": "replace", "path": "/spec", "value": obj["spec"]}]
    name = obj["metadata"]["name"]
    return custom.patch_namespaced_custom_object(
        GROUP, VERSION, namespace, plural, name, patch, _content_type="application/json-patch+json"
    )


@pytest.mark.parametrize(("kind", "update"), CASES, ids=[f"{k}-{u.id}" for k, u in CASES])
def test_updating_an_immutable_field_is_refused_naming_it(
    api_client: Any, namespace: str, kind: str, update: ImmutableUpdate
) -> None:
    custom = client.CustomObjectsApi(api_client)
    old = created(custom, namespace, kind, f"immutable-{update.id}", update.base)
    new = patched(old, update.update)
    oracle = validate(new, old=old)
    assert update.path in {e.path for e in oracle}, f"the oracle does not refuse it: {oracle}"
    with pytest.raises(ApiException) as refused:
        replace(custom, namespace, new)
    assert refused.value.status == 422, refused.value.body
    message = json.loads(refused.value.body)["message"]
    assert update.path in message, message
    assert "immutable" in message, message


@pytest.mark.parametrize(("kind", "changes"), MUTABLE, ids=[f"{k}-{i}" for i, (k, _) in enumerate(MUTABLE)])
def test_fields_that_may_change_still_change(api_client: Any, namespace: str, kind: str, changes: dict) -> None:
    custom = client.CustomObjectsApi(api_client)
    old = created(custom, namespace, kind, "mutable", {})
    new = patched(old, changes)
    assert validate(new, old=old) == []
    stored = replace(custom, namespace, new)
    assert stored["metadata"]["generation"] == old["metadata"]["generation"] + 1
