"""Our own kinds' objects as one list+watch per scope tells of them (kube/children.py's `Stream`).

Every kind of ours comes this way, not through kopf's watches. For the kind with the most events
(LLMModels: on a first pass, half of them the echoes of our own status writes) the framework's
handling of each event cost more than our reconcile of it; here an event costs the stream's parse
of it and the handler's look at it. And kopf, watching a namespace glob, watches each matching
namespace on its own, and makes every handler wait until its indexed kinds are listed in each:
a namespace deleted before kopf had listed it there held every handler of every namespace for good.
Nothing is kept here: a list hands over its copies, each event its body.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from .children import Kept, Listed, Stream, deliver_to, start_streams, stop_streams, wait_until_set

OnListed = Callable[[str | None, Listed], None]
"""Every object of the kind in a scope (a namespace, or None: the cluster), by namespace and name:
a (re-)list."""
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
        self.scopes: list[str | None] = []
        self.synced: set[tuple[str, str | None]] = set()
        """The kinds and scopes listed at least once since the start."""
        self.first_lists: asyncio.Event | None = None

    def handle(self, kept: Kept, listed: OnListed, changed: OnChanged) -> None:
        self.handlers[kept.kind] = Handlers(kept, listed, changed)

    def expect(self, loop: asyncio.AbstractEventLoop, scopes: list[str | None], accepts: Callable[[str], bool]) -> None:
        """Set up the streams `start` will start: from now on, `listed` waits for their first lists.

        Called when the operator starts, before kopf's peering lets the streams start: a child's
        event may start a reconcile meanwhile, and it must not read the indexes before them."""
        self.loop, self.accepts, self.scopes = loop, accepts, scopes
        self.synced.clear()
        self.first_lists = asyncio.Event()

    def start(self) -> None:
        """Stream every handled kind in each expected scope (once: a second call while they run does nothing)."""
        if self.streams:
            return
        self.streams = start_streams(self, [handlers.kept for handlers in self.handlers.values()], self.scopes)

    def stop(self) -> None:
        stop_streams(self.streams)
        self.loop = self.first_lists = None

    async def listed(self, timeout: float) -> None:
        """Wait, at most `timeout` seconds, until every kind has been listed once in every scope."""
        await wait_until_set(self.first_lists, timeout)

    def knows(self, kind: str, namespace: str) -> bool:
        """Whether the kind has been listed in the namespace (or the cluster) since the start."""
        return (kind, None) in self.synced or (kind, namespace) in self.synced

    def deliver(self, work: Callable[[], None]) -> None:
        deliver_to(self.loop, work)

    def relisted(self, kind: str, scope: str | None, listed: Listed) -> None:
        self.synced.add((kind, scope))
        self.handlers[kind].listed(scope, listed)
        if self.first_lists is not None and len(self.synced) == len(self.handlers) * len(self.scopes):
            self.first_lists.set()

    def changed(self, kind: str, type_: str, body: Mapping[str, Any]) -> None:
        if self.accepts((body.get("metadata") or {}).get("namespace") or ""):
            self.handlers[kind].changed(type_, body)


RESOURCES = Resources()
