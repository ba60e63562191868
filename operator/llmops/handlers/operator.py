"""Operator-wide settings: peering, probes, the metrics endpoint, logging."""

from __future__ import annotations

import logging
from typing import Any

import kopf
from prometheus_client import start_http_server

from ..settings import Settings

SETTINGS = Settings.from_env()


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    # Status is the only field we write. Only event handlers are registered (no timers, daemons
    # or deletion handlers), so kopf adds no finalizer; under this name it removes one that an
    # earlier version of the operator added.
    settings.persistence.finalizer = "llmops.dev/unused"
    settings.posting.level = logging.WARNING  # our Events come from the plans, not kopf's log
    settings.watching.server_timeout = 300  # re-list at least every 5 minutes: no silent watch freeze
    settings.watching.client_timeout = 330
    settings.networking.request_timeout = 60
    start_http_server(SETTINGS.metrics_port)


@kopf.on.probe(id="apiserver")
async def apiserver_reachable(**_: Any) -> bool:
    """Liveness: the watch loop is alive enough to answer."""
    return True
