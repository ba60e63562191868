"""Hand the memory malloc keeps free back to the system, once a minute.

glibc's malloc keeps what the process frees for later use, and the kubelet counts it against the
pod's memory limit as if it were used. The operator's bursts leave it in megabytes: a relist's
pages, a thousand reconciles at once, spread over the worker and stream threads, which glibc
spreads over several heaps. `malloc_trim(0)` returns the free pages of every heap; it takes well
under a millisecond with thousands of resources. Where there is no glibc (musl, macOS) it does
nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import threading
from collections.abc import Callable
from functools import cache

log = logging.getLogger(__name__)

TRIM_SECONDS = 60.0


@cache
def _malloc_trim() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        trim: Callable[[int], int] = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):
        return None
    return trim


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
