"""`python -m llmops` / `llmops-operator`: run the operator against the current kubeconfig."""

from __future__ import annotations

import argparse
import asyncio
import logging
import random

import kopf

from . import allocator, diagnostics
from .settings import Settings


def main(argv: list[str] | None = None) -> None:
    allocator.cap_arenas()  # before any thread
    settings = Settings.from_env()
    parser = argparse.ArgumentParser(prog="llmops-operator", description="The llmops.dev operator.")
    parser.add_argument("-n", "--namespace", action="append", default=[], help="watch only these (repeatable)")
    parser.add_argument("--peering", help="kopf peering name for leader election across replicas")
    parser.add_argument(
        "--peering-priority",
        type=int,
        help="the live replica with the highest priority works, the others wait (default: random per process)",
    )
    parser.add_argument("--health-port", type=int, default=settings.health_port)
    parser.add_argument("--log-format", choices=["json", "plain"], default="json")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)

    kopf.configure(
        verbose=args.verbose,
        log_format=kopf.LogFormat.JSON if args.log_format == "json" else kopf.LogFormat.PLAIN,
    )
    logging.getLogger("kubernetes").setLevel(logging.WARNING)
    from . import handlers  # registers the handlers

    handlers.streams.watch_namespaces(args.namespace)
    diagnostics.install()
    allocator.install()

    asyncio.run(
        kopf.operator(
            clusterwide=not args.namespace,
            namespaces=args.namespace,
            standalone=args.peering is None,
            peering_name=args.peering,
            # kopf pauses every replica when peers share a priority, so replicas of one
            # Deployment (which all get the same arguments) must each draw their own.
            priority=args.peering_priority if args.peering_priority is not None else random.randrange(1, 2**31),
            liveness_endpoint=f"http://0.0.0.0:{args.health_port}/healthz",
        )
    )


if __name__ == "__main__":
    main()
