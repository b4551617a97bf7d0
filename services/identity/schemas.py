"""identity's HTTP shapes. National IDs, mobiles and codes may be typed with Persian or Arabic-Indic digits,
spaces and dashes; each is normalised here, and a malformed one is a 422 naming the field (not the value)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from shared.domain.digits import is_ascii_digits, normalize_digits, strip_separators
from shared.domain.identity import InvalidMobile, InvalidNationalId, normalize_mobile, normalize_national_id
from shared.domain.text import TypedNumberText
from shared.http import bilingual_value_error


def _normalized(
    normalize: Callable[[str], str], invalid: type[Exception], code: str, rule_en: str, rule_fa: str
) -> Callable[[str], str]:
    """A validator that normalises a typed number, or refuses it naming its rule in both languages."""

    def check(value: str) -> str:
        try:
            return normalize(value)
        except invalid:
            raise bilingual_value_error(code, rule_en, rule_fa) from None

    return check


_national_id = _normalized(
    normalize_national_id,
    InvalidNationalId,
    "national_id_invalid",
    "a national ID has 10 digits ending in its check digit",
    "کد ملی ده رقم دارد و رقم آخر آن رقم کنترل است؛ آن را بررسی کنید.",
)
_mobile = _normalized(
    normalize_mobile,
    InvalidMobile,
    "mobile_invalid",
    "an Iranian mobile number, such as 09121234567",
    "شمارهٔ همراه ایرانی لازم است، مانند ۰۹۱۲۱۲۳۴۵۶۷.",
)


def _code(value: str) -> str:
    code = normalize_digits(strip_separators(value))
    if len(code) != 6 or not is_ascii_digits(code):
        raise bilingual_value_error("code_invalid", "the code has 6 digits", "کد شش رقم دارد.")
    return code


NationalId = Annotated[TypedNumberText, Field(min_length=1, max_length=20), AfterValidator(_national_id)]
Mobile = Annotated[TypedNumberText, Field(min_length=1, max_length=20), AfterValidator(_mobile)]
Code = Annotated[TypedNumberText, Field(min_length=1, max_length=20), AfterValidator(_code)]


class SignInIn(BaseModel):
    """Who signs in: the national ID and the mobile registered under it."""

    model_config = ConfigDict(extra="forbid")

    national_id: NationalId = Field(examples=["0012345679"])
    mobile: Mobile = Field(examples=["09121234567"])


class SignInOut(BaseModel):
    """The same answer whether or not a code was texted: nothing here says whether the mobile is yours."""

    expires_in_s: int = Field(examples=[120])
    resend_after_s: int = Field(examples=[60])


class VerifyIn(SignInIn):
    """The code texted to the mobile, with the same national ID and mobile."""

    code: Code = Field(examples=["123456"])


class TokensOut(BaseModel):
    """A session's tokens: send the access token as `Authorization: Bearer …`; refresh before it expires."""

    access_token: str
    token_type: str = "Bearer"
    expires_in_s: int
    refresh_token: str
    refresh_expires_in_s: int


class RefreshIn(BaseModel):
    """The refresh token last received; it is spent by this call and a new one is given."""

    model_config = ConfigDict(extra="forbid")

    refresh_token: str = Field(min_length=1, max_length=200)
