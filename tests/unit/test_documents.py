"""Documents: the local content-addressed store, sniffing by content, upload and reference checks, the upload API."""

from __future__ import annotations

import hashlib
import io
import os
import struct
import zlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, UploadFile
from opentelemetry.sdk.trace import TracerProvider

from services.intake.adapters_blobs import (
    BlobInfo,
    BlobStoreUnavailable,
    LocalBlobStore,
    blob_store_from_settings,
    sniff,
)
from services.intake.app import create_app
from services.intake.documents_api import MULTIPART_OVERHEAD_BYTES, _read_at_most
from services.intake.domain import FieldError
from services.intake.service_documents import (
    DocumentErrorCode,
    are_document_errors,
    check_upload,
    validate_document_refs,
)
from services.intake.settings import IntakeSettings
from shared.catalog import Catalog, DocumentFormat, RequiredDocument, ServiceDefinition, Text, load_catalog
from shared.events import DocumentRef
from tests.problems import assert_problem
from tests.unit.intake_fakes import AllowAll

PROBLEM_JSON = "application/problem+json"
SERVICE_ID = "documents-test-service"


# --- sample files, built byte by byte -------------------------------------------------------------


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def tiny_png() -> bytes:
    """A valid 1x1 greyscale PNG."""
    header = struct.pack(">IIBBBBB", 1, 1, 8, 0, 0, 0, 0)
    pixels = zlib.compress(b"\x00\x00")  # one scanline: filter byte 0, one black pixel
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", pixels) + _png_chunk(b"IEND", b"")


def tiny_pdf() -> bytes:
    """A minimal PDF 1.4 with one empty page and a correct cross-reference table."""
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 72 72] >>",
    ]
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


def tiny_jpeg() -> bytes:
    """SOI, a JFIF APP0 segment, a comment and EOI: the headers a JPEG file starts with."""
    app0 = b"JFIF\x00" + bytes([1, 1, 0]) + struct.pack(">HH", 1, 1) + bytes([0, 0])
    comment = b"khedmat test"
    return (
        b"\xff\xd8"
        + b"\xff\xe0"
        + struct.pack(">H", len(app0) + 2)
        + app0
        + b"\xff\xfe"
        + struct.pack(">H", len(comment) + 2)
        + comment
        + b"\xff\xd9"
    )


TEXT = b"Not a PDF at all, just text somebody named x.pdf.\n"
GIF = b"GIF89a\x01\x00\x01\x00\x00\x00\x00;"


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --- a service that asks for documents ------------------------------------------------------------

ID_CARD = RequiredDocument(
    kind="identity_card",
    title=Text(fa="تصویر کارت ملی", en="National ID card"),
    formats=[DocumentFormat.PDF, DocumentFormat.JPEG],
    max_size_kb=1,
)
PHOTO = RequiredDocument(
    kind="photo", title=Text(fa="عکس", en="Photo"), formats=[DocumentFormat.PNG], max_size_kb=2, mandatory=True
)
LETTER = RequiredDocument(
    kind="letter", title=Text(fa="نامه", en="Letter"), formats=[DocumentFormat.PDF], max_size_kb=4, mandatory=False
)


@pytest.fixture(scope="module")
def service() -> ServiceDefinition:
    # Built on a real catalog entry so it stays valid however ServiceDefinition grows.
    base = load_catalog().all()[0]
    return base.model_copy(update={"id": SERVICE_ID, "required_documents": [ID_CARD, PHOTO, LETTER]})


@pytest.fixture
def store(tmp_path: Path) -> LocalBlobStore:
    return LocalBlobStore(tmp_path / "blobs")


def stored_files(root: Path) -> list[Path]:
    return sorted(path for path in root.rglob("*") if path.is_file())


# --- sniffing -------------------------------------------------------------------------------------


def test_sniff_reads_the_content() -> None:
    assert sniff(tiny_pdf()) is DocumentFormat.PDF
    assert sniff(tiny_png()) is DocumentFormat.PNG
    assert sniff(tiny_jpeg()) is DocumentFormat.JPEG


@pytest.mark.parametrize(
    "data", [TEXT, GIF, b"", b"%PD", b"\x00" * 100], ids=["text", "gif", "empty", "short", "zeros"]
)
def test_sniff_refuses_anything_else(data: bytes) -> None:
    assert sniff(data) is None


# --- the local blob store -------------------------------------------------------------------------


async def test_local_store_is_content_addressed(store: LocalBlobStore) -> None:
    data = tiny_png()
    digest = await store.put(data)
    assert digest == sha(data)
    assert (store.root / digest[:2] / digest[2:4] / digest).read_bytes() == data
    assert await store.get(digest) == data
    assert await store.exists(digest)
    assert await store.metadata(digest) == BlobInfo(media_type="image/png", size_bytes=len(data))


async def test_local_store_keeps_the_same_bytes_once(store: LocalBlobStore) -> None:
    data = tiny_pdf()
    first = await store.put(data)
    blob = store.root / first[:2] / first[2:4] / first
    inode = blob.stat().st_ino
    assert await store.put(data) == first
    assert blob.stat().st_ino == inode  # not even rewritten
    assert [path.name for path in stored_files(store.root)] == [first, f"{first}.json"]
    other = await store.put(tiny_jpeg())
    assert other != first
    assert len(stored_files(store.root)) == 4


async def test_local_store_answers_none_for_unknown_and_malformed_ids(store: LocalBlobStore, tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_bytes(b"not yours")
    missing = sha(b"never stored")
    for document_id in (missing, "../secret", "../../" + "a" * 62, missing.upper(), ""):
        assert await store.get(document_id) is None
        assert not await store.exists(document_id)
        assert await store.metadata(document_id) is None


async def test_local_store_writes_atomically(store: LocalBlobStore, monkeypatch: pytest.MonkeyPatch) -> None:
    data = tiny_pdf()
    calls: list[str] = []
    real_replace = os.replace

    def failing_replace(source: str, target: Path) -> None:
        calls.append(str(target))
        if not str(target).endswith(".json"):
            raise OSError("disk full")
        real_replace(source, target)

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(BlobStoreUnavailable):
        await store.put(data)
    # The blob never appeared half-written, and no temporary file is left behind.
    assert not await store.exists(sha(data))
    assert await store.get(sha(data)) is None
    assert [path.name for path in stored_files(store.root)] == [f"{sha(data)}.json"]
    monkeypatch.setattr(os, "replace", real_replace)
    assert await store.put(data) == sha(data)
    assert await store.get(sha(data)) == data
    assert not [path for path in stored_files(store.root) if path.name.endswith(".tmp")]


async def test_local_store_rebuilds_a_lost_sidecar(store: LocalBlobStore) -> None:
    digest = await store.put(tiny_jpeg())
    (store.root / digest[:2] / digest[2:4] / f"{digest}.json").unlink()
    assert await store.metadata(digest) == BlobInfo(media_type="image/jpeg", size_bytes=len(tiny_jpeg()))


def test_settings_choose_the_store(tmp_path: Path) -> None:
    local = blob_store_from_settings(IntakeSettings(blob_dir=tmp_path))
    assert isinstance(local, LocalBlobStore)
    assert local.root == tmp_path
    assert not any(tmp_path.iterdir())  # nothing is created until a document arrives


def test_s3_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="INTAKE_S3_BUCKET"):
        IntakeSettings(blob_store="s3")
    with pytest.raises(ValueError, match="both"):
        IntakeSettings(blob_store="s3", s3_bucket="docs", s3_region="us-east-1", s3_access_key="key")
    settings = IntakeSettings(
        blob_store="s3",
        s3_bucket="docs",
        s3_region="us-east-1",
        s3_endpoint_url="http://127.0.0.1:9000",
        s3_access_key="key",
        s3_secret_key="s3cr3t-value",
    )
    assert type(blob_store_from_settings(settings)).__name__ == "S3BlobStore"
    assert "s3cr3t-value" not in repr(settings)


# --- check_upload ---------------------------------------------------------------------------------


def codes(outcome: object) -> list[tuple[str, str]]:
    assert isinstance(outcome, list), outcome
    return [(error.field, str(error.code)) for error in outcome]


def test_check_upload_accepts_an_allowed_format_within_the_limit() -> None:
    data = tiny_pdf()
    assert check_upload(data, ID_CARD) == DocumentRef(
        kind="identity_card", sha256=sha(data), media_type="application/pdf", size_bytes=len(data)
    )
    jpeg = check_upload(tiny_jpeg(), ID_CARD)
    assert isinstance(jpeg, DocumentRef)
    assert jpeg.media_type == "image/jpeg"


def test_check_upload_limit_is_max_size_kb_in_bytes() -> None:
    pdf = tiny_pdf()
    exactly = pdf + b" " * (1024 - len(pdf))
    assert isinstance(check_upload(exactly, ID_CARD), DocumentRef)
    assert codes(check_upload(exactly + b" ", ID_CARD)) == [("file", "document_too_large")]


def test_check_upload_refuses_empty_and_wrong_formats() -> None:
    assert codes(check_upload(b"", ID_CARD)) == [("file", "document_empty")]
    assert codes(check_upload(TEXT, ID_CARD)) == [("file", "document_format")]
    assert codes(check_upload(tiny_png(), ID_CARD)) == [("file", "document_format")]  # a real PNG, not allowed
    assert codes(check_upload(TEXT * 100, ID_CARD)) == [("file", "document_too_large"), ("file", "document_format")]


def test_upload_errors_speak_both_languages() -> None:
    outcome = check_upload(TEXT, ID_CARD)
    assert isinstance(outcome, list)
    [error] = outcome
    assert "PDF or JPEG" in error.message_en
    assert "پی‌دی‌اف یا جی‌پگ" in error.message_fa
    assert "تصویر کارت ملی" in error.message_fa


async def test_read_at_most_stops_at_the_limit() -> None:
    upload = UploadFile(file=io.BytesIO(b"x" * (5 * 1024 * 1024)), filename="big.pdf")
    assert len(await _read_at_most(upload, 1025)) == 1025
    small = UploadFile(file=io.BytesIO(b"abc"), filename="small.pdf")
    assert await _read_at_most(small, 1025) == b"abc"


# --- validate_document_refs -----------------------------------------------------------------------


async def valid_documents(store: LocalBlobStore) -> dict[str, str]:
    return {"identity_card": await store.put(tiny_pdf()), "photo": await store.put(tiny_png())}


async def test_valid_references_become_document_refs_in_catalog_order(
    service: ServiceDefinition, store: LocalBlobStore
) -> None:
    documents = await valid_documents(store)
    documents["letter"] = await store.put(tiny_pdf())
    outcome = await validate_document_refs(service=service, documents=documents, store=store)
    assert not are_document_errors(outcome)
    assert outcome == [
        DocumentRef(
            kind="identity_card", sha256=sha(tiny_pdf()), media_type="application/pdf", size_bytes=len(tiny_pdf())
        ),
        DocumentRef(kind="photo", sha256=sha(tiny_png()), media_type="image/png", size_bytes=len(tiny_png())),
        DocumentRef(kind="letter", sha256=sha(tiny_pdf()), media_type="application/pdf", size_bytes=len(tiny_pdf())),
    ]


async def test_optional_documents_may_be_left_out_and_ids_are_normalised(
    service: ServiceDefinition, store: LocalBlobStore
) -> None:
    documents = {kind: f"  {value.upper()} " for kind, value in (await valid_documents(store)).items()}
    outcome = await validate_document_refs(service=service, documents=documents, store=store)
    assert not are_document_errors(outcome)
    assert [ref.kind for ref in outcome] == ["identity_card", "photo"]


async def test_a_service_without_documents_accepts_none(service: ServiceDefinition, store: LocalBlobStore) -> None:
    plain = service.model_copy(update={"required_documents": []})
    assert await validate_document_refs(service=plain, documents={}, store=store) == []


async def test_each_reference_fault_has_its_code(service: ServiceDefinition, store: LocalBlobStore) -> None:
    big_png = await store.put(tiny_png() + b"\x00" * 4096)  # stored for a larger limit elsewhere
    outcome = await validate_document_refs(
        service=service,
        documents={
            "identity_card": await store.put(tiny_png()),  # stored, but a PNG where PDF or JPEG is asked
            "photo": big_png,
            "letter": sha(b"never uploaded"),
            "passport": sha(b"whatever"),
        },
        store=store,
    )
    assert are_document_errors(outcome)
    assert codes(outcome) == [
        ("documents.passport", "unknown_document_kind"),
        ("documents.identity_card", "document_format"),
        ("documents.photo", "document_too_large"),
        ("documents.letter", "document_not_found"),
    ]
    assert all(error.message_fa and error.message_en for error in outcome)


async def test_missing_and_malformed_references(service: ServiceDefinition, store: LocalBlobStore) -> None:
    outcome = await validate_document_refs(
        service=service, documents={"photo": "../../etc/passwd", "letter": "  "}, store=store
    )
    assert codes(outcome) == [
        ("documents.identity_card", "document_missing"),
        ("documents.photo", "document_id_format"),
    ]
    assert isinstance(outcome[0], FieldError)
    assert "کارت ملی" in outcome[0].message_fa


async def test_a_long_unknown_kind_is_not_echoed_whole(service: ServiceDefinition, store: LocalBlobStore) -> None:
    kind = "x" * 5000
    documents = {**(await valid_documents(store)), kind: "y"}
    outcome = await validate_document_refs(service=service, documents=documents, store=store)
    [error] = outcome
    assert isinstance(error, FieldError)
    assert error.code == DocumentErrorCode.UNKNOWN_KIND
    assert len(error.message_en) < 200


# --- the upload API -------------------------------------------------------------------------------


@pytest.fixture
def app(service: ServiceDefinition, store: LocalBlobStore) -> FastAPI:
    app = create_app(IntakeSettings(), tracer_provider=TracerProvider())
    app.state.intake.catalog = Catalog([service])
    app.state.intake.blob_store = store
    return app


async def upload(
    client: httpx.AsyncClient,
    data: bytes,
    *,
    service_id: str = SERVICE_ID,
    kind: str = "identity_card",
    filename: str = "card.pdf",
    content_type: str = "application/pdf",
) -> httpx.Response:
    return await client.post(
        "/api/v1/documents",
        data={"service_id": service_id, "kind": kind},
        files={"file": (filename, data, content_type)},
    )


async def test_upload_stores_the_document_and_answers_its_id(client: httpx.AsyncClient, store: LocalBlobStore) -> None:
    data = tiny_pdf()
    response = await upload(client, data)
    assert response.status_code == 201, response.text
    assert response.json() == {
        "document_id": sha(data),
        "kind": "identity_card",
        "media_type": "application/pdf",
        "size_bytes": len(data),
    }
    assert await store.get(sha(data)) == data
    again = await upload(client, data, filename="another-name.pdf")
    assert again.status_code == 201
    assert again.json()["document_id"] == sha(data)
    assert len(stored_files(store.root)) == 2  # the blob and its sidecar, once


async def test_upload_trusts_content_not_the_name_or_declared_type(
    client: httpx.AsyncClient, store: LocalBlobStore
) -> None:
    data = tiny_png()
    response = await upload(client, data, kind="photo", filename="../../../etc/passwd.pdf", content_type="text/plain")
    assert response.status_code == 201, response.text
    assert response.json()["media_type"] == "image/png"
    assert [path.name for path in stored_files(store.root)] == [sha(data), f"{sha(data)}.json"]


async def test_mislabelled_text_file_is_415(client: httpx.AsyncClient, store: LocalBlobStore) -> None:
    problem = assert_problem(await upload(client, TEXT, filename="x.pdf"), 415, field="file", code="document_format")
    assert problem["type"].endswith("/document-format")
    assert not stored_files(store.root)


async def test_oversized_file_is_413(client: httpx.AsyncClient, store: LocalBlobStore) -> None:
    data = tiny_pdf() + b" " * 2048
    assert_problem(await upload(client, data), 413, field="file", code="document_too_large")
    assert not stored_files(store.root)


async def test_body_larger_than_any_document_is_413_before_it_is_parsed(client: httpx.AsyncClient) -> None:
    # The catalog's largest document is 4 KB, so this body is refused on its Content-Length alone.
    data = tiny_pdf() + b" " * (MULTIPART_OVERHEAD_BYTES + 8 * 1024)
    response = await upload(client, data)
    assert_problem(response, 413, field="file", code="document_too_large")
    assert response.json()["type"].endswith("/document-too-large")


async def test_streamed_body_without_length_is_cut_off_at_the_limit(client: httpx.AsyncClient) -> None:
    sent: list[int] = []
    boundary = "khedmat-boundary"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="service_id"\r\n\r\n{SERVICE_ID}\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="kind"\r\n\r\nidentity_card\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.pdf"\r\n'
        "Content-Type: application/pdf\r\n\r\n"
    ).encode() + tiny_pdf()

    async def body() -> AsyncIterator[bytes]:
        yield head
        for _ in range(1000):  # 64 MB if it were all read
            sent.append(1)
            yield b" " * (64 * 1024)
        yield f"\r\n--{boundary}--\r\n".encode()

    response = await client.post(
        "/api/v1/documents", content=body(), headers={"content-type": f"multipart/form-data; boundary={boundary}"}
    )
    assert_problem(response, 413, field="file", code="document_too_large")
    assert len(sent) < 10


async def test_uploads_are_rate_limited_per_client_with_retry_after(app: FastAPI, client: httpx.AsyncClient) -> None:
    app.state.intake.rate_limits = limits = AllowAll()
    assert (await upload(client, tiny_pdf())).status_code == 201
    limits.deny_for = 42
    response = await upload(client, tiny_pdf())
    assert_problem(response, 429)
    assert response.headers["retry-after"] == "42"
    assert "۴۲" in response.json()["detail_fa"] and "42" not in response.json()["detail_fa"]
    assert [client for client, _ in limits.hits] == ["127.0.0.1", "127.0.0.1"]


async def test_unknown_service_is_404(client: httpx.AsyncClient) -> None:
    assert_problem(
        await upload(client, tiny_pdf(), service_id="no-such-service"), 404, field="service_id", code="unknown_service"
    )


async def test_unknown_kind_is_422(client: httpx.AsyncClient) -> None:
    problem = assert_problem(
        await upload(client, tiny_pdf(), kind="passport"), 422, field="kind", code="unknown_document_kind"
    )
    assert "passport" in problem["detail"]


async def test_empty_file_is_422(client: httpx.AsyncClient) -> None:
    assert_problem(await upload(client, b""), 422, field="file", code="document_empty")


async def test_missing_file_is_a_422_validation_problem(client: httpx.AsyncClient) -> None:
    response = await client.post("/api/v1/documents", data={"service_id": SERVICE_ID, "kind": "photo"})
    assert_problem(response, 422, field="file", code="missing")


async def test_store_failure_is_503_and_nothing_is_claimed(app: FastAPI, client: httpx.AsyncClient) -> None:
    class BrokenStore(LocalBlobStore):
        async def put(self, data: bytes) -> str:
            raise BlobStoreUnavailable("disk gone")

    app.state.intake.blob_store = BrokenStore(Path("/nonexistent"))
    response = await upload(client, tiny_pdf())
    assert response.status_code == 503
    assert response.headers["retry-after"] == "5"


@pytest.fixture(scope="module")
def openapi() -> Iterator[dict[str, Any]]:
    yield create_app(IntakeSettings(), tracer_provider=TracerProvider()).openapi()


def test_openapi_documents_the_upload_and_its_problems(openapi: dict[str, Any]) -> None:
    operation = openapi["paths"]["/api/v1/documents"]["post"]
    assert {"201", "404", "413", "415", "422", "429", "503"} <= set(operation["responses"])
    assert PROBLEM_JSON in operation["responses"]["415"]["content"]
    assert "multipart/form-data" in operation["requestBody"]["content"]
    # Personal documents are never served back over the public API.
    assert not [path for path in openapi["paths"] if path.startswith("/api/v1/documents/")]
    assert set(openapi["paths"]["/api/v1/documents"]) == {"post"}
