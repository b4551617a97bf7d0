"""The operations files an SRE loads: the alert rules and the dashboard parse, their PromQL parses, every metric
they name is one the services expose, and every alert points at a runbook section that exists."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import promql_parser
import pytest
import yaml
from prometheus_client import REGISTRY

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "observability" / "prometheus-rules.yaml"
DASHBOARD = ROOT / "deploy" / "observability" / "grafana-dashboard.json"
RUNBOOK = ROOT / "docs" / "RUNBOOK.md"
METRIC = re.compile(r"\b((?:khedmat|faststream)_[a-z0-9_]+)\b")
_SUFFIXES = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_sum", "_count", "_created")}


def exposed_names() -> set[str]:
    """Every sample name the services' collectors expose (they register when their modules are imported)."""
    import services.inquiry.app
    import services.intake.app
    import services.notify.app
    import services.tracking.app  # noqa: F401

    names: set[str] = set()
    for family in REGISTRY.collect():
        names.add(family.name)
        names.update(family.name + suffix for suffix in _SUFFIXES.get(family.type, ()))
    return names


def runbook_anchors() -> set[str]:
    """GitHub's anchors for the runbook's headings."""
    anchors = set()
    for line in RUNBOOK.read_text(encoding="utf-8").splitlines():
        if line.startswith("## "):
            slug = re.sub(r"[^\w\- ]", "", line[3:].strip().lower()).replace(" ", "-")
            anchors.add(slug)
    return anchors


def rules() -> list[dict[str, Any]]:
    document = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    return [rule for group in document["groups"] for rule in group["rules"]]


def dashboard_exprs() -> list[str]:
    document = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return [target["expr"] for panel in document["panels"] for target in panel["targets"]]


def test_the_runbook_has_the_first_five_things_that_go_wrong() -> None:
    assert len(runbook_anchors()) == 5


@pytest.mark.parametrize("rule", rules(), ids=lambda rule: str(rule["alert"]))
def test_each_alert_parses_names_real_metrics_and_a_runbook_section(rule: dict[str, Any]) -> None:
    promql_parser.parse(rule["expr"])  # raises on a syntax error
    named = set(METRIC.findall(rule["expr"]))
    assert named and named <= exposed_names(), named - exposed_names()
    assert rule["labels"]["severity"] in {"page", "ticket"}
    assert rule["annotations"]["summary"]
    page, _, anchor = rule["annotations"]["runbook"].partition("#")
    assert page == "docs/RUNBOOK.md" and anchor in runbook_anchors(), anchor


def test_the_alerts_cover_lag_errors_sla_breaches_and_dead_letters() -> None:
    watched = {name for rule in rules() for name in METRIC.findall(rule["expr"])}
    assert {
        "khedmat_consumer_lag",
        "khedmat_http_requests_total",
        "khedmat_tracking_sla_breaches_total",
        "khedmat_dead_lettered_total",
    } <= watched


def test_each_dashboard_query_parses_and_names_real_metrics() -> None:
    exprs = dashboard_exprs()
    assert len(exprs) >= 10
    known = exposed_names()
    for expr in exprs:
        promql_parser.parse(expr)
        named = set(METRIC.findall(expr))
        assert named and named <= known, (expr, named - known)
