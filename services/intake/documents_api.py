"""intake's upload route: a citizen's document, checked by content and kept in the content-addressed blob store."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Annotated, Any, Final

from fastapi import APIRouter, File, Form, HTTPException, Request, Response, UploadFile
from fastapi.routing import APIRoute
from pydantic import BaseModel, Field
from starlette.types import Message

from shared.catalog import Catalog, RequiredDocument, ServiceDefinition
from shared.domain.text import SingleLineText
from shared.http import FieldProblem, ProblemError, fa_number, problem_responses, rate_limited

from .catalog_api import unknown_service
from .documents import BlobStore, BlobStoreUnavailable, DocumentErrorCode, check_upload, max_size_bytes
from .domain import FieldError
from .wiring import Intake

# Room for the multipart boundaries, part headers and the two small form fields around the file.
MULTIPART_OVERHEAD_BYTES: Final = 64 * 1024
READ_CHUNK_BYTES: Final = 64 * 1024

_STATUS_BY_CODE: Final = {
    DocumentErrorCode.TOO_LARGE: 413,
    DocumentErrorCode.FORMAT: 415,
    DocumentErrorCode.EMPTY: 422,
}

UPLOAD_PROBLEM_RESPONSES = problem_responses(404, 413, 415, 422, 429, 503)
for _status in (429, 503):
    UPLOAD_PROBLEM_RESPONSES[_status]["headers"] = {
        "Retry-After": {"description": "Seconds to wait before retrying", "schema": {"type": "string"}}
    }


class DocumentUploaded(BaseModel):
    """A stored document; give `document_id` under its kind in the request's `documents`."""

    document_id: str = Field(pattern=r"^[0-9a-f]{64}$", description="The sha256 of the file's content.")
    kind: str
    media_type: str
    size_bytes: int


class _BodyTooLarge(HTTPException):
    """Raised from inside body parsing; an HTTPException so FastAPI lets it through unchanged."""

    def __init__(self) -> None:
        super().__init__(status_code=413)


def _body_limit(request: Request) -> int:
    catalog: Catalog = request.app.state.intake.catalog
    largest = max(
        (max_size_bytes(document) for service in catalog.all() for document in service.required_documents),
        default=0,
    )
    return largest + MULTIPART_OVERHEAD_BYTES


def _too_large(limit_bytes: int, detail_en: str, detail_fa: str) -> ProblemError:
    return ProblemError(
        status=413,
        slug="document-too-large",
        title_en="The file is too large",
        title_fa="حجم فایل بیش از حد مجاز است",
        detail_en=detail_en,
        detail_fa=detail_fa,
        errors=[
            FieldProblem(
                field="file",
                code=DocumentErrorCode.TOO_LARGE,
                message_en=f"An upload may be at most {limit_bytes // 1024} KB in all.",
                message_fa=f"حجم کل هر بارگذاری حداکثر {fa_number(limit_bytes // 1024)} کیلوبایت است.",
            )
        ],
    )


class BoundedBodyRoute(APIRoute):
    """A route that stops reading the request body past the catalog's largest document plus multipart framing."""

    # Without it the form parser would spool a body of any size to a temporary file before the handler ran.

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def bounded(request: Request) -> Response:
            limit = _body_limit(request)
            declared = request.headers.get("content-length", "")
            received = 0

            async def receive() -> Message:
                nonlocal received
                message = await request.receive()
                if message["type"] == "http.request":
                    received += len(message.get("body", b""))
                    if received > limit:
                        raise _BodyTooLarge()
                return message

            try:
                if declared.isdigit() and int(declared) > limit:
                    raise _BodyTooLarge()
                return await handler(Request(request.scope, receive))
            except _BodyTooLarge as error:
                raise _too_large(
                    limit,
                    "The request body is larger than any document this desk accepts.",
                    "بدنهٔ درخواست از بزرگ‌ترین مدرکی که میز خدمت می‌پذیرد بزرگ‌تر است.",
                ) from error

        return bounded


router = APIRouter(prefix="/api/v1", route_class=BoundedBodyRoute)
UPLOAD_PATH: Final = "/api/v1/documents"


async def _read_at_most(upload: UploadFile, limit: int) -> bytes:
    # Enough to tell "too large" (limit + 1 bytes) without holding more of the file than that.
    parts: list[bytes] = []
    remaining = limit
    while remaining > 0:
        chunk = await upload.read(min(READ_CHUNK_BYTES, remaining))
        if not chunk:
            break
        parts.append(chunk)
        remaining -= len(chunk)
    return b"".join(parts)


def _unknown_service(service_id: str) -> ProblemError:
    return unknown_service(service_id)


def _unknown_kind(service: ServiceDefinition, kind: str) -> ProblemError:
    return ProblemError(
        status=422,
        slug="unknown-document-kind",
        title_en="This service asks for no such document",
        title_fa="این خدمت چنین مدرکی نمی‌خواهد",
        detail_en=f"Service '{service.id}' asks for no document of kind '{kind}'.",
        detail_fa=f"خدمت «{service.title.fa}» مدرکی از نوع «{kind}» نمی‌خواهد.",
        errors=[
            FieldProblem(
                field="kind",
                code=DocumentErrorCode.UNKNOWN_KIND,
                message_en="Choose a kind from the service's required documents.",
                message_fa="نوع مدرک را از فهرست مدارک لازمِ خدمت انتخاب کنید.",
            )
        ],
    )


def _refused(requirement: RequiredDocument, errors: list[FieldError]) -> ProblemError:
    # check_upload lists size before format, so an oversized file answers 413 whatever else is wrong.
    status = _STATUS_BY_CODE.get(DocumentErrorCode(errors[0].code), 422)
    titles = {
        413: ("The file is too large", "حجم فایل بیش از حد مجاز است"),
        415: ("The file is not of an accepted type", "نوع فایل پذیرفته نیست"),
        422: ("The file cannot be accepted", "فایل پذیرفته نیست"),
    }
    title_en, title_fa = titles[status]
    return ProblemError(
        status=status,
        slug={413: "document-too-large", 415: "document-format", 422: "document-invalid"}[status],
        title_en=title_en,
        title_fa=title_fa,
        detail_en=f"'{requirement.title.en}' was not stored.",
        detail_fa=f"«{requirement.title.fa}» ذخیره نشد.",
        errors=[
            FieldProblem(field=e.field, code=e.code, message_en=e.message_en, message_fa=e.message_fa) for e in errors
        ],
    )


def _store_unavailable() -> ProblemError:
    return ProblemError(
        status=503,
        slug="document-store-unavailable",
        title_en="Documents cannot be stored right now",
        title_fa="در این لحظه امکان ذخیرهٔ مدارک نیست",
        detail_en="Nothing was stored. Please try again in a few seconds.",
        detail_fa="چیزی ذخیره نشد. لطفاً چند ثانیه دیگر دوباره تلاش کنید.",
        headers={"Retry-After": "5"},
    )


@router.post(
    "/documents",
    status_code=201,
    response_model=DocumentUploaded,
    responses=UPLOAD_PROBLEM_RESPONSES,
    summary="Upload one document for a service; its content decides its type, never its name",
)
async def upload_document(
    request: Request,
    service_id: Annotated[SingleLineText, Form(min_length=1, max_length=100, examples=["birth-certificate-duplicate"])],
    kind: Annotated[SingleLineText, Form(min_length=1, max_length=100, examples=["identity_card"])],
    file: Annotated[UploadFile, File(description="PDF, JPEG or PNG, as the service's document allows.")],
) -> DocumentUploaded:
    intake: Intake = request.app.state.intake
    decision = await intake.rate_limits.hit_upload(client=request.client.host if request.client else "unknown")
    if not decision.allowed:
        raise rate_limited(decision.retry_after_s)
    catalog = intake.catalog
    service = catalog.get(service_id)
    if service is None:
        raise _unknown_service(service_id)
    requirement = next((d for d in service.required_documents if d.kind == kind), None)
    if requirement is None:
        raise _unknown_kind(service, kind)
    data = await _read_at_most(file, max_size_bytes(requirement) + 1)
    checked = check_upload(data, requirement)
    if isinstance(checked, list):
        raise _refused(requirement, checked)
    store: BlobStore = request.app.state.blob_store
    try:
        document_id = await store.put(data)
    except BlobStoreUnavailable as error:
        raise _store_unavailable() from error
    return DocumentUploaded(
        document_id=document_id, kind=checked.kind, media_type=checked.media_type, size_bytes=checked.size_bytes
    )
