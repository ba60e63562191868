"""Fixtures shared by the unit tests."""

from __future__ import annotations

from collections.abc import Iterator

import kopf
import pytest

from llmops.handlers import reconciler


@pytest.fixture
def registry(monkeypatch: pytest.MonkeyPatch) -> Iterator[kopf.OperatorRegistry]:
    """A kopf registry of the test's own, and no event listeners registered yet."""
    fresh = kopf.OperatorRegistry()
    previous = kopf.get_default_registry()
    kopf.set_default_registry(fresh)
    monkeypatch.setattr(reconciler, "_EVENT_LISTENERS", {})
    yield fresh
    kopf.set_default_registry(previous)
