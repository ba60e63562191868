"""The chart's files agree with the operator: settings, metrics, CRDs, versions, RBAC, docs.

Rendering and installing the chart need helm and a cluster: `make chart-check` and
tests/cluster/test_chart.py. These checks need neither.
"""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from prometheus_client.metrics import MetricWrapperBase

from llmops import metrics, settings
from llmops.api import crdgen

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "llmops-operator"
SCHEMA = json.loads((CHART / "values.schema.json").read_text())
VALUES = yaml.safe_load((CHART / "values.yaml").read_text())


def test_chart_crds_match_the_models() -> None:
    assert crdgen.main(["--out", str(CHART / "crds"), "--check"]) == 0, "run `make crds`"


def test_chart_ships_the_kopf_peering_crds() -> None:
    names = {yaml.safe_load(p.read_text())["metadata"]["name"] for p in (CHART / "crds").glob("*.yaml")}
    assert {"clusterkopfpeerings.kopf.dev", "kopfpeerings.kopf.dev"} <= names


def test_app_version_is_the_operators_version() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert chart["appVersion"] == settings.VERSION == project["version"]


def merged(defaults: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """Values as helm sees them: maps merged key by key, anything else replaced."""
    out = dict(defaults)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merged(out[key], value)
        else:
            out[key] = value
    return out


@pytest.mark.parametrize("path", [CHART / "values.yaml", *sorted((CHART / "ci").glob("*.yaml"))], ids=lambda p: p.name)
def test_values_files_match_the_schema(path: Path) -> None:
    jsonschema.Draft7Validator.check_schema(SCHEMA)
    jsonschema.validate(merged(VALUES, yaml.safe_load(path.read_text())), SCHEMA)


@pytest.mark.parametrize(
    "values",
    [
        {"watchNamespace": ["a"]},  # misspelt
        {"replicaCount": 0},
        {"logFormat": "xml"},
        {"watchNamespaces": ["Not_A_Name"]},
        {"image": {"repository": "x", "digest": "latest"}},
        {"config": {"prometheusUrl": "prometheus:9090"}},
        {"metrics": {"prometheusRule": {"reconcileErrorRatio": 2}}},
    ],
)
def test_the_schema_refuses_bad_values(values: dict[str, Any]) -> None:
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(values, SCHEMA)


def test_every_operator_setting_can_be_set_from_values() -> None:
    """Each LLMOPS_* variable the operator reads is set by the Deployment template."""
    read = set(re.findall(r'"(LLMOPS_[A-Z_]+)"', (REPO / "operator" / "llmops" / "settings.py").read_text()))
    deployment = (CHART / "templates" / "deployment.yaml").read_text()
    set_by_chart = set(re.findall(r"name: (LLMOPS_[A-Z_]+)", deployment))
    assert read, "no settings found: has settings.py changed shape?"
    assert read == set_by_chart


def value_paths(values: dict[str, Any], schema: dict[str, Any], prefix: str = "") -> list[str]:
    """Dotted paths of the values, down to where the schema stops naming properties."""
    paths = []
    for key, value in values.items():
        path = f"{prefix}{key}"
        node = schema.get("properties", {}).get(key, {})
        if isinstance(value, dict) and value and "properties" in node:
            paths += value_paths(value, node, f"{path}.")
        else:
            paths.append(path)
    return paths


def test_every_value_is_documented_in_the_readme() -> None:
    readme = (CHART / "README.md").read_text()
    missing = [path for path in value_paths(VALUES, SCHEMA) if f"| `{path}` |" not in readme]
    assert not missing, f"add to the values table of charts/llmops-operator/README.md: {missing}"


def exported_series() -> set[str]:
    """The series names the operator's metrics produce."""
    names: set[str] = set()
    for metric in vars(metrics).values():
        if not isinstance(metric, MetricWrapperBase):
            continue
        for family in metric.describe():
            suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_sum", "_count"]}.get(family.type, [""])
            names |= {family.name + suffix for suffix in suffixes}
    return names


@pytest.mark.parametrize("path", ["templates/prometheusrule.yaml", "dashboards/llmops-operator.json"])
def test_alerts_and_dashboard_query_metrics_the_operator_exports(path: str) -> None:
    queried = set(re.findall(r"\bllmops_[a-z_]+", (CHART / path).read_text()))
    assert queried
    assert queried <= exported_series(), f"not exported by operator/llmops/metrics.py: {queried - exported_series()}"


def rbac_lists(field: str) -> list[list[str]]:
    """Every `field: [a, b]` list of the RBAC template (its rules are written in flow style)."""
    rbac = (CHART / "templates" / "rbac.yaml").read_text()
    return [[item.strip() for item in found.split(",")] for found in re.findall(rf"{field}: \[([^\]]*)\]", rbac)]


def test_every_kind_the_plans_write_has_an_rbac_rule() -> None:
    """A child kind added to a plan without a rule would fail only in a real cluster."""
    plans = "".join(p.read_text() for p in (REPO / "operator" / "llmops" / "plan").glob("*.py"))
    kinds = set(re.findall(r'"kind": "([A-Za-z]+)"', plans))
    plurals = {name for resources in rbac_lists("resources") for name in resources}
    missing = {kind for kind in kinds if f"{kind.lower()}s" not in plurals}
    assert kinds and not missing, f"kinds without an RBAC rule in the chart: {missing}"


def test_rbac_has_no_wildcards_and_no_secrets() -> None:
    resources = [name for names in rbac_lists("resources") for name in names]
    verbs = {verb for names in rbac_lists("verbs") for verb in names}
    groups = {group for names in rbac_lists("apiGroups") for group in names}
    assert "secrets" not in resources and "pods/exec" not in resources
    assert "*" not in resources + list(verbs) + list(groups)
    assert verbs <= {"get", "list", "watch", "create", "patch"}, "no delete, update, escalate, bind or impersonate"
