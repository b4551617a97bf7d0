"""S3BlobStore against a real S3-compatible HTTP server (moto's server on a free local port)."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
from aiobotocore.session import ClientCreatorContext, get_session
from moto.server import ThreadedMotoServer

from services.intake.adapters_blobs import BlobInfo, BlobStoreUnavailable, S3BlobStore
from services.intake.service_documents import are_document_errors, validate_document_refs
from shared.catalog import DocumentFormat, RequiredDocument, Text, load_catalog

pytestmark = [pytest.mark.timeout(60)]

REGION = "us-east-1"
KEYS = {"access_key": "test-access", "secret_key": "test-secret"}
PDF = b"%PDF-1.4\n1 0 obj\n<< /Type /Catalog >>\nendobj\ntrailer\n<< /Root 1 0 R >>\n%%EOF\n"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


def s3_client(endpoint: str) -> ClientCreatorContext:
    """A plain aiobotocore client of the server, for what the store does not do itself."""
    return get_session().create_client(
        "s3",
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id=KEYS["access_key"],
        aws_secret_access_key=KEYS["secret_key"],
    )


@pytest.fixture
async def bucket(endpoint: str) -> AsyncIterator[str]:
    name = f"khedmat-docs-{uuid.uuid4().hex[:12]}"
    async with s3_client(endpoint) as client:
        await client.create_bucket(Bucket=name)
        yield name


@pytest.fixture
def store(endpoint: str, bucket: str) -> S3BlobStore:
    return S3BlobStore(bucket, endpoint_url=endpoint, region=REGION, prefix="documents/", **KEYS)


async def list_keys(endpoint: str, bucket: str) -> list[str]:
    async with s3_client(endpoint) as client:
        listing = await client.list_objects_v2(Bucket=bucket)
    return sorted(item["Key"] for item in listing.get("Contents", []))


async def test_put_get_exists_and_metadata(store: S3BlobStore) -> None:
    digest = await store.put(PDF)
    assert digest == hashlib.sha256(PDF).hexdigest()
    assert await store.get(digest) == PDF
    assert await store.exists(digest)
    assert await store.metadata(digest) == BlobInfo(media_type="application/pdf", size_bytes=len(PDF))


async def test_the_same_bytes_are_stored_once_under_their_sha256(
    store: S3BlobStore, endpoint: str, bucket: str
) -> None:
    first = await store.put(PDF)
    assert await store.put(PDF) == first
    second = await store.put(PNG)
    assert await list_keys(endpoint, bucket) == sorted([f"documents/{first}", f"documents/{second}"])
    assert await store.metadata(second) == BlobInfo(media_type="image/png", size_bytes=len(PNG))


async def test_unknown_and_malformed_ids_are_absent(store: S3BlobStore) -> None:
    missing = hashlib.sha256(b"never stored").hexdigest()
    for document_id in (missing, "../other-bucket/key", missing.upper()):
        assert await store.get(document_id) is None
        assert not await store.exists(document_id)
        assert await store.metadata(document_id) is None


async def test_submission_references_are_checked_against_s3(store: S3BlobStore) -> None:
    requirement = RequiredDocument(
        kind="identity_card", title=Text(fa="کارت ملی", en="ID card"), formats=[DocumentFormat.PDF], max_size_kb=1
    )
    service = load_catalog().all()[0].model_copy(update={"required_documents": [requirement]})
    digest = await store.put(PDF)
    outcome = await validate_document_refs(service=service, documents={"identity_card": digest}, store=store)
    assert not are_document_errors(outcome)
    assert [(ref.kind, ref.sha256, ref.media_type, ref.size_bytes) for ref in outcome] == [
        ("identity_card", digest, "application/pdf", len(PDF))
    ]


async def test_a_missing_bucket_is_unavailable_not_absent(endpoint: str) -> None:
    store = S3BlobStore("no-such-bucket-here", endpoint_url=endpoint, region=REGION, **KEYS)
    with pytest.raises(BlobStoreUnavailable):
        await store.put(PDF)
