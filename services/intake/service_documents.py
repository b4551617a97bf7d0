"""Citizens' documents: the checks on an upload and on a submission's references, and the upload use case."""

from __future__ import annotations

from enum import StrEnum
from typing import Final

from typing_extensions import TypeIs

from shared.catalog import Catalog, DocumentFormat, RequiredDocument, ServiceDefinition
from shared.domain.digits import to_persian_digits
from shared.events import DocumentRef

from .adapters_blobs import FORMATS_BY_MEDIA_TYPE, MEDIA_TYPES, BlobInfo, BlobStore, is_sha256, sha256_hex, sniff
from .domain import FieldError, UnknownService


class DocumentErrorCode(StrEnum):
    """Why an upload or a submission's document reference was refused (FieldError.code)."""

    EMPTY = "document_empty"
    TOO_LARGE = "document_too_large"
    FORMAT = "document_format"
    MISSING = "document_missing"
    UNKNOWN_KIND = "unknown_document_kind"
    ID_FORMAT = "document_id_format"
    NOT_FOUND = "document_not_found"


# --- checks -------------------------------------------------------------------------------------------


# How Persian writes the format names (a Persian text carries no Latin letters).
_FORMAT_FA: dict[str, str] = {"pdf": "پی‌دی‌اف", "jpeg": "جی‌پگ", "png": "پی‌ان‌جی"}


def _formats_text(formats: list[DocumentFormat]) -> tuple[str, str]:
    names = [fmt.value.upper() for fmt in formats]
    names_fa = [_FORMAT_FA.get(fmt.value, fmt.value) for fmt in formats]
    if len(names) == 1:
        return names[0], names_fa[0]
    return ", ".join(names[:-1]) + " or " + names[-1], "، ".join(names_fa[:-1]) + " یا " + names_fa[-1]


# Each fault with a document, once, in both languages; `{name}` fields are filled by `_document_error`.
_MESSAGES: Final[dict[DocumentErrorCode, tuple[str, str]]] = {
    DocumentErrorCode.EMPTY: ("The file is empty.", "فایل خالی است."),
    DocumentErrorCode.TOO_LARGE: (
        "'{title_en}' may be at most {max_size_kb} KB.",
        "حجم «{title_fa}» حداکثر {max_size_kb_fa} کیلوبایت است.",
    ),
    DocumentErrorCode.FORMAT: (
        "'{title_en}' must be a {formats_en} file; the file's content is checked, not its name.",
        "«{title_fa}» باید فایل {formats_fa} باشد؛ محتوای فایل بررسی می‌شود، نه نام آن.",
    ),
    DocumentErrorCode.MISSING: ("'{title_en}' must be uploaded.", "بارگذاری «{title_fa}» الزامی است."),
    DocumentErrorCode.UNKNOWN_KIND: (
        "This service asks for no document named '{kind}'.",
        "این خدمت مدرکی به نام «{kind}» نمی‌خواهد.",
    ),
    DocumentErrorCode.ID_FORMAT: (
        "Give the document_id that uploading the file returned (64 hexadecimal characters).",
        "شناسه‌ای را که پس از بارگذاری فایل دریافت کردید وارد کنید (۶۴ نویسه).",
    ),
    DocumentErrorCode.NOT_FOUND: (
        "No uploaded file has this id; please upload '{title_en}' again.",
        "فایلی با این شناسه بارگذاری نشده است؛ لطفاً «{title_fa}» را دوباره بارگذاری کنید.",
    ),
}


def _document_error(
    field: str, code: DocumentErrorCode, requirement: RequiredDocument | None = None, **values: str
) -> FieldError:
    """The fault `code` with `field`, in words naming the document `requirement` (and `values`)."""
    if requirement is not None:
        formats_en, formats_fa = _formats_text(requirement.formats)
        values |= {
            "title_en": requirement.title.en,
            "title_fa": requirement.title.fa,
            "max_size_kb": str(requirement.max_size_kb),
            "max_size_kb_fa": to_persian_digits(str(requirement.max_size_kb)),
            "formats_en": formats_en,
            "formats_fa": formats_fa,
        }
    message_en, message_fa = _MESSAGES[code]
    return FieldError(field, code, message_en.format(**values), message_fa.format(**values))


def max_size_bytes(requirement: RequiredDocument) -> int:
    """The largest file this requirement accepts, in bytes."""
    return requirement.max_size_kb * 1024


def check_upload(data: bytes, requirement: RequiredDocument, *, field: str = "file") -> DocumentRef | list[FieldError]:
    """Check an uploaded file against its requirement (not empty, size, format by content)."""
    if not data:
        return [_document_error(field, DocumentErrorCode.EMPTY)]
    errors: list[FieldError] = []
    if len(data) > max_size_bytes(requirement):
        errors.append(_document_error(field, DocumentErrorCode.TOO_LARGE, requirement))
    found = sniff(data)
    if found is None or found not in requirement.formats:
        errors.append(_document_error(field, DocumentErrorCode.FORMAT, requirement))
    if errors or found is None:
        return errors
    return DocumentRef(
        kind=requirement.kind, sha256=sha256_hex(data), media_type=MEDIA_TYPES[found], size_bytes=len(data)
    )


def _shown(text: str) -> str:
    # Keys come from the citizen's JSON; an error message echoes a bounded part of them.
    return text if len(text) <= 50 else text[:50] + "…"


async def validate_document_refs(
    *, service: ServiceDefinition, documents: dict[str, str], store: BlobStore
) -> list[DocumentRef] | list[FieldError]:
    """A submission's documents (kind → upload id) as refs in catalog order, or every fault found."""
    # BlobStoreUnavailable propagates: the store could not answer, so nothing about the documents is known.
    required = {requirement.kind for requirement in service.required_documents}
    errors = [
        _document_error(f"documents.{kind}", DocumentErrorCode.UNKNOWN_KIND, kind=_shown(kind))
        for kind in sorted(set(documents) - required)
    ]
    refs: list[DocumentRef] = []
    for requirement in service.required_documents:
        document_id = documents.get(requirement.kind, "").strip().lower()
        if not document_id:
            if requirement.mandatory:
                errors.append(_document_error(f"documents.{requirement.kind}", DocumentErrorCode.MISSING, requirement))
            continue
        checked = await _check_reference(requirement, document_id, store=store)
        if isinstance(checked, FieldError):
            errors.append(checked)
        else:
            refs.append(checked)
    return errors or refs


async def _check_reference(
    requirement: RequiredDocument, document_id: str, *, store: BlobStore
) -> DocumentRef | FieldError:
    """The ref of one uploaded document the requirement accepts, or the fault found with it."""
    path = f"documents.{requirement.kind}"
    if not is_sha256(document_id):
        return _document_error(path, DocumentErrorCode.ID_FORMAT)
    info = await store.metadata(document_id)
    if info is None:
        return _document_error(path, DocumentErrorCode.NOT_FOUND, requirement)
    return _stored_fits(requirement, document_id, info, path=path)


def _stored_fits(
    requirement: RequiredDocument, document_id: str, info: BlobInfo, *, path: str
) -> DocumentRef | FieldError:
    stored_format = FORMATS_BY_MEDIA_TYPE.get(info.media_type)
    if stored_format is None or stored_format not in requirement.formats:
        return _document_error(path, DocumentErrorCode.FORMAT, requirement)
    # The same bytes may have been uploaded for another service whose limit is larger.
    if info.size_bytes > max_size_bytes(requirement):
        return _document_error(path, DocumentErrorCode.TOO_LARGE, requirement)
    return DocumentRef(
        kind=requirement.kind, sha256=document_id, media_type=info.media_type, size_bytes=info.size_bytes
    )


def are_document_errors(outcome: list[DocumentRef] | list[FieldError]) -> TypeIs[list[FieldError]]:
    """Whether validate_document_refs refused the documents (an empty list means: none needed, none given)."""
    return bool(outcome) and isinstance(outcome[0], FieldError)


# --- the upload -------------------------------------------------------------------------------------


class UnknownDocumentKind(LookupError):
    """The service asks for no document of this kind."""

    def __init__(self, service: ServiceDefinition, kind: str) -> None:
        super().__init__(kind)
        self.service = service
        self.kind = kind


class DocumentRefused(ValueError):
    """An uploaded file its requirement does not accept (empty, too large, or of another format)."""

    def __init__(self, requirement: RequiredDocument, errors: list[FieldError]) -> None:
        super().__init__(", ".join(error.code for error in errors))
        self.requirement = requirement
        self.errors = errors


def find_requirement(*, catalog: Catalog, service_id: str, kind: str) -> RequiredDocument:
    """The requirement an upload is for; UnknownService or UnknownDocumentKind when there is none."""
    service = catalog.get(service_id)
    if service is None:
        raise UnknownService(service_id)
    requirement = next((d for d in service.required_documents if d.kind == kind), None)
    if requirement is None:
        raise UnknownDocumentKind(service, kind)
    return requirement


async def store_upload(*, store: BlobStore, requirement: RequiredDocument, data: bytes) -> DocumentRef:
    """Keep an uploaded file its requirement accepts; DocumentRefused, or BlobStoreUnavailable from the store."""
    checked = check_upload(data, requirement)
    if isinstance(checked, list):
        raise DocumentRefused(requirement, checked)
    await store.put(data)
    return checked
