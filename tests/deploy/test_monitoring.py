"""deploy/monitoring: the ServiceMonitor, the alert rules and the Grafana
dashboard, checked without a Prometheus or a Grafana: the rules against the
Prometheus Operator's CRD made strict, every metric and label they and the
dashboard's panels name against what Caspian serves, and the component built
with kustomize."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from prometheus_client import Counter, Histogram
from prometheus_client.metrics import MetricWrapperBase

from reconciler import metrics
from reconciler.crd import closed
from tests.deploy.test_assets import built_with

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "monitoring" / "prometheusrule.yaml"
CRD = ROOT / "tests" / "schemas" / "prometheus-operator" / "prometheusrule-crd.yaml"
KUBECTL = shutil.which("kubectl")
# Prometheus's own series, and the labels a scrape gives every series.
PROMETHEUS = {"up": set()}
SCRAPED = {"job", "instance", "namespace", "pod", "service", "endpoint", "container"}


@cache
def rule_schema() -> jsonschema.Draft7Validator:
    crd = yaml.safe_load(CRD.read_text())
    (version,) = crd["spec"]["versions"]
    return jsonschema.Draft7Validator(closed(version["schema"]["openAPIV3Schema"]))


def rule_errors(document: dict[str, Any]) -> list[str]:
    return [f"{list(e.absolute_path)}: {e.message}" for e in rule_schema().iter_errors(document)]


def alerts() -> list[dict[str, Any]]:
    document = yaml.safe_load(RULES.read_text())
    return [rule for group in document["spec"]["groups"] for rule in group["rules"]]


def served() -> dict[str, set[str]]:
    """Each series name Caspian serves, with its label names."""
    found = {}
    for value in vars(metrics).values():
        if not isinstance(value, MetricWrapperBase):
            continue
        labels = set(value._labelnames)
        if isinstance(value, Counter):  # served with _total added
            found[f"{value._name}_total"] = labels
        elif isinstance(value, Histogram):
            found[f"{value._name}_bucket"] = labels | {"le"}
            found[f"{value._name}_sum"] = found[f"{value._name}_count"] = labels
        else:
            found[value._name] = labels
    return found


def unserved(expr: str, *, said: str = "") -> list[str]:
    """What an expression, or the text said with it (`{{ $labels.x }}`,
    `{{x}}`), names that Caspian does not serve: a series, or a label of one."""
    serving = {**served(), **PROMETHEUS}
    selected = named(expr)
    wrong = [] if selected else [f"{expr}: names no series"]
    for name, matched in selected.items():
        if name not in serving:
            wrong.append(f"no series {name}")
        elif not matched <= serving[name] | SCRAPED:
            wrong.append(f"{name} has no label {sorted(matched - serving[name])}")
    labels = set().union(*(serving.get(name, set()) for name in selected)) | SCRAPED
    for on in re.findall(r"\b(?:on|by|without)\s*\(([^)]*)\)", expr):
        wrong += [
            f"no label {label}" for label in on.replace(" ", "").split(",") if label not in labels
        ]
    for label in re.findall(r"\{\{\s*(?:\$labels\.)?(\w+)\s*\}\}", said):
        if label not in labels:
            wrong.append(f"{said!r} names {label}")
    return wrong


def named(expr: str) -> dict[str, set[str]]:
    """The series an expression selects, each with the labels it matches on."""
    found: dict[str, set[str]] = {}
    for match in re.finditer(r"\b([a-z_]+)\s*(\{[^}]*\})?", expr):
        name, matchers = match.group(1), match.group(2) or ""
        if name.startswith("caspian_") or name in PROMETHEUS:
            found.setdefault(name, set()).update(re.findall(r"(\w+)\s*(?:=~|!~|!=|=)", matchers))
    return found


def test_the_alert_rules_validate_strictly_against_the_prometheus_operator_crd() -> None:
    assert rule_errors(yaml.safe_load(RULES.read_text())) == []


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("annotation", {"summary": "x"}, "Additional properties"),  # annotations, misspelt
        ("for", "10 min", "does not match"),  # not a Prometheus duration
    ],
)
def test_a_mistake_in_a_rule_fails_the_check(field, value, expected) -> None:
    document = yaml.safe_load(RULES.read_text())
    document["spec"]["groups"][0]["rules"][0][field] = value
    assert any(expected in error for error in rule_errors(document))


def test_the_alerts_name_only_metrics_and_labels_caspian_serves() -> None:
    assert served()["caspian_spoke_up"] == {"spoke"}
    for rule in alerts():
        said = " ".join(rule["annotations"].values())
        assert unserved(rule["expr"], said=said) == [], rule["alert"]


def dashboard() -> dict[str, Any]:
    return json.loads((ROOT / "deploy" / "monitoring" / "dashboard.json").read_text())


def test_the_dashboards_panels_name_only_metrics_and_labels_caspian_serves() -> None:
    panels = dashboard()["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    for panel in panels:
        assert {"x", "y", "w", "h"} <= set(panel["gridPos"]), panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            wrong = unserved(target["expr"], said=target["legendFormat"])
            assert wrong == [], panel["title"]


def test_the_check_catches_a_renamed_metric_or_label() -> None:
    assert named('caspian_spoke_upp == 0 unless on (spoke) caspian_jobs{phase="x"}') == {
        "caspian_spoke_upp": set(),
        "caspian_jobs": {"phase"},
    }
    assert unserved("caspian_spoke_upp == 0") == ["no series caspian_spoke_upp"]
    assert unserved('caspian_jobs{state="Invalid"}') == ["caspian_jobs has no label ['state']"]
    assert unserved("sum by (zone) (caspian_jobs)") == ["no label zone"]
    assert unserved("caspian_jobs", said="{{spoke}}") == ["'{{spoke}}' names spoke"]
    assert unserved("rate(caspian_solve_duration_seconds_bucket[5m])", said="{{le}}") == []


def test_every_alert_has_a_severity_a_summary_and_a_description() -> None:
    names = [rule["alert"] for rule in alerts()]
    assert len(names) == len(set(names))
    for rule in alerts():
        assert rule["labels"]["severity"] in {"critical", "warning", "info"}, rule["alert"]
        assert {"summary", "description"} <= set(rule["annotations"]), rule["alert"]


def test_argo_cds_gauge_is_served_only_once_argo_cd_is_asked() -> None:
    """Read as 0, it would fire CaspianArgoCDUnreadable where no Argo CD is asked."""
    script = (
        "from reconciler import metrics\n"
        "before = metrics.exposition()[0]\n"
        "metrics.record_argocd(trusted=True)\n"
        "metrics.record_argocd(trusted=True)\n"
        "after = metrics.exposition()[0]\n"
        "print(b'caspian_argocd_up ' in before, b'caspian_argocd_up 1.0' in after)\n"
    )
    shown = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert shown.stdout.split() == ["False", "True"]


@pytest.mark.skipif(KUBECTL is None, reason="kubectl is not installed")
def test_the_monitoring_component_scrapes_the_caspian_service(tmp_path) -> None:
    objects = built_with("monitoring", tmp_path)
    monitor, service = objects["ServiceMonitor", "caspian"], objects["Service", "caspian"]
    wanted = monitor["spec"]["selector"]["matchLabels"].items()
    assert wanted <= service["metadata"].get("labels", {}).items()
    assert monitor["metadata"]["namespace"] == service["metadata"]["namespace"]
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] in {port["name"] for port in service["spec"]["ports"]}
    assert endpoint["path"] == "/metrics"
    rule = objects["PrometheusRule", "caspian"]
    assert rule["metadata"]["namespace"] == service["metadata"]["namespace"]
    board = objects["ConfigMap", "caspian-dashboard"]
    assert board["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(board["data"]["dashboard.json"]) == dashboard()
