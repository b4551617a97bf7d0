"""The standard OTEL_TRACES_EXPORTER / OTEL_METRICS_EXPORTER variables decide what is pushed over OTLP.

`make run` points the services at Jaeger, which takes traces but no metrics (every metrics push was a 404 and
an ERROR line a minute): it sets OTEL_METRICS_EXPORTER=none, and traces must still be exported.
"""

from __future__ import annotations

import pytest

from shared.metrics_export import otlp_metrics_configured, start_metrics_export
from shared.telemetry import otlp_configured, service_resource

VARIABLES = (
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
    "OTEL_TRACES_EXPORTER",
    "OTEL_METRICS_EXPORTER",
)


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in VARIABLES:
        monkeypatch.delenv(name, raising=False)


def test_make_runs_settings_export_traces_and_no_metrics(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318")
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "otlp")
    monkeypatch.setenv("OTEL_METRICS_EXPORTER", "none")
    assert otlp_configured()
    assert not otlp_metrics_configured()
    assert start_metrics_export(service_resource("test")) is None


def test_traces_can_be_turned_off_by_the_standard_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318")
    assert otlp_configured()
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "none")
    assert not otlp_configured()
    assert otlp_metrics_configured()  # metrics have their own switch


@pytest.mark.parametrize(
    ("value", "pushed"),
    [("otlp", True), ("OTLP", True), ("console,otlp", True), ("none", False), ("console", False), ("", True)],
)
def test_exporter_lists_are_read_as_the_specification_writes_them(
    monkeypatch: pytest.MonkeyPatch, value: str, pushed: bool
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "http://127.0.0.1:4318/v1/metrics")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://127.0.0.1:4318/v1/traces")
    monkeypatch.setenv("OTEL_METRICS_EXPORTER", value)
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", value)
    assert otlp_metrics_configured() is pushed
    assert otlp_configured() is pushed


def test_nothing_is_pushed_without_an_endpoint() -> None:
    assert not otlp_configured()
    assert not otlp_metrics_configured()
