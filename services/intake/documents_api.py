"""intake's upload route: a citizen's document, checked by content and kept in the content-addressed blob store."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Annotated, Any, Final

from fastapi import APIRouter, Depends, File, Form, HTTPException, Request, Response, UploadFile
from fastapi.routing import APIRoute
from starlette.types import Message

from shared.catalog import Catalog
from shared.domain.text import SingleLineText
from shared.http import problem_responses
from shared.problems import problems_beside
from shared.service_kit import state_dependency

from .schemas import DocumentUploaded
from .service import Intake, RateLimited
from .service_documents import find_requirement, max_size_bytes, store_upload

IntakeDep = Annotated[Intake, Depends(state_dependency("intake", Intake))]

# Room for the multipart boundaries, part headers and the two small form fields around the file.
MULTIPART_OVERHEAD_BYTES: Final = 64 * 1024
READ_CHUNK_BYTES: Final = 64 * 1024

UPLOAD_PROBLEM_RESPONSES = problem_responses(404, 413, 415, 422, 429, 503)
for _status in (429, 503):
    UPLOAD_PROBLEM_RESPONSES[_status]["headers"] = {
        "Retry-After": {"description": "Seconds to wait before retrying", "schema": {"type": "string"}}
    }


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


_PROBLEMS: Final = problems_beside(__file__)


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
                raise _PROBLEMS["upload-too-large"].error(kib=limit // 1024) from error

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


@router.post(
    "/documents",
    status_code=201,
    response_model=DocumentUploaded,
    responses=UPLOAD_PROBLEM_RESPONSES,
    summary="Upload one document for a service; its content decides its type, never its name",
)
async def upload_document(
    request: Request,
    intake: IntakeDep,
    service_id: Annotated[SingleLineText, Form(min_length=1, max_length=100, examples=["birth-certificate-duplicate"])],
    kind: Annotated[SingleLineText, Form(min_length=1, max_length=100, examples=["identity_card"])],
    file: Annotated[UploadFile, File(description="PDF, JPEG or PNG, as the service's document allows.")],
) -> DocumentUploaded:
    decision = await intake.rate_limits.hit_upload(client=request.client.host if request.client else "unknown")
    if not decision.allowed:
        raise RateLimited(decision.retry_after_s)
    requirement = find_requirement(catalog=intake.catalog, service_id=service_id, kind=kind)
    data = await _read_at_most(file, max_size_bytes(requirement) + 1)
    stored = await store_upload(store=intake.blob_store, requirement=requirement, data=data)
    return DocumentUploaded(
        document_id=stored.sha256, kind=stored.kind, media_type=stored.media_type, size_bytes=stored.size_bytes
    )
