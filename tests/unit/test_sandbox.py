"""Behaviour of the sandbox servers that stand in for agencies, the SMS provider and mail."""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import logging
import time
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from email.message import EmailMessage

import aiosmtplib
import httpx
import pytest
import pytest_asyncio
from fastapi import FastAPI, Request

from sandbox.agencies import (
    complete_national_id,
    create_agencies_app,
    criminal_record_clean,
    is_alive,
    is_valid_national_id,
    person_name,
    postal_address,
    property_owner,
    registered_birth_date,
    registered_mobile,
    tax_clearance,
)
from sandbox.faults import AGENCIES, FaultConfig, FaultRegistry
from sandbox.sms_gateway import SmsOutbox, create_sms_gateway_app
from sandbox.smtp_sink import MailStore, SmtpSink, create_smtp_sink_http_app
from tests.asgi import asgi_client

pytestmark = pytest.mark.asyncio

NATIONAL_ID = "0012345679"
IDENTITY = "/civil-registry/v1/identity"
SMS_SEND = "/v1/sandbox-sms-key/sms/send.json"


def client_for(app: FastAPI) -> httpx.AsyncClient:
    return asgi_client(app, "http://sandbox.test")


def mail(
    text: str = "x", *, subject: str | None = None, to: str = "a@example.ir", sender: str = "no-reply@khedmat.ir"
) -> EmailMessage:
    """A plain-text message as a mailer composes one."""
    message = EmailMessage()
    message["From"] = sender
    message["To"] = to
    if subject is not None:
        message["Subject"] = subject
    message.set_content(text)
    return message


def first_national_id(predicate: Callable[[str], bool]) -> str:
    """The first valid national ID (by its nine leading digits) that satisfies predicate."""
    for n in itertools.count(1_000_000):
        national_id = complete_national_id(f"{n:09d}")
        if is_valid_national_id(national_id) and predicate(national_id):
            return national_id
    raise AssertionError("unreachable")


@pytest_asyncio.fixture
async def agencies() -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(create_agencies_app(faults=FaultRegistry(seed=7, timeout_s=0.2))) as client:
        yield client


@pytest_asyncio.fixture
async def sms() -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(create_sms_gateway_app()) as client:
        yield client


@pytest_asyncio.fixture
async def smtp_sink() -> AsyncIterator[SmtpSink]:
    async with SmtpSink(MailStore()) as sink:
        yield sink


# --- Civil registry ------------------------------------------------------------------------------------


async def test_identity_matches_when_birth_date_equals_registered_date(agencies: httpx.AsyncClient) -> None:
    birth_date = registered_birth_date(NATIONAL_ID)

    response = await agencies.post(IDENTITY, json={"national_id": NATIONAL_ID, "birth_date": birth_date.isoformat()})

    assert response.status_code == 200
    first_name, last_name = person_name(NATIONAL_ID)
    assert response.json() == {
        "national_id": NATIONAL_ID,
        "match": True,
        "alive": True,
        "first_name": first_name,
        "last_name": last_name,
    }


async def test_identity_mismatch_when_birth_date_differs(agencies: httpx.AsyncClient) -> None:
    wrong_date = registered_birth_date(NATIONAL_ID) + timedelta(days=1)

    response = await agencies.post(IDENTITY, json={"national_id": NATIONAL_ID, "birth_date": wrong_date.isoformat()})

    assert response.status_code == 200
    assert response.json()["match"] is False


async def test_identity_reports_deceased_person_as_not_alive(agencies: httpx.AsyncClient) -> None:
    deceased = first_national_id(lambda nid: int(hashlib.sha256(nid.encode()).hexdigest(), 16) % 97 == 0)
    assert not is_alive(deceased)

    response = await agencies.post(
        IDENTITY,
        json={"national_id": deceased, "birth_date": registered_birth_date(deceased).isoformat()},
    )

    assert response.json()["alive"] is False
    assert response.json()["match"] is True


@pytest.mark.parametrize(
    "national_id",
    [
        "0012345678",  # wrong check digit
        "1111111111",  # check digit happens to fit, but all-alike IDs are never issued
        "001234567",  # too short
        "00123456790",  # too long
        "00123456a9",
        "۰۰۱۲۳۴۵۶۷۹",  # Persian digits are not accepted
        "",
    ],
)
async def test_identity_rejects_invalid_national_id(agencies: httpx.AsyncClient, national_id: str) -> None:
    response = await agencies.post(IDENTITY, json={"national_id": national_id, "birth_date": "1990-01-31"})

    assert response.status_code == 422
    assert response.json() == {"error": "invalid_national_id"}


@pytest.mark.parametrize(
    "content",
    [
        b"{not json",
        b"[]",
        b'{"national_id": "0012345679"}',
        b'{"national_id": "0012345679", "birth_date": "x"}',
    ],
)
async def test_identity_rejects_malformed_requests_with_422(agencies: httpx.AsyncClient, content: bytes) -> None:
    response = await agencies.post(IDENTITY, content=content, headers={"content-type": "application/json"})

    assert response.status_code == 422
    assert response.json()["error"] == "invalid_request"


# --- Other agencies --------------------------------------------------------------------------------------


def test_each_national_id_has_one_registered_mobile() -> None:
    mobile = registered_mobile(NATIONAL_ID)
    assert mobile == f"09{int(hashlib.sha256(f'mobile:{NATIONAL_ID}'.encode()).hexdigest(), 16) % 10**9:09d}"
    assert registered_mobile(complete_national_id("123456789")) != mobile


async def test_mobile_ownership_is_the_registered_mobile_only(agencies: httpx.AsyncClient) -> None:
    mobile = registered_mobile(NATIONAL_ID)
    others = ["09121234567", "09351112233", mobile[:-1] + ("0" if mobile[-1] != "0" else "1")]

    owned = await agencies.post("/mobile-registry/v1/ownership", json={"national_id": NATIONAL_ID, "mobile": mobile})
    assert owned.status_code == 200
    assert owned.json() == {"owned": True}
    for other in others:
        answer = await agencies.post(
            "/mobile-registry/v1/ownership", json={"national_id": NATIONAL_ID, "mobile": other}
        )
        assert answer.json() == {"owned": False}


async def test_mobile_ownership_rejects_malformed_mobile(agencies: httpx.AsyncClient) -> None:
    response = await agencies.post(
        "/mobile-registry/v1/ownership", json={"national_id": NATIONAL_ID, "mobile": "+98912123"}
    )

    assert response.status_code == 422
    assert response.json() == {"error": "invalid_mobile"}


async def test_postal_address_is_a_deterministic_persian_address(agencies: httpx.AsyncClient) -> None:
    code = next(c for c in (f"{n:010d}" for n in range(1_000_000_000, 1_000_000_100)) if postal_address(c))

    first = await agencies.post("/postal/v1/address", json={"postal_code": code})
    second = await agencies.post("/postal/v1/address", json={"postal_code": code})

    assert first.status_code == 200
    assert first.json() == second.json()
    assert first.json()["postal_code"] == code
    assert first.json()["city"] in first.json()["full_address"]


async def test_postal_unknown_code_answers_404(agencies: httpx.AsyncClient) -> None:
    code = next(
        c
        for c in (f"{n:010d}" for n in range(1_000_000_000, 1_000_001_000))
        if int(hashlib.sha256(c.encode()).hexdigest(), 16) % 13 == 0
    )

    response = await agencies.post("/postal/v1/address", json={"postal_code": code})

    assert response.status_code == 404
    assert response.json() == {"error": "postal_code_not_found"}


async def test_postal_malformed_code_answers_422(agencies: httpx.AsyncClient) -> None:
    response = await agencies.post("/postal/v1/address", json={"postal_code": "12345"})

    assert response.status_code == 422
    assert response.json() == {"error": "invalid_postal_code"}


async def test_tax_clearance_reports_debt_only_for_debtors(agencies: httpx.AsyncClient) -> None:
    debtor = first_national_id(lambda nid: not tax_clearance(nid)[0])
    cleared = first_national_id(lambda nid: tax_clearance(nid)[0])

    debtor_answer = (await agencies.post("/tax/v1/clearance", json={"national_id": debtor})).json()
    cleared_answer = (await agencies.post("/tax/v1/clearance", json={"national_id": cleared})).json()

    assert debtor_answer["cleared"] is False
    assert debtor_answer["debt_rials"] == tax_clearance(debtor)[1] > 0
    assert cleared_answer == {"cleared": True, "debt_rials": 0}


async def test_judiciary_reports_criminal_records(agencies: httpx.AsyncClient) -> None:
    convicted = first_national_id(lambda nid: not criminal_record_clean(nid))

    clean = await agencies.post("/judiciary/v1/criminal-record", json={"national_id": NATIONAL_ID})
    record = await agencies.post("/judiciary/v1/criminal-record", json={"national_id": convicted})

    assert clean.json() == {"clean": criminal_record_clean(NATIONAL_ID)}
    assert record.json() == {"clean": False}


async def test_property_registry_reports_ownership(agencies: httpx.AsyncClient) -> None:
    answers = {}
    for property_id in ("123/45", "678/9", "1000/1", "42/7", "5/5", "77/1"):
        response = await agencies.post(
            "/property-registry/v1/ownership",
            json={"national_id": NATIONAL_ID, "property_id": property_id},
        )
        answers[property_id] = response.json()["owner"]

    assert answers == {pid: property_owner(NATIONAL_ID, pid) for pid in answers}


async def test_agencies_reject_invalid_national_ids(agencies: httpx.AsyncClient) -> None:
    for path, body in [
        ("/tax/v1/clearance", {"national_id": "0012345678"}),
        ("/judiciary/v1/criminal-record", {"national_id": "0012345678"}),
        ("/property-registry/v1/ownership", {"national_id": "0012345678", "property_id": "1/1"}),
        ("/mobile-registry/v1/ownership", {"national_id": "0012345678", "mobile": "09121234567"}),
    ]:
        response = await agencies.post(path, json=body)
        assert (response.status_code, response.json()) == (422, {"error": "invalid_national_id"}), path


# --- Fault injection -------------------------------------------------------------------------------------


async def identity_status(client: httpx.AsyncClient) -> int:
    response = await client.post(IDENTITY, json={"national_id": NATIONAL_ID, "birth_date": "1990-01-31"})
    return response.status_code


async def test_down_agency_answers_503_while_others_answer(agencies: httpx.AsyncClient) -> None:
    assert (await agencies.put("/control/faults/civil-registry", json={"down": True})).status_code == 200

    response = await agencies.post(IDENTITY, json={"national_id": NATIONAL_ID, "birth_date": "1990-01-31"})
    other = await agencies.post("/tax/v1/clearance", json={"national_id": NATIONAL_ID})

    assert response.status_code == 503
    assert response.json() == {"error": "service_unavailable"}
    assert other.status_code == 200


async def test_error_rate_one_makes_every_call_fail_with_503(agencies: httpx.AsyncClient) -> None:
    await agencies.put("/control/faults/civil-registry", json={"error_rate": 1.0})

    assert [await identity_status(agencies) for _ in range(5)] == [503] * 5


async def test_deleting_faults_makes_agencies_healthy_again(agencies: httpx.AsyncClient) -> None:
    await agencies.put("/control/faults/civil-registry", json={"down": True})

    assert (await agencies.delete("/control/faults")).status_code == 204

    assert await identity_status(agencies) == 200
    assert (await agencies.get("/control/faults/civil-registry")).json() == FaultConfig().model_dump()


async def test_get_faults_lists_every_agency(agencies: httpx.AsyncClient) -> None:
    await agencies.put("/control/faults/postal", json={"latency_ms": 5, "error_rate": 0.25})

    faults = (await agencies.get("/control/faults")).json()

    assert set(faults) == set(AGENCIES)
    assert faults["postal"] == FaultConfig(latency_ms=5, error_rate=0.25).model_dump()


@pytest.mark.parametrize(
    "faults",
    # The fixture's registry stalls a timeout for 0.2 s instead of the default 30 s.
    [{"latency_ms": 200}, {"timeout_rate": 1.0}],
    ids=["latency", "timeout"],
)
async def test_a_slow_fault_stalls_then_answers(agencies: httpx.AsyncClient, faults: dict[str, float]) -> None:
    await agencies.put("/control/faults/civil-registry", json=faults)

    started = time.monotonic()
    status = await identity_status(agencies)

    assert status == 200
    assert time.monotonic() - started >= 0.2


async def test_drop_fault_surfaces_as_remote_protocol_error(agencies: httpx.AsyncClient) -> None:
    await agencies.put("/control/faults/civil-registry", json={"drop_rate": 1.0})

    with pytest.raises(httpx.RemoteProtocolError):
        await identity_status(agencies)


async def test_fault_rates_are_deterministic_for_a_seed() -> None:
    async def statuses(seed: int) -> list[int]:
        async with client_for(create_agencies_app(faults=FaultRegistry(seed=seed))) as client:
            await client.put("/control/faults/civil-registry", json={"error_rate": 0.5})
            return [await identity_status(client) for _ in range(30)]

    first, again, other_seed = await statuses(1), await statuses(1), await statuses(2)

    assert first == again
    assert first != other_seed
    assert {200, 503} <= set(first)


async def test_faults_reject_unknown_agency_with_404(agencies: httpx.AsyncClient) -> None:
    response = await agencies.put("/control/faults/passport-office", json={"down": True})

    assert response.status_code == 404
    assert response.json() == {"error": "unknown_agency"}


@pytest.mark.parametrize("body", [{"error_rate": 1.5}, {"timeout_rate": -0.1}, {"latency_ms": -1}, {"eror_rate": 0.5}])
async def test_faults_reject_invalid_settings_with_422(agencies: httpx.AsyncClient, body: dict[str, object]) -> None:
    response = await agencies.put("/control/faults/tax", json=body)

    assert response.status_code == 422


async def test_health_and_control_endpoints_are_never_faulted(agencies: httpx.AsyncClient) -> None:
    for agency in AGENCIES:
        await agencies.put(f"/control/faults/{agency}", json={"down": True})

    assert (await agencies.get("/healthz")).json() == {"status": "ok"}
    assert (await agencies.get("/control/stats")).status_code == 200


# --- Call statistics -------------------------------------------------------------------------------------


async def test_stats_count_calls_per_agency(agencies: httpx.AsyncClient) -> None:
    for _ in range(3):
        await identity_status(agencies)
    await agencies.post("/tax/v1/clearance", json={"national_id": NATIONAL_ID})
    await agencies.get("/healthz")

    stats = (await agencies.get("/control/stats")).json()

    assert stats["civil-registry"]["calls"] == 3
    assert stats["tax"]["calls"] == 1
    assert stats["postal"]["calls"] == 0


async def test_stats_count_faulted_calls_by_kind(agencies: httpx.AsyncClient) -> None:
    await agencies.put("/control/faults/civil-registry", json={"down": True})
    await identity_status(agencies)
    await agencies.put("/control/faults/civil-registry", json={"error_rate": 1.0})
    await identity_status(agencies)
    await agencies.put("/control/faults/civil-registry", json={"drop_rate": 1.0})
    with pytest.raises(httpx.RemoteProtocolError):
        await identity_status(agencies)

    stats = (await agencies.get("/control/stats")).json()["civil-registry"]

    assert stats == {"calls": 3, "down": 1, "errors": 1, "timeouts": 0, "drops": 1}


async def test_deleting_stats_zeroes_counters(agencies: httpx.AsyncClient) -> None:
    await identity_status(agencies)

    assert (await agencies.delete("/control/stats")).status_code == 204

    stats = (await agencies.get("/control/stats")).json()
    assert all(counters["calls"] == 0 for counters in stats.values())


# --- SMS gateway -----------------------------------------------------------------------------------------


async def test_sms_send_with_valid_key_is_accepted_and_recorded(sms: httpx.AsyncClient) -> None:
    response = await sms.post(
        SMS_SEND, data={"receptor": "09121234567", "message": "کد تایید: ۱۲۳۴", "localid": "req-1"}
    )

    assert response.status_code == 200
    body = response.json()
    assert body["return"] == {"status": 200, "message": "ok"}
    [entry] = body["entries"]
    assert entry["status"] == 1
    assert (entry["receptor"], entry["message"], entry["localid"]) == (
        "09121234567",
        "کد تایید: ۱۲۳۴",
        "req-1",
    )
    [recorded] = (await sms.get("/messages")).json()
    assert recorded["messageid"] == entry["messageid"]
    assert recorded["message"] == "کد تایید: ۱۲۳۴"
    assert recorded["localid"] == "req-1"
    assert recorded["received_at"]


async def test_sms_send_accepts_json_body_and_query_parameters(sms: httpx.AsyncClient) -> None:
    by_json = await sms.post(SMS_SEND, json={"receptor": "09121234567", "message": "a", "sender": "3000"})
    by_query = await sms.get(SMS_SEND, params={"receptor": "09121234568", "message": "b"})

    assert by_json.status_code == by_query.status_code == 200
    recorded = (await sms.get("/messages")).json()
    assert [(m["receptor"], m["message"], m["sender"]) for m in recorded] == [
        ("09121234567", "a", "3000"),
        ("09121234568", "b", "10004346"),
    ]


async def test_sms_send_with_wrong_key_is_rejected_with_401(sms: httpx.AsyncClient) -> None:
    response = await sms.post("/v1/not-the-key/sms/send.json", data={"receptor": "09121234567", "message": "hi"})

    assert response.status_code == 401
    assert response.json() == {"return": {"status": 401, "message": "invalid api key"}}
    assert (await sms.get("/messages")).json() == []


async def test_sms_gateway_accepts_only_configured_api_keys() -> None:
    async with client_for(create_sms_gateway_app(api_keys={"k1", "k2"})) as client:
        accepted = await client.post("/v1/k2/sms/send.json", data={"receptor": "09121234567", "message": "x"})
        rejected = await client.post(SMS_SEND, data={"receptor": "09121234567", "message": "x"})

    assert (accepted.status_code, rejected.status_code) == (200, 401)


async def test_sms_send_to_several_receptors_returns_one_entry_each(sms: httpx.AsyncClient) -> None:
    response = await sms.post(SMS_SEND, data={"receptor": "09121234567,09351234567", "message": "x", "localid": "a,b"})

    entries = response.json()["entries"]
    assert [(e["receptor"], e["localid"]) for e in entries] == [("09121234567", "a"), ("09351234567", "b")]
    assert entries[0]["messageid"] != entries[1]["messageid"]


@pytest.mark.parametrize(
    ("fields", "status"),
    [
        ({"message": "x"}, 400),
        ({"receptor": "09121234567"}, 400),
        ({"receptor": "0212345678", "message": "x"}, 411),
        ({"receptor": "09121234567", "message": "x" * 901}, 413),
    ],
)
async def test_sms_send_rejects_bad_requests_with_provider_status(
    sms: httpx.AsyncClient, fields: dict[str, str], status: int
) -> None:
    response = await sms.post(SMS_SEND, data=fields)

    assert response.status_code == status
    assert response.json()["return"]["status"] == status
    assert (await sms.get("/messages")).json() == []


async def test_sms_messages_can_be_filtered_and_cleared(sms: httpx.AsyncClient) -> None:
    await sms.post(SMS_SEND, data={"receptor": "09121234567", "message": "one"})
    await sms.post(SMS_SEND, data={"receptor": "09350000000", "message": "two"})

    filtered = (await sms.get("/messages", params={"receptor": "09350000000"})).json()
    cleared = await sms.delete("/messages")

    assert [m["message"] for m in filtered] == ["two"]
    assert cleared.status_code == 204
    assert (await sms.get("/messages")).json() == []


async def test_sms_message_ids_keep_growing_after_clear(sms: httpx.AsyncClient) -> None:
    first = (await sms.post(SMS_SEND, data={"receptor": "09121234567", "message": "x"})).json()
    await sms.delete("/messages")
    second = (await sms.post(SMS_SEND, data={"receptor": "09121234567", "message": "x"})).json()

    assert second["entries"][0]["messageid"] > first["entries"][0]["messageid"]


async def test_sms_faults_make_sends_fail_with_503_until_reset(sms: httpx.AsyncClient) -> None:
    await sms.put("/control/faults", json={"down": True})
    down = await sms.post(SMS_SEND, data={"receptor": "09121234567", "message": "x"})
    await sms.put("/control/faults", json={"error_rate": 1.0})
    erroring = await sms.post(SMS_SEND, data={"receptor": "09121234567", "message": "x"})
    await sms.delete("/control/faults")
    healthy = await sms.post(SMS_SEND, data={"receptor": "09121234567", "message": "x"})

    assert (down.status_code, erroring.status_code, healthy.status_code) == (503, 503, 200)
    assert down.json() == {"return": {"status": 503, "message": "service unavailable"}}
    assert len((await sms.get("/messages")).json()) == 1


async def test_sms_latency_fault_delays_sends(sms: httpx.AsyncClient) -> None:
    await sms.put("/control/faults", json={"latency_ms": 150})

    started = time.monotonic()
    response = await sms.post(SMS_SEND, data={"receptor": "09121234567", "message": "x"})

    assert response.status_code == 200
    assert time.monotonic() - started >= 0.15


def receipt_collector(status_code: int = 200) -> tuple[FastAPI, list[dict[str, object]]]:
    received: list[dict[str, object]] = []
    app = FastAPI()

    @app.post("/sms/receipts")
    async def receipt(request: Request) -> dict[str, str]:
        received.append(await request.json())
        if status_code != 200:
            raise RuntimeError("receiver broken")
        return {"status": "ok"}

    return app, received


async def test_sms_posts_delivery_receipt_to_receipt_url() -> None:
    collector, received = receipt_collector()
    gateway = create_sms_gateway_app(
        receipt_url="http://notify.test/sms/receipts",
        receipt_transport=httpx.ASGITransport(app=collector),
    )
    async with client_for(gateway) as client:
        response = await client.post(SMS_SEND, data={"receptor": "09121234567", "message": "x", "localid": "n-9"})

    messageid = response.json()["entries"][0]["messageid"]
    assert received == [{"messageid": messageid, "localid": "n-9", "status": "delivered"}]


async def test_sms_receipt_failures_are_logged_and_do_not_fail_the_send(
    caplog: pytest.LogCaptureFixture,
) -> None:
    collector, _ = receipt_collector(status_code=500)
    gateway = create_sms_gateway_app(
        receipt_url="http://notify.test/sms/receipts",
        receipt_transport=httpx.ASGITransport(app=collector, raise_app_exceptions=False),
    )
    with caplog.at_level(logging.WARNING, logger="sandbox.sms_gateway"):
        async with client_for(gateway) as client:
            response = await client.post(SMS_SEND, data={"receptor": "09121234567", "message": "x"})

    assert response.status_code == 200
    assert "delivery receipt" in caplog.text


async def test_sms_outbox_wait_for_returns_matching_message() -> None:
    outbox = SmsOutbox()
    async with client_for(create_sms_gateway_app(outbox=outbox)) as client:
        await client.post(SMS_SEND, data={"receptor": "09121234567", "message": "code 42"})

    async with asyncio.timeout(1):
        found = await outbox.wait_for(lambda m: "42" in m.message)

    assert found.receptor == "09121234567"


# --- SMTP sink -------------------------------------------------------------------------------------------


async def test_smtp_sink_decodes_persian_subject_and_body(smtp_sink: SmtpSink) -> None:
    message = mail(
        "سلام، کد پیگیری شما ۱۲۳۴۵ است.",
        subject="درخواست شما ثبت شد",
        to="citizen@example.ir",
        sender="Khedmat <no-reply@khedmat.ir>",
    )

    await aiosmtplib.send(message, hostname="127.0.0.1", port=smtp_sink.port)

    [received] = smtp_sink.store.list()
    assert received.subject == "درخواست شما ثبت شد"
    assert received.text == "سلام، کد پیگیری شما ۱۲۳۴۵ است.\n"
    assert received.mail_from == "no-reply@khedmat.ir"
    assert received.rcpt_to == ["citizen@example.ir"]
    assert received.size > 0


async def test_smtp_sink_decodes_encoded_word_subject_and_base64_body(smtp_sink: SmtpSink) -> None:
    raw = (
        b"From: no-reply@khedmat.ir\r\n"
        b"To: citizen@example.ir\r\n"
        b"Subject: =?utf-8?b?2K/Ysdiu2YjYp9iz2Kog2LTZhdin?=\r\n"
        b"MIME-Version: 1.0\r\n"
        b"Content-Type: text/plain; charset=utf-8\r\n"
        b"Content-Transfer-Encoding: base64\r\n"
        b"\r\n"
        b"2LPZhNin2YU=\r\n"
    )

    await aiosmtplib.send(
        raw,
        sender="no-reply@khedmat.ir",
        recipients=["citizen@example.ir"],
        hostname="127.0.0.1",
        port=smtp_sink.port,
    )

    [received] = smtp_sink.store.list()
    assert received.subject == "درخواست شما"
    assert received.text == "سلام"
    assert received.size == len(raw)


async def test_smtp_sink_keeps_envelope_recipients_including_bcc(smtp_sink: SmtpSink) -> None:
    message = mail(subject="x")
    message["Bcc"] = "audit@khedmat.ir"

    await aiosmtplib.send(message, hostname="127.0.0.1", port=smtp_sink.port)

    [received] = smtp_sink.store.list()
    assert received.rcpt_to == ["a@example.ir", "audit@khedmat.ir"]
    assert received.to_header == "a@example.ir"


async def test_smtp_sink_extracts_text_and_html_alternatives(smtp_sink: SmtpSink) -> None:
    message = mail("متن ساده", subject="اطلاعیه")
    message.add_alternative("<p>متن <b>HTML</b></p>", subtype="html")

    await aiosmtplib.send(message, hostname="127.0.0.1", port=smtp_sink.port)

    [received] = smtp_sink.store.list()
    assert received.text is not None and received.text.strip() == "متن ساده"
    assert received.html is not None and "<b>HTML</b>" in received.html


async def test_smtp_sink_accepts_any_credentials(smtp_sink: SmtpSink) -> None:
    message = mail()

    await aiosmtplib.send(message, hostname="127.0.0.1", port=smtp_sink.port, username="anyone", password="anything")

    assert len(smtp_sink.store.list()) == 1


async def test_smtp_sink_rejects_wrong_credentials_when_configured() -> None:
    message = mail()

    async with SmtpSink(MailStore(), credentials={"notify": "s3cret"}) as sink:
        with pytest.raises(aiosmtplib.SMTPAuthenticationError):
            await aiosmtplib.send(message, hostname="127.0.0.1", port=sink.port, username="notify", password="no")
        await aiosmtplib.send(message, hostname="127.0.0.1", port=sink.port, username="notify", password="s3cret")

        assert len(sink.store.list()) == 1


async def test_smtp_sink_http_app_lists_filters_and_clears_messages(smtp_sink: SmtpSink) -> None:
    for recipient in ("a@example.ir", "b@example.ir"):
        await aiosmtplib.send(
            mail(subject=f"پیام برای {recipient}", to=recipient), hostname="127.0.0.1", port=smtp_sink.port
        )

    async with client_for(create_smtp_sink_http_app(smtp_sink.store)) as client:
        listed = (await client.get("/messages")).json()
        filtered = (await client.get("/messages", params={"to": "B@example.ir"})).json()
        cleared = await client.delete("/messages")
        after = (await client.get("/messages")).json()
        health = (await client.get("/healthz")).json()

    assert [m["subject"] for m in listed] == ["پیام برای a@example.ir", "پیام برای b@example.ir"]
    assert listed[0]["rcpt_to"] == ["a@example.ir"]
    assert [m["rcpt_to"] for m in filtered] == [["b@example.ir"]]
    assert cleared.status_code == 204
    assert after == []
    assert health == {"status": "ok"}


async def test_smtp_sink_stop_closes_open_client_connections() -> None:
    sink = SmtpSink(MailStore())
    await sink.start()
    client = aiosmtplib.SMTP(hostname="127.0.0.1", port=sink.port)
    await client.connect()

    await sink.stop()

    with pytest.raises(aiosmtplib.SMTPException):
        await client.noop()


# --- Settings --------------------------------------------------------------------------------------------


async def test_mail_store_wait_for_gives_up_when_asked_to() -> None:
    store = MailStore()

    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.1):
            await store.wait_for(lambda message: True)


def test_a_resend_with_the_same_localid_is_not_texted_twice() -> None:
    from sandbox.sms_gateway import SmsOutbox

    outbox = SmsOutbox()
    first = outbox.add(receptor="09121234567", message="سلام", sender="1000", localid="7")
    again = outbox.add(receptor="09121234567", message="سلام", sender="1000", localid="7")
    other = outbox.add(receptor="09121234567", message="سلام", sender="1000", localid="8")
    assert again == first and other.messageid != first.messageid
    assert len(outbox.list()) == 2
