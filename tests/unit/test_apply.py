"""The no-change check that keeps the operator from writing a child it would not change."""

from __future__ import annotations

from typing import Any

import pytest

from llmops.kube.apply import contains


@pytest.mark.parametrize(
    ("observed", "desired", "same"),
    [
        ({"a": 1, "added": "by the apiserver"}, {"a": 1}, True),
        ({"limits": {"nvidia.com/gpu": "1", "cpu": "500m"}}, {"limits": {"nvidia.com/gpu": 1, "cpu": "0.5"}}, True),
        ({"memory": "32Gi"}, {"memory": "32Gi"}, True),
        ({"memory": "32Gi"}, {"memory": "16Gi"}, False),
        ({"replicas": 2}, {"replicas": 3}, False),
        ({"args": ["--a", "--b"]}, {"args": ["--a"]}, False),
        ({"image": "triton:25.10"}, {"image": "triton:25.09"}, False),
        ({}, {"a": None}, True),
    ],
)
def test_contains(observed: Any, desired: Any, same: bool) -> None:
    assert contains(observed, desired) is same
