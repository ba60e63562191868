"""The evaluator's metric math and verdict rules, in-process."""

from __future__ import annotations

import math

import pytest
from llmops_evaluator.metrics import (
    Metric,
    Outcome,
    parse_judge_score,
    percentile,
    score,
    verdict,
)

pytestmark = pytest.mark.workload


def outcomes(pairs: list[tuple[str | None, str]], latencies: list[float] | None = None) -> list:
    out = []
    for i, (got, want) in enumerate(pairs):
        o = Outcome(prompt=f"p{i}", expected=want, output=got)
        if got is None:
            o.error = "boom"
        o.latency_s = (latencies or [0.1] * len(pairs))[i]
        out.append(o)
    return out


def m(mtype: str, threshold: float = 0.5, **kw: str) -> Metric:
    return Metric(name=mtype.lower(), type=mtype, threshold=threshold, **kw)


def test_text_scores() -> None:
    os_ = outcomes([(" cba", "cba"), ("xx cba yy", " cba"), (None, "abc"), ("zzz", "abc")])
    assert score(m("ExactMatch"), os_) == 0.25
    assert score(m("Contains"), os_) == 0.5
    assert score(m("Regex", pattern=r"^\s*[a-c]+$"), os_) == 0.25
    assert score(m("ErrorRate"), os_) == 0.25
    rouge = score(m("RougeL"), os_)
    assert 0.25 < rouge < 0.75
    perfect = outcomes([("the cat sat on the mat", "the cat sat on the mat")] * 2)
    assert score(m("BLEU"), perfect) == pytest.approx(1.0)
    assert score(m("RougeL"), perfect) == pytest.approx(1.0)


def test_latency_percentiles_skip_failed_requests() -> None:
    lat = [0.01 * i for i in range(1, 101)]
    os_ = outcomes([("a", "a")] * 100, lat)
    assert score(m("LatencyP50"), os_) == pytest.approx(0.50)
    assert score(m("LatencyP95"), os_) == pytest.approx(0.95)
    assert score(m("LatencyP99"), os_) == pytest.approx(0.99)
    assert math.isinf(percentile([], 50))
    failed = outcomes([(None, "a")], [0.001])
    assert math.isinf(score(m("LatencyP50"), failed))
    assert verdict(m("LatencyP50", 1.0), math.inf, None, 0)["passed"] is False


def test_verdict_directions_and_baseline() -> None:
    assert verdict(m("ExactMatch", 0.8), 0.8, None, 0)["passed"] is True
    assert verdict(m("ExactMatch", 0.8), 0.79, None, 0)["passed"] is False
    assert verdict(m("LatencyP95", 0.5), 0.5, None, 0)["passed"] is True
    assert verdict(m("ErrorRate", 0.01), 0.02, None, 0)["passed"] is False
    base = {"exactmatch": 0.9}
    ok = verdict(m("ExactMatch", 0.5), 0.89, base, 0.02)
    assert ok["passed"] is True and ok["regression"] == pytest.approx(0.01)
    bad = verdict(m("ExactMatch", 0.5), 0.85, base, 0.02)
    assert bad["passed"] is False and "regressed" in bad["reason"]
    # Equal scores are no regression, even with max-regression 0.
    assert verdict(m("ExactMatch", 0.5), 0.9, base, 0.0)["passed"] is True


def test_judge_score_parsing() -> None:
    assert parse_judge_score("0.75") == 0.75
    assert parse_judge_score("Score: 8/10") == 0.8
    assert parse_judge_score("85") == 0.85
    assert parse_judge_score("no idea") is None
