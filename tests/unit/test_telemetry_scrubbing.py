"""What leaves a service in a span: URLs scrubbed of personal data, the Kafka key as the same plain text."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from aiokafka import ConsumerRecord
from faststream.kafka import TestKafkaBroker
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode

from shared.domain.digits import to_persian_digits
from shared.envelope import cloudevent_headers, event_key, event_value
from shared.kafka import DeadLetterPolicy, make_broker, publish_event
from shared.keyed_consumer import KeyOrderedConsumer
from shared.settings import KafkaSettings
from shared.telemetry import (
    REDACTED,
    make_tracer_provider,
    scrub_http_target,
    scrub_url,
    scrub_url_path,
    scrub_url_query,
    scrubbed_span,
)
from tests.unit.test_events import submitted

POSTAL_CODE = "1357913579"
NATIONAL_ID = "0012345679"
TRACKING_CODE = "140509071234567"  # 15 digits: not personal data, but no URL rule can tell it from an ID
ARABIC_INDIC = str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩")


@pytest.mark.parametrize(
    "code", [POSTAL_CODE, to_persian_digits(POSTAL_CODE), POSTAL_CODE.translate(ARABIC_INDIC)], ids=str
)
def test_a_postal_code_in_the_path_is_redacted_in_every_digit_script(code: str) -> None:
    url = f"http://127.0.0.1:18400/postal/v1/addresses/{code}"
    assert scrub_url(url) == "http://127.0.0.1:18400/postal/v1/addresses/{redacted}"
    assert scrub_url_path(f"/postal/v1/addresses/{code}") == "/postal/v1/addresses/{redacted}"


def test_percent_encoded_digits_and_emails_in_the_path_are_redacted() -> None:
    persian = "".join(f"%{byte:02X}" for byte in to_persian_digits(POSTAL_CODE).encode())
    assert scrub_url_path(f"/a/{persian}/b") == "/a/{redacted}/b"
    assert scrub_url_path("/users/citizen%40example.ir/mail") == "/users/{redacted}/mail"
    assert scrub_url_path("/users/citizen@example.ir") == "/users/{redacted}"


@pytest.mark.parametrize("birth_date", ["1990-01-31", "1368/11/11", "۱۳۶۸-۱۱-۱۱", "1368/11/11"])
def test_birth_dates_in_the_path_are_redacted(birth_date: str) -> None:
    assert scrub_url_path(f"/people/{birth_date}/x") == "/people/{redacted}/x"


def test_query_values_of_sensitive_keys_and_personal_looking_values_are_redacted() -> None:
    query = "national_id=1&Mobile=%2B989121234567&page=2&q=citizen%40example.ir&note=%DB%B0%DB%B9%DB%B1%DB%B2%DB%B1"
    assert scrub_url_query(query) == (f"national_id={REDACTED}&Mobile={REDACTED}&page=2&q={REDACTED}&note={REDACTED}")
    assert scrub_url_query("postal-code=x&lang=fa&flag") == f"postal-code={REDACTED}&lang=fa&flag"
    assert scrub_url_query("09121234567") == REDACTED  # a bare value is a key without "="


def test_what_is_not_personal_data_is_kept() -> None:
    url = "https://agency.example:18400/tax/v1/clearance?page=2&lang=fa"
    assert scrub_url(url) == url
    assert scrub_url_path("/postal/v1/addresses/{postal_code}") == "/postal/v1/addresses/{postal_code}"
    assert scrub_http_target("/v1/items/1234?limit=50") == "/v1/items/1234?limit=50"


def test_credentials_and_fragment_never_leave_with_a_url() -> None:
    assert scrub_url("http://user:secret@host:8080/a?x=1#frag") == "http://host:8080/a?x=1"


def test_tracking_codes_are_redacted_from_urls_like_any_long_digit_run() -> None:
    # The decision: a URL rule cannot tell a 15-digit tracking code from a national ID next to it; the code
    # stays findable in `messaging.kafka.message.key` and in the logs' `tracking_code`.
    assert scrub_http_target(f"/internal/requests/{TRACKING_CODE}?nid={NATIONAL_ID}") == (
        f"/internal/requests/{REDACTED}?nid={REDACTED}"
    )


@pytest.fixture
def exported() -> Iterator[tuple[TracerProvider, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    provider = make_tracer_provider("unit", extra_processors=[SimpleSpanProcessor(exporter)])
    yield provider, exporter
    provider.shutdown()


def test_every_url_attribute_of_a_span_is_scrubbed_on_its_way_to_a_processor(
    exported: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    provider, exporter = exported
    tracer = provider.get_tracer("unit")
    with tracer.start_as_current_span("GET", kind=SpanKind.CLIENT, attributes={"http.method": "GET"}) as span:
        # Set after start, as instrumentations set the route and the status: still scrubbed.
        span.set_attribute("http.url", f"http://h:1/postal/v1/addresses/{POSTAL_CODE}")
        span.set_attribute("url.full", f"http://h:1/postal/v1/addresses/{to_persian_digits(POSTAL_CODE)}")
        span.set_attribute("url.path", f"/postal/v1/addresses/{POSTAL_CODE}")
        span.set_attribute("url.query", f"email=a%40b.ir&mobile={to_persian_digits('09121234567')}")
        span.set_attribute("http.target", f"/x/{NATIONAL_ID}?page=3")
        span.set_attribute("http.route", "/postal/v1/addresses/{postal_code}")
        span.set_attribute("server.port", 18400)
        span.add_event("exception", {"exception.message": f"no such person {NATIONAL_ID}"})
        span.set_status(Status(StatusCode.ERROR, f"ValueError: {NATIONAL_ID}"))
    [finished] = exporter.get_finished_spans()
    attributes = dict(finished.attributes or {})
    assert attributes == {
        "http.method": "GET",
        "http.url": "http://h:1/postal/v1/addresses/{redacted}",
        "url.full": "http://h:1/postal/v1/addresses/{redacted}",
        "url.path": "/postal/v1/addresses/{redacted}",
        "url.query": "email={redacted}&mobile={redacted}",
        "http.target": "/x/{redacted}?page=3",
        "http.route": "/postal/v1/addresses/{postal_code}",
        "server.port": 18400,
    }
    [event] = finished.events
    assert NATIONAL_ID not in str(event.attributes) and NATIONAL_ID not in str(finished.status.description)
    assert (finished.kind, finished.name, finished.context) == (SpanKind.CLIENT, "GET", span.get_span_context())


def test_a_clean_span_is_passed_on_as_it_is(exported: tuple[TracerProvider, InMemorySpanExporter]) -> None:
    provider, exporter = exported
    with provider.get_tracer("unit").start_as_current_span("work", attributes={"http.route": "/a/{b}"}):
        pass
    [finished] = exporter.get_finished_spans()
    assert isinstance(finished, ReadableSpan) and scrubbed_span(finished) is finished


def _key_attributes(exporter: InMemorySpanExporter, kind: SpanKind) -> list[object]:
    return [
        span.attributes["messaging.kafka.message.key"]
        for span in exporter.get_finished_spans()
        if span.kind is kind and span.attributes and "messaging.kafka.message.key" in span.attributes
    ]


async def test_the_kafka_key_is_plain_text_on_faststream_producer_spans(
    exported: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    provider, exporter = exported
    event = submitted()
    broker = make_broker(kafka=KafkaSettings(), client_id="unit", tracer_provider=provider)

    async with TestKafkaBroker(broker):
        await publish_event(broker, event, topic="desk.requests", source="/unit")
    # faststream records the key as the raw bytes it was given: OTLP would send them as bytes (base64 in Jaeger).
    # Two producer spans ("create", then "publish"), each with the same text key.
    assert _key_attributes(exporter, SpanKind.PRODUCER) == [event.tracking_code] * 2


async def test_the_kafka_key_is_plain_text_on_the_key_ordered_consumers_span(
    exported: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    provider, exporter = exported
    event = submitted()

    async def handle(record: ConsumerRecord[bytes, bytes]) -> None:
        return None

    consumer = KeyOrderedConsumer(
        kafka=KafkaSettings(),
        topic="desk.requests",
        group_id="unit",
        handler=handle,
        dead_letters=DeadLetterPolicy(),
        tracer_provider=provider,
    )
    headers = [(name, value.encode()) for name, value in cloudevent_headers(event, source="/unit").items()]
    value = event_value(event)
    key = event_key(event)
    record = ConsumerRecord("desk.requests", 0, 7, 0, 0, key, value, None, len(key), len(value), headers)
    await consumer._handle_in_span(record, 1)
    assert _key_attributes(exporter, SpanKind.CONSUMER) == [event.tracking_code]
