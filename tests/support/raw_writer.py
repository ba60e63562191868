"""The throughput baseline: a plain client writing what the operator writes for a new LLMModel.

    python -m tests.support.raw_writer --kubeconfig K --namespace NS --workers 6

It watches the namespace's LLMModels and, for each one added, writes the children, the status
and the Events that the operator's own plan decides for a model with nothing observed yet (the
repository PersistentVolumeClaim, the build Job, status, two Events) with `workers` threads: the
same objects, through the same server-side apply and merge patches, without the operator's reads,
comparisons and framework. It prints "ready" once its watch runs.
"""

from __future__ import annotations

import argparse
import queue
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "operator")]

from llmops.api.llmmodel import LLMModel  # noqa: E402
from llmops.kube.events import event_body  # noqa: E402
from llmops.plan.common import FIELD_MANAGER, Manifest  # noqa: E402
from llmops.plan.llmmodel import LLMModelObservation, plan_llmmodel  # noqa: E402
from llmops.settings import Settings  # noqa: E402
from tests.support.rawapi import RawApi, resource_path  # noqa: E402


def operator_workers() -> int:
    """The operator's concurrency: the requests its kube layer keeps in flight."""
    from llmops.kube.client import API_WORKERS

    return API_WORKERS


def manifest_path(manifest: Manifest) -> str:
    meta = manifest["metadata"]
    plural = manifest["kind"].lower() + "s"
    return resource_path(manifest["apiVersion"], plural, meta.get("namespace"), meta["name"])


def write_first_reconcile(api: RawApi, body: dict[str, Any], settings: Settings) -> int:
    """Everything the operator writes on a new model's first reconcile; returns the number of writes."""
    now = datetime.now(UTC)
    model = LLMModel.model_validate(body)
    plan = plan_llmmodel(model, LLMModelObservation(), settings, now)
    for manifest in plan.children:
        api.apply(manifest_path(manifest), manifest, FIELD_MANAGER)
    status_path = resource_path(model.api_version, "llmmodels", model.namespace, model.name) + "/status"
    api.merge_patch(status_path, {"status": plan.status})
    events = resource_path("events.k8s.io/v1", "events", model.namespace)
    for event in plan.events:
        api.create(events, event_body(model, event, now))
    return len(plan.children) + 1 + len(plan.events)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--namespace", required=True)
    parser.add_argument("--workers", type=int, default=operator_workers())
    args = parser.parse_args(argv)

    api = RawApi.from_kubeconfig(args.kubeconfig, pool_size=args.workers + 2)
    settings = Settings.from_env()
    work: queue.Queue[dict[str, Any]] = queue.Queue()

    def worker() -> None:
        while True:
            body = work.get()
            try:
                write_first_reconcile(api, body, settings)
            except Exception as error:  # a failed write shows as a model that never completes
                print(f"write failed for {body['metadata']['name']}: {error}", file=sys.stderr, flush=True)

    for _ in range(args.workers):
        threading.Thread(target=worker, daemon=True).start()
    path = resource_path("llmops.dev/v1alpha1", "llmmodels", args.namespace)
    listed = api.get(path)
    for item in listed["items"]:
        work.put(item)
    version = listed["metadata"]["resourceVersion"]
    print("ready", flush=True)
    while True:
        for type_, obj in api.watch(path, version):
            version = obj.get("metadata", {}).get("resourceVersion", version)
            if type_ == "ADDED":
                work.put(obj)


if __name__ == "__main__":
    raise SystemExit(main())
