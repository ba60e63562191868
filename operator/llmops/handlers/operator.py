"""Operator-wide settings: peering, probes, the metrics endpoint, logging."""

from __future__ import annotations

import logging
from typing import Any

import kopf

# kopf's per-resource memory: not exported, and only asked for by `kopf.operator(memories=...)`.
from kopf._cogs.structs.bodies import RawBody
from kopf._cogs.structs.ephemera import AnyMemo
from kopf._core.reactor.inventory import ResourceMemories, ResourceMemory
from prometheus_client import start_http_server

from ..kube.children import PAGE
from ..kube.client import CREDENTIALS_LOCK
from ..settings import Settings
from .indexes import INDEXED_KINDS

SETTINGS = Settings.from_env()


class NoDiffBase(kopf.DiffBaseStorage):
    """No last-handled state: the operator has no on.create/update handlers, so nothing diffs it.

    kopf builds each event's "essence" (a deep copy of the body) to diff it with the last handled
    one, whether or not a handler would use the diff: a tenth of the operator's CPU with thousands
    of pods, Jobs and models.
    """

    def build(self, *, body: kopf.Body, extra_fields: Any = None) -> kopf.BodyEssence:
        return kopf.BodyEssence()

    def fetch(self, *, body: kopf.Body) -> kopf.BodyEssence | None:
        return None

    def store(self, *, body: kopf.Body, patch: kopf.Patch, essence: kopf.BodyEssence) -> None:
        pass


class IndexedKindsMemories(ResourceMemories):
    """kopf's memory of each resource, kept only where the operator uses it: for the indexed kinds.

    kopf keeps one per resource it has seen (about 830 bytes: a memo, an error throttler, the
    state of its daemons and its index entries) until the resource is deleted. Only the index
    entries matter here: the operator has no daemons, timers or change handlers, and its event
    handlers only start reconciles. For every other kind kopf gets a fresh memory per event, as
    it does for an admission request, and it is let go with the event.
    """

    async def recall(
        self,
        raw_body: RawBody,
        *,
        memobase: AnyMemo | None = None,
        noticed_by_listing: bool = False,
        ephemeral: bool = False,
    ) -> ResourceMemory:
        return await super().recall(
            raw_body,
            memobase=memobase,
            noticed_by_listing=noticed_by_listing,
            ephemeral=ephemeral or raw_body.get("kind") not in INDEXED_KINDS,
        )


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    # Status is the only field we write. Only event handlers are registered (no timers, daemons
    # or deletion handlers), so kopf adds no finalizer; under this name it removes one that an
    # earlier version of the operator added.
    settings.persistence.finalizer = "llmops.dev/unused"
    settings.persistence.diffbase_storage = NoDiffBase()
    settings.posting.level = logging.WARNING  # our Events come from the plans, not kopf's log
    # Watches: the apiserver ends each after 5 minutes and kopf opens the next; one the client
    # still holds 30 s later is cut. A watch that goes silent (a blackholed connection: not even
    # the bookmark the apiserver sends every minute arrives) is dropped after 70 s and opened
    # again, and what changed meanwhile comes with it (tests/cluster/chaos/test_api_faults.py).
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.watching.inactivity_timeout = 70
    # kopf lists our resources in one answer by default: thousands of them parsed at once, when
    # the operator starts, in memory the process keeps. In pages, as the children's copies.
    settings.watching.chunk_size = PAGE
    # kopf's worker of each resource outlives its last event by this long, holding that event's
    # body (5 s by default): a burst of thousands of creates kept them all. Ours returns at once.
    settings.queueing.idle_timeout = 0.5
    settings.networking.connect_timeout = 10
    settings.networking.request_timeout = 60  # as the kube layer's own requests (kube/client.py)
    start_http_server(SETTINGS.metrics_port)


@kopf.on.login()
def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
    """kopf's own login through the kubernetes client, never while our client loads the same files."""
    with CREDENTIALS_LOCK:
        return kopf.login_via_client(**kwargs)


@kopf.on.probe(id="apiserver")
async def apiserver_reachable(**_: Any) -> bool:
    """Liveness: the watch loop is alive enough to answer."""
    return True
