"""CLI of the trainer. The flag names are the operator's contract: keep them."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from llmops_common.report import ArgumentParser, default_result_file, run_main
from llmops_common.uri import ConfigError

METHODS = ("LoRA", "Full")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = ArgumentParser(prog="llmops_trainer", description="Fine-tune a causal LM (LoRA or full).")
    p.add_argument("--base-model", required=True, help="hf://, file://, pvc://, s3:// or a path")
    p.add_argument("--dataset", required=True, help="JSONL of {prompt, completion}")
    p.add_argument("--eval-dataset", help="JSONL of {prompt, completion}; reports eval_loss")
    p.add_argument("--method", choices=METHODS, default="LoRA")
    p.add_argument("--output", required=True, help="directory for the fine-tuned model")
    p.add_argument("--checkpoint-dir", help="where checkpoints go; a restart resumes from here")
    p.add_argument("--checkpoint-every", type=int, default=100, help="steps between checkpoints")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--max-steps", type=int, default=0, help=">0 overrides --epochs")
    p.add_argument("--learning-rate", type=float, default=2e-4)
    p.add_argument("--batch-size", type=int, default=8, help="per worker")
    p.add_argument("--lora-r", type=int, default=8)
    p.add_argument("--lora-alpha", type=int, default=16)
    p.add_argument("--lora-dropout", type=float, default=0.05)
    p.add_argument(
        "--lora-target-modules",
        default="",
        help="comma-separated module names, 'all-linear', or empty for the model's default",
    )
    p.add_argument("--merge-lora", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--log-every", type=int, default=10, help="steps between progress lines")
    p.add_argument("--max-seq-len", type=int, default=0, help="0: the model's context length")
    p.add_argument("--result-file", default=None, help="default: /dev/termination-log if writable")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args: Any = None

    def body() -> dict[str, Any]:
        nonlocal args
        args = parse_args(argv)
        for name in ("checkpoint_every", "epochs", "max_steps", "lora_r", "max_seq_len"):
            if getattr(args, name) < 0:
                raise ConfigError(f"--{name.replace('_', '-')} must not be negative")
        if args.batch_size < 1 or args.log_every < 1:
            raise ConfigError("--batch-size and --log-every must be at least 1")
        if args.learning_rate <= 0:
            raise ConfigError("--learning-rate must be positive")
        if args.epochs == 0 and args.max_steps == 0:
            raise ConfigError("one of --epochs or --max-steps must be positive")
        # Imported late: a bad flag is reported without paying for torch's import.
        from .train import Config, train

        targets = [t.strip() for t in args.lora_target_modules.split(",") if t.strip()]
        cfg = Config(
            base_model=args.base_model,
            dataset=args.dataset,
            eval_dataset=args.eval_dataset,
            method=args.method,
            output=args.output,
            checkpoint_dir=args.checkpoint_dir,
            checkpoint_every=args.checkpoint_every,
            epochs=args.epochs,
            max_steps=args.max_steps,
            learning_rate=args.learning_rate,
            batch_size=args.batch_size,
            lora_r=args.lora_r,
            lora_alpha=args.lora_alpha,
            lora_dropout=args.lora_dropout,
            lora_target_modules=targets or None,
            merge_lora=args.merge_lora,
            seed=args.seed,
            log_every=args.log_every,
            max_seq_len=args.max_seq_len or None,
        )
        return train(cfg)

    def result_file() -> str | None:
        if not _is_main_rank():
            # Under torchrun several workers share one container and its termination log:
            # only rank 0, which saw the eval and wrote the output, reports there.
            return None
        if args is not None and args.result_file:
            return str(args.result_file)
        if args is None:
            # Flags did not parse: still honour an explicit --result-file.
            for i, a in enumerate(argv if argv is not None else sys.argv[1:]):
                if a.startswith("--result-file="):
                    return a.split("=", 1)[1]
                if a == "--result-file" and i + 1 < len(argv or sys.argv[1:]):
                    return (argv or sys.argv[1:])[i + 1]
        return default_result_file()

    return run_main(body, result_file)


def _is_main_rank() -> bool:
    import os

    return os.environ.get("RANK", "0") == "0"


if __name__ == "__main__":
    sys.exit(main())
