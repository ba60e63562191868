"""Rollback benchmark: how fast a failing canary loses its traffic (.bench/rollout.json).

    make bench-rollout            # 5 runs
    make bench-rollout RUNS=10

Each run is the failing-candidate case of tests/cluster/test_rollout_dataplane.py in a fresh
namespace of the local cluster (started or reused with e2e/cluster.sh up): the operator as a
process, a stable and a candidate tritonserver (the candidate fails half of its requests),
Prometheus scraping both every second, 50 requests/s following the HTTPRoute weights, and a
Rollout [setWeight 20, analysis TritonErrorRate < 0.05 every 5 s, setWeight 50, analysis].

Measured per run: seconds from the first Prometheus sample in which the candidate's failure
counter had risen to the moment the load generator routed by weights giving the stable 100 %;
requests sent to the stable that failed; and the fewest ready stable replicas over the desired
number (capacity ratio).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.support import dataplane  # noqa: E402
from tests.support.rollout_run import CANDIDATE, run_rollout  # noqa: E402


def cluster(*args: str) -> str:
    proc = subprocess.run([str(ROOT / "e2e" / "cluster.sh"), *args], capture_output=True, text=True, cwd=ROOT)
    if proc.returncode != 0:
        raise SystemExit(f"e2e/cluster.sh {' '.join(args)} failed:\n{proc.stderr[-3000:]}")
    return proc.stdout.strip()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--failure-share", type=float, default=0.5)
    parser.add_argument("--out", type=Path, default=ROOT / ".bench" / "rollout.json")
    args = parser.parse_args()

    from kubernetes import client, config

    cluster("up")
    kubeconfig = cluster("kubeconfig")
    kubectl = cluster("which", "kubectl")
    subprocess.run(
        [kubectl, "--kubeconfig", kubeconfig, "apply", "--server-side", "--force-conflicts", "-f", str(ROOT / "crds")],
        check=True,
        capture_output=True,
    )
    api_client = config.new_client_from_config(config_file=kubeconfig)
    core = client.CoreV1Api(api_client)
    work = Path(tempfile.mkdtemp(prefix="bench-rollout-"))
    good = dataplane.good_repository(work)

    seconds: list[float] = []
    failed_stable = 0
    capacity: list[float] = []
    try:
        for index in range(args.runs):
            namespace = f"bench-rollout-{uuid.uuid4().hex[:6]}"
            core.create_namespace({"metadata": {"name": namespace, "labels": {"llmops.dev/test": "true"}}})
            try:
                run = run_rollout(
                    api_client,
                    kubeconfig,
                    namespace,
                    work / namespace,
                    good,
                    candidate_failure_share=args.failure_share,
                    log=lambda line: None,
                )
            finally:
                core.delete_namespace(namespace, propagation_policy="Background")
            if run.phase != "RolledBack" or run.rollback_seconds is None:
                raise SystemExit(f"run {index + 1}: expected a rollback seen by the load, got:\n{run.summary()}")
            seconds.append(run.rollback_seconds)
            failed_stable += run.failed_stable_requests
            capacity.append(run.min_capacity_ratio)
            sent = sum(run.load.sent().values())
            print(
                f"run {index + 1}/{args.runs}: rollback {run.rollback_seconds:.2f} s, {sent} requests, "
                f"failed on stable {run.failed_stable_requests}, candidate {run.load.failed()[CANDIDATE]}, "
                f"stable capacity min {run.min_capacity_ratio:.2f}",
                flush=True,
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)

    figures = {
        "rollback_seconds": [round(s, 3) for s in seconds],
        "rollback_seconds_median": round(statistics.median(seconds), 3),
        "failed_stable_requests": failed_stable,
        "min_capacity_ratio": min(capacity),
    }
    print(
        f"\ndetection-to-rollback over {args.runs} runs: min {min(seconds):.2f} s, "
        f"median {statistics.median(seconds):.2f} s, max {max(seconds):.2f} s; "
        f"failed stable requests {failed_stable}; min stable capacity {min(capacity):.2f}"
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(figures, indent=2) + "\n")
    print(f"wrote {args.out.relative_to(ROOT) if args.out.is_relative_to(ROOT) else args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
