"""Where citizens' documents are kept: content-addressed blob stores (a local folder or S3) and format sniffing."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import re
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Final, Protocol

import filetype
from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore.exceptions import BotoCoreError, ClientError

from shared.catalog import DocumentFormat

from .settings import IntakeSettings

SHA256_PATTERN: Final = re.compile(r"[0-9a-f]{64}")
OCTET_STREAM: Final = "application/octet-stream"

MEDIA_TYPES: Final[dict[DocumentFormat, str]] = {
    DocumentFormat.PDF: "application/pdf",
    DocumentFormat.JPEG: "image/jpeg",
    DocumentFormat.PNG: "image/png",
}
FORMATS_BY_MEDIA_TYPE: Final = {media_type: fmt for fmt, media_type in MEDIA_TYPES.items()}


@dataclass(frozen=True)
class BlobInfo:
    """What the store recorded about a blob."""

    media_type: str
    size_bytes: int


class BlobStoreUnavailable(RuntimeError):
    """The store could not be read or written (disk or S3 failure); nothing was decided, the caller may retry."""


class BlobStore(Protocol):
    """Content-addressed storage: a blob's id is the sha256 of its bytes, so storing it twice keeps one copy."""

    async def put(self, data: bytes) -> str:
        """Store the bytes (media type sniffed from the content); return their sha256 in hex."""
        ...

    async def get(self, sha256: str) -> bytes | None:
        """The bytes with this sha256, or None."""
        ...

    async def exists(self, sha256: str) -> bool:
        """Whether a blob with this sha256 is stored."""
        ...

    async def metadata(self, sha256: str) -> BlobInfo | None:
        """The stored media type and size of this blob, or None."""
        ...


def sha256_hex(data: bytes) -> str:
    """The content address of these bytes."""
    return hashlib.sha256(data).hexdigest()


def is_sha256(value: str) -> bool:
    """Whether a value is a content address (64 lowercase hex digits); anything else never reaches a store."""
    return SHA256_PATTERN.fullmatch(value) is not None


def sniff(data: bytes) -> DocumentFormat | None:
    """The document format the bytes themselves say (magic numbers), never a name or a declared type."""
    kind = filetype.guess(data) if data else None
    if kind is None:
        return None
    return FORMATS_BY_MEDIA_TYPE.get(str(kind.mime))


def media_type_of(data: bytes) -> str:
    """The media type stored with a blob: from the sniffed format, else application/octet-stream."""
    found = sniff(data)
    return MEDIA_TYPES[found] if found is not None else OCTET_STREAM


@contextlib.contextmanager
def _failing_as_unavailable(store: str, *failures: type[Exception]) -> Iterator[None]:
    """Any of `failures` inside as BlobStoreUnavailable: the store could not be read or written."""
    try:
        yield
    except failures as error:
        raise BlobStoreUnavailable(f"{store}: {type(error).__name__}") from error


# --- local files ------------------------------------------------------------------------------------


def _atomic_write(target: Path, payload: bytes) -> None:
    # Readers see the old file or the complete new one, never a prefix: write aside, fsync, rename over.
    descriptor, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise


class LocalBlobStore:
    """Blobs as files `root/ab/cd/<sha256>` with a `<sha256>.json` sidecar; client file names are never used."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _blob_path(self, sha256: str) -> Path:
        return self.root / sha256[:2] / sha256[2:4] / sha256

    def _sidecar_path(self, sha256: str) -> Path:
        return self._blob_path(sha256).with_name(f"{sha256}.json")

    def _write(self, digest: str, data: bytes) -> None:
        blob = self._blob_path(digest)
        if blob.is_file():
            return
        blob.parent.mkdir(parents=True, exist_ok=True)
        info = BlobInfo(media_type=media_type_of(data), size_bytes=len(data))
        # Sidecar first: a blob file that exists always has its metadata next to it.
        _atomic_write(self._sidecar_path(digest), json.dumps(asdict(info)).encode())
        _atomic_write(blob, data)

    def _read(self, sha256: str) -> bytes | None:
        try:
            return self._blob_path(sha256).read_bytes()
        except FileNotFoundError:
            return None

    def _metadata(self, sha256: str) -> BlobInfo | None:
        blob = self._blob_path(sha256)
        if not blob.is_file():
            return None
        try:
            recorded = json.loads(self._sidecar_path(sha256).read_text(encoding="utf-8"))
            return BlobInfo(media_type=str(recorded["media_type"]), size_bytes=int(recorded["size_bytes"]))
        except (OSError, ValueError, KeyError, TypeError):
            # A lost or damaged sidecar is rebuilt from the content it describes.
            data = blob.read_bytes()
            return BlobInfo(media_type=media_type_of(data), size_bytes=len(data))

    async def put(self, data: bytes) -> str:
        """Store the bytes once under their sha256 (atomic); return the sha256."""
        digest = sha256_hex(data)
        with _failing_as_unavailable("local blob store", OSError):
            await asyncio.to_thread(self._write, digest, data)
        return digest

    async def get(self, sha256: str) -> bytes | None:
        """The stored bytes, or None."""
        if not is_sha256(sha256):
            return None
        with _failing_as_unavailable("local blob store", OSError):
            return await asyncio.to_thread(self._read, sha256)

    async def exists(self, sha256: str) -> bool:
        """Whether the blob is stored."""
        return is_sha256(sha256) and await asyncio.to_thread(self._blob_path(sha256).is_file)

    async def metadata(self, sha256: str) -> BlobInfo | None:
        """The blob's media type and size, or None."""
        if not is_sha256(sha256):
            return None
        with _failing_as_unavailable("local blob store", OSError):
            return await asyncio.to_thread(self._metadata, sha256)


# --- S3 -----------------------------------------------------------------------------------------------

_S3_MISSING: Final = frozenset({"404", "NoSuchKey", "NotFound"})


def _is_missing(error: ClientError) -> bool:
    return str(error.response.get("Error", {}).get("Code", "")) in _S3_MISSING


class S3BlobStore:
    """Blobs as S3 objects `<prefix><sha256>` with their ContentType; works with AWS and S3-compatible stores."""

    def __init__(
        self,
        bucket: str,
        *,
        endpoint_url: str | None = None,
        region: str | None = None,
        access_key: str | None = None,
        secret_key: str | None = None,
        prefix: str = "documents/",
    ) -> None:
        self.bucket = bucket
        self.prefix = prefix
        self._session = get_session()
        config = AioConfig(
            connect_timeout=5,
            read_timeout=30,
            retries={"max_attempts": 3, "mode": "standard"},
            # S3-compatible servers (MinIO, Ceph) are addressed by path, and many refuse the CRC checksums
            # botocore sends by default since 1.36; AWS itself keeps botocore's defaults.
            **(
                {
                    "s3": {"addressing_style": "path"},
                    "request_checksum_calculation": "when_required",
                    "response_checksum_validation": "when_required",
                }
                if endpoint_url
                else {}
            ),
        )
        # No keys means botocore's credential chain (environment, web identity in Kubernetes, ...).
        self._client_args: dict[str, Any] = {
            "endpoint_url": endpoint_url,
            "region_name": region,
            "aws_access_key_id": access_key,
            "aws_secret_access_key": secret_key,
            "config": config,
        }

    def key(self, sha256: str) -> str:
        """The object key of a blob."""
        return f"{self.prefix}{sha256}"

    def _client(self) -> Any:
        # A client per call: nothing to close at shutdown, and botocore's client creation is cheap next to
        # an upload of up to megabytes.
        return self._session.create_client("s3", **self._client_args)

    async def _head(self, client: Any, sha256: str) -> dict[str, Any] | None:
        try:
            head: dict[str, Any] = await client.head_object(Bucket=self.bucket, Key=self.key(sha256))
        except ClientError as error:
            if _is_missing(error):
                return None
            raise
        return head

    async def put(self, data: bytes) -> str:
        """Store the bytes once under their sha256 (S3 writes are atomic); return the sha256."""
        digest = sha256_hex(data)
        with _failing_as_unavailable("s3 blob store", ClientError, BotoCoreError):
            async with self._client() as client:
                if await self._head(client, digest) is None:
                    await client.put_object(
                        Bucket=self.bucket, Key=self.key(digest), Body=data, ContentType=media_type_of(data)
                    )
        return digest

    async def get(self, sha256: str) -> bytes | None:
        """The stored bytes, or None."""
        if not is_sha256(sha256):
            return None
        with _failing_as_unavailable("s3 blob store", ClientError, BotoCoreError):
            async with self._client() as client:
                try:
                    response = await client.get_object(Bucket=self.bucket, Key=self.key(sha256))
                except ClientError as error:
                    if _is_missing(error):
                        return None
                    raise
                async with response["Body"] as body:
                    data: bytes = await body.read()
        return data

    async def exists(self, sha256: str) -> bool:
        """Whether the blob is stored (a HEAD request)."""
        return await self.metadata(sha256) is not None

    async def metadata(self, sha256: str) -> BlobInfo | None:
        """The blob's media type and size from its object's headers, or None."""
        if not is_sha256(sha256):
            return None
        with _failing_as_unavailable("s3 blob store", ClientError, BotoCoreError):
            async with self._client() as client:
                head = await self._head(client, sha256)
        if head is None:
            return None
        return BlobInfo(media_type=str(head.get("ContentType", OCTET_STREAM)), size_bytes=int(head["ContentLength"]))


def blob_store_from_settings(settings: IntakeSettings) -> BlobStore:
    """The blob store the settings choose (local files by default)."""
    if settings.blob_store == "s3":
        assert settings.s3_bucket is not None  # IntakeSettings refuses s3 without a bucket
        return S3BlobStore(
            settings.s3_bucket,
            endpoint_url=settings.s3_endpoint_url,
            region=settings.s3_region,
            access_key=settings.s3_access_key,
            secret_key=settings.s3_secret_key.get_secret_value() if settings.s3_secret_key else None,
            prefix=settings.s3_prefix,
        )
    return LocalBlobStore(settings.blob_dir)
