"""Operator-wide settings: peering, probes, the metrics endpoint, logging."""

from __future__ import annotations

import logging
from typing import Any

import kopf
from prometheus_client import start_http_server

from ..kube.client import CREDENTIALS_LOCK
from ..settings import Settings

SETTINGS = Settings.from_env()


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    # kopf watches none of our kinds (kube/resources.py streams them): only the namespaces (for
    # a --namespace glob), the CRDs and its peering objects.
    settings.posting.level = logging.WARNING  # our Events come from the plans, not kopf's log
    # Watches: the apiserver ends each after 5 minutes and kopf opens the next; one the client
    # still holds 30 s later is cut. A watch that goes silent (a blackholed connection: not even
    # the bookmark the apiserver sends every minute arrives) is dropped after 70 s and opened
    # again, and what changed meanwhile comes with it.
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.watching.inactivity_timeout = 70
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
