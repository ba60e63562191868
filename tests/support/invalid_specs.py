"""Invalid specs, each with the field path a refusal must name.

One table for two levels: unit tests check it against the generated CRDs (tests/support/crds.py),
cluster tests against the real apiserver.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
DELETE = object()


def example(kind_file: str) -> dict[str, Any]:
    return yaml.safe_load((EXAMPLES / f"{kind_file}.yaml").read_text())


def patched(obj: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """A copy of obj with dotted paths set (or DELETEd); integers index lists."""
    obj = copy.deepcopy(obj)
    for dotted, value in changes.items():
        *parents, last = [int(p) if p.isdigit() else p for p in dotted.split(".")]
        node = obj
        for part in parents:
            node = node[part]
        if value is DELETE:
            del node[last]
        else:
            node[last] = value
    return obj


@dataclass(frozen=True)
class InvalidSpec:
    id: str
    base: str
    changes: dict[str, Any]
    path: str
    """The field path the refusal names."""
    update: dict[str, Any] = field(default_factory=dict)
    """For immutability: the object is created valid, then updated with these changes."""

    def object(self) -> dict[str, Any]:
        obj = patched(example(self.base), self.changes)
        obj["metadata"]["name"] = self.id
        return obj


INVALID_SPECS = [
    InvalidSpec("llm-two-sources", "llmmodel", {"spec.source.fineTuneJob": {"name": "ft"}}, "spec.source"),
    InvalidSpec("llm-no-source", "llmmodel", {"spec.source": {}}, "spec.source"),
    InvalidSpec("llm-bad-uri", "llmmodel", {"spec.source.uri": "ftp://models/x"}, "spec.source.uri"),
    InvalidSpec("llm-unknown-quantization", "llmmodel", {"spec.build.quantization": "Int3"},
                "spec.build.quantization"),
    InvalidSpec("llm-static-int8-no-calibration", "llmmodel", {"spec.build.quantization": "Int8Static"},
                "spec.build.calibrationDataset"),
    InvalidSpec("llm-negative-replicas", "llmmodel", {"spec.serving.replicas": -1}, "spec.serving.replicas"),
    InvalidSpec("llm-autoscaling-min-over-max", "llmmodel",
                {"spec.serving.autoscaling": {"minReplicas": 5, "maxReplicas": 2}},
                "spec.serving.autoscaling.minReplicas"),
    InvalidSpec("llm-gpu-instances-without-gpus", "llmmodel",
                {"spec.serving.resources.gpus": 0, "spec.serving.resources.gpuType": DELETE},
                "spec.serving.instanceGroup"),
    InvalidSpec("llm-gpu-type-without-gpus", "llmmodel", {"spec.serving.resources.gpus": 0,
                "spec.serving.instanceGroup.kind": "CPU"}, "spec.serving.resources.gpuType"),
    InvalidSpec("llm-bad-memory", "llmmodel", {"spec.serving.resources.memory": "lots"},
                "spec.serving.resources.memory"),
    InvalidSpec("ftj-decimal-exponent-cpu", "finetunejob", {"spec.resources.cpu": "1e2.5"}, "spec.resources.cpu"),
    InvalidSpec("ftj-lora-with-full", "finetunejob", {"spec.method": "Full"}, "spec.lora"),
    InvalidSpec("ftj-two-base-models", "finetunejob", {"spec.baseModel.uri": "hf://org/model"}, "spec.baseModel"),
    InvalidSpec("ftj-too-many-gpus", "finetunejob", {"spec.resources.gpus": 17}, "spec.resources.gpus"),
    InvalidSpec("ftj-zero-workers", "finetunejob", {"spec.workers": 0}, "spec.workers"),
    InvalidSpec("ftj-zero-learning-rate", "finetunejob", {"spec.hyperparameters.learningRate": 0},
                "spec.hyperparameters.learningRate"),
    InvalidSpec("ftj-no-output", "finetunejob", {"spec.output": DELETE}, "spec.output"),
    InvalidSpec("ftj-method-changed", "finetunejob", {}, "spec.method",
                update={"spec.method": "Full", "spec.lora": DELETE}),
    InvalidSpec("ftj-dataset-changed", "finetunejob", {}, "spec.dataset",
                update={"spec.dataset.uri": "pvc://datasets/other.jsonl"}),
    InvalidSpec("evals-regex-without-pattern", "evalsuite", {"spec.metrics.0.type": "Regex"},
                "spec.metrics[0].pattern"),
    InvalidSpec("evals-unknown-metric", "evalsuite", {"spec.metrics.0.type": "Vibes"}, "spec.metrics[0].type"),
    InvalidSpec("evals-no-metrics", "evalsuite", {"spec.metrics": []}, "spec.metrics"),
    InvalidSpec("evals-duplicate-metric", "evalsuite", {"spec.metrics.1.name": "exact"}, "spec.metrics"),
    InvalidSpec("evals-cases-and-uri", "evalsuite", {"spec.dataset.uri": "pvc://datasets/eval.jsonl"},
                "spec.dataset"),
    InvalidSpec("ro-candidate-is-stable", "rollout", {"spec.candidate.name": "tinystories-base"},
                "spec.candidate.name"),
    InvalidSpec("ro-weight-over-100", "rollout", {"spec.steps.0.setWeight": 101}, "spec.steps[0].setWeight"),
    InvalidSpec("ro-weights-decrease", "rollout", {"spec.steps.4.setWeight": 20}, "spec.steps"),
    InvalidSpec("ro-step-with-two-actions", "rollout", {"spec.steps.0.pause": {}}, "spec.steps[0]"),
    InvalidSpec("ro-no-steps", "rollout", {"spec.steps": []}, "spec.steps"),
    InvalidSpec("ro-query-without-comparison", "rollout", {"spec.steps.6.analysis.metrics.0.comparison": DELETE},
                "spec.steps[6].analysis.metrics[0].comparison"),
    InvalidSpec("ro-bad-interval", "rollout", {"spec.steps.1.analysis.interval": "soon"},
                "spec.steps[1].analysis.interval"),
    InvalidSpec("ro-route-and-ratio", "rollout",
                {"spec.trafficRouting": {"httpRoute": {"name": "llm"}, "replicaRatio": True}},
                "spec.trafficRouting"),
]  # fmt: skip
