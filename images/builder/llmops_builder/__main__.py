"""CLI of the builder. The flag names are the operator's contract: keep them."""

from __future__ import annotations

import argparse
import re
import sys
from typing import Any

from llmops_common.report import ArgumentParser, result_file_of, run_main
from llmops_common.uri import ConfigError

QUANTIZATIONS = ("None", "FP16", "Int8Dynamic", "Int8Static", "Int4WeightOnly")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = ArgumentParser(prog="llmops_builder", description="Build a Triton model repository.")
    p.add_argument("--source", required=True, help="hf://, file://, pvc://, s3:// or a path")
    p.add_argument("--quantization", choices=QUANTIZATIONS, default="None")
    p.add_argument("--calibration-data", help="JSONL whose prompts calibrate Int8Static")
    p.add_argument("--repository", required=True, help="model repository directory (or pvc://)")
    p.add_argument("--model-name", default="llm")
    p.add_argument("--max-batch-size", type=int, default=8)
    p.add_argument("--dynamic-batching", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--max-queue-delay-us", type=int, default=2000)
    p.add_argument("--instance-kind", choices=("CPU", "GPU"), default="CPU")
    p.add_argument("--instance-count", type=int, default=1)
    p.add_argument("--max-new-tokens", type=int, default=64, help="default generation budget")
    p.add_argument("--result-file", default=None, help="default: /dev/termination-log if writable")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args: Any = None

    def body() -> dict[str, Any]:
        nonlocal args
        args = parse_args(argv)
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", args.model_name) or args.model_name[0] == ".":
            raise ConfigError(f"--model-name {args.model_name!r}: letters, digits, _ . - only")
        if args.max_batch_size < 1 or args.instance_count < 1 or args.max_new_tokens < 1:
            raise ConfigError("--max-batch-size, --instance-count, --max-new-tokens must be >= 1")
        from .build import Options, build

        return build(
            Options(
                source=args.source,
                quantization=args.quantization,
                calibration_data=args.calibration_data,
                repository=args.repository,
                model_name=args.model_name,
                max_batch_size=args.max_batch_size,
                dynamic_batching=args.dynamic_batching,
                instance_kind=args.instance_kind,
                instance_count=args.instance_count,
                max_new_tokens=args.max_new_tokens,
                max_queue_delay_us=args.max_queue_delay_us,
            )
        )

    return run_main(body, lambda: result_file_of(args))


if __name__ == "__main__":
    sys.exit(main())
