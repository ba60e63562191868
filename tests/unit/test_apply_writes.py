"""What the operator sends when it applies a child, and when it decides not to."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
import yaml

from llmops.kube import apply as apply_module
from llmops.kube.apply import ChildRejected, apply_all, apply_body, contains


def test_apply_body_writes_characters_beyond_the_bmp_as_utf8_not_surrogate_escapes() -> None:
    # Apply patches are YAML to the apiserver, and YAML refuses "\ud83d" escapes.
    body = apply_body({"data": {"suite.json": "reverse: 🙂 ="}})
    assert b"\\ud83d" not in body
    assert "🙂".encode() in body
    assert json.loads(body) == {"data": {"suite.json": "reverse: 🙂 ="}}


@pytest.mark.parametrize(
    "char", ["🙂", "\x7f", "\x85", "\x9f", "\u2028", "\u2029", "\ufeff", "\uffff", "\x0b", "é", "\t", '"']
)
def test_apply_body_reads_back_exactly_as_yaml(char: str) -> None:
    manifest = {"data": {f"key{char}": f"a{char}b"}}
    assert yaml.safe_load(apply_body(manifest).decode()) == manifest


def test_an_empty_list_the_apiserver_omitted_is_no_change() -> None:
    # An EndpointSlice with no ready pods comes back without `endpoints`.
    observed = {"addressType": "IPv4", "ports": [{"name": "http"}]}
    assert contains(observed, {"addressType": "IPv4", "ports": [{"name": "http"}], "endpoints": []})
    assert contains({"spec": {}}, {"spec": {"selector": {}}})
    assert not contains(observed, {"endpoints": [{"addresses": ["10.0.0.1"]}]})


def manifest(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": "ns"}}


def test_children_are_applied_together_and_all_end_before_the_reconcile_goes_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    in_flight, most, ended = 0, 0, []

    async def one(m: dict[str, Any]) -> bool:
        nonlocal in_flight, most
        in_flight += 1
        most = max(most, in_flight)
        await asyncio.sleep(0.01 if m["metadata"]["name"] == "slow" else 0)
        in_flight -= 1
        ended.append(m["metadata"]["name"])
        return m["metadata"]["name"] != "same"

    monkeypatch.setattr(apply_module, "apply", one)
    writes = asyncio.run(apply_all([manifest("slow"), manifest("fast"), manifest("same")]))
    assert (writes, most, sorted(ended)) == (2, 3, ["fast", "same", "slow"])


def test_a_refused_child_is_raised_before_other_errors_once_every_write_ended(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ended = []

    async def one(m: dict[str, Any]) -> bool:
        name = m["metadata"]["name"]
        await asyncio.sleep(0.01 if name == "slow" else 0)
        ended.append(name)
        if name == "broken":
            raise ConnectionResetError("reset")
        if name == "refused":
            raise ChildRejected(m, "spec.ports: Invalid value")
        return True

    monkeypatch.setattr(apply_module, "apply", one)
    with pytest.raises(ChildRejected, match="refused"):
        asyncio.run(apply_all([manifest("broken"), manifest("refused"), manifest("slow")]))
    assert sorted(ended) == ["broken", "refused", "slow"]
