"""hf://org/name@<revision>: a hub model is loaded at a pinned revision (images/common)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "images" / "common"))

from llmops_common.uri import ConfigError, resolve


def test_a_revision_after_the_at_sign_is_pinned() -> None:
    hub = resolve("hf://org/name@0123abcd")
    assert (hub.location, hub.is_hub, hub.revision) == ("org/name", True, "0123abcd")


def test_without_a_revision_the_default_branch_is_loaded() -> None:
    assert resolve("hf://org/name").revision is None


def test_an_empty_revision_is_a_configuration_error() -> None:
    with pytest.raises(ConfigError):
        resolve("hf://org/name@")
