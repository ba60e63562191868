"""Operator configuration from the environment (the chart sets these)."""

from __future__ import annotations

import os
from dataclasses import dataclass

IMAGE_REGISTRY = "ghcr.io/llmops-dev"
VERSION = "0.1.0"


@dataclass(frozen=True)
class Settings:
    builder_image: str = f"{IMAGE_REGISTRY}/builder:{VERSION}"
    trainer_image: str = f"{IMAGE_REGISTRY}/trainer:{VERSION}"
    evaluator_image: str = f"{IMAGE_REGISTRY}/evaluator:{VERSION}"
    prometheus_url: str = "http://prometheus-operated.monitoring:9090"
    resync_seconds: float = 60.0
    """Every resource is reconciled at least this often, even without events."""
    repository_storage_size: str = "50Gi"
    """Size of the PVC created for a model's repository when spec.build.storage is unset."""
    repository_storage_class: str | None = None
    """StorageClass of that PVC; the cluster's default class when unset."""
    metrics_port: int = 8080
    health_port: int = 8081

    @classmethod
    def from_env(cls) -> Settings:
        env = os.environ
        defaults = cls()
        return cls(
            builder_image=env.get("LLMOPS_BUILDER_IMAGE", defaults.builder_image),
            trainer_image=env.get("LLMOPS_TRAINER_IMAGE", defaults.trainer_image),
            evaluator_image=env.get("LLMOPS_EVALUATOR_IMAGE", defaults.evaluator_image),
            prometheus_url=env.get("LLMOPS_PROMETHEUS_URL", defaults.prometheus_url),
            resync_seconds=float(env.get("LLMOPS_RESYNC_SECONDS", defaults.resync_seconds)),
            repository_storage_size=env.get("LLMOPS_REPOSITORY_STORAGE_SIZE", defaults.repository_storage_size),
            repository_storage_class=env.get("LLMOPS_REPOSITORY_STORAGE_CLASS") or None,
            metrics_port=int(env.get("LLMOPS_METRICS_PORT", defaults.metrics_port)),
            health_port=int(env.get("LLMOPS_HEALTH_PORT", defaults.health_port)),
        )
