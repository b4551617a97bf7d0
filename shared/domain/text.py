"""Text typed by citizens and agencies: what characters a field refuses, and the pydantic types that refuse them.

A NUL or an escape code in a stored field breaks the systems that read it later (PostgreSQL refuses NUL in
text, terminals and logs interpret escapes); a bidi override makes a text read differently from what it
holds (a classic spoofing trick in names and identifiers). Every text field of the public API uses one of the
types below, so the rule and its message are the same everywhere.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable
from typing import Annotated, Final

from pydantic import AfterValidator
from pydantic_core import PydanticCustomError

# Line breaks and tabs are text where several lines make sense (a complaint, a reason); nowhere else.
LINE_CONTROLS: Final = frozenset("\t\n\r")
# Explicit embeddings, overrides (U+202A-U+202E) and isolates (U+2066-U+2069).
BIDI_CONTROLS: Final = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")

CONTROL_CHARACTER: Final = "text_control_character"
BIDI_CONTROL: Final = "text_bidi_control"

# What each rule says, in both languages: the codes are the problem's `errors[].code`.
RULE_MESSAGES: Final[dict[str, tuple[str, str]]] = {
    CONTROL_CHARACTER: (
        "Control characters (such as NUL or escape codes) are not allowed in this field.",
        "نویسه‌های کنترلی (مانند نویسهٔ تهی یا کدهای گریز) در این مورد پذیرفته نیست.",
    ),
    BIDI_CONTROL: (
        "Bidirectional override and isolate characters are not allowed in this field.",
        "نویسه‌های نامرئی تغییر جهت متن در این مورد پذیرفته نیست.",
    ),
}
MULTILINE_CONTROL_MESSAGES: Final = (
    "Control characters other than tab and line breaks are not allowed in this field.",
    "جز نویسهٔ جدول‌بندی و شکست سطر، نویسه‌های کنترلی در این مورد پذیرفته نیست.",
)


def refused_character(text: str, *, multiline: bool, allow_bidi: bool = False) -> str | None:
    """The rule `text` breaks (CONTROL_CHARACTER or BIDI_CONTROL), or None when it is acceptable."""
    for char in text:
        if unicodedata.category(char) == "Cc" and not (multiline and char in LINE_CONTROLS):
            return CONTROL_CHARACTER
        if not allow_bidi and char in BIDI_CONTROLS:
            return BIDI_CONTROL
    return None


def _refusing(*, multiline: bool, allow_bidi: bool = False) -> Callable[[str], str]:
    def check(value: str) -> str:
        rule = refused_character(value, multiline=multiline, allow_bidi=allow_bidi)
        if rule is None:
            return value
        message_en, message_fa = RULE_MESSAGES[rule]
        if rule == CONTROL_CHARACTER and multiline:
            message_en, message_fa = MULTILINE_CONTROL_MESSAGES
        raise PydanticCustomError(rule, message_en, {"message_fa": message_fa})

    return check


# The rules as validators, to follow other constraints in an Annotated type (after StringConstraints, so its
# stripping and length checks still apply).
SINGLE_LINE: Final = AfterValidator(_refusing(multiline=False))
MULTI_LINE: Final = AfterValidator(_refusing(multiline=True))
TYPED_NUMBER: Final = AfterValidator(_refusing(multiline=False, allow_bidi=True))

# One line: names, identifiers, short answers, keys.
SingleLineText = Annotated[str, SINGLE_LINE]
# Several lines: complaints, reasons, resolutions, summaries, notes.
MultiLineText = Annotated[str, MULTI_LINE]
# Numbers typed by hand (national ID, mobile, dates): phones wrap copied numbers in bidi embeddings, which
# normalisation strips (shared/domain/digits.py), so only control characters are refused.
TypedNumberText = Annotated[str, TYPED_NUMBER]
