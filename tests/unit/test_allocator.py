"""Freed memory goes back to the system once a minute, where the C library can."""

from __future__ import annotations

import threading

import pytest

from llmops import allocator


def test_this_c_library_can_trim() -> None:
    assert allocator.trim()  # glibc, as on the operator's image (Debian)


def test_trims_on_its_own_until_stopped(monkeypatch: pytest.MonkeyPatch) -> None:
    trimmed = threading.Semaphore(0)

    def malloc_trim(pad: int) -> int:
        assert pad == 0
        trimmed.release()
        return 1

    monkeypatch.setattr(allocator, "_malloc_trim", lambda: malloc_trim)
    stopping = allocator.install(seconds=0.01)
    assert trimmed.acquire(timeout=5) and trimmed.acquire(timeout=5)
    stopping.set()


def test_without_malloc_trim_nothing_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(allocator, "_malloc_trim", lambda: None)
    assert not allocator.trim()
    before = threading.active_count()
    allocator.install(seconds=0.01)
    assert threading.active_count() == before
