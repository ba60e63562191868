"""A model that is not Ready is polled only while no event can say it changed: a build Job without pods."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from llmops.api.llmmodel import LLMModel
from llmops.plan.llmmodel import (
    POLL_SECONDS,
    LLMModelObservation,
    build_hash,
    build_job_name,
    plan_llmmodel,
)
from llmops.settings import Settings

SETTINGS = Settings()
NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
MODEL = LLMModel.model_validate(
    {
        "apiVersion": "llmops.dev/v1alpha1",
        "kind": "LLMModel",
        "metadata": {"name": "m", "namespace": "ns", "uid": "u", "generation": 1},
        "spec": {"source": {"uri": "s3://bucket/m"}, "serving": {"replicas": 1}},
    }
)
JOB_NAME = build_job_name(MODEL, build_hash(MODEL, "s3://bucket/m", SETTINGS))


def job(age_s: float, **status: Any) -> dict[str, Any]:
    created = (NOW - timedelta(seconds=age_s)).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {"metadata": {"name": JOB_NAME, "creationTimestamp": created}, "status": status}


def pod(phase: str = "Running") -> dict[str, Any]:
    return {"metadata": {"name": f"{JOB_NAME}-x", "labels": {"job-name": JOB_NAME}}, "status": {"phase": phase}}


def requeue(observed: LLMModelObservation) -> float | None:
    return plan_llmmodel(MODEL, observed, SETTINGS, NOW).requeue_after


def test_a_build_job_just_created_is_looked_at_soon() -> None:
    assert requeue(LLMModelObservation()) == POLL_SECONDS


def test_a_build_whose_pods_run_waits_for_their_events() -> None:
    assert requeue(LLMModelObservation(build_job=job(30, active=1), build_pods=[pod()])) is None


def test_a_build_job_without_pods_is_polled_less_often_as_it_ages() -> None:
    assert requeue(LLMModelObservation(build_job=job(5))) == POLL_SECONDS
    assert requeue(LLMModelObservation(build_job=job(120))) == 60.0


def test_a_failed_build_is_not_polled() -> None:
    failed = job(300, conditions=[{"type": "Failed", "status": "True"}])
    assert requeue(LLMModelObservation(build_job=failed, build_pods=[pod("Failed")])) is None
