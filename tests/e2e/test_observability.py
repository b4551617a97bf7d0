"""What an SRE sees of one request, through the running desk exporting over OTLP to a real receiver.

One submitted request is one trace holding spans from all four services, inquiry's agency call and notify's
SMTP send, every span's parent in the same trace, and the Kafka hops with the messaging attributes, the key
as the same plain tracking code on every hop. The request is for the postal address certificate, so the postal
code travels to the postal service (in the body; a GET-by-path agency's URL would be scrubbed). Then the
whole log output of the services and every byte they exported is searched for the applicant's national ID,
mobile, email address and postal code, and every decoded span name and span, event and resource attribute
for those and the birth date, in every digit script and written form: none may appear.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import httpx
import pytest

from sandbox.agencies import postal_address
from shared.domain.digits import to_persian_digits
from shared.domain.identity import normalize_postal_code
from shared.domain.jalali import to_jalali_text
from shared.domain.tracking_code import format_for_display
from testkit.data import submission
from testkit.harness import SERVICES, Stack
from testkit.infra import Servers
from tests.e2e.test_request_flow import lookup, wait_for
from tests.otlp import OtlpReceiver, ReceivedSpan

# The services a submitted request passes through (identity is in none of its hops).
ON_THE_PATH = ("intake", "inquiry", "tracking", "notify")


@pytest.fixture(scope="module")
def receiver() -> Iterator[OtlpReceiver]:
    with OtlpReceiver() as running:
        yield running


@pytest.fixture(scope="module")
def stack(servers: Servers, tmp_path_factory: pytest.TempPathFactory, receiver: OtlpReceiver) -> Iterator[Stack]:
    """The desk as processes, configured by the standard OTEL_* variables only (as an operator would)."""
    stack = Stack(
        servers,
        Path(tmp_path_factory.mktemp("observed")),
        group_prefix="e2e-otlp",
        extra_env={
            "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
            "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
            "OTEL_BSP_SCHEDULE_DELAY": "200",
            "OTEL_METRIC_EXPORT_INTERVAL": "1000",
        },
    )
    with stack.running() as running:
        yield running


# A service whose automatic decision needs the postal service's address for the applicant's postal code.
POSTAL_SERVICE_ID = "postal-address-certificate"


def known_postal_code() -> str:
    """A valid postal code the sandbox postal service has an address for."""
    rng = random.Random()
    while True:
        code = "".join(rng.choice("13456789") for _ in range(5)) + f"{rng.randrange(10**5):05d}"
        if normalize_postal_code(code) == code and postal_address(code) is not None:
            return code


def _in_every_script(text: str) -> set[str]:
    arabic_indic = str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩")
    return {text, to_persian_digits(text), text.translate(arabic_indic)}


def personal_data_forms(applicant: dict[str, str], postal_code: str) -> set[str]:
    """Every way the applicant's personal data could be written: Latin, Persian and Arabic-Indic digits; a mobile
    as 09…, 9…, 98… and +98…; the birth date in ISO and Jalali, with - or /."""
    mobile = applicant["mobile"]
    born = date.fromisoformat(applicant["birth_date"])
    jalali = to_jalali_text(born)
    written = {
        applicant["national_id"],
        mobile,
        mobile[1:],
        "98" + mobile[1:],
        "+98" + mobile[1:],
        born.isoformat(),
        born.isoformat().replace("-", "/"),
        jalali,
        jalali.replace("/", "-"),
        postal_code,
    }
    return {applicant["email"]} | {form for text in written for form in _in_every_script(text)}


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _strings(item)
    elif isinstance(value, bytes):
        yield value.decode(errors="replace")
    elif value is not None:
        yield str(value)


@pytest.fixture(scope="module")
def journey(stack: Stack) -> dict[str, Any]:
    """One postal-address request submitted and followed until approved, emailed and texted three times."""
    body = submission()
    postal_code = known_postal_code()
    # Typed in Persian digits, as a citizen on a Persian keyboard would; intake normalises it.
    body.update(service_id=POSTAL_SERVICE_ID, fields={"postal_code": to_persian_digits(postal_code)})
    applicant = body["applicant"]
    response = httpx.post(stack.url("intake") + "/api/v1/requests", json=body, timeout=15)
    assert response.status_code == 202, response.text
    code = response.json()["tracking_code"]
    wait_for(
        lambda: (found := lookup(stack, code, applicant["national_id"])) and found["status"] == "APPROVED", timeout_s=40
    )
    shown = format_for_display(code)

    def told() -> bool:
        texts = [m for m in httpx.get(stack.sms_url + "/messages").json() if shown in m["message"]]
        mails = [
            m for m in httpx.get(stack.smtp_http_url + "/messages").json() if shown in (m["text"] or "") + m["subject"]
        ]
        return len(texts) >= 3 and len(mails) >= 3

    wait_for(told, timeout_s=40)
    return {"code": code, "applicant": applicant, "postal_code": postal_code}


def _root(receiver: OtlpReceiver) -> ReceivedSpan:
    [root] = [
        span
        for span in receiver.all_spans()
        if span.service == "intake"
        and span.kind == "SERVER"
        and span.attributes.get("http.route") == "/api/v1/requests"
    ]
    return root


def test_one_request_is_one_trace_across_the_desk(
    stack: Stack, receiver: OtlpReceiver, journey: dict[str, Any]
) -> None:
    wait_for(lambda: [s for s in receiver.all_spans() if s.name == "smtp send"], timeout_s=20)
    root = _root(receiver)

    def whole_trace() -> list[ReceivedSpan]:
        spans = receiver.trace(root.trace_id)
        services = {span.service for span in spans}
        smtp = [span for span in spans if span.name == "smtp send"]
        return spans if set(ON_THE_PATH) <= services and len(smtp) >= 3 else []

    spans = wait_for(whole_trace, timeout_s=30)
    ids = {span.span_id for span in spans}
    # Every span but the citizen's request hangs off another span of the same trace.
    orphans = [span.name for span in spans if span is not root and span.parent_span_id not in ids]
    assert orphans == [], orphans
    assert root.parent_span_id == ""
    # Resource attributes name the service, its version and the deployment.
    for span in spans:
        assert {"service.name", "service.version", "deployment.environment.name"} <= set(span.resource)

    # inquiry's call to the agency, and notify's SMTP send, are client spans of this trace.
    agency_calls = [
        s
        for s in spans
        if s.service == "inquiry" and s.kind == "CLIENT" and str(stack.agencies_port) in str(s.attributes)
    ]
    assert agency_calls, "no agency HTTP call in the trace"
    smtp = [s for s in spans if s.service == "notify" and s.name == "smtp send"]
    assert smtp and all(s.kind == "CLIENT" and s.attributes["server.port"] == stack.smtp_port for s in smtp)
    sms = [s for s in spans if s.service == "notify" and s.kind == "CLIENT" and "sms/send.json" in str(s.attributes)]
    assert len(sms) >= 3 and all("sandbox-sms-key" not in str(s.attributes) for s in sms)

    # The Kafka hops follow the messaging conventions: producers in intake, tracking's relay and inquiry;
    # consumers in inquiry, tracking and notify, each reading the topic it names.
    producers = [s for s in spans if s.kind == "PRODUCER"]
    consumers = [s for s in spans if s.kind == "CONSUMER"]
    assert {s.service for s in producers} >= {"intake", "inquiry", "tracking"}
    assert {s.service for s in consumers} >= {"inquiry", "tracking", "notify"}
    for span in producers + consumers:
        assert span.attributes.get("messaging.system") == "kafka", span
        assert str(span.attributes.get("messaging.destination.name", "")).startswith("desk."), span
    for span in consumers:
        group = span.attributes.get("messaging.consumer.group.name") or span.attributes.get(
            "messaging.kafka.consumer.group"
        )
        assert group, span
        assert span.parent_span_id in ids


def test_no_national_id_mobile_or_email_leaves_a_service_unmasked(
    stack: Stack, receiver: OtlpReceiver, journey: dict[str, Any]
) -> None:
    applicant = journey["applicant"]
    wait_for(lambda: receiver.trace(_root(receiver).trace_id), timeout_s=20)
    secrets = {
        applicant["national_id"],
        applicant["mobile"],
        applicant["mobile"][1:],  # 9121234567, as it would follow +98
        applicant["email"],
        journey["postal_code"],
    }
    logs = "\n".join(stack.processes[name].log_path.read_text(errors="replace") for name in SERVICES)
    assert journey["code"] in logs, "the services' logs were read"  # the tracking code is not personal data
    exported = b"".join(receiver.bodies)
    assert exported, "the services exported spans"
    for secret in secrets:
        assert secret not in logs, f"{secret[:3]}… in the services' logs"
        assert secret.encode() not in exported, f"{secret[:3]}… in the exported spans"


def test_no_span_attribute_holds_personal_data_in_any_form(
    stack: Stack, receiver: OtlpReceiver, journey: dict[str, Any]
) -> None:
    wait_for(lambda: [s for s in receiver.all_spans() if s.name == "smtp send"], timeout_s=20)
    trace_spans = wait_for(lambda: receiver.trace(_root(receiver).trace_id), timeout_s=20)
    # The postal code did travel: inquiry called the postal service with it.
    postal_calls = [
        s for s in trace_spans if s.service == "inquiry" and s.kind == "CLIENT" and "/postal/v1/" in str(s.attributes)
    ]
    assert postal_calls, "no call to the postal service in the trace"
    forms = personal_data_forms(journey["applicant"], journey["postal_code"])
    spans = receiver.all_spans()
    assert len(spans) > len(trace_spans) > 10
    for span in spans:
        where = f"{span.service} span {span.name!r}"
        texts = [("name", span.name)]
        texts += [(name, text) for name, value in span.attributes.items() for text in _strings(value)]
        texts += [(f"resource {name}", text) for name, value in span.resource.items() for text in _strings(value)]
        texts += [
            (f"event {event} {name}", text)
            for event, attributes in span.events
            for name, value in attributes.items()
            for text in _strings(value)
        ]
        for attribute, text in texts:
            leaked = [form for form in forms if form in text]
            assert not leaked, f"{where}: {attribute} holds personal data: {text.replace(leaked[0], '<HERE>')}"


def test_the_kafka_key_is_the_same_plain_tracking_code_on_every_hop(
    stack: Stack, receiver: OtlpReceiver, journey: dict[str, Any]
) -> None:
    wait_for(lambda: [s for s in receiver.all_spans() if s.name == "smtp send"], timeout_s=20)
    spans = receiver.trace(_root(receiver).trace_id)
    keyed = [s for s in spans if s.kind in ("PRODUCER", "CONSUMER") and "messaging.kafka.message.key" in s.attributes]
    assert {s.kind for s in keyed} == {"PRODUCER", "CONSUMER"}
    assert {s.service for s in keyed} >= set(ON_THE_PATH)
    assert {s.attributes["messaging.kafka.message.key"] for s in keyed} == {journey["code"]}


# What each service's /metrics must carry (the families, by their exposed names), after the request above.
COMMON_SERIES = {"khedmat_http_requests", "khedmat_http_request_seconds", "khedmat_dependency_up"}
CONSUMER_SERIES = {"khedmat_consumer_lag", "khedmat_dead_lettered"}
SERIES = {
    "intake": COMMON_SERIES | {"khedmat_rate_limit_fail_open"},
    "inquiry": COMMON_SERIES
    | CONSUMER_SERIES
    | {"khedmat_consumer_handler_seconds", "khedmat_inquiry_outcomes", "khedmat_inquiry_breaker_state"},
    "tracking": COMMON_SERIES
    | CONSUMER_SERIES
    | {
        "khedmat_tracking_fold_batch_seconds",
        "khedmat_tracking_requests",
        "khedmat_tracking_sla_breaches",
        "faststream_received_processed_messages_duration_seconds",
    },
    "notify": COMMON_SERIES
    | CONSUMER_SERIES
    | {"khedmat_consumer_handler_seconds", "khedmat_notify_notifications", "khedmat_notify_sms_gateway_sent"},
}


def test_each_service_exposes_the_metrics_that_matter(stack: Stack, journey: dict[str, Any]) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    for name in SERVICES:
        assert httpx.get(stack.url(name) + "/healthz").json()["status"] == "ok"
        ready = httpx.get(stack.url(name) + "/readyz").json()
        assert ready["ready"] and ready["degraded"] == [], (name, ready)

    def exposed(name: str) -> dict[str, Any]:
        text = httpx.get(stack.url(name) + "/metrics").text
        return {family.name: family for family in text_string_to_metric_families(text)}  # parses, or raises

    def samples(family: Any) -> list[Any]:
        return list(family.samples) if family is not None else []

    # The lag gauge is refreshed every few seconds by each consume loop: wait for it once.
    wait_for(lambda: all(samples(exposed(n).get("khedmat_consumer_lag")) for n in ON_THE_PATH[1:]), timeout_s=20)
    for name, wanted in SERIES.items():
        families = exposed(name)
        missing = wanted - set(families)
        assert not missing, f"{name} lacks {sorted(missing)}"
    notify = exposed("notify")
    by_outcome = {(s.labels["channel"], s.labels["outcome"]) for s in samples(notify["khedmat_notify_notifications"])}
    assert {("sms", "sent"), ("sms", "delivered"), ("email", "sent")} <= by_outcome
    lag = samples(exposed("notify")["khedmat_consumer_lag"])
    assert {s.labels["topic"] for s in lag} >= {"desk.status"} and all("partition" in s.labels for s in lag)
    states = {s.labels["state"]: s.value for s in samples(exposed("tracking")["khedmat_tracking_requests"])}
    assert "APPROVED" in states


def test_the_same_metrics_are_pushed_over_otlp_when_configured(receiver: OtlpReceiver, journey: dict[str, Any]) -> None:
    """OTEL_EXPORTER_OTLP_ENDPOINT is set for this stack: each service pushes its series, under their names."""

    def pushed() -> dict[str, set[str]]:
        found = dict(receiver.metrics)
        wanted = {"khedmat_http_requests_total", "khedmat_consumer_lag", "khedmat_notify_notifications_total"}
        return found if wanted <= set(found) and set(SERVICES) <= set().union(*found.values()) else {}

    metrics = wait_for(pushed, timeout_s=20)
    assert {"intake", "inquiry", "tracking", "notify"} <= metrics["khedmat_http_requests_total"]
    assert "notify" in metrics["khedmat_notify_notifications_total"]
    assert "tracking" in metrics["khedmat_tracking_requests"]
