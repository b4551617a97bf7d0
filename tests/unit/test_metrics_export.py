"""The Prometheus registry pushed over OTLP: every sample becomes an observation of an instrument of its name."""

from __future__ import annotations

from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from shared.metrics_export import bridge_registry, otlp_metrics_configured


def exported(reader: InMemoryMetricReader) -> dict[str, list[tuple[dict[str, Any], float]]]:
    data = reader.get_metrics_data()
    assert data is not None
    found: dict[str, list[tuple[dict[str, Any], float]]] = {}
    for resource_metrics in data.resource_metrics:
        for scope_metrics in resource_metrics.scope_metrics:
            for metric in scope_metrics.metrics:
                found[metric.name] = [(dict(point.attributes or {}), point.value) for point in metric.data.data_points]  # type: ignore[union-attr]
    return found


def test_counters_gauges_and_histograms_keep_their_names_labels_and_values() -> None:
    registry = CollectorRegistry()
    sent = Counter("khedmat_test_sent_total", "sent", ["channel"], registry=registry)
    lag = Gauge("khedmat_test_lag", "lag", ["topic"], registry=registry)
    seconds = Histogram("khedmat_test_seconds", "time", buckets=(0.1, 1.0), registry=registry)
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    names = bridge_registry(provider, registry, snapshot_max_age_s=0)  # every read sees the registry as it is now
    assert set(names) == {
        "khedmat_test_sent_total",
        "khedmat_test_lag",
        "khedmat_test_seconds_bucket",
        "khedmat_test_seconds_sum",
        "khedmat_test_seconds_count",
    }
    sent.labels("sms").inc(3)
    lag.labels("desk.status").set(42)
    seconds.observe(0.5)
    found = exported(reader)
    assert found["khedmat_test_sent_total"] == [({"channel": "sms"}, 3.0)]
    assert found["khedmat_test_lag"] == [({"topic": "desk.status"}, 42.0)]
    assert sorted(found["khedmat_test_seconds_bucket"], key=lambda point: str(point[0])) == [
        ({"le": "+Inf"}, 1.0),
        ({"le": "0.1"}, 0.0),
        ({"le": "1.0"}, 1.0),
    ]
    assert found["khedmat_test_seconds_count"] == [({}, 1.0)]
    sent.labels("sms").inc()
    assert exported(reader)["khedmat_test_sent_total"] == [({"channel": "sms"}, 4.0)]  # cumulative
    provider.shutdown()


def test_nothing_is_exported_without_an_otlp_endpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "OTEL_METRICS_EXPORTER"):
        monkeypatch.delenv(name, raising=False)
    assert not otlp_metrics_configured()
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318")
    assert otlp_metrics_configured()
    monkeypatch.setenv("OTEL_METRICS_EXPORTER", "none")
    assert not otlp_metrics_configured()


def test_one_export_round_collects_the_registry_once() -> None:
    registry = CollectorRegistry()
    for index in range(5):
        Counter(f"khedmat_test_{index}_total", "n", registry=registry).inc()
    collects = 0
    original = registry.collect

    def counting_collect() -> Any:
        nonlocal collects
        collects += 1
        return original()

    registry.collect = counting_collect  # type: ignore[method-assign]
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    bridge_registry(provider, registry)
    collects = 0
    assert len(exported(reader)) == 5
    assert collects == 1
    provider.shutdown()
