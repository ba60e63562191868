"""The built repository on a real tritonserver, queried with tritonclient."""

from __future__ import annotations

import json
import re
import threading
import urllib.request
from typing import Any

import numpy as np
import pytest

pytestmark = pytest.mark.workload


def _metric(server: Any, name: str, model: str) -> float:
    text = urllib.request.urlopen(server.metrics_url, timeout=10).read().decode()
    m = re.search(rf'^{name}{{model="{re.escape(model)}",version="1"}} (\S+)$', text, re.M)
    assert m, f"{name} for {model} not in /metrics"
    return float(m.group(1))


def test_health_and_model_metadata(triton: Any) -> None:
    with urllib.request.urlopen(f"{triton.http_url}/v2/health/ready", timeout=5) as r:
        assert r.status == 200
    with urllib.request.urlopen(f"{triton.http_url}/v2/models/llm", timeout=5) as r:
        meta = json.load(r)
    assert {i["name"] for i in meta["inputs"]} == {"text_input", "max_tokens"}
    assert [o["name"] for o in meta["outputs"]] == ["text_output"]
    assert meta["outputs"][0]["datatype"] == "BYTES"


def test_http_and_grpc_inference_and_metrics(triton: Any, task: dict[str, Any]) -> None:
    import tritonclient.grpc as grpcclient
    import tritonclient.http as httpclient

    before = _metric(triton, "nv_inference_request_success", "llm")
    case = task["heldout_cases"][0]
    prompts = np.array([[case["prompt"].encode()]], dtype=np.object_)

    http = httpclient.InferenceServerClient(f"127.0.0.1:{triton.http_port}")
    text = httpclient.InferInput("text_input", [1, 1], "BYTES")
    text.set_data_from_numpy(prompts)
    out_http = http.infer("llm", [text]).as_numpy("text_output")[0, 0].decode()

    grpc = grpcclient.InferenceServerClient(f"127.0.0.1:{triton.grpc_port}")
    text = grpcclient.InferInput("text_input", [1, 1], "BYTES")
    text.set_data_from_numpy(prompts)
    limit = grpcclient.InferInput("max_tokens", [1, 1], "INT32")
    limit.set_data_from_numpy(np.array([[2]], dtype=np.int32))
    out_grpc = grpc.infer("llm", [text, limit]).as_numpy("text_output")[0, 0].decode()

    assert out_http.strip()
    # max_tokens is honoured: the 2-token answer is the prefix of the full one.
    assert out_http.startswith(out_grpc) and len(out_grpc) <= 2
    assert _metric(triton, "nv_inference_request_success", "llm") == before + 2
    http.close()
    grpc.close()


def test_concurrent_requests_are_batched(triton: Any, task: dict[str, Any]) -> None:
    import tritonclient.http as httpclient

    cases = task["heldout_cases"][:32]
    outs: dict[int, str] = {}

    def send(i: int) -> None:
        c = httpclient.InferenceServerClient(f"127.0.0.1:{triton.http_port}")
        text = httpclient.InferInput("text_input", [1, 1], "BYTES")
        text.set_data_from_numpy(np.array([[cases[i]["prompt"].encode()]], dtype=np.object_))
        outs[i] = c.infer("llm-int8", [text]).as_numpy("text_output")[0, 0].decode()
        c.close()

    execs_before = _metric(triton, "nv_inference_exec_count", "llm-int8")
    threads = [threading.Thread(target=send, args=(i,)) for i in range(len(cases))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(outs) == len(cases)
    hits = sum(outs[i].strip() == c["completion"].strip() for i, c in enumerate(cases))
    assert hits / len(cases) >= 0.7
    # The dynamic batcher ran fewer model executions than there were requests.
    execs = _metric(triton, "nv_inference_exec_count", "llm-int8") - execs_before
    assert execs < len(cases), execs
