"""One shared kubernetes client; blocking calls run in worker threads so kopf's loop never blocks."""

from __future__ import annotations

import asyncio
import contextvars
import functools
import heapq
import itertools
import json
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from enum import IntEnum
from functools import cache
from typing import Any, TypeVar

import orjson
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from kubernetes.dynamic import DynamicClient
from kubernetes.dynamic.exceptions import NotFoundError
from urllib3 import BaseHTTPResponse
from urllib3.util.retry import Retry

T = TypeVar("T")
log = logging.getLogger(__name__)

REQUEST_TIMEOUT = (10.0, 60.0)
"""(connect, read) seconds for every request. The client has no timeout of its own, so an
answer that never comes (a half-open connection, a stuck proxy) would hold a worker thread and
the resource's reconcile forever; 60 s is the apiserver's own limit for a non-watch request."""
MAX_RETRY_AFTER = 60.0


class _Retry(Retry):
    """urllib3 retries a throttled read itself, after the Retry-After it was told. Every other
    request of ours must wait as long (see ServerBackoff), so the pause is noted for the whole
    process before this thread sleeps it, and it is capped as ours are."""

    def sleep_for_retry(self, response: BaseHTTPResponse) -> bool:
        seconds = self.get_retry_after(response)
        if not seconds:
            return False
        time.sleep(SERVER_BACKOFF.hold(seconds))
        return True


RETRIES = _Retry(total=3, read=1, backoff_factor=0.5, respect_retry_after_header=True, raise_on_status=False)
"""Idempotent requests are retried on connection errors with a growing pause (not at once), and
on 429/503 after the Retry-After the apiserver asks for; writes are retried by the reconciler."""
API_WORKERS = 16
"""Requests in flight at once, each in a thread of its own. A reconcile mostly waits for the
apiserver, not for the CPU: with asyncio's default pool (cores + 4 threads: 6 on 2 cores) a
burst of new resources queued behind six requests and their first children came tens of
seconds late. The connection pool is as large, so no request opens a TLS connection of its own."""
RESERVED_FOR_CHANGES = 4
"""Of those, the ones only a change (a create, a spec edit) may use: see PriorityGate."""


class _ApiClient(client.ApiClient):
    def call_api(
        self,
        method: Any,
        url: Any,
        header_params: Any = None,
        body: Any = None,
        post_params: Any = None,
        _request_timeout: Any = None,
    ) -> Any:
        timeout = _request_timeout or REQUEST_TIMEOUT
        return super().call_api(method, url, header_params, body, post_params, _request_timeout=timeout)


CREDENTIALS_LOCK = threading.Lock()
"""Held while credentials are loaded. The kubernetes client writes a kubeconfig's certificates to
temporary files it shares by content, and hands out a file's name before its bytes are written:
kopf's login and ours, loading at once in two threads, could give kopf an empty certificate."""


@cache
def api_client() -> client.ApiClient:
    configuration = client.Configuration()
    with CREDENTIALS_LOCK:
        try:
            config.load_incluster_config(client_configuration=configuration)
        except config.ConfigException:
            config.load_kube_config(client_configuration=configuration)
    configuration.retries = RETRIES
    configuration.connection_pool_maxsize = API_WORKERS
    return _ApiClient(configuration)


@cache
def _workers() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=API_WORKERS, thread_name_prefix="kube")


@cache
def dynamic() -> DynamicClient:
    return DynamicClient(api_client())


def path_of(api_version: str, kind: str, namespace: str | None, name: str | None = None) -> str:
    """The URL path of a kind's object (or of its collection), found by discovery."""
    path: str = dynamic().resources.get(api_version=api_version, kind=kind).path(name=name, namespace=namespace)
    return path


def request(method: str, path: str, body: Any = None, **params: Any) -> Any:
    """One request, its answer as plain parsed JSON; errors as the dynamic client raises them.

    The hot calls go this way rather than through the typed API, which validates every call with
    pydantic, or the dynamic client's answers, wrapped in objects we turned back into dicts: on a
    first pass over 1,000 models those two layers took about a tenth of the operator's CPU.
    """
    answer = dynamic().request(method, path, body=body, serialize=False, **params)
    return orjson.loads(answer.data)


class ServerBackoff:
    """The apiserver asked us (429/503 with Retry-After) to wait: no request of ours before then.

    One for the process: the apiserver throttles a client's priority level as a whole, so
    every reconcile waits, not only the one that was told (an event would start another at once).
    """

    def __init__(self) -> None:
        self.until = 0.0
        self._lock = threading.Lock()  # told from the worker and stream threads too

    def hold(self, seconds: float) -> float:
        """No request before `seconds` (at most MAX_RETRY_AFTER) from now; returns the seconds held."""
        seconds = min(MAX_RETRY_AFTER, seconds)
        with self._lock:
            self.until = max(self.until, time.monotonic() + seconds)
        return seconds

    def retry_after(self, error: Exception) -> float | None:
        """Note the error's Retry-After, if it has one; returns the seconds to wait."""
        if not isinstance(error, ApiException) or error.status not in (429, 503):
            return None
        value = (getattr(error, "headers", None) or {}).get("Retry-After")
        try:
            seconds = float(str(value))
        except (TypeError, ValueError):
            return None
        return self.hold(seconds)

    def left(self) -> float:
        return max(0.0, self.until - time.monotonic())

    async def wait(self) -> None:
        while (left := self.left()) > 0:  # told again while asleep: wait on
            await asyncio.sleep(left)


SERVER_BACKOFF = ServerBackoff()


class Priority(IntEnum):
    """Which waiting request goes to the apiserver first: the lowest value."""

    CHANGE = 0
    """A reconcile of a generation not yet observed: a create or a spec edit, what a user waits on."""
    FOLLOW_UP = 1
    """What a change brings about later: a child's event, a requeue, a retry."""
    RESYNC = 2
    """The periodic look, which almost always finds nothing new."""


PRIORITY: contextvars.ContextVar[Priority] = contextvars.ContextVar("llmops_priority", default=Priority.FOLLOW_UP)
"""The priority of the requests made in this context; a reconcile sets it for its own."""


class PriorityGate:
    """At most `slots` holders at once; the others wait in order of priority, then of arrival.

    Each request to the apiserver passes one (`call`), and each reconcile another (handlers/
    reconciler.py). First in, first out, a burst would put a new resource's first request behind
    every follow-up and resync asked for before it, and its children would come as late as the
    whole backlog. `reserved` slots are only ever taken by changes, so a change never waits for
    a slot while less urgent work keeps the rest busy. Under overload the resyncs and follow-ups
    wait instead.
    """

    def __init__(self, slots: int, reserved: int = 0) -> None:
        self._free = slots
        self._reserved = reserved
        self._waiting: list[tuple[int, int, asyncio.Future[None]]] = []
        self._arrivals = itertools.count()

    @asynccontextmanager
    async def slot(self, priority: int) -> AsyncIterator[None]:
        await self._acquire(priority)
        try:
            yield
        finally:
            self._free += 1
            self._grant()

    def _may_take(self, priority: int) -> bool:
        return self._free > (0 if priority == Priority.CHANGE else self._reserved)

    async def _acquire(self, priority: int) -> None:
        granted = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiting, (priority, next(self._arrivals), granted))
        self._grant()  # at once, when a slot it may take is free
        try:
            await granted
        except asyncio.CancelledError:
            if granted.done() and not granted.cancelled():
                self._free += 1  # the slot came as the wait was cancelled: pass it on
                self._grant()
            raise

    def _grant(self) -> None:
        """Hand free slots to the most urgent waits that may take them."""
        while self._waiting:
            priority, _, granted = self._waiting[0]
            if granted.done():  # a cancelled wait stays in the heap until it comes up
                heapq.heappop(self._waiting)
            elif self._may_take(priority):
                heapq.heappop(self._waiting)
                self._free -= 1
                granted.set_result(None)
            else:
                return


@cache
def _gate() -> PriorityGate:
    return PriorityGate(API_WORKERS, reserved=RESERVED_FOR_CHANGES)


async def call(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    try:
        context = contextvars.copy_context()  # as asyncio.to_thread does
        work = functools.partial(context.run, fn, *args, **kwargs)
        async with _gate().slot(PRIORITY.get()):
            # Once through the gate, not before it: a 429 may have come while this one queued.
            await SERVER_BACKOFF.wait()
            return await asyncio.get_running_loop().run_in_executor(_workers(), work)
    except Exception as error:
        seconds = SERVER_BACKOFF.retry_after(error)
        if seconds is not None:
            log.warning("the apiserver asked to retry after %.0fs: holding every request until then", seconds)
        raise


def is_not_found(error: Exception) -> bool:
    return isinstance(error, NotFoundError) or (isinstance(error, ApiException) and error.status == 404)


def is_namespace_terminating(error: Exception) -> bool:
    """The apiserver refused a create because the namespace is being deleted (403, NamespaceTerminating)."""
    if not isinstance(error, ApiException) or error.status != 403:
        return False
    try:
        causes = json.loads(error.body or "{}").get("details", {}).get("causes", [])
    except (ValueError, AttributeError):
        return False
    return any(isinstance(c, dict) and c.get("reason") == "NamespaceTerminating" for c in causes)
