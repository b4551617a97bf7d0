"""identity's answers to its use cases' failures, each said once: the exception handlers registered on the app
map every failure to its problem+json (the routes raise nothing of their own)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Final

from shared.http import ProblemError
from shared.problems import ProblemSpec, rate_limited, unavailable

from .service import RefreshRefused, SignInRefused, SignInThrottled, SignInUnavailable

SIGN_IN_UNAVAILABLE: Final = unavailable(
    "sign-in-unavailable",
    "Signing in is not possible right now",
    "ورود در این لحظه ممکن نیست",
    detail_en="No code was sent and nothing was stored. Please try again in a minute.",
    detail_fa="کدی فرستاده نشد و چیزی ذخیره نشد. لطفاً یک دقیقهٔ دیگر دوباره تلاش کنید.",
    retry_after_s=30,
)
# One answer for a wrong, used, burnt or expired code, a mobile that is not the person's, and no such person.
SIGN_IN_REFUSED: Final = ProblemSpec(
    status=401,
    slug="sign-in-refused",
    title_en="The code is not valid",
    title_fa="کد پذیرفته نشد",
    detail_en="The code is wrong, used or expired, or does not go with this national ID and mobile; ask for a new one.",
    detail_fa="کد نادرست، استفاده‌شده یا منقضی است یا با این کد ملی و شمارهٔ همراه جور نیست؛ کد تازه بخواهید.",
    headers={"WWW-Authenticate": "Bearer"},
)
REFRESH_REFUSED: Final = ProblemSpec(
    status=401,
    slug="refresh-refused",
    title_en="Please sign in again",
    title_fa="لطفاً دوباره وارد شوید",
    detail_en="The refresh token is unknown, expired, already used or its session was signed out.",
    detail_fa="توکن تازه‌سازی شناخته نیست، منقضی یا استفاده شده است، یا از نشست آن خارج شده‌اید.",
    headers={"WWW-Authenticate": "Bearer"},
)

PROBLEMS: Final[Mapping[type[Exception], Callable[[Any], ProblemError]]] = {
    SignInUnavailable: lambda _error: SIGN_IN_UNAVAILABLE.error(),
    SignInRefused: lambda _error: SIGN_IN_REFUSED.error(),
    RefreshRefused: lambda _error: REFRESH_REFUSED.error(),
    SignInThrottled: lambda error: rate_limited(error.retry_after_s),
}
