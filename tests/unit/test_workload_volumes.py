"""Volumes for pvc:// claims: their names are DNS labels whatever the claim's name."""

from __future__ import annotations

import re

import pytest

from llmops.plan.workloads import pvc_volumes, volume_name

DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


@pytest.mark.parametrize("claim", ["models", "models.v2", "a" * 63, "team-a.models.example.com"])
def test_volume_names_are_dns_labels(claim: str) -> None:
    name = volume_name(claim)
    assert DNS_LABEL.match(name) and len(name) <= 63, name


def test_a_plain_claim_keeps_its_readable_volume_name() -> None:
    assert volume_name("models") == "pvc-models"


def test_mounts_name_their_volumes() -> None:
    volumes, mounts = pvc_volumes(["models.v2", "checkpoints"], writable=frozenset({"checkpoints"}))
    assert [v["name"] for v in volumes] == [m["name"] for m in mounts]
    assert [v["persistentVolumeClaim"]["claimName"] for v in volumes] == ["models.v2", "checkpoints"]
    assert [m["readOnly"] for m in mounts] == [True, False]
