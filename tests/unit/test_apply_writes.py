"""What the operator sends when it applies a child, and when it decides not to."""

from __future__ import annotations

import json

import pytest
import yaml

from llmops.kube.apply import apply_body, contains


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
