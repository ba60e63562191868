"""llmops_finetune_runs_total counts a FineTuneJob once, in the reconcile that ends it."""

from __future__ import annotations

from prometheus_client import REGISTRY

from llmops.api.finetunejob import FineTuneJob
from llmops.handlers.finetunejob import record
from llmops.plan.common import Plan
from tests.support.invalid_specs import example


def job_in(phase: str | None) -> FineTuneJob:
    body = example("finetunejob")
    body["metadata"].update(namespace="metrics-test", name=f"ft-{phase}".lower())
    body["status"] = {"phase": phase} if phase else {}
    return FineTuneJob.model_validate(body)


def count(job: FineTuneJob, result: str) -> float:
    labels = {"namespace": job.namespace, "name": job.name, "result": result}
    return REGISTRY.get_sample_value("llmops_finetune_runs_total", labels) or 0.0


def test_a_job_that_fails_is_counted_once() -> None:
    running = job_in("Running")
    record(running, Plan(status={"phase": "Failed"}))
    assert count(running, "Failed") == 1
    # the next reconcile observes the Failed status it wrote: no second count
    failed = job_in("Running").model_copy(update={"status": job_in("Failed").status})
    record(failed, Plan(status={"phase": "Failed"}))
    assert count(running, "Failed") == 1


def test_a_running_job_is_not_counted() -> None:
    pending = job_in("Pending")
    record(pending, Plan(status={"phase": "Running"}))
    assert count(pending, "Running") == 0
    assert count(pending, "Failed") == 0
