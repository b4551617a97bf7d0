"""OTLP export of the Prometheus metrics, when the standard OTEL_* variables ask for it.

The services count with `prometheus_client` (scraped at `/metrics`, the usual way on Kubernetes). Where the
operator points `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_METRICS_ENDPOINT`) at a collector, and
`OTEL_METRICS_EXPORTER` is unset or names `otlp` (not `none`), the same series are also pushed over OTLP,
every `OTEL_METRIC_EXPORT_INTERVAL` ms (60 s by default): each sample of the default registry becomes an
observation of an asynchronous OpenTelemetry instrument of the sample's name (counters and histogram buckets,
sums and counts as cumulative counters, gauges as gauges), with the Prometheus labels as attributes.
One set of instruments, two ways out; nothing is counted twice in the code.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Iterable

from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from prometheus_client import REGISTRY, CollectorRegistry

from shared.telemetry import otlp_exporter_selected

# Prometheus family types whose samples only ever grow (exported as cumulative counters).
_MONOTONIC = frozenset({"counter", "histogram", "summary"})


def otlp_metrics_configured() -> bool:
    """True when the standard OTEL_* variables name an OTLP endpoint for metrics and do not turn metrics off
    (OTEL_METRICS_EXPORTER=none: e.g. `make run`, whose Jaeger takes traces only)."""
    endpoint = os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or os.environ.get("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT")
    return bool(endpoint) and otlp_exporter_selected("OTEL_METRICS_EXPORTER")


class _Snapshot:
    """The registry's samples by name, collected once per export round and shared by every instrument's
    callback (collecting the whole registry in each of some eighty callbacks would repeat the work each time)."""

    def __init__(self, registry: CollectorRegistry, max_age_s: float = 1.0) -> None:
        self.registry, self.max_age_s = registry, max_age_s
        self._taken = -math.inf
        self._samples: dict[str, list[Observation]] = {}

    def observations(self, sample_name: str) -> list[Observation]:
        if time.monotonic() - self._taken > self.max_age_s:
            samples: dict[str, list[Observation]] = {}
            for family in self.registry.collect():
                for sample in family.samples:
                    samples.setdefault(sample.name, []).append(Observation(sample.value, dict(sample.labels)))
            self._samples, self._taken = samples, time.monotonic()
        return self._samples.get(sample_name, [])


def _sample_reader(snapshot: _Snapshot, sample_name: str) -> Callable[[CallbackOptions], Iterable[Observation]]:
    def observe(_options: CallbackOptions) -> Iterable[Observation]:
        return snapshot.observations(sample_name)

    return observe


def bridge_registry(
    provider: MeterProvider, registry: CollectorRegistry = REGISTRY, *, snapshot_max_age_s: float = 1.0
) -> list[str]:
    """Register one asynchronous instrument per sample name of `registry`; returns the names registered.

    Families are enumerated once, after the service's modules have registered their collectors (at start).
    """
    meter = provider.get_meter("khedmat.prometheus")
    snapshot = _Snapshot(registry, max_age_s=snapshot_max_age_s)
    names: list[str] = []
    for family in registry.collect():
        suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count")}.get(family.type, ("",))
        create = meter.create_observable_counter if family.type in _MONOTONIC else meter.create_observable_gauge
        for suffix in suffixes:
            sample_name = family.name + suffix
            create(
                sample_name,
                callbacks=[_sample_reader(snapshot, sample_name)],
                description=family.documentation,
            )
            names.append(sample_name)
    return names


def start_metrics_export(resource: Resource) -> MeterProvider | None:
    """A meter provider pushing the registry over OTLP/HTTP, or None when no OTLP endpoint is configured."""
    if not otlp_metrics_configured():
        return None
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter

    provider = MeterProvider(resource=resource, metric_readers=[PeriodicExportingMetricReader(OTLPMetricExporter())])
    bridge_registry(provider)
    return provider
