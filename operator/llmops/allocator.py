"""Keep malloc's share of the operator's memory small: few heaps, free pages handed back.

glibc's malloc keeps what the process frees for later use, and the kubelet counts it against the
pod's memory limit as if it were used. The operator's bursts leave it in megabytes: a relist's
pages, a thousand reconciles at once, spread over the worker and stream threads, which glibc
spreads over several heaps. `malloc_trim(0)` returns the free pages of every heap; it takes well
under a millisecond with thousands of resources.

glibc also gives threads up to eight heaps per core, and each keeps its own free space: with the
API workers and the streams that is a fixed cost of megabytes per process. Two heaps serve the
operator's threads, which spend most of their time waiting on the network, without a measurable
loss of throughput; a `MALLOC_ARENA_MAX` in the environment is the user's choice and is kept.
Where there is no glibc (musl, macOS) all of this does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import threading
from collections.abc import Callable
from functools import cache

log = logging.getLogger(__name__)

TRIM_SECONDS = 60.0
ARENAS = 2
M_ARENA_MAX = -8  # mallopt's parameter number, from glibc's <malloc.h>


@cache
def _libc_function(name: str) -> Callable[..., int] | None:
    library = ctypes.util.find_library("c")
    if library is None:
        return None
    try:
        function: Callable[..., int] = getattr(ctypes.CDLL(library), name)
    except (OSError, AttributeError):
        return None
    return function


def _malloc_trim() -> Callable[[int], int] | None:
    return _libc_function("malloc_trim")


def _mallopt() -> Callable[[int, int], int] | None:
    return _libc_function("mallopt")


def cap_arenas(arenas: int = ARENAS) -> bool:
    """Let threads started from now on share at most `arenas` heaps; whether the cap was set.

    Call it before the process starts its threads: a heap once made stays.
    """
    if "MALLOC_ARENA_MAX" in os.environ:
        return False  # glibc read it at start; the user's value stands
    mallopt = _mallopt()
    return mallopt is not None and mallopt(M_ARENA_MAX, arenas) == 1


def trim() -> bool:
    """Return malloc's free pages to the system now; whether this C library can."""
    malloc_trim = _malloc_trim()
    if malloc_trim is None:
        return False
    malloc_trim(0)
    return True


def install(seconds: float = TRIM_SECONDS) -> threading.Event:
    """Trim every `seconds` from a thread of its own, until the returned event is set."""
    stopping = threading.Event()
    if _malloc_trim() is None:
        log.debug("no malloc_trim in this C library: freed memory stays with malloc")
        return stopping

    def run() -> None:
        while not stopping.wait(seconds):
            trim()

    threading.Thread(target=run, name="malloc-trim", daemon=True).start()
    return stopping
