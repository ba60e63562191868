"""The operator keeps API_WORKERS requests in flight: reconciles wait for the apiserver, not for a thread."""

from __future__ import annotations

import asyncio
import contextvars
import threading

from llmops.kube import client

TENANT: contextvars.ContextVar[str] = contextvars.ContextVar("tenant", default="")


def test_api_workers_requests_run_at_once() -> None:
    everyone_in = threading.Barrier(client.API_WORKERS, timeout=10)

    def request() -> int:
        return everyone_in.wait()  # raises BrokenBarrierError unless all are in flight together

    async def burst() -> list[int]:
        return await asyncio.gather(*(client.call(request) for _ in range(client.API_WORKERS)))

    assert sorted(asyncio.run(burst())) == list(range(client.API_WORKERS))


def test_more_than_the_default_pool_of_a_small_machine() -> None:
    assert client.API_WORKERS >= 16


def test_a_request_sees_the_context_of_its_caller() -> None:
    async def tagged() -> str:
        TENANT.set("reconcile-1")
        return await client.call(TENANT.get)

    assert asyncio.run(tagged()) == "reconcile-1"
