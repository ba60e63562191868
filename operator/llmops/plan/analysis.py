"""Analysis: the PromQL a Rollout's analysis step runs, and the verdict on what came back.

Built-in templates read Triton's metrics for the canary's pods. Pods are selected by the
labels a Prometheus `labelmap` of the pod labels yields (`namespace`, and
`llmops_dev_llmmodel` from the pod label llmops.dev/llmmodel), so a PodMonitor or the common
kubernetes-pods scrape job needs no per-model configuration.

A query that returns no sample is *inconclusive*, never a pass: no traffic, no verdict.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from ..api.rollout import AnalysisMetric, AnalysisStep

Comparison = Literal["LessThan", "GreaterThan"]
MODEL_LABEL = "llmops_dev_llmmodel"


def selector(namespace: str, model: str) -> str:
    """The label matchers of one model's serving pods."""
    return f'namespace="{namespace}",{MODEL_LABEL}="{model}"'


def rate_window(interval_seconds: float) -> str:
    """Rates over at least 30 s: enough scrapes at the usual intervals for rate() to answer."""
    return f"{max(30, math.ceil(2 * interval_seconds))}s"


def _template(template: str, sel: str, window: str) -> tuple[str, Comparison]:
    success = f"sum(rate(nv_inference_request_success{{{sel}}}[{window}]))"
    failure = f"sum(rate(nv_inference_request_failure{{{sel}}}[{window}]))"
    # `> 0` drops the sample when nothing was served, so an idle canary is inconclusive.
    served = f"(({success} + {failure}) > 0)"
    templates: dict[str, tuple[str, Comparison]] = {
        "TritonErrorRate": (f"{failure} / {served}", "LessThan"),
        # Triton's latency summaries (--metrics-config summary_latencies=true), in seconds.
        "TritonLatencyP95": (f'max(nv_inference_request_summary_us{{{sel},quantile="0.95"}}) / 1e6', "LessThan"),
        "TritonLatencyP99": (f'max(nv_inference_request_summary_us{{{sel},quantile="0.99"}}) / 1e6', "LessThan"),
        "TritonQueueTime": (
            f"sum(rate(nv_inference_queue_duration_us{{{sel}}}[{window}])) / {served} / 1e6",
            "LessThan",
        ),
        "TritonThroughput": (f"sum(rate(nv_inference_count{{{sel}}}[{window}]))", "GreaterThan"),
    }
    return templates[template]


def metric_query(
    metric: AnalysisMetric, namespace: str, stable: str, candidate: str, interval_seconds: float
) -> tuple[str, Comparison]:
    """The PromQL of one metric and how its value must compare with the threshold."""
    canary_sel, stable_sel = selector(namespace, candidate), selector(namespace, stable)
    if metric.template is not None:
        return _template(metric.template, canary_sel, rate_window(interval_seconds))
    assert metric.query is not None and metric.comparison is not None  # the CRD's CEL guarantees it
    query = metric.query.replace("{{canary}}", canary_sel).replace("{{stable}}", stable_sel)
    return query, metric.comparison


def analysis_queries(
    step: AnalysisStep, namespace: str, stable: str, candidate: str, interval_seconds: float
) -> dict[str, str]:
    """metric name -> PromQL for one measurement of an analysis step."""
    return {m.name: metric_query(m, namespace, stable, candidate, interval_seconds)[0] for m in step.metrics}


@dataclass(frozen=True)
class Measurement:
    """What Prometheus answered for one query: a value, no data (None), or an error."""

    value: float | None = None
    error: str | None = None


Verdict = Literal["Pass", "Fail", "Inconclusive", "Error"]


def judge(measurement: Measurement, threshold: float, comparison: Comparison) -> Verdict:
    if measurement.error is not None:
        return "Error"
    value = measurement.value
    if value is None or math.isnan(value):
        return "Inconclusive"
    passed = value < threshold if comparison == "LessThan" else value > threshold
    return "Pass" if passed else "Fail"
