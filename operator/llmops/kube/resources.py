"""Our own kinds' objects as one list+watch per scope tells of them (kube/children.py's `Stream`).

For the kind with the most events (LLMModels: on a first pass, half of them the echoes of our own
status writes) the framework's handling of each event cost more than our reconcile of it. Here
an event costs the stream's parse of it and the handler's look at it. Nothing is kept: a list
hands over its copies, each event its body.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from .children import Kept, Listed, Stream, deliver_to, start_streams, stop_streams

OnListed = Callable[[Listed], None]
"""Every object of the kind in a scope, by namespace and name: a (re-)list."""
OnChanged = Callable[[str, Mapping[str, Any]], None]
"""An event's type (ADDED, MODIFIED, DELETED) and object."""


@dataclass(frozen=True)
class Handlers:
    kept: Kept
    listed: OnListed
    changed: OnChanged


class Resources:
    """The streams of our kinds, and the handlers they tell, on the event loop."""

    selector = ""
    """Every object of the kind: the operator reconciles them all."""

    def __init__(self) -> None:
        self.handlers: dict[str, Handlers] = {}
        self.streams: list[Stream] = []
        self.loop: asyncio.AbstractEventLoop | None = None
        self.accepts: Callable[[str], bool] = lambda namespace: True

    def handle(self, kept: Kept, listed: OnListed, changed: OnChanged) -> None:
        self.handlers[kept.kind] = Handlers(kept, listed, changed)

    def start(self, loop: asyncio.AbstractEventLoop, scopes: list[str | None], accepts: Callable[[str], bool]) -> None:
        """Stream every handled kind in each scope (once: a second call while they run does nothing)."""
        if self.streams:
            return
        self.loop, self.accepts = loop, accepts
        self.streams = start_streams(self, [handlers.kept for handlers in self.handlers.values()], scopes)

    def stop(self) -> None:
        stop_streams(self.streams)
        self.loop = None

    def deliver(self, work: Callable[[], None]) -> None:
        deliver_to(self.loop, work)

    def relisted(self, kind: str, scope: str | None, listed: Listed) -> None:
        self.handlers[kind].listed(listed)

    def changed(self, kind: str, type_: str, body: Mapping[str, Any]) -> None:
        if self.accepts((body.get("metadata") or {}).get("namespace") or ""):
            self.handlers[kind].changed(type_, body)


RESOURCES = Resources()
