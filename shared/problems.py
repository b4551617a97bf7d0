"""problem+json answers declared as data (`ProblemSpec`), and the answers every service shares.

404 for a lookup, 429, 503 while something the desk needs is down, 401 without the internal key; the problem
document itself and its handlers are in shared/http.py (kept apart so that module stays in its size limit).
"""

from __future__ import annotations

import dataclasses
import hmac
from collections.abc import Mapping
from typing import Final

from fastapi import Request

from shared.http import FieldProblem, ProblemError, fa_number


@dataclasses.dataclass(frozen=True)
class ProblemSpec:
    """One problem's fixed shape, declared once as data; `{name}` fields in its details are filled per error."""

    status: int
    slug: str
    title_en: str
    title_fa: str
    detail_en: str | None = None
    detail_fa: str | None = None
    field_problem: FieldProblem | None = None
    headers: Mapping[str, str] = dataclasses.field(default_factory=dict)

    def error(self, errors: list[FieldProblem] | None = None, **values: object) -> ProblemError:
        """The error to raise: details filled from `values`, and `errors` (else the declared field) at fault."""
        if errors is None and self.field_problem is not None:
            errors = [self.field_problem]
        return ProblemError(
            status=self.status,
            slug=self.slug,
            title_en=self.title_en,
            title_fa=self.title_fa,
            detail_en=None if self.detail_en is None else self.detail_en.format(**values),
            detail_fa=None if self.detail_fa is None else self.detail_fa.format(**values),
            errors=errors,
            headers=self.headers,
        )


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
    return ProblemSpec(
        status=503,
        slug=slug,
        title_en=title_en,
        title_fa=title_fa,
        detail_en=detail_en,
        detail_fa=detail_fa,
        headers={"Retry-After": str(retry_after_s)},
    )


REQUEST_NOT_FOUND: Final = ProblemSpec(
    status=404,
    slug="request-not-found",
    title_en="No request matches this tracking code and national ID",
    title_fa="درخواستی با این کد رهگیری و کد ملی پیدا نشد",
    detail_en="Check both numbers and try again.",
    detail_fa="هر دو شماره را بررسی و دوباره تلاش کنید.",
)

BUS_UNAVAILABLE: Final = unavailable(
    "bus-unavailable",
    "The service desk cannot record requests right now",
    "میز خدمت در این لحظه نمی‌تواند درخواست را ثبت کند",
)


def request_not_found() -> ProblemError:
    """The one answer for "no such code", "not your request" and "not a code": a lookup reveals nothing."""
    return REQUEST_NOT_FOUND.error()


def rate_limited(retry_after_s: int) -> ProblemError:
    """429 with Retry-After: the client (or the thing it asks about) used its budget for now."""
    return ProblemError(
        status=429,
        slug="rate-limited",
        title_en="Too many requests",
        title_fa="تعداد درخواست‌ها بیش از حد مجاز است",
        detail_en=f"Please try again in {retry_after_s} seconds.",
        detail_fa=f"لطفاً {fa_number(retry_after_s)} ثانیهٔ دیگر دوباره تلاش کنید.",
        headers={"Retry-After": str(retry_after_s)},
    )


def bus_unavailable() -> ProblemError:
    """503 while Kafka cannot acknowledge: nothing was recorded, retry shortly."""
    return BUS_UNAVAILABLE.error()


INTERNAL_KEY_HEADER = "X-Internal-Key"

INTERNAL_UNAUTHENTICATED: Final = ProblemSpec(
    status=401,
    slug="internal-unauthenticated",
    title_en="A valid internal key is required",
    title_fa="کلید داخلی معتبر لازم است",
)


def check_internal_key(request: Request, expected: bytes) -> None:
    """401 unless the request presents `expected` in X-Internal-Key; the same answer for a missing or wrong key.

    An empty `expected` (no key configured) lets nobody in: an absent header would otherwise match it."""
    if not expected or not hmac.compare_digest(request.headers.get(INTERNAL_KEY_HEADER, "").encode(), expected):
        raise INTERNAL_UNAUTHENTICATED.error()
