"""problem+json answers declared as data (`ProblemSpec`, read from a YAML problems file), and the answers every
service shares.

A service's answers are data: status, type, titles and details in English and Persian, a field at fault,
headers. Each is written once in its problems file (shared/data/problems.yaml for the shared ones, a
`problems.yaml` beside a service's routes for its own), so the routes and the failure handlers only name them.
404 for a lookup, 429, 503 while something the desk needs is down, 401 without the internal key are here; the
problem document itself and its handlers are in shared/http.py (kept apart so that module stays in its size
limit).
"""

from __future__ import annotations

import dataclasses
import functools
import hmac
from collections.abc import Mapping
from importlib import resources
from importlib.abc import Traversable
from pathlib import Path
from types import MappingProxyType
from typing import Final

import yaml
from fastapi import Request
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from shared.http import FieldProblem, ProblemError, fa_number


@dataclasses.dataclass(frozen=True)
class ProblemSpec:
    """One problem's fixed shape, declared once as data; `{name}` fields in its texts are filled per error."""

    status: int
    slug: str
    title_en: str
    title_fa: str
    detail_en: str | None = None
    detail_fa: str | None = None
    field_problem: FieldProblem | None = None
    headers: Mapping[str, str] = dataclasses.field(default_factory=dict)

    def error(
        self, errors: list[FieldProblem] | None = None, *, headers: Mapping[str, str] | None = None, **values: object
    ) -> ProblemError:
        """The error to raise: texts (and the declared field's code and messages) filled from `values`, numbers
        in Persian digits in the Persian ones; `errors` (else the declared field) at fault; `headers` added."""
        values_fa = {
            name: fa_number(value) if isinstance(value, int | float) else value for name, value in values.items()
        }
        if errors is None and self.field_problem is not None:
            declared = self.field_problem
            errors = [
                FieldProblem(
                    field=declared.field,
                    code=declared.code.format(**values),
                    message_en=declared.message_en.format(**values),
                    message_fa=declared.message_fa.format(**values_fa),
                )
            ]
        return ProblemError(
            status=self.status,
            slug=self.slug,
            title_en=self.title_en.format(**values),
            title_fa=self.title_fa.format(**values_fa),
            detail_en=None if self.detail_en is None else self.detail_en.format(**values),
            detail_fa=None if self.detail_fa is None else self.detail_fa.format(**values_fa),
            errors=errors,
            headers={**self.headers, **(headers or {})},
        )


# --- problems files ---------------------------------------------------------------------------------


class ProblemsFileError(ValueError):
    """A problems file is missing or malformed; the message names the file and the problem."""


class _Words(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    en: str = Field(min_length=1)
    fa: str = Field(min_length=1)


class _Declared(BaseModel):
    """One problem as a problems file writes it, under its name."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    status: int = Field(ge=400, le=599)
    # The problem type's last segment: the problem's name, unless several problems share one type.
    slug: str | None = None
    title: _Words
    detail: _Words | None = None
    field: FieldProblem | None = None
    retry_after_s: int | None = Field(default=None, ge=1)
    headers: dict[str, str] = Field(default_factory=dict)

    def spec(self, name: str) -> ProblemSpec:
        """The problem as the code raises it."""
        retry = {} if self.retry_after_s is None else {"Retry-After": str(self.retry_after_s)}
        return ProblemSpec(
            status=self.status,
            slug=self.slug or name,
            title_en=self.title.en,
            title_fa=self.title.fa,
            detail_en=self.detail.en if self.detail else None,
            detail_fa=self.detail.fa if self.detail else None,
            field_problem=self.field,
            headers={**self.headers, **retry},
        )


_PROBLEMS_FILE: TypeAdapter[dict[str, _Declared]] = TypeAdapter(dict[str, _Declared])


def read_problems(source: Path | Traversable) -> Mapping[str, ProblemSpec]:
    """Every problem a YAML problems file declares, by name; ProblemsFileError naming the file and the problem."""
    try:
        declared = _PROBLEMS_FILE.validate_python(yaml.safe_load(source.read_text(encoding="utf-8")))
    except (OSError, yaml.YAMLError, ValidationError) as error:
        raise ProblemsFileError(f"{source}: {error}") from error
    return MappingProxyType({name: problem.spec(name) for name, problem in declared.items()})


def problems_beside(module_file: str) -> Mapping[str, ProblemSpec]:
    """The problems of the `problems.yaml` next to a module (pass the module's `__file__`), read once."""
    return _read_once(Path(module_file).with_name("problems.yaml"))


@functools.cache
def _read_once(path: Path) -> Mapping[str, ProblemSpec]:
    # Several route modules of a service name problems of the same file.
    return read_problems(path)


SHARED: Final = read_problems(resources.files("shared").joinpath("data/problems.yaml"))


# --- the answers every service shares --------------------------------------------------------------

NOTHING_RECORDED_EN = "Nothing was recorded. Please try again in a few seconds."
NOTHING_RECORDED_FA = "چیزی ثبت نشد. لطفاً چند ثانیه دیگر دوباره تلاش کنید."


def unavailable(
    slug: str,
    title_en: str,
    title_fa: str,
    *,
    detail_en: str = NOTHING_RECORDED_EN,
    detail_fa: str = NOTHING_RECORDED_FA,
    retry_after_s: int = 5,
) -> ProblemSpec:
    """A 503 with Retry-After: something the desk needs is down for now, and nothing was done."""
    words = _Words(en=title_en, fa=title_fa), _Words(en=detail_en, fa=detail_fa)
    return _Declared(status=503, title=words[0], detail=words[1], retry_after_s=retry_after_s).spec(slug)


REQUEST_NOT_FOUND: Final = SHARED["request-not-found"]
BUS_UNAVAILABLE: Final = unavailable(
    "bus-unavailable",
    "The service desk cannot record requests right now",
    "میز خدمت در این لحظه نمی‌تواند درخواست را ثبت کند",
)
_RATE_LIMITED: Final = SHARED["rate-limited"]


def request_not_found() -> ProblemError:
    """The one answer for "no such code", "not your request" and "not a code": a lookup reveals nothing."""
    return REQUEST_NOT_FOUND.error()


def rate_limited(retry_after_s: int) -> ProblemError:
    """429 with Retry-After: the client (or the thing it asks about) used its budget for now."""
    return _RATE_LIMITED.error(headers={"Retry-After": str(retry_after_s)}, seconds=retry_after_s)


def bus_unavailable() -> ProblemError:
    """503 while Kafka cannot acknowledge: nothing was recorded, retry shortly."""
    return BUS_UNAVAILABLE.error()


INTERNAL_KEY_HEADER = "X-Internal-Key"

INTERNAL_UNAUTHENTICATED: Final = SHARED["internal-unauthenticated"]


def check_internal_key(request: Request, expected: bytes) -> None:
    """401 unless the request presents `expected` in X-Internal-Key; the same answer for a missing or wrong key.

    An empty `expected` (no key configured) lets nobody in: an absent header would otherwise match it."""
    if not expected or not hmac.compare_digest(request.headers.get(INTERNAL_KEY_HEADER, "").encode(), expected):
        raise INTERNAL_UNAUTHENTICATED.error()
