"""Instant queries against Prometheus' HTTP API for rollout analysis."""

from __future__ import annotations

import asyncio
import logging
import math

import aiohttp

from ..plan.analysis import Measurement

log = logging.getLogger(__name__)
TIMEOUT = aiohttp.ClientTimeout(total=10)


async def _query(session: aiohttp.ClientSession, base_url: str, promql: str) -> Measurement:
    """One scalar: the single sample of a vector or scalar result; no sample is None (no data)."""
    try:
        async with session.get(f"{base_url.rstrip('/')}/api/v1/query", params={"query": promql}) as response:
            body = await response.json(content_type=None)
    except (aiohttp.ClientError, TimeoutError, ValueError) as error:
        return Measurement(error=f"{type(error).__name__}: {error}")
    if body.get("status") != "success":
        return Measurement(error=f"{body.get('errorType', 'error')}: {body.get('error', response.status)}")
    data = body["data"]
    if data["resultType"] == "scalar":
        samples = [data["result"]]
    elif data["resultType"] == "vector":
        samples = [item["value"] for item in data["result"]]
    else:
        return Measurement(error=f"query returned a {data['resultType']}, not one number")
    if len(samples) > 1:
        return Measurement(error=f"query returned {len(samples)} series, not one number (aggregate it)")
    if not samples:
        return Measurement()
    value = float(samples[0][1])
    return Measurement(value=None if math.isnan(value) else value)


async def query_all(base_url: str, queries: dict[str, str]) -> dict[str, Measurement]:
    """name -> Measurement for every query, run concurrently; errors are answers, not exceptions."""
    async with aiohttp.ClientSession(timeout=TIMEOUT) as session:
        names = list(queries)
        results = await asyncio.gather(*(_query(session, base_url, queries[n]) for n in names))
    for name, result in zip(names, results, strict=True):
        if result.error:
            log.warning("analysis query %s failed: %s", name, result.error)
    return dict(zip(names, results, strict=True))
