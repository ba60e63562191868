"""The operator's own Prometheus metrics."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

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
EVAL_RUNS = Counter(
    "llmops_eval_runs_total",
    "EvalSuite runs that ended, by result (Passed, Failed, Error).",
    ["namespace", "suite", "result"],
)
EVAL_METRIC_VALUE = Gauge(
    "llmops_eval_metric_value",
    "The value of each EvalSuite metric in the latest run that ended, by judged model.",
    ["namespace", "suite", "model", "metric"],
)
FINETUNE_RUNS = Counter(
    "llmops_finetune_runs_total",
    "FineTuneJobs that ended, by result (Succeeded, Failed).",
    ["namespace", "name", "result"],
)

ROLLOUT_WEIGHT = Gauge("llmops_rollout_canary_weight", "Percent of traffic on the candidate.", ["namespace", "name"])
ROLLOUT_PHASE = Gauge("llmops_rollout_phase", "1 for the rollout's current phase.", ["namespace", "name", "phase"])
ROLLBACKS = Counter("llmops_rollout_rollbacks_total", "Automatic rollbacks.", ["namespace", "name"])
ANALYSIS_QUERIES = Counter(
    "llmops_analysis_queries_total",
    "Prometheus queries of analysis steps by outcome (value, no_data, error).",
    ["outcome"],
)
