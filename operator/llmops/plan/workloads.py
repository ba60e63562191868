"""Reading and writing the workload pods: PVC mounts for pvc:// URIs, Job state, results, pod problems.

The workloads (images/) share one contract: a pvc://<claim>/<path> URI is read from
$LLMOPS_PVC_ROOT/<claim>/<path>, and the final result is one JSON object in the container's
termination message (exit code 2 for a configuration error, which is never retried).
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Any
from urllib.parse import urlparse

from .common import content_hash, parse_time

PVC_ROOT = "/mnt/pvc"
# The mountPath of each workload pod's own emptyDir, not a file the operator opens (bandit B108).
SCRATCH = "/tmp"  # nosec B108
"""Where a workload pod writes scratch files and HOME: an emptyDir, as the root filesystem is read-only."""
POD_PROBLEMS = {"ImagePullBackOff", "ErrImagePull", "CrashLoopBackOff", "CreateContainerConfigError"}
CONFIG_ERROR_EXIT = 2
WORKLOAD_UID = 10001
"""The non-root user of the builder, trainer and evaluator images."""


def pvc_claims(*uris: str | None) -> list[str]:
    """Claims named by pvc://<claim>/<path> URIs: each is mounted at /mnt/pvc/<claim>."""
    return sorted({urlparse(u).netloc for u in uris if u and u.startswith("pvc://")})


DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def volume_name(claim: str) -> str:
    """pvc-<claim>, or pvc-<hash of claim> where that is no valid volume name.

    Volume names are DNS labels (no dots, at most 63 characters); claim names are DNS
    subdomains, so `models.v2` needs the hash.
    """
    name = f"pvc-{claim}"
    return name if len(name) <= 63 and DNS_LABEL.match(name) else f"pvc-{content_hash(claim)}"


def pvc_volumes(
    claims: list[str], writable: frozenset[str] = frozenset()
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Volumes and mounts for claims at /mnt/pvc/<claim>, read-only unless listed as writable."""
    volumes, mounts = [], []
    for claim in claims:
        read_only = claim not in writable
        name = volume_name(claim)
        volumes.append({"name": name, "persistentVolumeClaim": {"claimName": claim, "readOnly": read_only}})
        mounts.append({"name": name, "mountPath": f"{PVC_ROOT}/{claim}", "readOnly": read_only})
    return volumes, mounts


def pod_failure_policy(container: str) -> dict[str, Any]:
    """Fail at once on a configuration error; evictions and lost nodes do not use up retries."""
    return {
        "rules": [
            {
                "action": "FailJob",
                "onExitCodes": {"containerName": container, "operator": "In", "values": [CONFIG_ERROR_EXIT]},
            },
            {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]},
        ]
    }


def job_condition(job: dict[str, Any], type_: str) -> bool:
    return any(
        c.get("type") == type_ and c.get("status") == "True" for c in job.get("status", {}).get("conditions", [])
    )


def termination_message(pods: list[dict[str, Any]], container: str) -> str | None:
    """The newest termination message the container left (the workloads write their result there)."""
    messages = []
    for pod in pods:
        for status in pod.get("status", {}).get("containerStatuses", []):
            terminated = status.get("state", {}).get("terminated") or {}
            if status.get("name") == container and terminated.get("message"):
                messages.append((terminated.get("finishedAt", ""), terminated["message"]))
    return max(messages)[1].strip() if messages else None


def parse_result(message: str | None) -> dict[str, Any] | None:
    """The workload's result JSON: the last line of its termination message that parses."""
    for line in reversed((message or "").splitlines()):
        try:
            value = json.loads(line)
        except ValueError:
            continue
        if isinstance(value, dict):
            return value
    return None


def pod_problem(pods: list[dict[str, Any]]) -> tuple[str, str] | None:
    """The first reason a pod cannot run, as (Reason, message), e.g. Unschedulable or ImagePullBackOff."""
    for pod in sorted(pods, key=lambda p: p.get("metadata", {}).get("name", "")):
        name = pod.get("metadata", {}).get("name", "")
        status = pod.get("status", {})
        for cond in status.get("conditions", []):
            if cond.get("type") == "PodScheduled" and cond.get("reason") == "Unschedulable":
                return "Unschedulable", f"pod {name}: {cond.get('message', 'no node fits')}"
        for container in status.get("containerStatuses", []):
            waiting = container.get("state", {}).get("waiting") or {}
            if waiting.get("reason") in POD_PROBLEMS:
                reason = "ImagePullBackOff" if waiting["reason"] == "ErrImagePull" else waiting["reason"]
                return reason, f"pod {name}: {waiting.get('message') or waiting['reason']}"
    return None


def creation_problem(job_events: list[dict[str, Any]]) -> tuple[str, str] | None:
    """Why a Job cannot create its pods (a missing PriorityClass, a quota, an admission policy)."""
    failed = [e for e in job_events if e.get("reason") == "FailedCreate"]
    if not failed:
        return None
    newest = max(failed, key=lambda e: e.get("lastTimestamp") or e.get("eventTime") or "")
    return "PodCreationFailed", str(newest.get("message", "the Job cannot create its pods"))


def job_age(job: dict[str, Any], now: datetime) -> float:
    """Seconds since the Job was created (0 when the apiserver has not said)."""
    created = (job.get("metadata") or {}).get("creationTimestamp")
    return (now - parse_time(created)).total_seconds() if created else 0.0
