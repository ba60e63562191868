"""The operator's own Prometheus metrics."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

RECONCILES = Counter("llmops_reconcile_total", "Reconciles by kind and result.", ["kind", "result"])
RECONCILE_SECONDS = Histogram(
    "llmops_reconcile_duration_seconds",
    "Time to reconcile one resource.",
    ["kind"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
WRITES = Counter(
    "llmops_apiserver_writes_total", "Writes to the apiserver by kind of resource reconciled.", ["kind", "what"]
)
