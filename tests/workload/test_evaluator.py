"""The evaluator as a real process against tritonserver, and its pass/fail rules."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from conftest import run_workload

pytestmark = pytest.mark.workload

ALL_METRICS = [
    {"name": "em", "type": "ExactMatch", "threshold": 0.8},
    {"name": "contains", "type": "Contains", "threshold": 0.8},
    {"name": "format", "type": "Regex", "pattern": r"^\s*[a-j]{3,5}\s*$", "threshold": 0.9},
    {"name": "rouge", "type": "RougeL", "threshold": 0.8},
    {"name": "bleu", "type": "BLEU", "threshold": 0.0},
    {"name": "p50", "type": "LatencyP50", "threshold": 5.0},
    {"name": "p95", "type": "LatencyP95", "threshold": 5.0},
    {"name": "p99", "type": "LatencyP99", "threshold": 5.0},
    {"name": "errors", "type": "ErrorRate", "threshold": 0.0},
]


def write_suite(path: Path, cases: list[dict[str, str]], metrics: list[dict[str, Any]]) -> Path:
    suite = {"dataset": {"cases": cases}, "metrics": metrics, "concurrency": 4, "maxNewTokens": 8}
    path.write_text(json.dumps(suite))
    return path


def evaluate(workdir: Path, name: str, *args: Any) -> tuple[Any, dict[str, Any]]:
    report = workdir / f"{name}-report.json"
    run = run_workload(
        "llmops_evaluator", *args, "--report", report,
        "--result-file", workdir / f"{name}-result.json",
    )  # fmt: skip
    full = json.loads(report.read_text()) if report.exists() else {}
    return run, full


def test_all_metrics_pass_over_http(workdir: Path, triton: Any, task: dict[str, Any]) -> None:
    suite = write_suite(workdir / "suite-all.json", task["heldout_cases"][:40], ALL_METRICS)
    run, report = evaluate(workdir, "http", "--suite", suite, "--endpoint", triton.http_url, "--model-name", "llm")
    assert run.returncode == 0, run
    result = run.result
    assert result["passed"] is True, result
    assert result["cases"] == 40 and result["errors"] == 0
    assert [m["name"] for m in result["metrics"]] == [m["name"] for m in ALL_METRICS]
    for m in result["metrics"]:
        assert set(m) == {"name", "value", "threshold", "passed"}
    # The full report carries every sample; the compact result is what the operator reads.
    assert len(report["samples"]) == 40 and report["samples"][0]["latencyS"] > 0
    assert json.loads((workdir / "http-result.json").read_text()) == result
    assert len((workdir / "http-result.json").read_bytes()) < 4096


def test_thresholds_fail_the_gate_over_grpc(workdir: Path, triton: Any, task: dict[str, Any]) -> None:
    metrics = [
        {"name": "em", "type": "ExactMatch", "threshold": 1.01},  # unreachable score
        {"name": "p99", "type": "LatencyP99", "threshold": 0.0},  # unreachable latency
        {"name": "errors", "type": "ErrorRate", "threshold": 0.0},
    ]
    suite = write_suite(workdir / "suite-fail.json", task["heldout_cases"][:10], metrics)
    run, report = evaluate(workdir, "grpc", "--suite", suite, "--endpoint", triton.grpc_url, "--model-name", "llm")
    assert run.returncode == 0, run  # a failed gate is a verdict, not a crash
    verdicts = {m["name"]: m for m in report["metrics"]}
    assert run.result["passed"] is False
    assert verdicts["em"]["passed"] is False and verdicts["em"]["reason"] == "below threshold"
    assert verdicts["p99"]["passed"] is False and verdicts["p99"]["reason"] == "above threshold"
    assert verdicts["errors"]["passed"] is True


def test_baseline_regression(workdir: Path, triton: Any, task: dict[str, Any]) -> None:
    cases = task["heldout_cases"][:50]
    metrics = [
        {"name": "em", "type": "ExactMatch", "threshold": 0.5},
        {"name": "p95", "type": "LatencyP95", "threshold": 5.0},
    ]
    suite = write_suite(workdir / "suite-base.json", cases, metrics)
    common = ["--suite", suite, "--endpoint", triton.http_url]
    base_run, _ = evaluate(workdir, "fp32", *common, "--model-name", "llm")
    assert base_run.returncode == 0, base_run
    base = workdir / "fp32-report.json"

    # The int8 twin against the fp32 baseline: within 2 points, the gate holds.
    run, report = evaluate(
        workdir, "int8", *common, "--model-name", "llm-int8",
        "--baseline-report", base, "--max-regression", "0.02",
    )  # fmt: skip
    assert run.returncode == 0, run
    em = {m["name"]: m for m in report["metrics"]}["em"]
    assert em["passed"] and em["regression"] <= 0.02, em
    assert run.result["passed"] is True

    # A baseline that scored higher than this model by more than allowed fails the gate,
    # even though the absolute threshold is met. Latency is not compared to baselines.
    better = json.loads(base.read_text())
    for m in better["metrics"]:
        m["value"] = 1.0 if m["name"] == "em" else 0.0
    rigged = workdir / "rigged-baseline.json"
    rigged.write_text(json.dumps(better))
    run, report = evaluate(
        workdir, "regressed", *common, "--model-name", "llm-int8",
        "--baseline-report", rigged, "--max-regression", "0.05",
    )  # fmt: skip
    assert run.returncode == 0, run
    lines = {m["name"]: m for m in report["metrics"]}
    assert run.result["passed"] is False
    assert lines["em"]["passed"] is False and "regressed" in lines["em"]["reason"]
    assert lines["em"]["value"] >= 0.5  # the threshold alone would have passed
    assert lines["p95"]["passed"] is True and "baseline" not in lines["p95"]


def test_judge_metric_queries_the_judge_model(workdir: Path, triton: Any, task: dict[str, Any]) -> None:
    # The tiny model is no judge: its replies hold no number, so the score is 0.
    metrics = [
        {
            "name": "judge",
            "type": "Judge",
            "threshold": 0.5,
            "judgeEndpoint": f"{triton.http_url}/v2/models/llm-int8",
        }
    ]
    suite = write_suite(workdir / "suite-judge.json", task["heldout_cases"][:5], metrics)
    run, _ = evaluate(workdir, "judge", "--suite", suite, "--endpoint", triton.http_url, "--model-name", "llm")
    assert run.returncode == 0, run
    assert run.result["metrics"][0]["value"] == 0.0 and run.result["passed"] is False


def test_unreachable_endpoint_is_a_runtime_failure(workdir: Path, task: dict[str, Any]) -> None:
    suite = write_suite(workdir / "suite-down.json", task["heldout_cases"][:2], ALL_METRICS[:1])
    run, _ = evaluate(
        workdir, "down", "--suite", suite, "--endpoint", "http://127.0.0.1:9",
        "--wait-ready-s", "1",
    )  # fmt: skip
    assert run.returncode == 1, run
    assert run.result["kind"] == "runtime"


@pytest.mark.parametrize(
    "suite",
    [
        {"dataset": {"cases": []}, "metrics": ALL_METRICS},
        {"dataset": {"cases": [{"prompt": "p", "completion": "c"}]}, "metrics": []},
        {"dataset": {"cases": [{"prompt": "p"}]}, "metrics": ALL_METRICS},
        {"dataset": {"uri": "pvc://nope/golden.jsonl"}, "metrics": ALL_METRICS},
        {"dataset": {"cases": [{"prompt": "p", "completion": "c"}]},
         "metrics": [{"name": "x", "type": "Perplexity", "threshold": 1}]},
        {"dataset": {"cases": [{"prompt": "p", "completion": "c"}]},
         "metrics": [{"name": "x", "type": "Regex", "threshold": 1}]},
        {"dataset": {"cases": [{"prompt": "p", "completion": "c"}]},
         "metrics": [{"name": "x", "type": "Judge", "threshold": 1}]},
    ],
)  # fmt: skip
def test_bad_suites_exit_2(workdir: Path, suite: dict[str, Any]) -> None:
    path = workdir / "bad-suite.json"
    path.write_text(json.dumps(suite))
    run, _ = evaluate(workdir, "bad", "--suite", path, "--endpoint", "http://127.0.0.1:9")
    assert run.returncode == 2, run
    assert run.result["kind"] == "config"


def test_dataset_from_uri(workdir: Path, triton: Any, task: dict[str, Any]) -> None:
    suite = workdir / "suite-uri.json"
    suite.write_text(
        json.dumps(
            {
                "dataset": {"uri": f"file://{task['heldout']}"},
                "metrics": [{"name": "em", "type": "ExactMatch", "threshold": 0.8}],
                "concurrency": 8,
                "maxNewTokens": 8,
            }
        )
    )
    run, _ = evaluate(workdir, "uri", "--suite", suite, "--endpoint", triton.grpc_url, "--model-name", "llm")
    assert run.returncode == 0, run
    assert run.result["cases"] == len(task["heldout_cases"]) and run.result["passed"]
