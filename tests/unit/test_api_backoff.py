"""The operator's side of API faults: request timeouts, Retry-After, coalesced reconciles."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException
from urllib3 import HTTPResponse

from llmops.api.llmmodel import LLMModel
from llmops.handlers.reconciler import Reconciler
from llmops.kube import client as kube_client
from llmops.plan.common import Plan


def throttled(status: int, retry_after: str | None) -> ApiException:
    error = ApiException(status=status, reason="TooManyRequests")
    error.headers = {"Retry-After": retry_after} if retry_after is not None else {}
    return error


def test_every_request_gets_a_timeout_unless_it_names_one(monkeypatch: pytest.MonkeyPatch) -> None:
    api = kube_client._ApiClient(kube_client.client.Configuration())
    seen: list[Any] = []

    def request(*_: Any, _request_timeout: Any = None, **__: Any) -> None:
        seen.append(_request_timeout)

    monkeypatch.setattr(api.rest_client, "request", request)
    api.call_api("GET", "https://127.0.0.1:1/api")
    api.call_api("GET", "https://127.0.0.1:1/api", _request_timeout=5)
    assert seen == [kube_client.REQUEST_TIMEOUT, 5]


@pytest.mark.parametrize(
    ("error", "seconds"),
    [
        (throttled(429, "3"), 3.0),
        (throttled(503, "1.5"), 1.5),
        (throttled(429, "3600"), kube_client.MAX_RETRY_AFTER),
        (throttled(429, None), None),
        (throttled(429, "soon"), None),
        (throttled(500, "3"), None),
        (ValueError("not an API error"), None),
    ],
)
def test_retry_after_is_read_from_429_and_503_only(error: Exception, seconds: float | None) -> None:
    assert kube_client.ServerBackoff().retry_after(error) == seconds


def test_after_a_retry_after_no_request_starts_before_it_has_passed(monkeypatch: pytest.MonkeyPatch) -> None:
    backoff = kube_client.ServerBackoff()
    monkeypatch.setattr(kube_client, "SERVER_BACKOFF", backoff)
    calls: list[float] = []

    def refused() -> None:
        calls.append(time.monotonic())
        raise throttled(429, "0.3")

    def answered() -> str:
        calls.append(time.monotonic())
        return "ok"

    async def scenario() -> str:
        with pytest.raises(ApiException):
            await kube_client.call(refused)
        return await kube_client.call(answered)

    assert asyncio.run(scenario()) == "ok"
    assert calls[1] - calls[0] >= 0.29


def test_a_request_queued_while_a_429_came_waits_for_its_retry_after(monkeypatch: pytest.MonkeyPatch) -> None:
    backoff = kube_client.ServerBackoff()
    monkeypatch.setattr(kube_client, "SERVER_BACKOFF", backoff)
    one_at_a_time = kube_client.PriorityGate(1)
    monkeypatch.setattr(kube_client, "_gate", lambda: one_at_a_time)
    throttled_at: list[float] = []
    sent_at: list[float] = []

    def refused() -> None:
        time.sleep(0.1)  # the other request queues behind this one meanwhile
        throttled_at.append(time.monotonic())
        raise throttled(429, "0.3")

    def answered() -> str:
        sent_at.append(time.monotonic())
        return "ok"

    async def scenario() -> list[Any]:
        return await asyncio.gather(kube_client.call(refused), kube_client.call(answered), return_exceptions=True)

    first, second = asyncio.run(scenario())
    assert isinstance(first, ApiException) and second == "ok"
    assert sent_at[0] - throttled_at[0] >= 0.29


def test_a_read_urllib3_retries_after_a_429_holds_every_other_request_too(monkeypatch: pytest.MonkeyPatch) -> None:
    backoff = kube_client.ServerBackoff()
    monkeypatch.setattr(kube_client, "SERVER_BACKOFF", backoff)
    slept: list[float] = []
    monkeypatch.setattr(kube_client.time, "sleep", slept.append)
    response = HTTPResponse(status=429, headers={"Retry-After": "3600"})

    assert kube_client.RETRIES.sleep_for_retry(response)
    assert slept == [kube_client.MAX_RETRY_AFTER]  # capped, as the reconciler's own waits are
    assert backoff.left() > kube_client.MAX_RETRY_AFTER - 1
    assert not kube_client.RETRIES.sleep_for_retry(HTTPResponse(status=429))


def test_a_burst_of_events_for_one_resource_costs_two_reconciles_not_one_each(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    planned: list[str] = []

    async def once(self: Reconciler[Any], namespace: str, name: str) -> Plan | None:
        planned.append(name)
        await asyncio.sleep(0.05)
        return None

    monkeypatch.setattr(Reconciler, "_reconcile_once", once)

    async def plan(model: LLMModel, now: datetime) -> Plan:
        return Plan()

    async def burst() -> None:
        reconciler = Reconciler(LLMModel, plan)
        await asyncio.gather(*(reconciler.reconcile("ns", "m") for _ in range(20)))
        await reconciler.reconcile("ns", "m")  # after the burst: runs again

    asyncio.run(burst())
    assert planned == ["m", "m", "m"]
