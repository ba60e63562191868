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


def test_caps_malloc_heaps_unless_the_environment_says(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[int, int]] = []

    def mallopt(parameter: int, value: int) -> int:
        calls.append((parameter, value))
        return 1

    monkeypatch.setattr(allocator, "_mallopt", lambda: mallopt)
    monkeypatch.delenv("MALLOC_ARENA_MAX", raising=False)
    assert allocator.cap_arenas()
    assert calls == [(allocator.M_ARENA_MAX, allocator.ARENAS)]

    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    assert not allocator.cap_arenas()
    assert len(calls) == 1


def test_this_c_library_takes_the_cap() -> None:
    assert allocator._mallopt() is not None  # glibc, as on the operator's image (Debian)
