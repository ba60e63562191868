"""The whole pipeline with real workloads: examples/pipeline on pods the local node agent runs.

Each test gets its own namespace pinned to the agent's node; the base model and datasets are
copied onto their volumes, the operator runs as a process, Prometheus discovers the serving pods,
and a client sends inference traffic to the Rollout's Service — the same steps as `make up`
(e2e/pipeline.py), with the FineTuneJob's budget as in the example.

- A good fine-tune is promoted: its eval score beats the base model's, and status links the
  four resources (FineTuneJob → LLMModel lineage → EvalSuite run of that digest → Rollout).
- A fine-tune on corrupted labels fails the eval gate, the Rollout rolls back, and the candidate
  never takes all the traffic.
"""

from __future__ import annotations

import sys
from pathlib import Path

from tests.support.operator import OperatorProcess, wait_for

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO / "e2e"))

import pipeline  # noqa: E402  (e2e/pipeline.py)

PIPELINE_TIMEOUT_S = 1500


def run_pipeline(namespace: str, corrupt_labels: bool = False) -> tuple[str | None, pipeline.Run, pipeline.Traffic]:
    pipeline.prepare_namespace(namespace)
    pipeline.seed(namespace, corrupt_labels=corrupt_labels)
    pipeline.apply(pipeline.pipeline_objects(), namespace)
    traffic = pipeline.Traffic(namespace, "reverse", "reverse-base").start()
    try:
        result, run = pipeline.watch(
            namespace, lambda: pipeline.rollout_finished(namespace), PIPELINE_TIMEOUT_S, traffic, live=False
        )
    finally:
        traffic.stop()
    print(pipeline.summary(namespace, run))
    print(traffic.report())
    return result, run, traffic


def test_fine_tuned_model_is_promoted(pipeline_operator: OperatorProcess, namespace: str) -> None:
    result, run, traffic = run_pipeline(namespace)
    assert result == "Promoted", (
        f"rollout ended {result}:\n{pipeline.summary(namespace, run)}\n{pipeline_operator.log_tail()}"
    )
    scores = pipeline.eval_scores(namespace)
    assert scores["reverse-ft"]["exact"] > scores["reverse-base"]["exact"], scores
    assert traffic.sent > 0

    # The lineage, resource by resource.
    job = pipeline.get("FineTuneJob", namespace, "reverse-ft")
    model = pipeline.get("LLMModel", namespace, "reverse-ft")
    suite = pipeline.get("EvalSuite", namespace, "reverse-quality")
    rollout = pipeline.get("Rollout", namespace, "reverse")
    assert job["status"]["phase"] == "Succeeded"
    lineage = model["status"]["lineage"]
    assert (lineage["baseModel"], lineage["fineTuneJob"]) == ("reverse-base", "reverse-ft")
    assert lineage["sourceUri"] == job["status"]["artifactUri"]
    digest = model["status"]["artifact"]["digest"]
    judged = [r for r in suite["status"]["runs"] if r["model"] == "reverse-ft" and r["digest"] == digest]
    assert judged and all(r["phase"] == "Passed" for r in judged), suite["status"]["runs"]
    promoted = [h for h in rollout["status"]["history"] if h["event"] == "Promoted"]
    assert promoted and promoted[-1]["candidateDigest"] == digest, rollout["status"]["history"]
    assert rollout["status"]["canaryWeight"] == 100


def test_bad_fine_tune_is_rolled_back(pipeline_operator: OperatorProcess, namespace: str) -> None:
    result, run, _ = run_pipeline(namespace, corrupt_labels=True)
    rollout = pipeline.get("Rollout", namespace, "reverse")
    assert result == "RolledBack", f"rollout ended {result}:\n{pipeline.summary(namespace, run)}"
    history = rollout["status"]["history"]
    assert (history[-1]["event"], history[-1].get("reason")) == ("RolledBack", "EvalGateFailed"), history
    assert rollout["status"]["canaryWeight"] == 0
    seen_weights = [what for _, what in run.seen if what.startswith("Rollout")]
    assert not any("weight 100%" in w for w in seen_weights), seen_weights
    scores = pipeline.eval_scores(namespace)
    assert scores["reverse-ft"]["exact"] < 0.6, scores
    # The candidate is scaled to 0 once traffic left it.
    wait_for(
        lambda: (pipeline.get("deploy", namespace, "reverse-ft") or {}).get("spec", {}).get("replicas") == 0,
        120,
        "the rejected candidate scaled to 0",
    )
