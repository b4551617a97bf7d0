"""Digit handling for text typed by citizens on Persian, Arabic and Latin keyboards."""

from __future__ import annotations

from typing import Final

_ASCII_DIGITS: Final = "0123456789"
_PERSIAN_DIGITS: Final = "۰۱۲۳۴۵۶۷۸۹"
_ARABIC_INDIC_DIGITS: Final = "٠١٢٣٤٥٦٧٨٩"

_TO_ASCII: Final = str.maketrans(_PERSIAN_DIGITS + _ARABIC_INDIC_DIGITS, _ASCII_DIGITS * 2)
_TO_PERSIAN: Final = str.maketrans(_ASCII_DIGITS, _PERSIAN_DIGITS)

# Phone keyboards and copy-paste from RTL pages routinely inject these invisible characters into
# numbers; they carry no information in an identifier, so they are dropped along with separators.
_INVISIBLE_MARKS: Final = (
    "\u200c"  # zero-width non-joiner
    "\u200d"  # zero-width joiner
    "\u200e"  # left-to-right mark
    "\u200f"  # right-to-left mark
    "\u061c"  # Arabic letter mark
    "\u202a\u202b\u202c\u202d\u202e"  # bidi embeddings and overrides
    "\u2066\u2067\u2068\u2069"  # bidi isolates
    "\ufeff"  # byte-order mark / zero-width no-break space
)
_DASHES: Final = "-\u2010\u2011\u2012\u2013\u2014\u2212\u0640"  # includes tatweel, used as a dash
_SEPARATORS: Final = str.maketrans("", "", _INVISIBLE_MARKS + _DASHES)


def normalize_digits(text: str) -> str:
    """Return text with Persian and Arabic-Indic digits replaced by ASCII digits."""
    return text.translate(_TO_ASCII)


def to_persian_digits(text: str) -> str:
    """Return text with ASCII digits replaced by Persian digits, for display."""
    return text.translate(_TO_PERSIAN)


def strip_separators(text: str) -> str:
    """Return text without whitespace, dashes and invisible bidi/joiner marks, for parsing identifiers."""
    return "".join(text.translate(_SEPARATORS).split())


def is_ascii_digits(text: str) -> bool:
    """Return whether text is non-empty and made only of the ASCII digits 0-9."""
    # str.isdigit alone also accepts superscripts and other scripts' digits, which int() would misread.
    return text.isascii() and text.isdigit()
