"""The operator keeps API_WORKERS requests in flight: reconciles wait for the apiserver, not for a thread."""

from __future__ import annotations

import asyncio
import contextvars
import threading

from llmops.kube import client

TENANT: contextvars.ContextVar[str] = contextvars.ContextVar("tenant", default="")


def in_flight_together(n: int, priority: client.Priority) -> list[int]:
    everyone_in = threading.Barrier(n, timeout=10)

    def request() -> int:
        return everyone_in.wait()  # raises BrokenBarrierError unless all are in flight together

    async def burst() -> list[int]:
        client.PRIORITY.set(priority)
        return await asyncio.gather(*(client.call(request) for _ in range(n)))

    return sorted(asyncio.run(burst()))


def test_api_workers_changes_run_at_once() -> None:
    n = client.API_WORKERS
    assert in_flight_together(n, client.Priority.CHANGE) == list(range(n))


def test_other_requests_leave_the_reserved_slots_free() -> None:
    n = client.API_WORKERS - client.RESERVED_FOR_CHANGES
    assert in_flight_together(n, client.Priority.FOLLOW_UP) == list(range(n))


def test_more_than_the_default_pool_of_a_small_machine() -> None:
    assert client.API_WORKERS >= 16


def test_a_request_sees_the_context_of_its_caller() -> None:
    async def tagged() -> str:
        TENANT.set("reconcile-1")
        return await client.call(TENANT.get)

    assert asyncio.run(tagged()) == "reconcile-1"
