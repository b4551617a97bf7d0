"""identity's answers to its use cases' failures, each said once (problems.yaml): the exception handlers
registered on the app map every failure to its problem+json (the routes raise nothing of their own)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Final

from shared.http import ProblemError
from shared.problems import problems_beside, rate_limited

from .service import RefreshRefused, SignInRefused, SignInThrottled, SignInUnavailable

_PROBLEMS: Final = problems_beside(__file__)

PROBLEMS: Final[Mapping[type[Exception], Callable[[Any], ProblemError]]] = {
    SignInUnavailable: lambda _error: _PROBLEMS["sign-in-unavailable"].error(),
    SignInRefused: lambda _error: _PROBLEMS["sign-in-refused"].error(),
    RefreshRefused: lambda _error: _PROBLEMS["refresh-refused"].error(),
    SignInThrottled: lambda error: rate_limited(error.retry_after_s),
}
