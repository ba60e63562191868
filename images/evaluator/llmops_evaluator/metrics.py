"""Metric computation and the pass/fail rules. Pure functions: no network."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

from llmops_common.uri import ConfigError

SCORE_TYPES = ("ExactMatch", "Contains", "Regex", "RougeL", "BLEU", "Judge")
LOWER_IS_BETTER = ("LatencyP50", "LatencyP95", "LatencyP99", "ErrorRate")
METRIC_TYPES = SCORE_TYPES + LOWER_IS_BETTER


@dataclass
class Metric:
    name: str
    type: str
    threshold: float
    pattern: str | None = None
    judge_endpoint: str | None = None
    judge_model: str | None = None

    @property
    def higher_is_better(self) -> bool:
        return self.type in SCORE_TYPES


@dataclass
class Outcome:
    prompt: str
    expected: str
    output: str | None = None
    latency_s: float | None = None
    error: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def parse_metric(obj: Any, where: str) -> Metric:
    if not isinstance(obj, dict):
        raise ConfigError(f"{where}: expected an object")
    mtype = obj.get("type")
    if mtype not in METRIC_TYPES:
        raise ConfigError(f"{where}.type: {mtype!r} is not one of {', '.join(METRIC_TYPES)}")
    try:
        threshold = float(obj["threshold"])
    except (KeyError, TypeError, ValueError) as e:
        raise ConfigError(f"{where}.threshold: a number is required") from e
    m = Metric(
        name=str(obj.get("name") or mtype),
        type=mtype,
        threshold=threshold,
        pattern=obj.get("pattern"),
        judge_endpoint=obj.get("judgeEndpoint"),
        judge_model=obj.get("judgeModel"),
    )
    if m.type == "Regex":
        if not m.pattern:
            raise ConfigError(f"{where}.pattern: required for Regex")
        try:
            re.compile(m.pattern)
        except re.error as e:
            raise ConfigError(f"{where}.pattern: {e}") from e
    if m.type == "Judge" and not m.judge_endpoint:
        raise ConfigError(f"{where}.judgeEndpoint: required for Judge")
    return m


def _mean(xs: list[float]) -> float:
    return sum(xs) / len(xs) if xs else 0.0


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile; no successful request means an unbounded latency."""
    if not values:
        return math.inf
    s = sorted(values)
    rank = max(1, math.ceil(q / 100.0 * len(s)))
    return s[rank - 1]


def score(metric: Metric, outcomes: list[Outcome]) -> float:
    """The metric's value. Errored cases count as wrong answers for score metrics."""
    outs = [o.output or "" for o in outcomes]
    refs = [o.expected for o in outcomes]
    t = metric.type
    if t == "ExactMatch":
        # Whitespace at the ends is formatting, not content (completions often start
        # with a space).
        return _mean([float(o.strip() == r.strip()) for o, r in zip(outs, refs, strict=True)])
    if t == "Contains":
        return _mean([float(r.strip() in o) for o, r in zip(outs, refs, strict=True)])
    if t == "Regex":
        rx = re.compile(metric.pattern or "")
        return _mean([float(rx.search(o) is not None) for o in outs])
    if t == "RougeL":
        from rouge_score import rouge_scorer

        scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
        return _mean([scorer.score(r, o)["rougeL"].fmeasure for o, r in zip(outs, refs, strict=True)])
    if t == "BLEU":
        import sacrebleu

        # sacrebleu reports 0-100; thresholds are on the same 0-1 scale as other scores.
        return float(sacrebleu.corpus_bleu(outs, [refs]).score) / 100.0
    if t == "ErrorRate":
        return _mean([float(o.error is not None) for o in outcomes])
    if t.startswith("LatencyP"):
        ok = [o.latency_s for o in outcomes if o.error is None and o.latency_s is not None]
        return percentile(ok, float(t[len("LatencyP") :]))
    if t == "Judge":
        return _mean([float(o.extra.get(f"judge:{metric.name}", 0.0)) for o in outcomes])
    raise ConfigError(f"unknown metric type {t!r}")


def parse_judge_score(text: str) -> float | None:
    """The first number in the judge's reply, on a 0-1 scale (0-10 and 0-100 folded in)."""
    m = re.search(r"\d+(?:\.\d+)?", text or "")
    if not m:
        return None
    v = float(m.group())
    if v > 10:
        v /= 100.0
    elif v > 1:
        v /= 10.0
    return max(0.0, min(1.0, v))


def verdict(
    metric: Metric,
    value: float,
    baseline: dict[str, Any] | None,
    max_regression: float,
) -> dict[str, Any]:
    """One metric's line of the report, with the rule that decided it."""
    passed = value >= metric.threshold if metric.higher_is_better else value <= metric.threshold
    line: dict[str, Any] = {
        "name": metric.name,
        "type": metric.type,
        "value": _round(value),
        "threshold": metric.threshold,
        "passed": passed,
    }
    if not passed:
        line["reason"] = "below threshold" if metric.higher_is_better else "above threshold"
    base = (baseline or {}).get(metric.name)
    if base is not None and metric.higher_is_better:
        regression = float(base) - value
        line["baseline"] = _round(float(base))
        line["regression"] = _round(regression)
        # A small epsilon: equal scores computed twice must not read as a regression.
        if regression > max_regression + 1e-9:
            line["passed"] = False
            line["reason"] = f"regressed {regression:.4f} > {max_regression} vs baseline"
    return line


def _round(v: float) -> float | None:
    if math.isinf(v) or math.isnan(v):
        return None  # JSON has no infinity; None reads as "no measurement"
    return round(v, 6)


def baseline_values(report: dict[str, Any]) -> dict[str, float]:
    """Metric values by name from a previous report (full report or compact result)."""
    out: dict[str, float] = {}
    for m in report.get("metrics", []):
        if isinstance(m, dict) and m.get("value") is not None and m.get("name"):
            out[str(m["name"])] = float(m["value"])
    return out
