"""One kopf handler per kind calls every listener of the kind's events, in order, whatever one raises."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import kopf
import pytest

from llmops.handlers import reconciler


def test_listeners_of_a_kind_share_one_handler_and_each_is_called(
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
    async def last(name: str, type: str | None, **_: Any) -> None:
        heard.append(("last", type))

    handlers = registry._watching.get_all_handlers()
    assert [handler.id for handler in handlers] == ["widgets-event"]

    with caplog.at_level(logging.ERROR):
        asyncio.run(handlers[0].fn(name="w", type="MODIFIED", namespace="ns", body={}))

    assert heard == [("first", "w"), ("last", "MODIFIED")]
    assert "failing failed on an event of widgets w" in caplog.text
