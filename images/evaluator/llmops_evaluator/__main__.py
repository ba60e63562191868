"""CLI of the evaluator. The flag names are the operator's contract: keep them."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from llmops_common.report import ArgumentParser, result_file_of, run_main
from llmops_common.uri import ConfigError


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = ArgumentParser(prog="llmops_evaluator", description="Run an EvalSuite against Triton.")
    p.add_argument("--suite", required=True, help="JSON file holding the EvalSuite spec")
    p.add_argument("--endpoint", required=True, help="http://host:8000 or grpc://host:8001")
    p.add_argument("--model-name", default="llm")
    p.add_argument("--baseline-report", help="a previous report to compare score metrics with")
    p.add_argument("--max-regression", type=float, default=None, help="allowed score drop")
    p.add_argument("--report", help="where the full JSON report goes")
    p.add_argument("--timeout-s", type=float, default=120.0, help="per request")
    p.add_argument("--wait-ready-s", type=float, default=120.0, help="wait for the model")
    p.add_argument("--result-file", default=None, help="default: /dev/termination-log if writable")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args: Any = None

    def body() -> dict[str, Any]:
        nonlocal args
        args = parse_args(argv)
        if args.max_regression is not None and args.max_regression < 0:
            raise ConfigError("--max-regression must not be negative")
        from .evaluate import evaluate

        return evaluate(
            suite_path=args.suite,
            endpoint=args.endpoint,
            model_name=args.model_name,
            report_path=args.report,
            baseline_path=args.baseline_report,
            max_regression=args.max_regression or 0.0,
            timeout_s=args.timeout_s,
            wait_ready_s=args.wait_ready_s,
        )

    return run_main(body, lambda: result_file_of(args))


if __name__ == "__main__":
    sys.exit(main())
