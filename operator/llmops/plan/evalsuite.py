"""EvalSuite: (suite, observed models, Rollouts, evaluator Jobs, settings, now) -> Jobs, suite ConfigMap, status.

A run judges one model version. It is keyed by (model, digest, spec.runNonce) and its Job is
named by the hash of that key, so a version is judged once, a restarted operator finds the Job
it created instead of starting another, and changing spec.runNonce judges every target again.

Targets come from spec.target (a Ready model, judged whenever its artifact digest changes; or
an endpoint, judged once per runNonce), from every Progressing Rollout whose current step
is an evalGate naming this suite (the candidate at status.candidateDigest), and from every
LLMModel whose open quality gate names this suite (its quantized and unquantized builds, as
<model>@candidate and <model>@reference at the gate's own Services). Rollouts and LLMModels
read the verdict from status.runs by that same key.

The suite reaches the evaluator as JSON in a ConfigMap owned by the suite. With a baseline,
the baseline model is judged first and the comparison (maxRegression) is made here from the
two runs' metric values, so every run's Job needs the same inputs and stays deterministic.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from ..api.common import Condition, now_rfc3339
from ..api.evalsuite import LOWER_IS_BETTER, EvalRun, EvalSuite, MetricResult
from ..api.rollout import Rollout
from ..settings import Settings
from .common import (
    RESTRICTED_CONTAINER_SECURITY,
    RESTRICTED_POD_SECURITY,
    Event,
    Manifest,
    Plan,
    child_metadata,
    child_name,
    content_hash,
    set_condition,
    transition_events,
)
from .llmmodel import GATE_ROLES, HTTP_PORT, JUDGED_GATE, TRITON_MODEL_NAME, gate_endpoint, gate_target
from .rollout import gate_suite
from .workloads import (
    PVC_ROOT,
    SCRATCH,
    WORKLOAD_UID,
    creation_problem,
    job_condition,
    parse_result,
    pod_failure_policy,
    pod_problem,
    pvc_claims,
    pvc_volumes,
    termination_message,
)

EVALUATOR = "evaluator"
TARGET_LABEL = "llmops.dev/eval-target"
"""On evaluator pods: the LLMModel they judge (the local cluster's kwok stage reads it)."""
GATE_ROLE_LABEL = "llmops.dev/eval-gate-role"
"""On evaluator pods of an LLMModel's quality gate: candidate or reference."""
SUITE_MOUNT = "/etc/llmops/suite"
REPORT_PATH = f"{SCRATCH}/report.json"
MAX_RUNS = 50
TIMEOUT_GRACE = timedelta(seconds=30)
"""How long past timeoutSeconds the Job's own deadline gets to fail it before the plan does."""
FINISHED = ("Passed", "Failed", "Error")
NOT_NEWS = {"Evaluating", "EvalPassed", "EvalFailed", "EvaluatorError", "Idle", "NoRuns"}
"""Condition reasons that get no Event of their own: each run's start and end has one already."""
WARNING_REASONS = {
    "EvalFailed", "EvaluatorError", "Unschedulable", "ImagePullBackOff", "CrashLoopBackOff",
    "PodCreationFailed",
}  # fmt: skip


@dataclass(frozen=True)
class EvalSuiteObservation:
    """The raw objects the plan depends on, as read from the apiserver."""

    models: dict[str, dict[str, Any]] = field(default_factory=dict)
    """LLMModels of the suite's namespace by name."""
    rollouts: list[Rollout] = field(default_factory=list)
    """Rollouts of the suite's namespace."""
    jobs: dict[str, dict[str, Any]] = field(default_factory=dict)
    """The suite's evaluator Jobs by name."""
    pods: list[dict[str, Any]] = field(default_factory=list)
    """Their pods (the job-name label says whose)."""
    job_events: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    """Why unfinished Jobs that have no pods cannot create them (their FailedCreate Events), by Job name."""


@dataclass(frozen=True)
class RunTarget:
    """One model version to judge and where to reach it."""

    model: str
    """LLMModel name, or the endpoint URL for an endpoint target."""
    digest: str
    endpoint: str
    model_name: str
    requested_by: str
    """spec.target, spec.baseline, Rollout <name> or LLMModel <name>: for messages."""
    gate_role: str | None = None
    """candidate or reference for a quality gate's build (model is then <LLMModel>@<role>)."""


RunKey = tuple[str, str, str | None]


def run_key(run: EvalRun) -> RunKey:
    return (run.model, run.digest, run.nonce)


def target_key(target: RunTarget, nonce: str | None) -> RunKey:
    return (target.model, target.digest, nonce)


def eval_job_name(suite: EvalSuite, key: RunKey) -> str:
    return child_name(suite.name, f"eval-{content_hash(*key)[:8]}")


def suite_configmap_name(suite: EvalSuite) -> str:
    return child_name(suite.name, "suite")


# --- targets --------------------------------------------------------------------------------


def gated_suites(rollout: Rollout) -> set[str]:
    """The EvalSuites a Rollout waits on now: the evalGate of its current step while Progressing.

    A rollout paused at its gate (say, after an evaluator error) is not judged again until it moves.
    """
    suite = gate_suite(rollout)
    return {suite} if suite is not None and rollout.status.phase == "Progressing" else set()


def model_version(model: dict[str, Any] | None, name: str) -> tuple[str, str, str] | str:
    """(digest, endpoint URL, Triton model name) of a model that serves, or why it cannot be judged."""
    if model is None:
        return f"LLMModel {name} does not exist"
    status = model.get("status") or {}
    digest = (status.get("artifact") or {}).get("digest")
    endpoint = status.get("endpoint") or {}
    if not digest or not endpoint.get("http"):
        return f"LLMModel {name} has no built artifact yet"
    return str(digest), str(endpoint["http"]), str(endpoint.get("modelName") or TRITON_MODEL_NAME)


def is_ready(model: dict[str, Any] | None) -> bool:
    conditions = (model or {}).get("status", {}).get("conditions", [])
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def ready_model_target(models: dict[str, dict[str, Any]], name: str, requested_by: str) -> RunTarget | str:
    """The model's current version once it is Ready, or why not."""
    version = model_version(models.get(name), name)
    if isinstance(version, str):
        return version
    if not is_ready(models.get(name)):
        return f"LLMModel {name} is not Ready"
    digest, url, model_name = version
    return RunTarget(name, digest, url, model_name, requested_by)


def rollout_target(suite: EvalSuite, rollout: Rollout, models: dict[str, dict[str, Any]]) -> RunTarget | str:
    """The candidate a Rollout gates on this suite, at the digest the Rollout recorded."""
    candidate, wanted = rollout.spec.candidate.name, rollout.status.candidate_digest
    requested_by = f"Rollout {rollout.name}"
    if not wanted:
        return f"{requested_by} has no candidate digest yet"
    version = model_version(models.get(candidate), candidate)
    if isinstance(version, str):
        return version
    digest, url, model_name = version
    if digest != wanted:
        # Judging whatever is built now would pass a verdict on a version the Rollout is not moving.
        return f"LLMModel {candidate} serves {digest[:19]}, {requested_by} waits for {wanted[:19]}"
    return RunTarget(candidate, digest, url, model_name, requested_by)


def quality_gate_targets(suite: EvalSuite, name: str, model: dict[str, Any]) -> list[RunTarget]:
    """Both builds of an LLMModel's quality gate while it waits on this suite, each at its gate Service."""
    gate = (model.get("status") or {}).get("qualityGate") or {}
    if gate.get("evalSuite") != suite.name or gate.get("phase") not in JUDGED_GATE:
        return []
    targets = []
    for role in GATE_ROLES:
        digest = (gate.get(role) or {}).get("digest")
        if digest:
            url = gate_endpoint(name, suite.namespace, role)
            requested_by = f"LLMModel {name} quality gate"
            targets.append(RunTarget(gate_target(name, role), str(digest), url, TRITON_MODEL_NAME, requested_by, role))
    return targets


def resolve_targets(suite: EvalSuite, observed: EvalSuiteObservation) -> tuple[list[RunTarget], list[str]]:
    """(targets to judge, why others cannot be judged yet), without duplicates."""
    found: list[RunTarget | str] = []
    target = suite.spec.target
    if target is not None and target.endpoint:
        found.append(RunTarget(target.endpoint, "", target.endpoint, target.model_name, "spec.target"))
    elif target is not None and target.model:
        found.append(ready_model_target(observed.models, target.model, "spec.target"))
    for rollout in sorted(observed.rollouts, key=lambda r: r.name):
        if suite.name in gated_suites(rollout):
            found.append(rollout_target(suite, rollout, observed.models))
    for name, model in sorted(observed.models.items()):
        found += quality_gate_targets(suite, name, model)
    targets: dict[tuple[str, str], RunTarget] = {}
    waiting: list[str] = []
    for item in found:
        if isinstance(item, str):
            waiting.append(item)
        else:
            targets.setdefault((item.model, item.digest), item)
    return list(targets.values()), waiting


# --- children -------------------------------------------------------------------------------


def evaluator_suite(suite: EvalSuite) -> dict[str, Any]:
    """The suite in the evaluator's --suite format (images/evaluator/README.md)."""
    spec = suite.spec
    metrics = []
    for metric in spec.metrics:
        entry: dict[str, Any] = {"name": metric.name, "type": metric.type, "threshold": metric.threshold}
        if metric.pattern is not None:
            entry["pattern"] = metric.pattern
        if metric.judge is not None and metric.judge.model:
            entry["judgeEndpoint"] = f"http://{metric.judge.model}.{suite.namespace}.svc:{HTTP_PORT}"
            entry["judgeModel"] = TRITON_MODEL_NAME
        elif metric.judge is not None:
            entry["judgeEndpoint"] = metric.judge.endpoint
        metrics.append(entry)
    return {
        "dataset": spec.dataset.wire(),
        "metrics": metrics,
        "concurrency": spec.concurrency,
        "maxNewTokens": spec.max_new_tokens,
    }


def desired_suite_configmap(suite: EvalSuite) -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": child_metadata(suite, suite_configmap_name(suite), EVALUATOR),
        "data": {"suite.json": json.dumps(evaluator_suite(suite), sort_keys=True, indent=1)},
    }


def desired_eval_job(suite: EvalSuite, target: RunTarget, key: RunKey, settings: Settings) -> Manifest:
    spec = suite.spec
    volumes, mounts = pvc_volumes(pvc_claims(spec.dataset.uri))
    volumes += [
        {"name": "suite", "configMap": {"name": suite_configmap_name(suite)}},
        {"name": "tmp", "emptyDir": {}},
    ]
    mounts += [
        {"name": "suite", "mountPath": SUITE_MOUNT, "readOnly": True},
        {"name": "tmp", "mountPath": SCRATCH},
    ]
    args = [
        "--suite", f"{SUITE_MOUNT}/suite.json",
        "--endpoint", target.endpoint,
        "--model-name", target.model_name,
        "--report", REPORT_PATH,
        "--result-file", "/dev/termination-log",
    ]  # fmt: skip
    container = {
        "name": EVALUATOR,
        "image": spec.image or settings.evaluator_image,
        "args": args,
        "env": [{"name": "LLMOPS_PVC_ROOT", "value": PVC_ROOT}, {"name": "HOME", "value": SCRATCH}],
        "volumeMounts": mounts,
        "securityContext": RESTRICTED_CONTAINER_SECURITY,
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }
    pod_labels = child_metadata(suite, "", EVALUATOR)["labels"]
    if target.gate_role:  # "@" is not allowed in a label value: the model and the role apart
        pod_labels[TARGET_LABEL] = target.model.removesuffix(f"@{target.gate_role}")
        pod_labels[GATE_ROLE_LABEL] = target.gate_role
    elif target.digest and len(target.model) <= 63:  # a label value; endpoint targets have none
        pod_labels[TARGET_LABEL] = target.model
    annotations = {"llmops.dev/eval-model": target.model, "llmops.dev/eval-digest": target.digest}
    if key[2] is not None:
        annotations["llmops.dev/eval-nonce"] = key[2]
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": child_metadata(suite, eval_job_name(suite, key), EVALUATOR, annotations=annotations),
        "spec": {
            "backoffLimit": 2,
            "activeDeadlineSeconds": spec.timeout_seconds,
            "ttlSecondsAfterFinished": 86400,
            "podFailurePolicy": pod_failure_policy(EVALUATOR),
            "template": {
                "metadata": {"labels": pod_labels},
                "spec": {
                    "restartPolicy": "Never",
                    "securityContext": {**RESTRICTED_POD_SECURITY, "runAsUser": WORKLOAD_UID, "fsGroup": WORKLOAD_UID},
                    "containers": [container],
                    "volumes": volumes,
                },
            },
        },
    }


# --- verdicts -------------------------------------------------------------------------------


def baseline_run(runs: list[EvalRun], model: str, digest: str | None) -> EvalRun | None:
    """The newest Passed/Failed run of the baseline model: of its current digest when there is one."""
    judged = [r for r in runs if r.model == model and r.phase in ("Passed", "Failed")]
    current = [r for r in judged if r.digest == digest]
    newest = current or judged
    return newest[-1] if newest else None


def metric_results(
    suite: EvalSuite, result: dict[str, Any], baseline: EvalRun | None
) -> tuple[list[MetricResult], list[str]]:
    """Per-metric verdicts from the evaluator's result, plus the baseline comparison; and why each failed."""
    types = {m.name: m.type for m in suite.spec.metrics}
    max_regression = suite.spec.baseline.max_regression if suite.spec.baseline else 0.0
    baseline_values = {m.name: m.value for m in baseline.metrics} if baseline else {}
    results, failures = [], []
    for raw in result.get("metrics") or []:
        name, value, threshold = str(raw.get("name")), raw.get("value"), float(raw.get("threshold", 0.0))
        base = baseline_values.get(name)
        passed = bool(raw.get("passed"))
        lower_is_better = types.get(name) in LOWER_IS_BETTER
        if not passed:
            side = "above" if lower_is_better else "below"
            shown = "none" if value is None else f"{value:g}"
            failures.append(f"{name}={shown} {side} threshold {threshold:g}")
        elif base is not None and value is not None and not lower_is_better and base - value > max_regression:
            passed = False
            failures.append(
                f"{name}={value:g} regressed {base - value:g} from baseline {base:g} (max {max_regression:g})"
            )
        results.append(MetricResult(name=name, value=value, threshold=threshold, baseline_value=base, passed=passed))
    return results, failures


def version_of(run: EvalRun) -> str:
    return f"{run.model}@{run.digest[:19]}" if run.digest else run.model


def finished_run(suite: EvalSuite, run: EvalRun, job: dict[str, Any], pods: list[dict[str, Any]],
                 baseline: EvalRun | None, now: datetime) -> EvalRun | None:  # fmt: skip
    """The run once its Job has ended, or None while it goes on."""
    message_text = termination_message(pods, EVALUATOR)
    result = parse_result(message_text)
    done = {"finished_at": now_rfc3339(now)}
    if job_condition(job, "Complete") and result is not None and "passed" in result:
        compared = baseline if baseline is not None and baseline.model != run.model else None
        metrics, failures = metric_results(suite, result, compared)
        passed = bool(result["passed"]) and all(m.passed for m in metrics)
        against = f" against baseline {version_of(compared)}" if compared else ""
        if passed:
            summary = ", ".join(f"{m.name}={m.value:g}" for m in metrics if m.value is not None)
            message = f"{version_of(run)} passed{against}: {summary}"
        else:
            message = f"{version_of(run)} failed{against}: {'; '.join(failures) or 'the evaluator said so'}"
        update = {
            "phase": "Passed" if passed else "Failed",
            "passed": passed,
            "metrics": metrics,
            "message": message,
            "report": result.get("report"),
        }
        return run.model_copy(update={**update, **done})
    if job_condition(job, "Complete"):
        message = f"evaluator Job {run.job} completed without a result in its termination message"
        return run.model_copy(update={"phase": "Error", "message": message, **done})
    if job_condition(job, "Failed"):
        failed = [c for c in job.get("status", {}).get("conditions", []) if c.get("type") == "Failed"]
        reason = failed[0].get("reason") or "Failed"
        if reason == "DeadlineExceeded":
            message = f"evaluator Job {run.job} exceeded timeoutSeconds ({suite.spec.timeout_seconds}s)"
        else:
            error = (result or {}).get("error") or message_text or "see its pod logs"
            message = f"evaluator Job {run.job} failed ({reason}): {error}"
        return run.model_copy(update={"phase": "Error", "message": message, **done})
    return None


def timed_out(suite: EvalSuite, run: EvalRun, now: datetime) -> bool:
    if not run.started_at:
        return False
    started = datetime.strptime(run.started_at, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=now.tzinfo)
    return now - started > timedelta(seconds=suite.spec.timeout_seconds) + TIMEOUT_GRACE


def finished_runs(before: list[EvalRun], after: list[EvalRun]) -> list[EvalRun]:
    """Runs that ended in this reconcile (for the operator's metrics)."""
    ended_before = {run_key(r) for r in before if r.phase in FINISHED}
    return [r for r in after if r.phase in FINISHED and run_key(r) not in ended_before]


# --- the plan -------------------------------------------------------------------------------


def pods_of(pods: list[dict[str, Any]], job: str | None) -> list[dict[str, Any]]:
    return [p for p in pods if p.get("metadata", {}).get("labels", {}).get("job-name") == job]


def plan_evalsuite(suite: EvalSuite, observed: EvalSuiteObservation, settings: Settings, now: datetime) -> Plan:
    generation, nonce = suite.generation, suite.spec.run_nonce
    before = suite.status.conditions
    status = suite.status.model_copy(deep=True)
    runs: list[EvalRun] = list(status.runs)
    run_events: list[Event] = []
    targets, waiting = resolve_targets(suite, observed)
    resolvable = {target_key(t, nonce): t for t in targets}

    # A baseline is a target of its own, judged before anything is compared with it.
    baseline_spec = suite.spec.baseline
    baseline_target: RunTarget | None = None
    baseline_digest: str | None = None
    if baseline_spec is not None:
        found = ready_model_target(observed.models, baseline_spec.model, "spec.baseline")
        if isinstance(found, RunTarget):
            baseline_target, baseline_digest = found, found.digest
            resolvable.setdefault(target_key(found, nonce), found)

    def current_baseline() -> EvalRun | None:
        return baseline_run(runs, baseline_spec.model, baseline_digest) if baseline_spec else None

    # Follow the running runs, the baseline's first so that others compare with its fresh result.
    problem: tuple[str, str] | None = None
    order = sorted(range(len(runs)), key=lambda i: baseline_spec is None or runs[i].model != baseline_spec.model)
    for i in order:
        run = runs[i]
        if run.phase != "Running":
            continue
        job = observed.jobs.get(run.job or "")
        pods = pods_of(observed.pods, run.job)
        ended = finished_run(suite, run, job, pods, current_baseline(), now) if job is not None else None
        if ended is None and job is None and run_key(run) not in resolvable:
            ended = run.model_copy(
                update={"phase": "Error", "message": f"evaluator Job {run.job} no longer exists",
                        "finished_at": now_rfc3339(now)}
            )  # fmt: skip
        if ended is None and timed_out(suite, run, now):
            message = f"{version_of(run)} still running after timeoutSeconds ({suite.spec.timeout_seconds}s)"
            ended = run.model_copy(update={"phase": "Error", "message": message, "finished_at": now_rfc3339(now)})
        if ended is not None:
            runs[i] = ended
            run_events.append(run_event(ended))
        elif job is not None:
            found_problem = pod_problem(pods) or (creation_problem(observed.job_events.get(run.job or "", [])))
            problem = problem or found_problem

    existing = {run_key(r) for r in runs}

    def start(target: RunTarget) -> None:
        key = target_key(target, nonce)
        job = eval_job_name(suite, key)
        runs.append(EvalRun(model=key[0], digest=key[1], nonce=nonce, job=job, phase="Running",
                            started_at=now_rfc3339(now)))  # fmt: skip
        existing.add(key)
        run_events.append(Event("Normal", "Evaluating", f"evaluating {version_of(runs[-1])} for {target.requested_by}"))

    def refuse(target: RunTarget, message: str) -> None:
        key = target_key(target, nonce)
        stamp = now_rfc3339(now)
        runs.append(EvalRun(model=key[0], digest=key[1], nonce=nonce, phase="Error", message=message,
                            started_at=stamp, finished_at=stamp))  # fmt: skip
        existing.add(key)
        run_events.append(run_event(runs[-1]))

    for target in targets:
        if target_key(target, nonce) in existing:
            continue  # judged (or being judged) already: never twice
        if baseline_spec is None or target.model == baseline_spec.model:
            start(target)
            continue
        if baseline_target is None:
            waiting.append(f"baseline: {ready_model_target(observed.models, baseline_spec.model, 'spec.baseline')}")
            continue
        judged = current_baseline()
        if judged is not None and judged.digest == baseline_digest:
            start(target)
            continue
        base_key = target_key(baseline_target, nonce)
        if base_key not in existing:
            start(baseline_target)
        base = next(r for r in reversed(runs) if run_key(r) == base_key)
        if base.phase == "Error":
            refuse(target, f"baseline run of {version_of(base)} failed: {base.message}")
        else:
            waiting.append(f"waiting for the baseline run of {version_of(base)}")

    children: list[Manifest] = []
    running = [r for r in runs if r.phase == "Running"]
    if running:
        children.append(desired_suite_configmap(suite))
    for run in running:
        to_judge = resolvable.get(run_key(run))
        if to_judge is not None:
            children.append(desired_eval_job(suite, to_judge, run_key(run), settings))

    status.runs = runs[-MAX_RUNS:]
    status.phase = status.runs[-1].phase if status.runs else "Idle"
    status.conditions = suite_conditions(before, status.runs, running, waiting, problem, now, generation)
    status.observed_generation = generation
    condition_events = [
        e for e in transition_events(before, status.conditions, WARNING_REASONS) if e.reason not in NOT_NEWS
    ]
    return Plan(
        children=children,
        status=status.wire(),
        events=run_events + condition_events,
        requeue_after=15.0 if running or waiting else None,
    )


def run_event(run: EvalRun) -> Event:
    if run.phase == "Passed":
        return Event("Normal", "EvalPassed", run.message or "")
    if run.phase == "Failed":
        return Event("Warning", "EvalFailed", run.message or "")
    return Event("Warning", "EvaluatorError", f"{version_of(run)}: {run.message}")


def suite_conditions(
    before: list[Condition],
    runs: list[EvalRun],
    running: list[EvalRun],
    waiting: list[str],
    problem: tuple[str, str] | None,
    now: datetime,
    generation: int,
) -> list[Condition]:
    conditions = list(before)

    def set_(type_: str, value: bool, reason: str, message: str) -> None:
        nonlocal conditions
        conditions = set_condition(conditions, type_, "True" if value else "False", reason, message, now, generation)

    newest = runs[-1] if runs else None
    if newest is None:
        set_("Ready", False, "TargetNotReady" if waiting else "NoRuns", "; ".join(waiting) or "nothing to evaluate")
    elif newest.phase == "Passed":
        set_("Ready", True, "EvalPassed", newest.message or "")
    elif newest.phase == "Failed":
        set_("Ready", False, "EvalFailed", newest.message or "")
    elif newest.phase == "Error":
        set_("Ready", False, "EvaluatorError", f"{version_of(newest)}: {newest.message}")
    else:
        set_("Ready", False, "Evaluating", f"evaluating {version_of(newest)} (job {newest.job})")

    if running:
        jobs = ", ".join(f"{version_of(r)} (job {r.job})" for r in running)
        set_("Progressing", True, "Evaluating", "; ".join([f"evaluating {jobs}", *waiting]))
    elif waiting:
        set_("Progressing", False, "TargetNotReady", "; ".join(waiting))
    else:
        set_("Progressing", False, "Idle", "every target is judged" if runs else "nothing to evaluate")

    if problem is not None:
        set_("Degraded", True, *problem)
    elif newest is not None and newest.phase == "Error":
        set_("Degraded", True, "EvaluatorError", f"{version_of(newest)}: {newest.message}")
    else:
        set_("Degraded", False, "AsExpected", "")
    return conditions
