"""The operator's copies of what it watches beside its resources (kube/children.py), against the apiserver."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from kubernetes import client

from llmops.kube import children as kept_children
from llmops.kube.children import FAILED_CREATE, KINDS, Children, Store, Stream

pytestmark = pytest.mark.cluster


@pytest.fixture
def short_watches(operator_client: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """The operator's client on this cluster, with watches seconds long instead of minutes."""
    monkeypatch.setattr(kept_children, "QUIET_WATCH_SECONDS", 2)
    monkeypatch.setattr(kept_children, "SILENCE_SECONDS", 5)


def failed_create(namespace: str) -> client.CoreV1Event:
    return client.CoreV1Event(
        metadata=client.V1ObjectMeta(name="build.failed", namespace=namespace),
        involved_object=client.V1ObjectReference(kind="Job", name="build", namespace=namespace),
        reason=FAILED_CREATE,
        message='pods "build-x" is forbidden: exceeded quota',
        type="Warning",
    )


def test_a_quiet_event_stream_is_not_taken_for_a_dead_one_and_sees_the_event_that_comes(
    api_client: Any, namespace: str, short_watches: None, caplog: pytest.LogCaptureFixture
) -> None:
    """The apiserver sends watches of Events no bookmarks: with no Event matching, the stream
    hears nothing at all. Its watches end (cleanly, by the apiserver) before the silence that
    means a dead connection, so it never counts a failure, and the next watch resumes where the
    quiet ones began: an Event made after several of them is seen."""
    events = next(k for k in KINDS if k.kind == "Event")
    assert not events.bookmarked

    async def watch_quietly_then_see_one() -> tuple[int, Store]:
        kept = Children()
        kept.loop = asyncio.get_running_loop()
        store = kept.stores[(events.api_version, events.kind)] = Store()
        stream = Stream(kept, events, namespace)
        stream.start()
        try:
            failures = 0
            for _ in range(24):  # 12 s: some six watches, each over twice the silence allowed
                await asyncio.sleep(0.5)
                failures = max(failures, stream.failures)
            assert store.knows(namespace)
            assert store.in_namespace(namespace) == []
            core = client.CoreV1Api(api_client)
            await asyncio.to_thread(core.create_namespaced_event, namespace, failed_create(namespace))
            for _ in range(40):
                if store.get(namespace, "build.failed") is not None:
                    break
                await asyncio.sleep(0.25)
            return failures, store
        finally:
            stream.stopping.set()

    with caplog.at_level(logging.WARNING, logger=kept_children.__name__):
        failures, store = asyncio.run(watch_quietly_then_see_one())
    assert failures == 0, caplog.text
    assert not [r for r in caplog.records if "watching Event" in r.getMessage()], caplog.text
    seen = store.get(namespace, "build.failed")
    assert seen is not None, "the Event made after the quiet watches never reached the copies"
    assert seen.body()["reason"] == FAILED_CREATE
