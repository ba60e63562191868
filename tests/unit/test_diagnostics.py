"""The state the operator writes on SIGUSR1: every asyncio task's stack and every thread's."""

from __future__ import annotations

import asyncio
import os
import signal
import threading

import pytest

from llmops import diagnostics


def test_the_state_names_each_task_and_thread_and_where_it_waits() -> None:
    async def waiting_for_the_apiserver(event: asyncio.Event) -> None:
        await event.wait()

    async def main() -> str:
        event = asyncio.Event()
        task = asyncio.create_task(waiting_for_the_apiserver(event), name="reconcile ns/model")
        await asyncio.sleep(0)
        try:
            return diagnostics.state()
        finally:
            event.set()
            await task

    stop = threading.Event()
    thread = threading.Thread(target=stop.wait, name="watch-pod-cluster")
    thread.start()
    try:
        text = asyncio.run(main())
    finally:
        stop.set()
        thread.join()
    assert text.startswith(diagnostics.BEGIN) and text.rstrip().endswith(diagnostics.END)
    assert "reconcile ns/model" in text and "waiting_for_the_apiserver" in text
    assert "Thread watch-pod-cluster:" in text and "Thread MainThread:" in text


def test_without_a_loop_the_state_has_the_threads_only() -> None:
    text = diagnostics.state()
    assert "0 asyncio tasks" in text and "Thread MainThread:" in text


def test_sigusr1_writes_the_state_to_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    previous = signal.getsignal(signal.SIGUSR1)
    diagnostics.install()
    try:
        os.kill(os.getpid(), signal.SIGUSR1)
    finally:
        signal.signal(signal.SIGUSR1, previous)
    err = capsys.readouterr().err
    assert diagnostics.BEGIN in err and diagnostics.END in err
