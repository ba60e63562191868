"""Run an EvalSuite against a Triton endpoint with tritonclient and build the report."""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np
from llmops_common.data import check_case, load_jsonl
from llmops_common.report import event
from llmops_common.uri import ConfigError

from .metrics import Metric, Outcome, baseline_values, parse_judge_score, parse_metric, score
from .metrics import verdict as metric_verdict

JUDGE_PROMPT = (
    "Rate how well the answer matches the reference, from 0 to 1.\n"
    "Question: {prompt}\nReference: {expected}\nAnswer: {output}\nScore:"
)


class Endpoint:
    """A Triton server reached over HTTP (http://host:8000) or gRPC (grpc://host:8001).

    tritonclient clients are not shared between threads: each worker thread has its own.
    """

    def __init__(self, url: str, model: str, timeout_s: float = 60.0) -> None:
        parsed = urlparse(url if "://" in url else f"http://{url}")
        if parsed.scheme not in ("http", "https", "grpc") or not parsed.netloc:
            raise ConfigError(f"--endpoint {url!r}: use http://host:port or grpc://host:port")
        self.scheme, self.hostport, self.model = parsed.scheme, parsed.netloc, model
        # /v2/models/<name> in the URL names the model (used for judge endpoints).
        parts = [p for p in parsed.path.split("/") if p]
        if len(parts) >= 3 and parts[:2] == ["v2", "models"]:
            self.model = parts[2]
        self.timeout_s = timeout_s
        self._local = threading.local()

    def _client(self) -> Any:
        c = getattr(self._local, "client", None)
        if c is None:
            if self.scheme == "grpc":
                import tritonclient.grpc as grpcclient

                c = grpcclient.InferenceServerClient(self.hostport)
            else:
                import tritonclient.http as httpclient

                c = httpclient.InferenceServerClient(
                    self.hostport,
                    ssl=self.scheme == "https",
                    connection_timeout=self.timeout_s,
                    network_timeout=self.timeout_s,
                )
            self._local.client = c
        return c

    def _module(self) -> Any:
        if self.scheme == "grpc":
            import tritonclient.grpc as m
        else:
            import tritonclient.http as m
        return m

    def wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        last = "not ready"
        while True:
            try:
                if self._client().is_model_ready(self.model):
                    return
                last = f"model {self.model!r} not ready"
            except Exception as e:  # connection refused while the server starts
                last = str(e)
            if time.monotonic() >= deadline:
                raise RuntimeError(f"{self.scheme}://{self.hostport} not ready: {last}")
            time.sleep(1.0)

    def generate(self, prompt: str, max_tokens: int) -> str:
        m = self._module()
        text = m.InferInput("text_input", [1, 1], "BYTES")
        text.set_data_from_numpy(np.array([[prompt.encode("utf-8")]], dtype=np.object_))
        limit = m.InferInput("max_tokens", [1, 1], "INT32")
        limit.set_data_from_numpy(np.array([[max_tokens]], dtype=np.int32))
        outputs = [m.InferRequestedOutput("text_output")]
        kwargs = {"client_timeout": self.timeout_s} if self.scheme == "grpc" else {}
        res = self._client().infer(self.model, [text, limit], outputs=outputs, **kwargs)
        value = res.as_numpy("text_output").reshape(-1)[0]
        return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def load_suite(path: str) -> dict[str, Any]:
    try:
        suite = json.loads(Path(path).read_text())
    except FileNotFoundError as e:
        raise ConfigError(f"--suite {path}: no such file") from e
    except json.JSONDecodeError as e:
        raise ConfigError(f"--suite {path}: not JSON: {e}") from e
    if not isinstance(suite, dict):
        raise ConfigError("--suite: expected a JSON object (the EvalSuite spec)")
    dataset = suite.get("dataset") or {}
    if isinstance(dataset.get("cases"), list) and dataset["cases"]:
        cases = [check_case(c, f"dataset.cases[{i}]") for i, c in enumerate(dataset["cases"])]
    elif dataset.get("uri"):
        cases = load_jsonl(str(dataset["uri"]))
    else:
        raise ConfigError("dataset: give non-empty 'cases' or a 'uri'")
    raw = suite.get("metrics")
    if not isinstance(raw, list) or not raw:
        raise ConfigError("metrics: at least one metric is required")
    metrics = [parse_metric(m, f"metrics[{i}]") for i, m in enumerate(raw)]
    names = [m.name for m in metrics]
    if len(set(names)) != len(names):
        raise ConfigError("metrics: names must be unique")
    concurrency = int(suite.get("concurrency") or 1)
    max_new = int(suite.get("maxNewTokens") or 64)
    if concurrency < 1 or max_new < 1:
        raise ConfigError("concurrency and maxNewTokens must be >= 1")
    return {"cases": cases, "metrics": metrics, "concurrency": concurrency, "max_new": max_new}


def run_cases(ep: Endpoint, cases: list[dict[str, str]], concurrency: int, max_new: int) -> list[Outcome]:
    outcomes = [Outcome(c["prompt"], c["completion"]) for c in cases]
    done = [0]
    lock = threading.Lock()
    step = max(1, len(cases) // 10)

    def one(o: Outcome) -> None:
        t0 = time.perf_counter()
        try:
            o.output = ep.generate(o.prompt, max_new)
        except Exception as e:  # counted in ErrorRate; the run goes on
            o.error = f"{type(e).__name__}: {e}"[:300]
        o.latency_s = time.perf_counter() - t0
        with lock:
            done[0] += 1
            if done[0] % step == 0 or done[0] == len(cases):
                event("progress", done=done[0], total=len(cases))

    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        list(pool.map(one, outcomes))
    return outcomes


def run_judges(metrics: list[Metric], outcomes: list[Outcome], concurrency: int, timeout: float) -> None:
    for m in metrics:
        if m.type != "Judge":
            continue
        judge = Endpoint(m.judge_endpoint or "", m.judge_model or "judge", timeout)
        if m.judge_model:
            judge.model = m.judge_model

        def rate(o: Outcome, judge: Endpoint = judge, m: Metric = m) -> None:
            if o.error is not None:
                o.extra[f"judge:{m.name}"] = 0.0
                return
            prompt = JUDGE_PROMPT.format(prompt=o.prompt, expected=o.expected, output=o.output)
            try:
                s = parse_judge_score(judge.generate(prompt, 8))
            except Exception:
                s = None
            o.extra[f"judge:{m.name}"] = 0.0 if s is None else s
            if s is None:
                o.extra[f"judge_error:{m.name}"] = True

        with ThreadPoolExecutor(max_workers=concurrency) as pool:
            list(pool.map(rate, outcomes))


def evaluate(
    suite_path: str,
    endpoint: str,
    model_name: str,
    report_path: str | None,
    baseline_path: str | None,
    max_regression: float,
    timeout_s: float,
    wait_ready_s: float,
) -> dict[str, Any]:
    suite = load_suite(suite_path)
    baseline = None
    if baseline_path:
        try:
            baseline = baseline_values(json.loads(Path(baseline_path).read_text()))
        except (OSError, json.JSONDecodeError) as e:
            raise ConfigError(f"--baseline-report {baseline_path}: {e}") from e
    ep = Endpoint(endpoint, model_name, timeout_s)
    ep.wait_ready(wait_ready_s)
    started = time.time()
    outcomes = run_cases(ep, suite["cases"], suite["concurrency"], suite["max_new"])
    run_judges(suite["metrics"], outcomes, suite["concurrency"], timeout_s)
    lines = [metric_verdict(m, score(m, outcomes), baseline, max_regression) for m in suite["metrics"]]
    errors = sum(o.error is not None for o in outcomes)
    passed = all(line["passed"] for line in lines)
    report = {
        "model": ep.model,
        "endpoint": endpoint,
        "passed": passed,
        "cases": len(outcomes),
        "errors": errors,
        "metrics": lines,
        "baseline": baseline_path,
        "maxRegression": max_regression if baseline_path else None,
        "startedAt": round(started, 3),
        "durationS": round(time.time() - started, 3),
        "samples": [
            {
                "prompt": o.prompt,
                "expected": o.expected,
                "output": o.output,
                "latencyS": None if o.latency_s is None else round(o.latency_s, 6),
                "error": o.error,
            }
            for o in outcomes
        ],
    }
    if report_path:
        Path(report_path).parent.mkdir(parents=True, exist_ok=True)
        Path(report_path).write_text(json.dumps(report, indent=2) + "\n")
    return {
        "passed": passed,
        "cases": len(outcomes),
        "errors": errors,
        "metrics": [{k: line[k] for k in ("name", "value", "threshold", "passed")} for line in lines],
        "report": report_path,
    }
