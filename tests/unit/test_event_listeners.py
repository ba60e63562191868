"""Every listener of a kind's events is called, in order, whatever one raises; kopf handles none of our kinds."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
from typing import Any

import kopf
import pytest

from llmops.handlers import reconciler


def test_listeners_of_a_kind_are_each_called_in_order(
    registry: kopf.OperatorRegistry, caplog: pytest.LogCaptureFixture
) -> None:
    heard: list[tuple[str, Any]] = []

    @reconciler.on_event("widgets")
    async def first(name: str, **_: Any) -> None:
        heard.append(("first", name))

    @reconciler.on_event("widgets")
    async def failing(**_: Any) -> None:
        raise RuntimeError("boom")

    @reconciler.on_event("widgets")
    async def last(name: str, type: str, **_: Any) -> None:
        heard.append(("last", type))

    with caplog.at_level(logging.ERROR):
        asyncio.run(reconciler.tell_listeners("widgets", name="w", type="MODIFIED", namespace="ns", body={}))

    assert heard == [("first", "w"), ("last", "MODIFIED")]
    assert "failing failed on an event of widgets w" in caplog.text


def test_kopf_watches_none_of_our_kinds() -> None:
    """kopf watching a namespace glob made every handler wait for its indexes in each namespace,
    for good once a namespace went before kopf had listed it there: our streams bring them all."""
    registered = subprocess.run(
        [
            sys.executable,
            "-c",
            "import kopf, llmops.handlers; r = kopf.get_default_registry(); "
            "print(len(r._watching.get_all_handlers() + r._indexing.get_all_handlers() "
            "+ r._changing.get_all_handlers() + r._spawning.get_all_handlers()))",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert registered.stdout.strip() == "0"
