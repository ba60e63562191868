"""Progress lines and the final result, as the operator reads them.

Progress: one JSON object per stdout line, {"event": "progress", ...}.
Result: one compact JSON object (< 4 KB, the termination-log limit) written to
--result-file and printed as the last stdout line.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback
from collections.abc import Callable
from typing import Any, NoReturn

from .uri import ConfigError

EXIT_OK = 0
EXIT_RUNTIME = 1
EXIT_CONFIG = 2
TERMINATION_LOG = "/dev/termination-log"
MAX_RESULT_BYTES = 4000


def default_result_file() -> str | None:
    """Kubernetes reads /dev/termination-log; elsewhere print only."""
    if os.path.exists(TERMINATION_LOG) and os.access(TERMINATION_LOG, os.W_OK):
        return TERMINATION_LOG
    return None


def result_file_of(args: Any) -> str | None:
    """--result-file when given (and the flags parsed), else the termination log when writable."""
    if args is not None and getattr(args, "result_file", None):
        return str(args.result_file)
    return default_result_file()


def event(kind: str, **fields: Any) -> None:
    print(json.dumps({"event": kind, "ts": round(time.time(), 3), **fields}), flush=True)


def compact(obj: dict[str, Any]) -> str:
    text = json.dumps(obj, separators=(",", ":"), sort_keys=False)
    if len(text.encode()) > MAX_RESULT_BYTES:
        # Never overflow the termination log: keep the verdict, drop the detail.
        keep = {k: v for k, v in obj.items() if not isinstance(v, list | dict)}
        keep["truncated"] = True
        text = json.dumps(keep, separators=(",", ":"))[:MAX_RESULT_BYTES]
    return text


def write_result(result: dict[str, Any], result_file: str | None) -> None:
    text = compact(result)
    if result_file:
        try:
            with open(result_file, "w") as f:
                f.write(text)
        except OSError as e:
            print(json.dumps({"event": "warning", "message": f"cannot write result: {e}"}))
    print(text, flush=True)


def run_main(main: Callable[[], dict[str, Any]], result_file: Callable[[], str | None]) -> int:
    """Run a program body and map its outcome to the exit-code contract.

    ConfigError (and argparse errors, which exit 2 themselves) -> 2, anything else -> 1.
    """
    try:
        result = main()
    except ConfigError as e:
        write_result({"error": str(e), "kind": "config"}, result_file())
        return EXIT_CONFIG
    except Exception as e:
        traceback.print_exc(file=sys.stderr)
        write_result({"error": f"{type(e).__name__}: {e}", "kind": "runtime"}, result_file())
        return EXIT_RUNTIME
    write_result(result, result_file())
    return EXIT_OK


class ArgumentParser(argparse.ArgumentParser):
    """argparse that reports bad flags as a ConfigError (exit 2 with a result line)."""

    def error(self, message: str) -> NoReturn:
        raise ConfigError(f"{self.prog}: {message}")
