"""`kill -USR1 <pid>`: the operator writes to stderr what each of its tasks and threads is doing.

For a resource that waits and a log that says nothing: which reconciles, watches and requests
are in flight, and where each is waiting. A plain signal handler, not the event loop's: it runs
between two bytecodes of the main thread even while the loop is stuck in a callback. It only
reads, and writes to stderr directly (not through logging, whose lock the interrupted code may
hold).
"""

from __future__ import annotations

import asyncio
import io
import signal
import sys
import threading
import traceback
from types import FrameType

BEGIN = "---- llmops-operator state: tasks and threads ----"
END = "---- end of state ----"


def install() -> None:
    """Handle SIGUSR1 from now on (call from the main thread, before the loop starts)."""
    signal.signal(signal.SIGUSR1, _on_signal)


def _on_signal(signum: int, frame: FrameType | None) -> None:
    sys.stderr.write(state())
    sys.stderr.flush()


def state() -> str:
    out = io.StringIO()
    out.write(f"{BEGIN}\n")
    try:
        tasks = asyncio.all_tasks()
    except RuntimeError:  # no loop runs in this thread (yet, or any more)
        tasks = set()
    out.write(f"{len(tasks)} asyncio tasks\n")
    for task in sorted(tasks, key=lambda t: t.get_name()):
        out.write(f"Task {task.get_name()}:\n")
        out.writelines(f"  {line}\n" for line in awaiting(task))
    names = {thread.ident: thread.name for thread in threading.enumerate()}
    frames = sys._current_frames()
    out.write(f"{len(frames)} threads\n")
    for ident, top in sorted(frames.items(), key=lambda item: names.get(item[0], "")):
        out.write(f"Thread {names.get(ident, ident)}:\n")
        out.write("".join(traceback.format_stack(top, limit=12)))
    out.write(f"{END}\n")
    return out.getvalue()


def awaiting(task: asyncio.Task[object]) -> list[str]:
    """Where the task waits: its coroutine and each one it awaits in turn, down to the future.

    A task's own stack (`Task.get_stack`) is its outermost coroutine only: a reconcile would
    show that it waits, not for what.
    """
    lines: list[str] = []
    awaited: object = task.get_coro()
    while awaited is not None and len(lines) < 40:
        frame = next((f for a in ("cr_frame", "gi_frame", "ag_frame") if (f := getattr(awaited, a, None))), None)
        if frame is None:
            lines.append(f"awaiting {awaited!r}"[:300])
            break
        lines.append(f"{frame.f_code.co_filename}:{frame.f_lineno} in {frame.f_code.co_qualname}")
        awaited = next((w for a in ("cr_await", "gi_yieldfrom", "ag_await") if (w := getattr(awaited, a, None))), None)
    return lines
