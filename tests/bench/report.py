"""One table of every benchmark figure, with its goal: .bench/operator.json, workloads.json, rollout.json.

    .venv/bin/python tests/bench/report.py [--bench-dir .bench]

Files that do not exist are skipped. A figure with a goal shows `ok` or `MISS`; a goal marked
with * is this report's proposal where none was set. Figures measured per N (operator) get
one row per N.
"""

from __future__ import annotations

import argparse
import json
import operator
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]

Compare = Callable[[float, float], bool]
COMPARISONS: dict[str, Compare] = {"≥": operator.ge, "≤": operator.le, "=": operator.eq, ">": operator.gt}


@dataclass(frozen=True)
class Figure:
    key: str
    label: str
    unit: str = ""
    goal: tuple[str, float] | None = None
    proposed: bool = False
    """The goal is this report's proposal, not a stated one."""

    def goal_text(self) -> str:
        if self.goal is None:
            return "—"
        op, value = self.goal
        return f"{op} {value:g}{' ' + self.unit if self.unit else ''}{'*' if self.proposed else ''}"

    def verdict(self, value: Any) -> str:
        if self.goal is None or not isinstance(value, int | float):
            return ""
        op, threshold = self.goal
        return "ok" if COMPARISONS[op](value, threshold) else "MISS"


FIGURES: dict[str, list[Figure]] = {
    "operator.json": [
        Figure("throughput_ratio_vs_raw", "reconcile throughput, operator/raw", "", ("≥", 0.8)),
        Figure("throughput_ratio_pairs_median", "throughput operator/raw, median of pairs", "", ("≥", 0.8)),
        Figure("throughput_ratio_pairs", "throughput operator/raw, each pair"),
        Figure("throughput_models_per_s", "models/s to children + status", "/s"),
        Figure("writes_per_reconcile", "writes per reconcile", "", ("≤", 2)),
        Figure("writes_per_model", "writes per model, create to Ready"),
        Figure("reads_per_model", "reads per model, create to Ready"),
        Figure("requests_per_model", "requests per model by class, create to Ready"),
        Figure("reconciles_per_model", "reconciles per model, create to Ready"),
        Figure("ready_s", "create to all Ready (cluster-bound)", "s"),
        Figure("p99_create_to_children_s", "p99 create → children under churn", "s", ("≤", 1)),
        Figure("p99_create_to_status_s", "p99 create → status under churn", "s", ("≤", 1)),
        Figure("p50_create_to_children_s", "p50 create → children under churn", "s"),
        Figure("raw_p99_create_to_children_s", "p99 create → children under churn, raw client", "s"),
        Figure("raw_p50_create_to_children_s", "p50 create → children under churn, raw client", "s"),
        Figure("churn_p99_ratio_vs_raw", "p99 create → children under churn, operator/raw", ""),
        Figure("churn_changes_per_s", "churn achieved", "/s"),
        Figure("rss_mib", "operator RSS", "MiB"),
        Figure("rss_kib_per_resource", "RSS per resource beyond N=0", "KiB", ("≤", 10)),
        Figure("rss_mib_restarted", "operator RSS after a restart", "MiB"),
        Figure("rss_kib_per_resource_restarted", "RSS per resource, restarted", "KiB", ("≤", 10)),
        Figure("rss_mib_restarted_later", "operator RSS after a restart, past its first trim", "MiB"),
        Figure("rss_kib_per_resource_restarted_later", "RSS per resource, restarted, past its first trim", "KiB"),
        Figure("rss_slope_mib_per_hour", "RSS slope over the soak", "MiB/h", ("≤", 1), proposed=True),
        Figure("soak_minutes", "soak duration", "min"),
        Figure("restart_writes", "writes on restart, nothing changed", "", ("=", 0)),
        Figure("restart_ready_s", "restart: until every model reconciled", "s"),
        Figure("restart_reads", "reads on restart"),
        Figure("idle_requests_per_min", "requests/min at rest"),
        Figure("idle_size", "models at rest"),
        Figure("leader_handover_s", "leader handover after SIGKILL (median)", "s", ("≤", 15), proposed=True),
        Figure("leader_handover_graceful_s", "leader handover after SIGTERM", "s", ("≤", 5), proposed=True),
        Figure("standby_reconciles_while_paused", "standby reconciles while paused", "", ("=", 0), proposed=True),
    ],
    "workloads.json": [
        Figure("trainer_tokens_per_s", "trainer throughput (CPU)", "tokens/s"),
        Figure("finetune_exact_match_before", "held-out exact match before fine-tune"),
        Figure("finetune_exact_match_after", "held-out exact match after fine-tune", "", ("≥", 0.5), proposed=True),
        Figure("int8_size_ratio", "int8/fp32 model size", "", ("≤", 0.5), proposed=True),
        Figure("int8_latency_speedup", "int8 vs fp32 latency speedup", "x", ("≥", 1.0), proposed=True),
        Figure("int8_score_delta", "int8 - fp32 exact match", "", ("≥", -0.02), proposed=True),
        Figure("wide_int8_latency_speedup", "int8 speedup, wide model", "x", ("≥", 1.0), proposed=True),
        Figure("triton_batching_speedup", "Triton batching vs transformers loop", "x", ("≥", 1.0), proposed=True),
        Figure("triton_batching_vs_unbatched", "Triton batching vs no batching", "x", ("≥", 1.0), proposed=True),
    ],
    "rollout.json": [
        Figure("rollback_seconds_median", "failing canary: first failure → all on stable", "s", ("≤", 15), True),
        Figure("failed_stable_requests", "failed requests on stable", "", ("=", 0), proposed=True),
        Figure("min_capacity_ratio", "min stable capacity / desired", "", ("≥", 1.0), proposed=True),
    ],
}


def fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1000 else f"{value:.0f}"
    if isinstance(value, dict):
        return ", ".join(f"{k} {fmt(v)}" for k, v in value.items())
    return str(value)


def rows(name: str, figures: dict[str, Any]) -> Iterator[tuple[str, str, str, str]]:
    for figure in FIGURES[name]:
        if figure.key not in figures:
            continue
        value = figures[figure.key]
        unit = f" {figure.unit}" if figure.unit else ""
        if isinstance(value, dict):
            for n, v in value.items():
                shown = fmt(v) if isinstance(v, dict) else f"{fmt(v)}{unit}"
                yield f"{figure.label} (N={n})", shown, figure.goal_text(), figure.verdict(v)
        else:
            yield figure.label, f"{fmt(value)}{unit}", figure.goal_text(), figure.verdict(value)


def conditions(figures: dict[str, Any]) -> str:
    machine = figures.get("machine") or {}
    start, end = machine.get("start") or {}, machine.get("end") or {}
    if not start:
        return ""
    return (
        f"operator run: {start.get('cpus')} CPUs, load {start.get('load_avg_1m')} → {end.get('load_avg_1m')}, "
        f"nice {start.get('nice')}, kube {start.get('kube_version')}, {machine.get('duration_s')} s"
        f"{', quick' if machine.get('quick') else ''}"
        f"{', interrupted: the figures measured until then' if machine.get('interrupted') else ''}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bench-dir", type=Path, default=ROOT / ".bench")
    args = parser.parse_args(argv)
    table: list[tuple[str, str, str, str]] = []
    notes: list[str] = []
    for name in FIGURES:
        path = args.bench_dir / name
        if not path.exists():
            notes.append(f"{name}: not measured")
            continue
        figures = json.loads(path.read_text())
        table.append((f"[{name}]", "", "", ""))
        table.extend(rows(name, figures))
        if name == "operator.json" and conditions(figures):
            notes.append(conditions(figures))
    if not table:
        print(f"no benchmark results under {args.bench_dir}", file=sys.stderr)
        return 1
    widths = [max(len(r[i]) for r in [*table, ("figure", "value", "goal", "")]) for i in range(4)]
    header = ("figure", "value", "goal", "")
    for row in [header, tuple("-" * w for w in widths), *table]:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
    print("\n* proposed here: no goal was set")
    for note in notes:
        print(note)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
