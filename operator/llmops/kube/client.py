"""One shared kubernetes client; blocking calls run in worker threads so kopf's loop never blocks."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from functools import cache
from typing import Any, TypeVar

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from kubernetes.dynamic import DynamicClient
from kubernetes.dynamic.exceptions import NotFoundError

T = TypeVar("T")


@cache
def api_client() -> client.ApiClient:
    try:
        config.load_incluster_config()
    except config.ConfigException:
        config.load_kube_config()
    return client.ApiClient()


@cache
def dynamic() -> DynamicClient:
    return DynamicClient(api_client())


async def call(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    return await asyncio.to_thread(fn, *args, **kwargs)


def is_not_found(error: Exception) -> bool:
    return isinstance(error, NotFoundError) or (isinstance(error, ApiException) and error.status == 404)
